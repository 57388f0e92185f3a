//! The one mapping from core errors to Python exceptions. The match is exhaustive on
//! purpose: a new `CoreError` variant does not compile until it is mapped here.
//!
//! The exception classes are defined in Python (`python/pacha/errors.py`), so that they can
//! be imported, documented and subclassed without loading the native module.

use std::io;
use std::path::Path;

use pacha_core::{CoreError, Remedy};
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError, PyOSError,
    PyPermissionError,
};
use pyo3::prelude::*;

pyo3::import_exception!(pacha.errors, NotFoundError);
pyo3::import_exception!(pacha.errors, IntegrityError);
pyo3::import_exception!(pacha.errors, AlreadyExistsError);
pyo3::import_exception!(pacha.errors, InvalidInputError);
pyo3::import_exception!(pacha.errors, SourceChangedError);
pyo3::import_exception!(pacha.errors, CancelledError);
pyo3::import_exception!(pacha.errors, InvalidTransitionError);
pyo3::import_exception!(pacha.errors, RegistryBusyError);
pyo3::import_exception!(pacha.errors, DatabaseError);
pyo3::import_exception!(pacha.errors, LineageCycleError);
pyo3::import_exception!(pacha.errors, UnsafeRegistryError);
pyo3::import_exception!(pacha.errors, ReadOnlyRegistryError);
pyo3::import_exception!(pacha.errors, InternalError);
pyo3::import_exception!(pacha.errors, BackendError);

/// The Python API's words for what a caller can pass to go ahead anyway (the CLI words the
/// same remedies as `--force` and `--bump`, in `pacha/cli/output.py`).
fn python_hint(remedy: Remedy) -> &'static str {
    match remedy {
        Remedy::Replace => {
            "; pass force=True to replace it (overwrite=True for ObjectStore.export)"
        }
        Remedy::ForceDelete => ", or pass force=True to delete it anyway",
        Remedy::NewVersion => " (e.g. bump=\"patch\")",
    }
}

/// The exception for `err`, its message worded for Python callers, with the error's stable
/// `code`, its `detail` (the message without the Python wording) and its `remedy` as
/// attributes, so that the CLI can word the remedy its own way.
pub(crate) fn to_py(err: CoreError) -> PyErr {
    let code = err.code();
    let detail = err.to_string();
    let remedy = err.remedy();
    let py_err = exception(err, remedy.map(python_hint));
    Python::attach(|py| {
        let value = py_err.value(py);
        for (name, attribute) in [
            ("code", Some(code)),
            ("detail", Some(detail.as_str())),
            ("remedy", remedy.map(Remedy::as_str)),
        ] {
            // Only fails on an object without attributes, which these classes are not.
            let _ = value.setattr(name, attribute);
        }
    });
    py_err
}

fn exception(err: CoreError, hint: Option<&str>) -> PyErr {
    let message = format!("{err}{}", hint.unwrap_or(""));
    match err {
        CoreError::Io { path, source } => os_error(&path, &source),
        CoreError::IsADirectory { path } => {
            PyIsADirectoryError::new_err((libc_errno::EISDIR, "Is a directory", path_text(&path)))
        }
        CoreError::NotARegularFile { .. } | CoreError::InvalidDigest { .. } => {
            InvalidInputError::new_err(message)
        }
        CoreError::ObjectNotFound { .. } => NotFoundError::new_err(message),
        CoreError::Integrity {
            expected,
            actual,
            path,
        } => IntegrityError::new_err((
            message,
            expected.to_hex(),
            actual.to_hex(),
            path_text(&path),
        )),
        CoreError::SourceChanged { .. } => SourceChangedError::new_err(message),
        CoreError::AlreadyExists { .. } => AlreadyExistsError::new_err(message),
        CoreError::Cancelled => CancelledError::new_err(message),
        CoreError::InvalidInput { .. } => InvalidInputError::new_err(message),
        CoreError::NotFound { .. } => NotFoundError::new_err(message),
        CoreError::VersionExists { .. } => AlreadyExistsError::new_err(message),
        CoreError::InProduction { .. } => InvalidInputError::new_err(message),
        CoreError::InvalidTransition { .. } => InvalidTransitionError::new_err(message),
        CoreError::Busy { .. } => RegistryBusyError::new_err(message),
        CoreError::Database { .. } => DatabaseError::new_err(message),
        CoreError::Corrupt { .. } => IntegrityError::new_err(message),
        CoreError::LineageCycle { .. } => LineageCycleError::new_err(message),
        CoreError::Unsafe { .. } => UnsafeRegistryError::new_err(message),
        CoreError::ReadOnly { .. } => ReadOnlyRegistryError::new_err(message),
        CoreError::MissingDatabase { .. } => DatabaseError::new_err(message),
        CoreError::Backend { .. } => BackendError::new_err(message),
        CoreError::Internal { .. } => InternalError::new_err(message),
    }
}

/// Errno values used without a libc dependency in the binding.
mod libc_errno {
    pub const EISDIR: i32 = 21;
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// An `OSError` of the right subclass, with errno, message and file name, as Python's own
/// `open()` would raise it.
fn os_error(path: &Path, source: &io::Error) -> PyErr {
    let filename = path_text(path);
    let Some(errno) = source.raw_os_error() else {
        return PyOSError::new_err(format!("{filename}: {source}"));
    };
    let text = source.to_string();
    let strerror = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text)
        .to_string();
    let args = (errno, strerror, filename);
    match source.kind() {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(args),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err(args),
        io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(args),
        io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(args),
        io::ErrorKind::NotADirectory => PyNotADirectoryError::new_err(args),
        // OSError(errno, ...) picks the matching subclass itself for the remaining errnos.
        _ => PyOSError::new_err(args),
    }
}
