//! The one asynchronous runtime of the core, for the network backends (S3 today). Callers
//! stay synchronous: they `block_on` it from their own thread, with the GIL released by the
//! binding.
//!
//! A runtime's worker threads do not survive `fork`: a child that used the parent's runtime
//! would wait forever. So the runtime is per process: a child builds its own, and the
//! parent's (whose threads the child does not have) is leaked rather than dropped, since
//! dropping it would wait for those threads.

use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

use crate::{CoreError, Result};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// This process's runtime, built on first use.
pub(crate) fn runtime() -> Result<Arc<Runtime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some((owner, runtime)) = slot.as_ref() {
        if *owner == pid {
            return Ok(Arc::clone(runtime));
        }
    }
    if let Some((_, inherited)) = slot.take() {
        // Its threads live only in the parent; dropping it here would wait for them.
        std::mem::forget(inherited);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pacha-io")
        .enable_all()
        .build()
        .map_err(|e| CoreError::Internal {
            message: format!("cannot start the I/O runtime: {e}"),
        })?;
    let runtime = Arc::new(runtime);
    *slot = Some((pid, Arc::clone(&runtime)));
    Ok(runtime)
}
