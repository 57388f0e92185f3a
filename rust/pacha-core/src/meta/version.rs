//! Semantic Versioning 2.0.0, the one place pacha parses and orders versions.
//!
//! Parsing and precedence come from the `semver` crate (the one the Rust ecosystem itself
//! uses), not hand-written code. Two things are added here: `cmp_precedence` (spec §11:
//! build metadata is ignored) rather than `Ord` (which breaks ties on build metadata), and
//! `bump`.

use std::cmp::Ordering;
use std::fmt;

use crate::{CoreError, Result};

/// A parsed semantic version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(semver::Version);

/// Which part of a version `bump` increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    Major,
    Minor,
    Patch,
}

impl Bump {
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "major" => Ok(Bump::Major),
            "minor" => Ok(Bump::Minor),
            "patch" => Ok(Bump::Patch),
            _ => Err(CoreError::InvalidInput {
                message: format!("invalid bump {text:?}: expected major, minor or patch"),
            }),
        }
    }
}

/// Longest version accepted, in bytes (as long as the longest name).
pub const MAX_VERSION_BYTES: usize = 255;

impl Version {
    /// Parse `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]` exactly as the spec defines it, at
    /// most [`MAX_VERSION_BYTES`] long (the spec sets no bound; a version is a label).
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_VERSION_BYTES {
            return Err(CoreError::InvalidInput {
                message: format!(
                    "invalid version \"{}…\": it is longer than {MAX_VERSION_BYTES} bytes; use a \
                     shorter pre-release or build label",
                    text.chars().take(40).collect::<String>()
                ),
            });
        }
        semver::Version::parse(text)
            .map(Version)
            .map_err(|e| CoreError::InvalidInput {
                message: format!(
                    "invalid version {:?}: {e}; expected semantic version MAJOR.MINOR.PATCH \
                     with optional -PRERELEASE and +BUILD, e.g. 1.0.0, 2.1.3-rc.1, 1.0.0+build.5",
                    text.chars().take(80).collect::<String>()
                ),
            })
    }

    /// Precedence per SemVer 2.0.0 §11 (build metadata ignored).
    pub fn cmp_precedence(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }

    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// The next version after `self`: pre-release and build metadata are dropped. The
    /// release a pre-release leads up to counts as next (as npm's `semver inc` does):
    /// `1.0.0-rc.1` bumps to `1.0.0` for any part, `1.1.0-rc.1` to `1.1.0` for minor.
    ///
    /// A part already at its largest value (2^64 − 1) cannot be bumped: that is refused with
    /// `CoreError::InvalidInput`, never wrapped or panicked on.
    pub fn bump(&self, part: Bump) -> crate::Result<Self> {
        let v = &self.0;
        let pre = !v.pre.is_empty();
        let next = |n: u64, what: &str| {
            n.checked_add(1)
                .ok_or_else(|| crate::CoreError::InvalidInput {
                    message: format!(
                        "cannot bump the {what} part of {self}: {n} is the largest it can be; \
                     give the next version explicitly with -v"
                    ),
                })
        };
        let next = match part {
            Bump::Major if pre && v.minor == 0 && v.patch == 0 => {
                semver::Version::new(v.major, 0, 0)
            }
            Bump::Major => semver::Version::new(next(v.major, "major")?, 0, 0),
            Bump::Minor if pre && v.patch == 0 => semver::Version::new(v.major, v.minor, 0),
            Bump::Minor => semver::Version::new(v.major, next(v.minor, "minor")?, 0),
            Bump::Patch if pre => semver::Version::new(v.major, v.minor, v.patch),
            Bump::Patch => semver::Version::new(v.major, v.minor, next(v.patch, "patch")?),
        };
        Ok(Version(next))
    }

    /// The first version of anything, used by `bump` when nothing exists yet.
    pub fn initial(part: Bump) -> Self {
        Version(match part {
            Bump::Major => semver::Version::new(1, 0, 0),
            Bump::Minor => semver::Version::new(0, 1, 0),
            Bump::Patch => semver::Version::new(0, 0, 1),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Sort version strings in place by precedence; unparsable ones (never stored) sort first.
pub fn sort_by_precedence<T>(items: &mut [T], version_of: impl Fn(&T) -> &str) {
    items.sort_by_cached_key(|item| PrecedenceKey(Version::parse(version_of(item)).ok()));
}

#[derive(PartialEq, Eq)]
struct PrecedenceKey(Option<Version>);

impl PartialOrd for PrecedenceKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PrecedenceKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => a.cmp_precedence(b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).expect(text)
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        for bad in [
            "",
            "1",
            "1.0",
            "01.0.0",
            "1.01.0",
            "1.0.01",
            "1.0.0-",
            "1.0.0-01",
            "1.0.0+",
            "1.0.0-a..b",
            "1.0.0-a.",
            "v1.0.0",
            " 1.0.0",
            "1.0.0 ",
            "1.0.0-α",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
        let message = Version::parse("1.0")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("MAJOR.MINOR.PATCH"), "{message}");
    }

    #[test]
    fn precedence_follows_section_11() {
        // The example chain from the specification, plus numeric ordering.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ];
        for pair in chain.windows(2) {
            assert_eq!(
                v(pair[0]).cmp_precedence(&v(pair[1])),
                Ordering::Less,
                "{pair:?}"
            );
        }
        assert_eq!(v("1.0.0+a").cmp_precedence(&v("1.0.0+b")), Ordering::Equal);
    }

    #[test]
    fn bump_drops_prerelease_and_build() {
        assert_eq!(
            v("1.2.3+b").bump(Bump::Patch).expect("bump").to_string(),
            "1.2.4"
        );
        assert_eq!(
            v("1.2.3-rc.1+b")
                .bump(Bump::Patch)
                .expect("bump")
                .to_string(),
            "1.2.3"
        );
        assert_eq!(
            v("2.0.0-rc.1").bump(Bump::Major).expect("bump").to_string(),
            "2.0.0"
        );
        assert_eq!(
            v("2.1.0-rc.1").bump(Bump::Major).expect("bump").to_string(),
            "3.0.0"
        );
        assert_eq!(
            v("1.1.0-rc.1").bump(Bump::Minor).expect("bump").to_string(),
            "1.1.0"
        );
        assert_eq!(
            v("1.1.1-rc.1").bump(Bump::Minor).expect("bump").to_string(),
            "1.2.0"
        );
        assert_eq!(
            v("1.2.3").bump(Bump::Minor).expect("bump").to_string(),
            "1.3.0"
        );
        assert_eq!(
            v("1.2.3").bump(Bump::Major).expect("bump").to_string(),
            "2.0.0"
        );
        let top = u64::MAX;
        assert!(v(&format!("{top}.0.0")).bump(Bump::Major).is_err());
        assert!(v(&format!("1.{top}.0")).bump(Bump::Minor).is_err());
        assert!(v(&format!("1.2.{top}")).bump(Bump::Patch).is_err());
        assert_eq!(
            v(&format!("1.2.{top}"))
                .bump(Bump::Minor)
                .expect("bump")
                .to_string(),
            "1.3.0"
        );
    }

    #[test]
    fn sorting_by_precedence() {
        let mut items = vec!["1.10.0", "1.2.0", "1.0.0", "1.0.0-alpha"];
        sort_by_precedence(&mut items, |s| s);
        assert_eq!(items, ["1.0.0-alpha", "1.0.0", "1.2.0", "1.10.0"]);
    }
}
