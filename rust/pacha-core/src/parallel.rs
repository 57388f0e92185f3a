//! The thread pool every parallel loop of pacha runs on, rebuilt in a forked child.
//!
//! rayon's global pool is created once per process; after `fork()` a child inherits the
//! pool's bookkeeping but none of its threads, and its first parallel call waits forever.
//! Forking a process that has used pacha is common: Python's `multiprocessing` forks on
//! Linux, and so do PyTorch `DataLoader` workers. So pacha never uses the global pool: every
//! parallel call goes through [`install`], which builds a pool for the current process on
//! first use. A child builds its own; the parent's pool, inherited without its threads, is
//! left untouched (leaked, never dropped: dropping it would wait for threads that do not
//! exist in the child).

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};

use rayon::prelude::*;

struct PoolEntry {
    pid: u32,
    pool: rayon::ThreadPool,
}

/// The pool of the process that built it. Entries are leaked `Box`es, never freed.
static CURRENT: AtomicPtr<PoolEntry> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Set while this thread works on one item of [`map_files`].
    static IN_FILE_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// This process's pool, built on first use; `None` if no thread can be started (then work
/// runs on the calling thread).
fn pool() -> Option<&'static rayon::ThreadPool> {
    let pid = std::process::id();
    let current = CURRENT.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: every pointer stored in CURRENT comes from `Box::into_raw` below and is
        // never freed, so it stays valid for the life of the process (and of a forked
        // child's copy of the address space).
        let entry: &'static PoolEntry = unsafe { &*current };
        if entry.pid == pid {
            return Some(&entry.pool);
        }
    }
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("pacha-{i}"))
        .build()
        .ok()?;
    let fresh = Box::into_raw(Box::new(PoolEntry { pid, pool: built }));
    match CURRENT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` was just created by `Box::into_raw` and is now owned by CURRENT,
        // which never frees it.
        Ok(_) => Some(unsafe { &(*fresh).pool }),
        Err(_) => {
            // Another thread installed a pool meanwhile: use that one, drop ours.
            // SAFETY: `fresh` was never published, so this is its only owner.
            drop(unsafe { Box::from_raw(fresh) });
            pool()
        }
    }
}

/// Run `work` inside this process's pool, so that the parallel iterators and joins in it
/// (blake3's included) never reach rayon's global pool.
pub(crate) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// `f` applied to every item, items in parallel, results in order. Inside `f`,
/// [`in_file_loop`] is true: the items already use every core.
pub(crate) fn map_files<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    install(|| {
        items
            .par_iter()
            .map(|item| {
                let outer = IN_FILE_LOOP.with(|flag| flag.replace(true));
                let result = f(item);
                IN_FILE_LOOP.with(|flag| flag.set(outer));
                result
            })
            .collect()
    })
}

/// True on a thread working on one item of [`map_files`]: a large file is then hashed on
/// this one core, so that a nested parallel hash cannot steal another file's whole work
/// before this one checks its read lease again (see `hash::mapped`).
pub(crate) fn in_file_loop() -> bool {
    IN_FILE_LOOP.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_gets_a_pool_of_its_own() {
        // Use the pool in the parent, then fork: the child must not wait on threads it does
        // not have.
        let sum: u64 = map_files(&(0..1000u64).collect::<Vec<_>>(), |x| *x)
            .into_iter()
            .sum();
        assert_eq!(sum, 499_500);
        // SAFETY: the child only runs async-signal-unsafe code that needs no lock held by
        // another thread of the parent at the instant of the fork: this test thread is the
        // only one touching pacha's pool, and the child exits with `_exit`.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let sum: u64 = map_files(&(0..1000u64).collect::<Vec<_>>(), |x| *x * 2)
                .into_iter()
                .sum();
            // SAFETY: `_exit` ends the child at once, without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(if sum == 999_000 { 0 } else { 1 }) };
        }
        let started = std::time::Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
            if done == child {
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(30) {
                // SAFETY: kills our own child, which hung.
                unsafe { libc::kill(child, libc::SIGKILL) };
                panic!("the forked child hung in a parallel loop");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
