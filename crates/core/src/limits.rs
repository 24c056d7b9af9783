//! Size limits of a capture request and the character rules of its identifiers.
//!
//! Every string and collection a host hands the engine is bounded here, and the request's
//! validation ([`crate::CaptureRequest::from_json`]) refuses a request over any of them with
//! [`crate::RequestError::Invalid`] naming the field and the limit (`capture run` exits 3).
//! The table of every limit of the engine (requests, rules, plugins) is `crates/core/LIMITS.md`.

/// The largest request document, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// `platform`: a connector id.
pub const MAX_PLATFORM: usize = 64;
/// `idempotency_key`, in bytes (1 to this many, of [`key_char_allowed`] characters).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// `order.id`, `order.payments[].id`, `payments[].payment_id`, `order.captures[].reference`
/// and `order.captures[].payment_id`, in bytes.
pub const MAX_ID: usize = 255;
/// `order.payments[].method`, in bytes.
pub const MAX_METHOD: usize = 64;
/// `description`, in bytes.
pub const MAX_DESCRIPTION: usize = 1000;
/// Each of `shipping.company`, `shipping.method`, `shipping.tracking_number`, in bytes.
pub const MAX_SHIPPING_FIELD: usize = 255;
/// `order.payments`: authorized payments of the order (above every platform's own limit, which
/// the connector's capabilities and the built-in checks enforce).
pub const MAX_ORDER_PAYMENTS: usize = 250;
/// `payments`: per-payment amounts of the request.
pub const MAX_PAYMENTS: usize = 250;
/// `order.captures`: earlier captures of the order.
pub const MAX_CAPTURES: usize = 1000;
/// `metadata`: number of keys.
pub const MAX_METADATA_KEYS: usize = 64;
/// A `metadata` key, in bytes.
pub const MAX_METADATA_KEY: usize = 64;
/// A `metadata` text value, in bytes.
pub const MAX_METADATA_VALUE: usize = 1024;
/// All `metadata` keys and text values together, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Nesting of `metadata`: values are scalars (a string, a whole number or a boolean).
pub const MAX_METADATA_DEPTH: usize = 1;

/// The characters an idempotency key may have: visible ASCII, `!` (0x21) to `~` (0x7E). No
/// space, no control character (NUL, CR, LF, ESC...), nothing outside ASCII (so no
/// right-to-left or other invisible formatting character): a key is sent to platforms as a
/// header value or a reference and recorded in logs, and must read the same everywhere.
pub fn key_char_allowed(c: char) -> bool {
    c.is_ascii_graphic()
}

/// True for a character that must never reach a platform or a terminal inside an id or a text
/// field: C0 and C1 control characters, DEL, and the Unicode bidirectional and invisible
/// formatting controls (U+061C, U+200B–U+200F, U+202A–U+202E, U+2060–U+2069, U+FEFF).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A short description of a character for error messages (`U+202E`).
pub fn describe_char(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}
