//! The one place where long work leaves the GIL.
//!
//! Core work runs on a scoped worker thread with the GIL released; this thread waits for it
//! and wakes every few milliseconds to let Python handle signals. On Ctrl-C the work is told
//! to stop through its `Progress`, joined (so temp files are cleaned up), and the
//! `KeyboardInterrupt` propagates. Nothing inside the worker touches a Python object.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use pacha_core::CoreError;
use pyo3::prelude::*;

use crate::errors::to_py;

const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Progress of a long operation, readable from another Python thread (a progress bar) while
/// the operation runs with the GIL released. One `Progress` per operation.
#[pyclass(frozen, module = "pacha._core")]
#[derive(Debug, Default)]
pub struct Progress(pub(crate) Arc<pacha_core::Progress>);

#[pymethods]
impl Progress {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Bytes processed so far.
    #[getter]
    fn done(&self) -> u64 {
        self.0.done()
    }

    /// Bytes expected in total (0 until known).
    #[getter]
    fn total(&self) -> u64 {
        self.0.total()
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Ask the operation to stop at its next check: it raises `pacha.errors.CancelledError`
    /// and leaves nothing half-written.
    fn cancel(&self) {
        self.0.cancel()
    }

    fn __repr__(&self) -> String {
        format!("Progress(done={}, total={})", self.0.done(), self.0.total())
    }
}

/// Run `work`, turning a panic (a bug) into `CoreError::Internal` instead of letting it
/// unwind into Python as a `PanicException` (a traceback, not one line).
pub(crate) fn guarded<T>(work: impl FnOnce() -> Result<T, CoreError>) -> Result<T, CoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => Err(CoreError::Internal {
            message: crate::panics::describe(payload.as_ref()),
        }),
    }
}

/// Run short core work with the GIL released (and [`guarded`]), mapping its error.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    py.detach(|| guarded(work)).map_err(to_py)
}

/// The progress object to use: the caller's, or a private one.
pub(crate) fn progress_of(progress: Option<&Bound<'_, Progress>>) -> Arc<pacha_core::Progress> {
    progress.map(|p| Arc::clone(&p.get().0)).unwrap_or_default()
}

/// Run `work` without the GIL on a worker thread, honouring Ctrl-C (see the module docs).
///
/// On the first Ctrl-C the work is cancelled and awaited, so that it removes its temp files.
/// Work blocked in the kernel (opening a FIFO that no one writes to) cannot notice; a second
/// Ctrl-C then returns at once and leaves the worker behind, to finish or die with the process.
pub(crate) fn run_detached<T, F>(
    py: Python<'_>,
    progress: Arc<pacha_core::Progress>,
    work: F,
) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&pacha_core::Progress) -> Result<T, CoreError> + Send + 'static,
{
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let worker_progress = Arc::clone(&progress);
    std::thread::Builder::new()
        .name("pacha-worker".into())
        .spawn(move || {
            // If the caller gave up waiting, nobody wants the result.
            let _ = done_tx.send(guarded(|| work(&worker_progress)));
        })
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot start a thread: {e}")))?;
    let mut interrupt: Option<PyErr> = None;
    let mut done_rx = done_rx;
    loop {
        // The receiver is not `Sync`, so it moves into the detached closure and back.
        let (waited, rx) = py.detach(move || {
            let waited = done_rx.recv_timeout(SIGNAL_CHECK_INTERVAL);
            (waited, done_rx)
        });
        done_rx = rx;
        match waited {
            Ok(result) => {
                return match interrupt {
                    Some(interrupt) => Err(interrupt),
                    None => result.map_err(to_py),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(signal) = py.check_signals() {
                    if interrupt.is_some() {
                        return Err(signal);
                    }
                    progress.cancel();
                    interrupt = Some(signal);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(pyo3::exceptions::PySystemError::new_err(
                    "pacha worker thread died without a result",
                ));
            }
        }
    }
}
