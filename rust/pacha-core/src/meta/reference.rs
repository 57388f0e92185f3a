//! References to one version: `NAME:VERSION`, `NAME:latest`, `NAME@STAGE`, `NAME@ALIAS`.

use super::names::{validate_alias, validate_name};
use super::stage::Stage;
use super::version::Version;
use crate::{CoreError, Result};

/// Which version of a name a reference means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Exact(Version),
    /// The highest version that is not a pre-release.
    Latest,
    /// The newest version (by precedence) currently in this stage.
    Stage(Stage),
    Alias(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub selector: Selector,
}

impl Reference {
    /// Parse a reference. `version` is the separate `-v VERSION` of the original CLI; when
    /// given, `text` must be a bare name.
    pub fn parse(text: &str, version: Option<&str>) -> Result<Self> {
        if let Some(version) = version {
            let name = validate_name(text)?;
            return Ok(Reference {
                name,
                selector: selector_for_version(version)?,
            });
        }
        if let Some((name, version)) = text.split_once(':') {
            return Ok(Reference {
                name: validate_name(name)?,
                selector: selector_for_version(version)?,
            });
        }
        if let Some((name, label)) = text.split_once('@') {
            let name = validate_name(name)?;
            let selector = match Stage::parse(label) {
                Ok(stage) => Selector::Stage(stage),
                Err(_) => Selector::Alias(validate_alias(label)?),
            };
            return Ok(Reference { name, selector });
        }
        validate_name(text)?;
        Err(CoreError::InvalidInput {
            message: format!(
                "{:?} names no version: write NAME:VERSION, NAME:latest, NAME@STAGE or \
                 NAME@ALIAS (or NAME -v VERSION)",
                text.chars().take(80).collect::<String>()
            ),
        })
    }
}

fn selector_for_version(text: &str) -> Result<Selector> {
    if text == "latest" {
        Ok(Selector::Latest)
    } else {
        Version::parse(text).map(Selector::Exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let r = Reference::parse("bert:1.2.0", None).expect("exact");
        assert_eq!(r.name, "bert");
        assert!(matches!(r.selector, Selector::Exact(_)));
        assert_eq!(
            Reference::parse("bert:latest", None)
                .expect("latest")
                .selector,
            Selector::Latest
        );
        assert_eq!(
            Reference::parse("bert@prod", None).expect("stage").selector,
            Selector::Stage(Stage::Production)
        );
        assert_eq!(
            Reference::parse("bert@champion", None)
                .expect("alias")
                .selector,
            Selector::Alias("champion".into())
        );
        assert!(matches!(
            Reference::parse("bert", Some("1.0.0"))
                .expect("-v")
                .selector,
            Selector::Exact(_)
        ));
    }

    #[test]
    fn bad_references() {
        for bad in [
            "bert",
            "bert:1.0",
            "bert@",
            "../x:1.0.0",
            "bert@a/b",
            ":1.0.0",
        ] {
            assert!(Reference::parse(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(Reference::parse("bert:1.0.0", Some("1.0.0")).is_err());
    }
}
