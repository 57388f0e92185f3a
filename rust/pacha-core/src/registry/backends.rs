//! Which backends a registry's two locations name, chosen by URI scheme here and nowhere
//! else: the metadata in a registry directory (SQLite) or on a PostgreSQL server, the objects
//! in the registry directory's own store or in an S3-compatible bucket.
//!
//! Two pairs are supported: a registry directory with its own objects (one machine, or a
//! directory a group shares), and PostgreSQL with S3 (a team on many machines). The mixed
//! pairs are refused: SQLite's locks do not reach other machines, so its objects may as well
//! live beside it; and a PostgreSQL registry's objects must be reachable from every machine
//! that reads the database, which a local directory is not.

use std::path::PathBuf;

use crate::{CoreError, Result};

/// Where a registry's metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataLocation {
    /// A registry directory: its SQLite database and, beside it, its objects.
    Directory(PathBuf),
    /// A `postgresql://` (or `postgres://`) URL.
    Postgres(String),
}

/// Where a registry's objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectsLocation {
    /// In the registry directory's own store.
    Own,
    /// An `s3://BUCKET/PREFIX` URL.
    S3(String),
}

/// The scheme of a URL (lower-cased), or `None` for a plain path.
fn scheme(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then(|| scheme.to_ascii_lowercase())
}

impl MetadataLocation {
    /// A registry directory's path, or a URL naming a database.
    pub fn parse(text: &str) -> Result<Self> {
        match scheme(text).as_deref() {
            None => Ok(MetadataLocation::Directory(PathBuf::from(text))),
            Some("postgresql" | "postgres") => Ok(MetadataLocation::Postgres(text.to_string())),
            Some(other) => Err(CoreError::InvalidInput {
                message: format!(
                    "registry metadata: unknown scheme {other:?}; give a registry directory or \
                     postgresql://USER@HOST:PORT/DB"
                ),
            }),
        }
    }
}

impl ObjectsLocation {
    /// `None` or empty for the registry directory's own store, or a URL naming a bucket.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(ObjectsLocation::Own);
        };
        match scheme(text).as_deref() {
            Some("s3") => Ok(ObjectsLocation::S3(text.to_string())),
            _ => Err(CoreError::InvalidInput {
                message: "registry objects: give s3://BUCKET/PREFIX, or nothing for the \
                          registry directory's own store"
                    .into(),
            }),
        }
    }
}

/// Where downloads from a shared registry are cached (see `store::CachedStore`):
/// `$PACHA_CACHE`, else `$XDG_CACHE_HOME/pacha`, else `~/.cache/pacha`; `None` when none of
/// them is set.
pub fn cache_dir() -> Option<PathBuf> {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("PACHA_CACHE")
        .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("pacha")))
        .or_else(|| set("HOME").map(|d| d.join(".cache").join("pacha")))
}

/// Why this pair of locations cannot make a registry, or `None` when it can (see the
/// module docs).
pub fn pair_problem(metadata: &MetadataLocation, objects: &ObjectsLocation) -> Option<String> {
    match (metadata, objects) {
        (MetadataLocation::Directory(_), ObjectsLocation::Own)
        | (MetadataLocation::Postgres(_), ObjectsLocation::S3(_)) => None,
        (MetadataLocation::Directory(_), ObjectsLocation::S3(_)) => Some(
            "S3 objects need PostgreSQL metadata (a registry directory keeps its objects beside \
             its database); give postgresql://USER@HOST:PORT/DB as the registry, or leave the \
             objects unset"
                .into(),
        ),
        (MetadataLocation::Postgres(_), ObjectsLocation::Own) => Some(
            "PostgreSQL metadata needs its objects in a bucket every machine reaches; give \
             --objects s3://BUCKET/PREFIX (or PACHA_OBJECTS, or registry.objects in the config \
             file)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_choose_backends() {
        assert_eq!(
            MetadataLocation::parse("/srv/reg").ok(),
            Some(MetadataLocation::Directory("/srv/reg".into()))
        );
        assert!(matches!(
            MetadataLocation::parse("PostgreSQL://u@h/db"),
            Ok(MetadataLocation::Postgres(_))
        ));
        assert!(MetadataLocation::parse("mysql://h/db").is_err());
        assert_eq!(
            ObjectsLocation::parse(None).ok(),
            Some(ObjectsLocation::Own)
        );
        assert_eq!(
            ObjectsLocation::parse(Some("")).ok(),
            Some(ObjectsLocation::Own)
        );
        assert!(matches!(
            ObjectsLocation::parse(Some("S3://b/p")),
            Ok(ObjectsLocation::S3(_))
        ));
        assert!(ObjectsLocation::parse(Some("/elsewhere")).is_err());
        // A path that happens to hold "://" after something that is no scheme stays a path.
        assert!(matches!(
            MetadataLocation::parse("./a b://c"),
            Ok(MetadataLocation::Directory(_))
        ));
    }

    #[test]
    fn only_the_two_pairs_make_a_registry() {
        let dir = MetadataLocation::Directory("r".into());
        let pg = MetadataLocation::Postgres("postgresql://h/db".into());
        let s3 = ObjectsLocation::S3("s3://b".into());
        assert!(pair_problem(&dir, &ObjectsLocation::Own).is_none());
        assert!(pair_problem(&pg, &s3).is_none());
        assert!(pair_problem(&dir, &s3).is_some());
        assert!(pair_problem(&pg, &ObjectsLocation::Own).is_some());
    }
}
