//! Keeps PostgreSQL passwords out of messages.

/// What replaces a password.
pub(crate) const MASK: &str = "***";

/// A PostgreSQL target (URL or `key=value` string) with any password replaced by `***`.
///
/// Errs on the side of hiding: `postgres://user:secret@host/db` becomes `postgres://user:***@host/db`,
/// `password=secret` (in a query string or a key/value string, quoted or not) becomes `password=***`.
pub fn redact_target(target: &str) -> String {
    let mut out = match target.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            // The last `@` ends the user info even if the password itself contains an `@`.
            Some(at) => {
                let userinfo = &rest[..at];
                match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:{MASK}@{}", &rest[at + 1..]),
                    None => target.to_owned(),
                }
            }
            None => target.to_owned(),
        },
        None => target.to_owned(),
    };
    out = redact_password_params(&out);
    out
}

/// Replaces the value of every `password=` parameter (case-insensitive).
fn redact_password_params(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(KEY) {
        let value_start = pos + found + KEY.len();
        out.push_str(&text[pos..value_start]);
        out.push_str(MASK);
        let rest = &text[value_start..];
        let len = if let Some(quoted) = rest.strip_prefix('\'') {
            // libpq quoting escapes with a backslash (`\'`); a doubled quote (`''`) is treated as
            // escaped too, so as to hide too much rather than too little. The value ends at the
            // next lone quote.
            let mut end = quoted.len();
            let bytes = quoted.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    b'\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            (1 + end).min(rest.len())
        } else {
            rest.find(|c: char| c == '&' || c.is_whitespace()).unwrap_or(rest.len())
        };
        pos = value_start + len;
    }
    out.push_str(&text[pos..]);
    out
}

/// Removes known secrets from a message (for errors whose text we do not control).
pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), MASK);
    }
    redact_target(&out)
}

/// The password as written in a URL and percent-decoded, for [`scrub`].
pub(crate) fn url_password(target: &str) -> Vec<String> {
    let Some((_, rest)) = target.split_once("://") else { return Vec::new() };
    let Some(at) = rest.rfind('@') else { return Vec::new() };
    let Some((_, password)) = rest[..at].split_once(':') else { return Vec::new() };
    let decoded = percent_decode(password);
    if decoded == password { vec![password.to_owned()] } else { vec![password.to_owned(), decoded] }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        for (input, expected) in [
            ("postgres://app:s3cret@db:5432/ledger", "postgres://app:***@db:5432/ledger"),
            ("postgresql://app:p@ss@db/ledger", "postgresql://app:***@db/ledger"),
            ("postgres://app@db/ledger", "postgres://app@db/ledger"),
            (
                "postgres://db/ledger?user=app&password=s3cret&x=1",
                "postgres://db/ledger?user=app&password=***&x=1",
            ),
            ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
            ("host=db PASSWORD='it''s secret' dbname=x", "host=db PASSWORD=*** dbname=x"),
            ("host=db password='a \\' s3cret' dbname=x", "host=db password=*** dbname=x"),
            ("/var/lib/capture/ledger.db", "/var/lib/capture/ledger.db"),
        ] {
            assert_eq!(redact_target(input), expected, "{input}");
            assert!(!redact_target(input).contains("s3cret"));
        }
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        let secrets = url_password("postgres://app:pa%40ss@db/x");
        assert_eq!(secrets, ["pa%40ss", "pa@ss"]);
        assert_eq!(scrub("auth failed for pa@ss and pa%40ss", &secrets), "auth failed for *** and ***");
    }
}
