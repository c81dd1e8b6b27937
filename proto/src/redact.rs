//! Echoing user input in errors without echoing secrets.
//!
//! Every secret phasegate issues (client and agent tokens, agent credentials, lease tokens) is at
//! least 128 bits of hex. An error that names a value the caller typed (a credential id or agent
//! name to revoke, say) shows it through [`shown`], so a secret pasted into the wrong place does not
//! end up in a CI log.

use std::borrow::Cow;

/// The shortest run of hex digits treated as a secret: 24 digits (96 bits) catch every issued secret
/// and any large part of one, and no agent name or id a person would type.
const SECRET_HEX_RUN: usize = 24;

/// `value` quoted, or a placeholder naming its length when it holds a secret-like run of hex digits.
pub fn shown(value: &str) -> Cow<'static, str> {
    if looks_secret(value) {
        Cow::Owned(format!("<a {}-character value that looks like a secret, not shown>", value.chars().count()))
    } else {
        Cow::Owned(format!("{value:?}"))
    }
}

/// Whether `value` holds a run of at least [`SECRET_HEX_RUN`] hex digits.
pub fn looks_secret(value: &str) -> bool {
    let mut run = 0;
    for c in value.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run >= SECRET_HEX_RUN {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_shown_quoted() {
        assert_eq!(shown("gpu-1"), "\"gpu-1\"");
        assert_eq!(shown("42"), "\"42\"");
        assert_eq!(shown("ip-10-0-0-5.deadbeef"), "\"ip-10-0-0-5.deadbeef\"");
    }

    #[test]
    fn a_secret_or_a_large_part_of_one_is_not_shown() {
        let secret = "3f".repeat(32);
        let shown_secret = shown(&secret);
        assert!(!shown_secret.contains("3f3f"), "{shown_secret}");
        assert!(shown_secret.contains("64-character"), "{shown_secret}");
        assert!(looks_secret(&format!("token={}", &secret[..24])));
        assert!(!looks_secret(&secret[..23]));
    }
}
