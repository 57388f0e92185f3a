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

/// The progress object to use: the caller's, or a private one.
pub(crate) fn progress_of(progress: Option<&Bound<'_, Progress>>) -> Arc<pacha_core::Progress> {
    progress.map(|p| Arc::clone(&p.get().0)).unwrap_or_default()
}

/// Run `work` without the GIL on a worker thread, honouring Ctrl-C (see the module docs).
pub(crate) fn run_detached<T, F>(
    py: Python<'_>,
    progress: &pacha_core::Progress,
    work: F,
) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&pacha_core::Progress) -> Result<T, CoreError> + Send,
{
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        scope.spawn(move || {
            // The receiver outlives the scope's threads; a failed send cannot happen.
            let _ = done_tx.send(work(progress));
        });
        let mut done_rx = done_rx;
        loop {
            // The receiver is not `Sync`, so it moves into the detached closure and back.
            let (waited, rx) = py.detach(move || {
                let waited = done_rx.recv_timeout(SIGNAL_CHECK_INTERVAL);
                (waited, done_rx)
            });
            done_rx = rx;
            match waited {
                Ok(result) => return result.map_err(to_py),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        progress.cancel();
                        // Let the worker notice, clean up and finish before we unwind.
                        let _ = py.detach(move || done_rx.recv());
                        return Err(interrupt);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(pyo3::exceptions::PySystemError::new_err(
                        "pacha worker thread died without a result",
                    ));
                }
            }
        }
    })
}
