//! Panics are bugs; they reach Python as one `InternalError` line, never as a traceback or
//! a message printed to stderr by Rust's default hook.
//!
//! The hook installed here remembers where the last panic on each thread happened (for the
//! error message) instead of printing; with `PACHA_DEBUG` set it also prints as usual, with
//! the backtrace `RUST_BACKTRACE` asks for.

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install the hook (once, when the module is loaded).
pub(crate) fn install_hook() {
    let default = std::panic::take_hook();
    let debug = std::env::var_os("PACHA_DEBUG").is_some_and(|v| !v.is_empty());
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(location));
        if debug {
            default(info);
        }
    }));
}

/// The panic's message and where it happened (on this thread).
pub(crate) fn describe(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    match LAST_PANIC.with(|last| last.borrow_mut().take()) {
        Some(location) if !location.is_empty() => format!("{message} (at {location})"),
        _ => message,
    }
}
