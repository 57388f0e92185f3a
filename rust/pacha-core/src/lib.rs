//! pacha-core: the performance-critical heart of pacha, free of any Python.
//!
//! - [`hash`]: BLAKE3 of files (mapped under a read lease, or read ahead, and hashed on all
//!   cores when large).
//! - [`store`]: the sharded, content-addressed object store behind the [`store::ObjectStore`]
//!   trait, with its local-filesystem implementation [`store::LocalStore`].
//! - [`Digest`]: the 32-byte address of every object.
//!
//! The on-disk format is specified in `docs/store-format.md`.

mod db;
mod destination;
pub mod digest;
pub mod error;
mod fsutil;
pub mod hash;
pub mod lineage;
pub mod meta;
mod parallel;
pub mod progress;
pub mod registry;
mod runtime;
pub mod store;
pub mod tree;

pub use digest::Digest;
pub use error::{CoreError, Remedy, Result};
pub use progress::Progress;
