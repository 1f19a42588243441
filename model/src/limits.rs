//! How long each text a user types may be, and which characters it may hold. The limits are those of the
//! columns that store the text (`migrations/`), counted in characters as PostgreSQL's `varchar(n)` counts
//! them, so a text that passes here fits on both databases (SQLite ignores `varchar` lengths, so without
//! these checks it would store anything). Wasm-compatible: the browser may run the same checks.

use crate::error::AppError;

/// `users.email`: 254, the longest address SMTP carries (RFC 5321 counts 254 octets; counted here in
/// characters like every limit, as the column counts them).
pub const EMAIL: usize = 254;
/// `users.name`.
pub const USER_NAME: usize = 100;
/// Passwords are never stored; the bound keeps hashing and the strength estimate cheap.
pub const PASSWORD_MIN: usize = 10;
/// Upper bound of a password, in bytes (argon2 hashes the bytes).
pub const PASSWORD_MAX_BYTES: usize = 256;
/// `projects.name` (see `projects::validate_name` for its characters).
pub const PROJECT_NAME: usize = 32;
/// `projects.description`.
pub const PROJECT_DESCRIPTION: usize = 1000;
/// `join_requests.message`.
pub const JOIN_MESSAGE: usize = 1000;
/// `api_tokens.name`.
pub const TOKEN_NAME: usize = 100;
/// A pasted SSH public key line (an RSA-16384 key with a 200-character comment is about 3,000).
pub const KEY_TEXT: usize = 8192;
/// `ssh_keys.comment`.
pub const KEY_COMMENT: usize = 200;

/// Characters that have no place in a one-line text: controls (C0, DEL, C1) and the bidirectional
/// overrides and isolates that make a name display as something else.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Checks a one-line text (already trimmed by the caller, if it trims): at most `max` characters, none of
/// them [`is_forbidden`]. `what` names the thing in the message; `field` is the form field.
pub fn line(field: &str, what: &str, text: &str, max: usize) -> Result<(), AppError> {
    check(field, what, text, max, is_forbidden)
}

/// Like [`line`], but line breaks and tabs are allowed (descriptions, messages).
pub fn multiline(field: &str, what: &str, text: &str, max: usize) -> Result<(), AppError> {
    check(field, what, text, max, |c| !matches!(c, '\n' | '\r' | '\t') && is_forbidden(c))
}

fn check(
    field: &str,
    what: &str,
    text: &str,
    max: usize,
    bad: impl Fn(char) -> bool,
) -> Result<(), AppError> {
    // Count at most max + 1 characters: a megabyte of input is refused without walking all of it.
    if text.len() > max && text.chars().take(max + 1).count() > max {
        return Err(AppError::invalid(field, format!("the {what} may have at most {max} characters")));
    }
    if text.chars().any(bad) {
        return Err(AppError::invalid(field, format!("the {what} must not contain control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        line("name", "name", &"é".repeat(100), USER_NAME).unwrap();
        let err = line("name", "name", &"é".repeat(101), USER_NAME).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("name"));
        assert!(err.message.contains("at most 100"), "{err:?}");
    }

    #[test]
    fn refuses_controls_and_bidi_overrides_but_multiline_keeps_line_breaks() {
        for bad in ["a\u{0}b", "a\u{1b}[31m", "a\u{7f}", "a\u{85}", "evil\u{202E}gpj.exe", "a\nb"] {
            assert!(line("name", "name", bad, 100).is_err(), "{bad:?}");
        }
        multiline("description", "description", "line one\r\nline two\tand a tab", 100).unwrap();
        assert!(multiline("description", "description", "bell\u{7}", 100).is_err());
    }
}
