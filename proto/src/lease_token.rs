//! The secret half of a lease: 128 random bits issued with an assignment to the agent that holds it.
//!
//! The epoch says which lease is current; the token proves the caller is the one it was issued to
//! (epochs are small counters anyone can guess). Tokens are compared in constant time, and neither
//! `Debug` nor any error message shows them.

use std::fmt;

use crate::domain::WireError;

/// Bytes of a lease token (128 bits).
pub const LEASE_TOKEN_BYTES: usize = 16;

#[derive(Clone, Copy, Eq)]
pub struct LeaseToken([u8; LEASE_TOKEN_BYTES]);

impl LeaseToken {
    /// Wraps bytes the caller drew from a CSPRNG (the core never draws them itself).
    pub const fn from_bytes(bytes: [u8; LEASE_TOKEN_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parses the hex form; the error names the field but never repeats the value.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, WireError> {
        if raw.is_empty() {
            return Err(WireError::new(field, "is required (the lease token from the assignment)"));
        }
        let bad = || WireError::new(field, format!("must be {} hex characters", LEASE_TOKEN_BYTES * 2));
        if raw.len() != LEASE_TOKEN_BYTES * 2 {
            return Err(bad());
        }
        let mut bytes = [0u8; LEASE_TOKEN_BYTES];
        for (i, pair) in raw.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }

    /// The hex form sent on the wire and stored with the lease.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl PartialEq for LeaseToken {
    /// Constant time: the time taken does not depend on where the tokens differ.
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hex_and_hides_itself() {
        let t = LeaseToken::from_bytes([0xab; LEASE_TOKEN_BYTES]);
        assert_eq!(LeaseToken::parse("lease.token", &t.to_hex()).unwrap(), t);
        assert!(!format!("{t:?}").contains("ab"));
        assert_ne!(t, LeaseToken::from_bytes([0xac; LEASE_TOKEN_BYTES]));
    }

    #[test]
    fn rejects_empty_short_and_non_hex_without_echoing() {
        assert!(LeaseToken::parse("lease.token", "").unwrap_err().reason.contains("required"));
        assert!(LeaseToken::parse("lease.token", "abcd").is_err());
        let err = LeaseToken::parse("lease.token", &"zz".repeat(LEASE_TOKEN_BYTES)).unwrap_err();
        assert!(!err.to_string().contains("zz"));
    }
}
