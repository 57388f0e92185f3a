//! Lifecycle stages and the transitions allowed between them (the original pacha's rules).

use std::fmt;

use crate::{CoreError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Development,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Development,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Development => "development",
            Stage::Staging => "staging",
            Stage::Production => "production",
            Stage::Archived => "archived",
        }
    }

    /// Order of concern when something upstream is found bad: production first.
    pub fn impact_rank(self) -> u8 {
        match self {
            Stage::Production => 0,
            Stage::Staging => 1,
            Stage::Development => 2,
            Stage::Archived => 3,
        }
    }

    /// Parse a stage name; accepts the original CLI's short forms (dev, stage, prod,
    /// archive), case-insensitively.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Stage::Development),
            "staging" | "stage" => Ok(Stage::Staging),
            "production" | "prod" => Ok(Stage::Production),
            "archived" | "archive" => Ok(Stage::Archived),
            _ => Err(CoreError::InvalidInput {
                message: format!(
                    "invalid stage {:?}: expected development, staging, production or archived",
                    text.chars().take(40).collect::<String>()
                ),
            }),
        }
    }

    /// Where a version in this stage may go next (staying put is always allowed).
    pub fn allowed_targets(self) -> &'static [Stage] {
        match self {
            Stage::Development => &[Stage::Staging, Stage::Archived],
            Stage::Staging => &[Stage::Development, Stage::Production, Stage::Archived],
            Stage::Production => &[Stage::Staging, Stage::Archived],
            Stage::Archived => &[Stage::Development],
        }
    }

    /// Check a transition; the error names the targets that are allowed.
    pub fn check_transition(self, to: Stage) -> Result<()> {
        if self == to || self.allowed_targets().contains(&to) {
            return Ok(());
        }
        let allowed: Vec<&str> = self.allowed_targets().iter().map(|s| s.as_str()).collect();
        Err(CoreError::InvalidTransition {
            from: self.as_str(),
            to: to.as_str(),
            allowed: allowed.join(", "),
        })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Stage::*;

    #[test]
    fn the_original_rules() {
        let allowed = [
            (Development, Staging),
            (Development, Archived),
            (Staging, Development),
            (Staging, Production),
            (Staging, Archived),
            (Production, Staging),
            (Production, Archived),
            (Archived, Development),
        ];
        for from in Stage::ALL {
            for to in Stage::ALL {
                let ok = from == to || allowed.contains(&(from, to));
                assert_eq!(from.check_transition(to).is_ok(), ok, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn refusal_names_the_allowed_targets() {
        let message = Development
            .check_transition(Production)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("staging, archived"), "{message}");
    }

    #[test]
    fn short_forms() {
        assert_eq!(Stage::parse("PROD").ok(), Some(Production));
        assert_eq!(Stage::parse("archive").ok(), Some(Archived));
        assert!(Stage::parse("live").is_err());
    }
}
