//! Who may use a registry directory, and the modes of what pacha creates inside it.
//!
//! The rule (README, "Sharing a registry directory"):
//! - A directory every user can write to (`o+w`) is refused outright, as ssh refuses a key
//!   file with loose permissions: anyone could have planted links or replaced files.
//! - You may write to a registry you own, or to a *group-shared* one: group-writable with the
//!   setgid bit (`chmod 2770`), whose group you are in, so that everything created inside
//!   belongs to that group and the group can read and write it.
//! - Any other registry you can read is opened read-only: list, get, download and verify
//!   work; writes are refused with one line saying why.
//!
//! What pacha creates follows the registry directory: private (`0700` directories, `0600`
//! files) unless the directory is shared with its group (setgid with group access: 2750
//! to share reading, 2770 to share writing), in which case the group gets that access to
//! everything inside.

use std::path::Path;

use rustix::fs::Stat;

use crate::{CoreError, Result};

const SETGID: u32 = 0o2000;

/// How a registry directory is shared, read from its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sharing {
    group_read: bool,
    group_write: bool,
}

impl Sharing {
    /// Private to its owner.
    pub const PRIVATE: Sharing = Sharing {
        group_read: false,
        group_write: false,
    };

    /// Sharing is opted into with the setgid bit (so that what anyone creates inside
    /// belongs to the directory's group): `chmod 2750` shares reading, `chmod 2770` reading
    /// and writing. Without it a registry is private, whatever its group bits say (a home
    /// directory's 0755 is not a decision to share).
    pub(crate) fn of_mode(mode: u32) -> Sharing {
        if mode & SETGID == 0 {
            return Sharing::PRIVATE;
        }
        Sharing {
            group_read: mode & 0o050 == 0o050,
            group_write: mode & 0o070 == 0o070,
        }
    }

    /// True for a group-shared registry (setgid, group-writable).
    pub fn group_writable(self) -> bool {
        self.group_write
    }

    /// Mode of a directory pacha creates.
    pub(crate) fn dir_mode(self) -> u32 {
        match (self.group_read, self.group_write) {
            (_, true) => 0o2770,
            (true, false) => 0o750,
            (false, false) => 0o700,
        }
    }

    /// Mode of a file pacha writes to again later (database, locks, pack).
    pub(crate) fn file_mode(self) -> u32 {
        match (self.group_read, self.group_write) {
            (_, true) => 0o660,
            (true, false) => 0o640,
            (false, false) => 0o600,
        }
    }
}

/// What the current process may do with a registry directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Only reads; the reason writes are refused.
    ReadOnly(String),
}

fn in_group(gid: u32) -> bool {
    let egid = rustix::process::getegid().as_raw();
    egid == gid
        || rustix::process::getgroups()
            .map(|groups| groups.iter().any(|g| g.as_raw() == gid))
            .unwrap_or(false)
}

fn user_name(uid: u32) -> String {
    format!("uid {uid}")
}

/// Decide what may be done with the registry directory `path` whose `lstat`/`fstat` is
/// `stat`: an error for a directory nobody should use, else read-write or read-only.
pub(crate) fn check_registry_dir(path: &Path, stat: &Stat) -> Result<Access> {
    let mode = stat.st_mode & 0o7777;
    if mode & 0o002 != 0 {
        return Err(CoreError::Unsafe {
            path: path.into(),
            detail: format!(
                "every user can write to it (mode {mode:04o}), so anyone could have planted \
                 links or replaced files; make it private with `chmod o-w {}` (pacha refuses \
                 it as ssh refuses loose key permissions)",
                path.display()
            ),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid == me {
        return Ok(Access::ReadWrite);
    }
    let sharing = Sharing::of_mode(mode);
    if sharing.group_writable() && in_group(stat.st_gid) {
        return Ok(Access::ReadWrite);
    }
    Ok(Access::ReadOnly(format!(
        "it belongs to {} and is not shared with a group you are in (a shared registry is \
         group-writable with the setgid bit: chmod 2770)",
        user_name(stat.st_uid)
    )))
}
