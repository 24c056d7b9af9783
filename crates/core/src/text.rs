//! Text for humans: one escaping function for every line the engine and its tools print.
//!
//! A rule's reason, a platform's error message or a plugin's panic text may carry ANSI escape
//! sequences, carriage returns, line feeds, NUL or bidirectional overrides that would clear a
//! terminal, rewrite a line already printed or forge a new one. Every human-readable output
//! (`capture run`'s standard error, `capture rules test|eval|backtest`, the demo summary,
//! `capture plugins inspect`) passes such text through [`escape`]; the JSON report is left exact
//! (JSON escapes control characters itself).

use std::borrow::Cow;

use crate::limits::is_forbidden_char;

/// `text` with every control character (C0, DEL, C1: ESC, CR, LF, NUL, TAB...) and every
/// bidirectional or invisible formatting control written as a visible escape: `\n`, `\r`,
/// `\t`, `\0`, or `\u{1b}`. Text without them is returned as it is.
///
/// ```
/// use capture_core::text::escape;
/// assert_eq!(escape("ok"), "ok");
/// assert_eq!(escape("a\x1b[2Jb\r\nPASS"), "a\\u{1b}[2Jb\\r\\nPASS");
/// assert_eq!(escape("abc\u{202e}def"), "abc\\u{202e}def");
/// ```
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_forbidden_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_forbidden_char(c) => {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                write!(out, "\\u{{{:x}}}", u32::from(c)).unwrap_or(());
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn every_control_is_visible() {
        let cases = [
            ("plain text, é and 日本", "plain text, é and 日本"),
            ("\x1b[2J\x1b[HPASS  forged", "\\u{1b}[2J\\u{1b}[HPASS  forged"),
            ("line\r\nPASS  forged test line", "line\\r\\nPASS  forged test line"),
            ("nul\0byte", "nul\\0byte"),
            ("tab\there", "tab\\there"),
            ("c1 \u{9b}31m", "c1 \\u{9b}31m"),
            ("del \u{7f}", "del \\u{7f}"),
            ("rlo \u{202e}gnp.exe", "rlo \\u{202e}gnp.exe"),
            ("isolate \u{2066}x\u{2069}", "isolate \\u{2066}x\\u{2069}"),
            ("zero width \u{200b}", "zero width \\u{200b}"),
            ("bom \u{feff}", "bom \\u{feff}"),
        ];
        for (input, expected) in cases {
            assert_eq!(escape(input), expected, "{input:?}");
        }
    }
}
