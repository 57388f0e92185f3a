//! The address of an object: a BLAKE3-256 digest. Hex appears only at the edges.

use std::fmt;
use std::str::FromStr;

use crate::CoreError;

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; DIGEST_LEN]);

impl Digest {
    pub const fn from_bytes(bytes: [u8; DIGEST_LEN]) -> Self {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// The 64-character lowercase hex form (identical to `b3sum`).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The two-character shard name: the first byte in hex.
    pub fn shard(&self) -> String {
        format!("{:02x}", self.0[0])
    }

    /// Parse the text form. Only lowercase hex is accepted, so that one digest has exactly
    /// one spelling (file names, database keys and JSON all agree).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let invalid = || CoreError::InvalidDigest {
            text: text.chars().take(80).collect(),
        };
        let bytes = text.as_bytes();
        if bytes.len() != DIGEST_LEN * 2 {
            return Err(invalid());
        }
        let mut out = [0u8; DIGEST_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(invalid)?;
            let lo = hex_value(pair[1]).ok_or_else(invalid)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Digest(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl From<blake3::Hash> for Digest {
    fn from(hash: blake3::Hash) -> Self {
        Digest(*hash.as_bytes())
    }
}

impl FromStr for Digest {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Digest::from(blake3::hash(b"pacha"));
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Digest::parse(&hex).expect("valid"), d);
        assert_eq!(d.shard(), &hex[..2]);
    }

    #[test]
    fn rejects_bad_text() {
        let good = Digest::from(blake3::hash(b"x")).to_hex();
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            good.to_uppercase(),
            format!("g{}", &good[1..]),
            "../../etc/passwd".to_string(),
        ] {
            assert!(
                matches!(Digest::parse(&bad), Err(CoreError::InvalidDigest { .. })),
                "{bad}"
            );
        }
    }
}
