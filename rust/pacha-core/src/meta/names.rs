//! Artifact names and aliases: validated once, here, as hostile input.

use unicode_normalization::UnicodeNormalization;

use crate::{CoreError, Result};

/// Longest name, in bytes of its UTF-8 (NFC) form.
pub const MAX_NAME_BYTES: usize = 255;

/// Validate a model, dataset or recipe name and return its canonical (NFC) form.
///
/// Allowed: letters and digits of any script, and `-`, `_`, `.` between them; the first
/// character must be a letter or digit; no `..`. This keeps names safe as file names, URL
/// segments and shell words, and makes two spellings of one Unicode string one name.
pub fn validate_name(raw: &str) -> Result<String> {
    validate("name", raw, "e.g. bert-base, resnet50_v2, llama-3.1-8b")
}

/// Validate an alias (same rules as names; e.g. `champion`).
pub fn validate_alias(raw: &str) -> Result<String> {
    validate("alias", raw, "e.g. champion, candidate-2")
}

fn validate(what: &str, raw: &str, example: &str) -> Result<String> {
    let name: String = raw.nfc().collect();
    let shown: String = name.chars().take(60).flat_map(char::escape_debug).collect();
    let invalid = |why: &str| CoreError::InvalidInput {
        message: format!(
            "invalid {what} \"{shown}\": {why}; use letters, digits, '-', '_' and '.', starting \
             with a letter or digit ({example})"
        ),
    };
    let Some(first) = name.chars().next() else {
        return Err(invalid("it is empty"));
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(&format!(
            "it is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if !first.is_alphanumeric() {
        return Err(invalid("it must start with a letter or digit"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let why = match bad {
            '/' | '\\' => "it contains a path separator".to_string(),
            c if c.is_control() => "it contains a control character".to_string(),
            c if c.is_whitespace() => "it contains whitespace".to_string(),
            c => format!("it contains {c:?}"),
        };
        return Err(invalid(&why));
    }
    if name.contains("..") {
        return Err(invalid("it contains '..'"));
    }
    Ok(name)
}

/// Validate a `key=value` tag: the key like a name (without the first-character rule), the
/// value any text without control characters, both bounded.
pub fn validate_tag(key: &str, value: &str) -> Result<(String, String)> {
    let key: String = key.nfc().collect();
    let value: String = value.nfc().collect();
    let invalid = |why: String| CoreError::InvalidInput {
        message: format!("invalid tag {key:?}={value:?}: {why}; write key=value, e.g. team=nlp"),
    };
    if key.is_empty() || key.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "the key must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')))
    {
        return Err(invalid(format!("the key contains {c:?}")));
    }
    if value.len() > 4096 {
        return Err(invalid("the value is longer than 4096 bytes".into()));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("the value contains a control character".into()));
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "bert",
            "bert-base-uncased",
            "resnet50_v2",
            "llama-3.1-8b",
            "模型",
            "Modèle",
        ] {
            assert_eq!(validate_name(good).expect(good), good);
        }
    }

    #[test]
    fn refuses_hostile_names() {
        let long = "a".repeat(256);
        for bad in [
            "",
            "a/b",
            "..",
            "a..b",
            "../etc",
            "a\0b",
            "a\nb",
            "-rf",
            ".hidden",
            "a b",
            "a\\b",
            long.as_str(),
            "\u{7f}x",
            "x\u{202e}",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn normalises_to_nfc() {
        let decomposed = "Mode\u{300}le";
        assert_eq!(validate_name(decomposed).expect("valid"), "Modèle");
    }
}
