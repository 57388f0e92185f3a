//! The SIGBUS guard for mapped reads (see the parent module for when it can fire).
//!
//! Registered maps live in a fixed table of atomics, which is all the signal handler reads.
//! A SIGBUS whose address lies in a registered map is answered by mapping zero pages over
//! the rest of that map (`MAP_FIXED`), so the faulting read is retried and sees zeros, and by
//! flagging the map; the owner then refuses its result. Any other SIGBUS goes to the handler
//! that was installed before ours (Python's faulthandler, say), or to the default action.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Maps that can be guarded at once; a hash that finds no free slot reads instead.
const SLOTS: usize = 64;

/// One registered map. `start` and `len` are published under a sequence lock: `version` is
/// odd while they change, so the handler never pairs one map's start with another's length.
struct Slot {
    version: AtomicUsize,
    /// 0 when free; otherwise the map's first byte.
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
    taken: AtomicBool,
}

impl Slot {
    /// Publish (or with `start == 0`, withdraw) a map; only the slot's owner calls this.
    fn publish(&self, start: usize, len: usize) {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.start.store(start, Ordering::SeqCst);
        self.len.store(len, Ordering::SeqCst);
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// The published map, read consistently; `None` when free or being changed (a map being
    /// published or withdrawn is not being read, so it cannot be the one that faulted).
    fn read(&self) -> Option<(usize, usize)> {
        let before = self.version.load(Ordering::SeqCst);
        if before % 2 == 1 {
            return None;
        }
        let start = self.start.load(Ordering::SeqCst);
        let len = self.len.load(Ordering::SeqCst);
        if self.version.load(Ordering::SeqCst) != before || start == 0 {
            return None;
        }
        Some((start, len))
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    version: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
    taken: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
/// The SIGBUS disposition found when ours was installed (`None`: installation failed).
static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

/// Install the handler once per process, and check that it is still the one in place
/// (Python's `faulthandler.enable()`, called later, would have replaced it). False if not:
/// then nothing is mapped, and files are read instead.
pub(super) fn install() -> bool {
    installed() && is_in_place()
}

fn is_in_place() -> bool {
    // SAFETY: a query only (no new action); `current` is a plain C struct the call fills.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == on_sigbus as *const () as usize
    }
}

fn installed() -> bool {
    PREVIOUS
        .get_or_init(|| {
            // SAFETY: sysconf only reads its argument.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if let Ok(page) = usize::try_from(page) {
                if page.is_power_of_two() {
                    PAGE_SIZE.store(page, Ordering::Relaxed);
                }
            }
            // SAFETY: `action` and `previous` are plain C structs, fully initialised by
            // zeroing and then set field by field; `on_sigbus` has the signature SA_SIGINFO
            // requires, and only touches atomics and calls mmap (a system call that takes no
            // lock), so it is safe to run at any instant in any thread.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigbus as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &action, &mut previous) != 0 {
                    return None;
                }
                Some(previous)
            }
        })
        .is_some()
}

/// A map registered with the guard for as long as this lives.
pub(super) struct Registered {
    slot: &'static Slot,
}

impl Registered {
    pub(super) fn new(start: usize, len: usize) -> Option<Self> {
        if start == 0 || len == 0 {
            return None;
        }
        let slot = TABLE.iter().find(|slot| {
            slot.taken
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        slot.faulted.store(false, Ordering::SeqCst);
        slot.publish(start, len);
        Some(Registered { slot })
    }

    /// Whether pages of the map vanished (and were replaced by zeros) while it was read.
    pub(super) fn faulted(&self) -> bool {
        self.slot.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.slot.publish(0, 0);
        self.slot.taken.store(false, Ordering::Release);
    }
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault (si_code > 0) has an address; a SIGBUS sent with kill() is never ours.
    let address = if code > 0 { address } else { 0 };
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    for slot in &TABLE {
        let Some((start, len)) = slot.read() else {
            continue;
        };
        if address < start || address - start >= len {
            continue;
        }
        let from = address & !(page - 1);
        let end = start + len;
        // SAFETY: [from, end) lies inside a live read-only map that this process created and
        // that only the hashing code reads; replacing its pages with private zero pages
        // changes what those reads see (the result is then refused) and nothing else.
        let replaced = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                end - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced != libc::MAP_FAILED {
            slot.faulted.store(true, Ordering::SeqCst);
            return;
        }
        break;
    }
    // Not ours: hand it to whoever handled SIGBUS before, or let it do its default harm.
    match PREVIOUS.get() {
        Some(Some(previous))
            if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN =>
        {
            // SAFETY: a handler installed with SA_SIGINFO has this three-argument signature,
            // and one installed without it takes the signal number only (an extra argument
            // in registers is ignored by the C calling convention).
            unsafe {
                if previous.sa_flags & libc::SA_SIGINFO != 0 {
                    let handler: extern "C" fn(
                        libc::c_int,
                        *mut libc::siginfo_t,
                        *mut libc::c_void,
                    ) = std::mem::transmute(previous.sa_sigaction);
                    handler(signal, info, context);
                } else {
                    let handler: extern "C" fn(libc::c_int) =
                        std::mem::transmute(previous.sa_sigaction);
                    handler(signal);
                }
            }
        }
        _ => {
            // SAFETY: restoring the default disposition. A faulting instruction runs again on
            // return and the default action (terminate, core) takes place; a signal that was
            // sent is raised again to the same effect. The guard is gone from then on, which
            // does not matter: the process is ending.
            unsafe {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut default.sa_mask);
                libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
                if code <= 0 {
                    libc::raise(signal);
                }
            }
        }
    }
}
