//! BLAKE3 for Python: functions over paths and buffers, and a hashlib-style `Hasher`.

use std::path::PathBuf;
use std::sync::Mutex;

use pacha_core::hash;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::ContiguousBytes;
use crate::detach::{progress_of, run_detached, Progress};

/// Buffers smaller than this are hashed without releasing the GIL: releasing costs more.
const DETACH_MIN: usize = 2048;

/// BLAKE3-256 of the file at `path` as 64 hex characters, identical to `b3sum`.
#[pyfunction]
#[pyo3(signature = (path, progress = None))]
pub fn hash_file(
    py: Python<'_>,
    path: PathBuf,
    progress: Option<&Bound<'_, Progress>>,
) -> PyResult<String> {
    let progress = progress_of(progress);
    run_detached(py, &progress, |p| hash::hash_file(&path, p)).map(|d| d.to_hex())
}

/// BLAKE3-256 of any C-contiguous buffer (bytes, bytearray, memoryview, numpy), no copy.
#[pyfunction]
pub fn hash_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    let bytes = ContiguousBytes::get(data)?;
    let digest = if bytes.as_slice().len() < DETACH_MIN {
        hash::hash_slice(bytes.as_slice())
    } else {
        py.detach(|| hash::hash_slice(bytes.as_slice()))
    };
    Ok(digest.to_hex())
}

/// An incremental BLAKE3 hasher with the hashlib interface.
///
/// Frozen with an inner lock, so that releasing the GIL during `update` can never produce
/// "already borrowed" errors when several threads share one hasher.
#[pyclass(frozen, module = "pacha._core")]
#[derive(Debug)]
pub struct Hasher(Mutex<hash::Hasher>);

impl Hasher {
    fn lock(&self) -> std::sync::MutexGuard<'_, hash::Hasher> {
        // A panic while holding the lock cannot leave the hasher half-updated in a way that
        // matters more than the panic itself; keep serving.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl Hasher {
    #[new]
    #[pyo3(signature = (data = None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let hasher = Hasher(Mutex::new(hash::Hasher::new()));
        if let Some(data) = data {
            hasher.update(py, data)?;
        }
        Ok(hasher)
    }

    #[classattr]
    fn name() -> &'static str {
        "blake3"
    }

    #[classattr]
    fn digest_size() -> usize {
        hash::DIGEST_SIZE
    }

    #[classattr]
    fn block_size() -> usize {
        hash::BLOCK_SIZE
    }

    /// Add the bytes of any C-contiguous buffer.
    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = ContiguousBytes::get(data)?;
        let slice = bytes.as_slice();
        if slice.len() < DETACH_MIN {
            self.lock().update(slice);
        } else {
            py.detach(|| hash::update_slice(&mut self.lock(), slice));
        }
        Ok(())
    }

    /// Add the bytes of the file at `path`, streamed (memory-mapped when large).
    #[pyo3(signature = (path, progress = None))]
    fn update_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<()> {
        let progress = progress_of(progress);
        // Hash into a copy and commit only on success, so a failed read leaves the hasher as
        // it was.
        let mut scratch = self.lock().clone();
        let scratch = run_detached(py, &progress, move |p| {
            hash::update_from_file(&mut scratch, &path, p).map(|()| scratch)
        })?;
        *self.lock() = scratch;
        Ok(())
    }

    /// The 32-byte digest of everything added so far.
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.lock().finalize().as_bytes())
    }

    /// The digest as 64 lowercase hex characters.
    fn hexdigest(&self) -> String {
        self.lock().finalize().to_hex().to_string()
    }

    /// An independent hasher with the same state.
    fn copy(&self) -> Self {
        Hasher(Mutex::new(self.lock().clone()))
    }

    fn __repr__(&self) -> String {
        format!("<pacha.Hasher blake3, {} bytes>", self.lock().count())
    }
}
