//! The one error type of the core. The Python binding maps every variant onto an exception
//! class (see `rust/pacha-py/src/errors.rs`), so adding a variant is a compile error there.
//!
//! Every error has a stable [`CoreError::code`] for scripts, and messages say what is wrong
//! and how to fix it in words that hold for every caller. What a caller can ask for to go
//! ahead anyway is a [`Remedy`], worded by each edge in its own terms (the CLI's `--force`,
//! the Python API's `force=True`), so that neither leaks into the other.

use std::io;
use std::path::PathBuf;

use crate::Digest;

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An operating-system error on a path; the `io::ErrorKind` is kept so that a missing
    /// file stays a "not found" all the way to Python's `FileNotFoundError`.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: is a directory, not a file", path.display())]
    IsADirectory { path: PathBuf },

    #[error("{}: is a {kind}, not a regular file; pacha stores regular files", path.display())]
    NotARegularFile { path: PathBuf, kind: &'static str },

    #[error("object {digest} is not in the store; `pacha store list` shows what is")]
    ObjectNotFound { digest: Digest },

    #[error(
        "integrity check failed for {}: expected BLAKE3 {expected}, got {actual}; the stored \
         copy is damaged — add the original file again to repair it",
        path.display()
    )]
    Integrity {
        expected: Digest,
        actual: Digest,
        path: PathBuf,
    },

    #[error(
        "{}: the file changed while it was being read ({detail}); nothing was stored — \
         wait until whatever writes it has finished and try again",
        path.display()
    )]
    SourceChanged { path: PathBuf, detail: String },

    #[error("{}: already exists", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("invalid digest {text:?}: expected 64 lowercase hexadecimal characters (a BLAKE3-256 digest)")]
    InvalidDigest { text: String },

    /// The caller asked the operation to stop (Ctrl-C); partial output has been removed.
    #[error("cancelled")]
    Cancelled,

    /// Input refused by a validation rule; the message names the rule and the valid form.
    #[error("{message}")]
    InvalidInput { message: String },

    /// A name, version, alias or stage that does not exist.
    #[error("{message}")]
    NotFound { message: String },

    /// A version that is already registered (or was, and was deleted).
    #[error("{message}")]
    VersionExists { message: String },

    /// A version in production, which a delete leaves alone unless forced.
    #[error("{message}")]
    InProduction { message: String },

    #[error("cannot move a version from {from} to {to}; from {from} it can go to: {allowed}")]
    InvalidTransition {
        from: &'static str,
        to: &'static str,
        allowed: String,
    },

    #[error(
        "the registry database {} is locked by another process (waited up to {}s); \
         try again when that process has finished",
        path.display(), waited.as_secs()
    )]
    Busy {
        path: PathBuf,
        waited: std::time::Duration,
    },

    #[error("registry database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },

    /// A lineage edge that would make a node its own ancestor.
    #[error(
        "refusing the lineage edge: it would close the cycle {cycle}; lineage must stay acyclic"
    )]
    LineageCycle { cycle: String },

    /// Stored metadata that fails validation (a tree manifest that is not well-formed).
    #[error("{message}")]
    Corrupt { message: String },

    /// A registry that is not safe to use: a symbolic link pacha did not create where it
    /// keeps its own files, or a directory every user can write to.
    #[error("{}: {detail}", path.display())]
    Unsafe { path: PathBuf, detail: String },

    /// A write to a registry that may only be read (a read-only mount, a teammate's private
    /// registry, or one opened read-only).
    #[error("the registry {} is read-only here: {reason}", path.display())]
    ReadOnly { path: PathBuf, reason: String },

    /// A registry whose objects survive but whose metadata database is gone or empty.
    #[error(
        "{}: the registry holds objects but its database {} is missing or empty; restore \
         the database from a backup, or run `pacha recover` to rebuild what the objects \
         still tell (nothing was changed)",
        root.display(), database.display()
    )]
    MissingDatabase { root: PathBuf, database: PathBuf },

    /// A remote service (an S3-compatible object store, PostgreSQL) that failed or refused:
    /// unreachable, wrong credentials, a missing bucket. `location` never holds a secret.
    #[error("{service} at {location}: {message}")]
    Backend {
        service: &'static str,
        location: String,
        message: String,
    },

    /// A bug: a panic caught before it reached the caller.
    #[error("internal error: {message}; this is a bug in pacha — please report it")]
    Internal { message: String },
}

/// What a caller can ask for to go ahead where an error refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Replace what is at the destination (CLI `--force`, Python `force=True`).
    Replace,
    /// Delete a version in production anyway (CLI `--force`, Python `force=True`).
    ForceDelete,
    /// Register under another version number (CLI `--bump`, Python `bump=`).
    NewVersion,
}

impl Remedy {
    pub fn as_str(self) -> &'static str {
        match self {
            Remedy::Replace => "replace",
            Remedy::ForceDelete => "force_delete",
            Remedy::NewVersion => "new_version",
        }
    }
}

impl CoreError {
    /// A stable name of the kind of error, for scripts (`PachaError.code` in Python).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Io { .. } => "io",
            CoreError::IsADirectory { .. } => "is_a_directory",
            CoreError::NotARegularFile { .. } => "not_a_regular_file",
            CoreError::ObjectNotFound { .. } => "object_not_found",
            CoreError::Integrity { .. } => "integrity",
            CoreError::SourceChanged { .. } => "source_changed",
            CoreError::AlreadyExists { .. } => "already_exists",
            CoreError::InvalidDigest { .. } => "invalid_digest",
            CoreError::Cancelled => "cancelled",
            CoreError::InvalidInput { .. } => "invalid_input",
            CoreError::NotFound { .. } => "not_found",
            CoreError::VersionExists { .. } => "version_exists",
            CoreError::InProduction { .. } => "in_production",
            CoreError::InvalidTransition { .. } => "invalid_transition",
            CoreError::Busy { .. } => "busy",
            CoreError::Database { .. } => "database",
            CoreError::LineageCycle { .. } => "lineage_cycle",
            CoreError::Corrupt { .. } => "corrupt",
            CoreError::Unsafe { .. } => "unsafe_registry",
            CoreError::ReadOnly { .. } => "read_only",
            CoreError::MissingDatabase { .. } => "missing_database",
            CoreError::Backend { .. } => "backend",
            CoreError::Internal { .. } => "internal",
        }
    }

    /// What the caller can ask for to go ahead anyway, if anything.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            CoreError::AlreadyExists { .. } => Some(Remedy::Replace),
            CoreError::InProduction { .. } => Some(Remedy::ForceDelete),
            CoreError::VersionExists { .. } => Some(Remedy::NewVersion),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| CoreError::io(path, e))
    }
}
