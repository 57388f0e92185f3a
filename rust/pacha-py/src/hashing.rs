//! BLAKE3 for Python: functions over paths and buffers, and a hashlib-style `Hasher`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use pacha_core::hash;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::ContiguousBytes;
use crate::detach::{progress_of, run_detached, Progress};

/// BLAKE3-256 of the file at `path` as 64 hex characters, identical to `b3sum`.
#[pyfunction]
#[pyo3(signature = (path, progress = None))]
pub fn hash_file(
    py: Python<'_>,
    path: PathBuf,
    progress: Option<&Bound<'_, Progress>>,
) -> PyResult<String> {
    run_detached(py, progress_of(progress), move |p| {
        hash::hash_file(&path, p)
    })
    .map(|d| d.to_hex())
}

/// BLAKE3-256 of any C-contiguous buffer (bytes, bytearray, memoryview, numpy), no copy.
#[pyfunction]
pub fn hash_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    let bytes = ContiguousBytes::get(data)?;
    Ok(py.detach(|| hash::hash_slice(bytes.as_slice())).to_hex())
}

/// An incremental BLAKE3 hasher with the hashlib interface.
///
/// Frozen with an inner lock, so that releasing the GIL during `update` can never produce
/// "already borrowed" errors when several threads share one hasher. The lock is only ever
/// waited for with the GIL released, so a long `update_file` in one thread never freezes the
/// others.
#[pyclass(frozen, module = "pacha._core")]
#[derive(Debug)]
pub struct Hasher(Arc<Mutex<hash::Hasher>>);

fn lock(state: &Mutex<hash::Hasher>) -> MutexGuard<'_, hash::Hasher> {
    // A panic while the lock was held cannot leave the state worse than the panic itself did.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hasher {
    fn with_state<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut hash::Hasher) -> R + Send,
    ) -> R {
        py.detach(|| f(&mut lock(&self.0)))
    }
}

#[pymethods]
impl Hasher {
    #[new]
    #[pyo3(signature = (data = None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let hasher = Hasher(Arc::new(Mutex::new(hash::Hasher::new())));
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
        self.with_state(py, |state| hash::update_slice(state, bytes.as_slice()));
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
        let state = Arc::clone(&self.0);
        // The lock is held for the whole read, so no concurrent update can slip in between;
        // the file is hashed into a copy that replaces the state only on success, so a failed
        // read leaves the hasher as it was.
        run_detached(py, progress_of(progress), move |p| {
            let mut state = lock(&state);
            let mut scratch = state.clone();
            hash::update_from_file(&mut scratch, &path, p)?;
            *state = scratch;
            Ok(())
        })
    }

    /// The 32-byte digest of everything added so far.
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let digest = self.with_state(py, |state| state.finalize());
        PyBytes::new(py, digest.as_bytes())
    }

    /// The digest as 64 lowercase hex characters.
    fn hexdigest(&self, py: Python<'_>) -> String {
        self.with_state(py, |state| state.finalize().to_hex().to_string())
    }

    /// An independent hasher with the same state.
    fn copy(&self, py: Python<'_>) -> Self {
        let state = self.with_state(py, |state| state.clone());
        Hasher(Arc::new(Mutex::new(state)))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let count = self.with_state(py, |state| state.count());
        format!("<pacha.Hasher blake3, {count} bytes>")
    }
}
