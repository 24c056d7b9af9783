//! Secret scrubbing: one mechanism for every text that leaves the engine.
//!
//! The engine appends credentials to the headers a connector marks and records those headers as
//! `[REDACTED]`, but a secret can reach a text by other roads: a platform that echoes the token
//! it received in an error body, a connector that copies it into a message, a host that puts it
//! in an order id. A [`Scrubber`] is built once from every configured credential and replaces
//! each one's value, in each of the forms it is likely to travel in (as is, JSON-escaped,
//! base64 standard and URL-safe, with and without padding and at any alignment inside a longer
//! base64 text, percent-encoded in upper or lower case, form-encoded), with `[REDACTED]`.
//!
//! The engine applies it at the boundaries where text leaves it: the report and the status
//! report as they are returned ([`Scrubber::report`], [`Scrubber::status_report`]), every column
//! it writes to the ledger ([`ScrubbedStore`]), and reconciliation details. Hosts that print
//! engine text of their own can use [`crate::Engine::scrubber`].
//!
//! Secrets shorter than [`MIN_SECRET_LEN`] bytes are not scrubbed (replacing every `a` of a
//! report would destroy it and protect nothing): use real credentials.

use std::borrow::Cow;
use std::sync::Arc;

use capture_core::{CaptureReport, Decision, Exchange, Outcome, StatusReport, Step};
use capture_store::{
    Attempt, AttemptState, AttemptUpdate, CaptureStore, Fence, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError,
};

use crate::config::Secret;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";
/// Secrets shorter than this (in bytes) are not scrubbed.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces configured secrets, in their usual encodings, with [`REDACTED`].
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, longest first (so a longer form is replaced whole).
    needles: Arc<Vec<String>>,
    /// The byte pairs at offsets 0, 1 and 2 of every form, as a set of 65,536 bits, looked up at
    /// every third position of a text ([`Starts::any_in`]): a text where none is found holds no
    /// form, and is passed over in a third of a scan instead of one search per form (most texts
    /// of a report: names, verdicts, amounts).
    starts: Arc<Starts>,
}

/// Positions of a text the filter looks at: every `STRIDE`-th, which finds every form because
/// every form is longer than `STRIDE` bytes.
const STRIDE: usize = MIN_SECRET_LEN - 1;
const _: () = assert!(STRIDE >= 1, "a stride of 0 would never move");

/// A set of byte pairs (bit `256 * a + b` for the pair `a b`).
struct Starts(Box<[u64; 1024]>);

impl Default for Starts {
    fn default() -> Starts {
        Starts(Box::new([0; 1024]))
    }
}

impl Starts {
    fn insert(&mut self, pair: [u8; 2]) {
        let i = usize::from(u16::from_be_bytes(pair));
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, pair: [u8; 2]) -> bool {
        let i = usize::from(u16::from_be_bytes(pair));
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// Whether the pair at some position `p` of `text` with `p % STRIDE == 0` is in the set.
    /// With the pairs at offsets `0..STRIDE` of every form in it, a text that holds a form says
    /// yes: a form at `s` is at least `STRIDE + 1` bytes long, so some `p` in `s..s + STRIDE` is
    /// a multiple of `STRIDE`, and the pair there is the form's pair at offset `p - s`.
    fn any_in(&self, text: &[u8]) -> bool {
        let mut p = 0;
        while p + 1 < text.len() {
            if self.contains([text[p], text[p + 1]]) {
                return true;
            }
            p += STRIDE;
        }
        false
    }
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber").field("forms", &self.needles.len()).finish()
    }
}

impl Scrubber {
    /// A scrubber for these secrets.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Scrubber {
        let mut needles: Vec<String> = Vec::new();
        for secret in secrets {
            let value = secret.expose();
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            needles.extend(forms(value.as_bytes()));
        }
        needles.retain(|n| n.len() >= MIN_SECRET_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let mut starts = Starts::default();
        for n in &needles {
            let b = n.as_bytes();
            // Every needle is at least MIN_SECRET_LEN = STRIDE + 1 bytes (retained above).
            for k in 0..STRIDE {
                starts.insert([b[k], b[k + 1]]);
            }
        }
        Scrubber { needles: Arc::new(needles), starts: Arc::new(starts) }
    }

    /// True when there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every form of every secret replaced by [`REDACTED`].
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // Every form is at least MIN_SECRET_LEN bytes, so the sampled pair filter finds it.
        if !self.starts.any_in(text.as_bytes()) {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        for needle in self.needles.iter() {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), REDACTED));
            }
        }
        out
    }

    /// Scrubs a string in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    fn opt(&self, text: &mut Option<String>) {
        if let Some(t) = text {
            self.scrub_in_place(t);
        }
    }

    /// Scrubs every text of an outcome.
    pub fn outcome(&self, outcome: &mut Outcome) {
        match outcome {
            Outcome::Captured { platform_capture_id, .. } | Outcome::Pending { platform_capture_id, .. } => {
                self.opt(platform_capture_id);
            }
            Outcome::AlreadyCaptured { platform_code, message } => {
                self.opt(platform_code);
                self.scrub_in_place(message);
            }
            Outcome::Rejected { by, code, reason } => {
                self.scrub_in_place(by);
                self.scrub_in_place(code);
                self.scrub_in_place(reason);
            }
            Outcome::Held { by, reason } => {
                self.scrub_in_place(by);
                self.scrub_in_place(reason);
            }
            Outcome::Failed { platform_code, message, .. } => {
                self.opt(platform_code);
                self.scrub_in_place(message);
            }
        }
    }

    fn steps(&self, steps: &mut [Step]) {
        for s in steps {
            self.scrub_in_place(&mut s.name);
            self.opt(&mut s.version);
            self.scrub_in_place(&mut s.verdict);
            self.opt(&mut s.detail);
            match &mut s.decision {
                Some(Decision::Reject { code, reason }) => {
                    self.scrub_in_place(code);
                    self.scrub_in_place(reason);
                }
                Some(Decision::Hold { reason }) => self.scrub_in_place(reason),
                Some(Decision::Allow | Decision::Adjust { .. }) | None => {}
            }
        }
    }

    fn exchanges(&self, exchanges: &mut [Exchange]) {
        for e in exchanges {
            self.scrub_in_place(&mut e.request.method);
            self.scrub_in_place(&mut e.request.url);
            for h in &mut e.request.headers {
                self.scrub_in_place(&mut h.name);
                self.scrub_in_place(&mut h.value);
            }
            self.opt(&mut e.request.body);
            if let Some(r) = &mut e.response {
                self.scrub_in_place(&mut r.body);
            }
        }
    }

    /// A capture report with every text scrubbed.
    pub fn report(&self, mut r: CaptureReport) -> CaptureReport {
        if self.is_empty() {
            return r;
        }
        self.scrub_in_place(&mut r.capture_id);
        self.scrub_in_place(&mut r.platform);
        self.scrub_in_place(&mut r.order_id);
        self.scrub_in_place(&mut r.idempotency_key);
        self.steps(&mut r.steps);
        self.exchanges(&mut r.exchanges);
        self.outcome(&mut r.outcome);
        r.tags.iter_mut().for_each(|t| self.scrub_in_place(t));
        r.notes.iter_mut().for_each(|n| self.scrub_in_place(n));
        for f in &mut r.follow_ups {
            let clean = std::mem::take(f)
                .into_iter()
                .map(|(k, v)| (self.scrub(&k).into_owned(), self.scrub(&v).into_owned()))
                .collect();
            *f = clean;
        }
        r
    }

    /// A status report with every text scrubbed.
    pub fn status_report(&self, mut r: StatusReport) -> StatusReport {
        if self.is_empty() {
            return r;
        }
        self.scrub_in_place(&mut r.platform);
        self.scrub_in_place(&mut r.order_id);
        self.steps(&mut r.steps);
        self.exchanges(&mut r.exchanges);
        self.outcome(&mut r.outcome);
        r
    }

    /// Every text column of a ledger update.
    fn update(&self, mut u: AttemptUpdate) -> AttemptUpdate {
        self.opt(&mut u.platform_capture_id);
        self.opt(&mut u.request);
        self.opt(&mut u.response);
        self.opt(&mut u.outcome);
        u
    }
}

/// The forms a secret travels in.
fn forms(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let text = String::from_utf8_lossy(value).into_owned();
    // JSON-escaped (a secret with `"`, `\`, or control characters inside a recorded JSON body).
    if let Ok(json) = serde_json::to_string(&text) {
        out.push(json[1..json.len() - 1].to_owned());
    }
    out.push(text);
    for alphabet in [STANDARD, URL_SAFE] {
        let full = base64(value, alphabet);
        out.push(full.trim_end_matches('=').to_owned());
        out.push(full);
        // Inside a longer base64 text (`Basic dXNlcjpzZWNyZXQ=` holds "user:secret"), the
        // secret's encoding depends on where it starts modulo 3: the characters that depend on
        // its bytes only, for each alignment.
        for shift in 1..3usize {
            let mut padded = vec![0u8; shift];
            padded.extend_from_slice(value);
            let enc = base64(&padded, alphabet);
            let enc = enc.trim_end_matches('=');
            // The first group mixes filler and secret; a last partial group may mix the secret
            // with what follows it.
            let start = 4;
            let whole = (shift + value.len()) / 3 * 4;
            if whole > start + MIN_SECRET_LEN {
                out.push(enc[start..whole].to_owned());
            }
        }
    }
    let percent = |upper: bool, plus: bool| {
        let mut s = String::with_capacity(value.len() * 3);
        for &b in value {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                s.push(char::from(b));
            } else if plus && b == b' ' {
                s.push('+');
            } else if upper {
                s.push_str(&format!("%{b:02X}"));
            } else {
                s.push_str(&format!("%{b:02x}"));
            }
        }
        s
    };
    out.push(percent(true, false));
    out.push(percent(false, false));
    out.push(percent(true, true));
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [18u32, 12, 6, 0].map(|s| char::from(alphabet[((n >> s) & 63) as usize]));
        out.push(chars[0]);
        out.push(chars[1]);
        out.push(if chunk.len() > 1 { chars[2] } else { '=' });
        out.push(if chunk.len() > 2 { chars[3] } else { '=' });
    }
    out
}

/// A ledger whose every written text column is scrubbed first: whatever put a secret there (a
/// platform echoing it, a connector copying it), the ledger file never holds it.
#[derive(Debug)]
pub struct ScrubbedStore {
    inner: Arc<dyn CaptureStore>,
    scrubber: Scrubber,
}

impl ScrubbedStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn CaptureStore>, scrubber: Scrubber) -> ScrubbedStore {
        ScrubbedStore { inner, scrubber }
    }
}

#[async_trait::async_trait]
impl CaptureStore for ScrubbedStore {
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError> {
        self.inner.reserve(new).await
    }

    async fn transition(
        &self,
        id: &str,
        fence: &Fence,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: capture_core::Timestamp,
    ) -> Result<Attempt, StoreError> {
        self.inner.transition(id, fence, from, to, self.scrubber.update(update), now).await
    }

    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: capture_core::Timestamp,
    ) -> Result<LeaseGrant, StoreError> {
        self.inner.take_lease(id, owner, lease_ms, min_age_ms, now).await
    }

    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.inner.order(merchant, platform, order_id).await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        self.inner.get(id).await
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        self.inner.by_key(merchant, platform, key).await
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        self.inner.unresolved().await
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.inner.order_attempts(merchant, platform, order_id).await
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        self.inner.all().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(values: &[&str]) -> Scrubber {
        let secrets: Vec<Secret> = values.iter().map(|v| Secret::new(*v)).collect();
        Scrubber::new(&secrets)
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes(), STANDARD), expected, "{input}");
        }
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), "-_8=");
    }

    /// `text` scrubbed by a scrubber of the canary secret is `expected`.
    fn check(text: &str, expected: &str) {
        let s = scrubber(&["CANARY-s3cr3t/+=&x y", "tok_9f8e7d6c5b4a"]);
        assert_eq!(s.scrub(text), expected, "{text}");
    }

    #[test]
    fn every_form_of_a_secret_is_scrubbed() {
        let raw = "CANARY-s3cr3t/+=&x y";
        let b64 = base64(raw.as_bytes(), STANDARD);
        let b64url = base64(raw.as_bytes(), URL_SAFE);
        let basic = base64(format!("user:{raw}").as_bytes(), STANDARD);
        let basic2 = base64(format!("us:{}", "tok_9f8e7d6c5b4a").as_bytes(), STANDARD);
        let cases: Vec<(String, String)> = vec![
            ("nothing secret here".into(), "nothing secret here".into()),
            (format!("Bearer {raw}"), "Bearer [REDACTED]".into()),
            (format!(r#"{{"error":"bad token {raw}"}}"#), r#"{"error":"bad token [REDACTED]"}"#.into()),
            (
                "token tok_9f8e7d6c5b4a twice tok_9f8e7d6c5b4a".into(),
                "token [REDACTED] twice [REDACTED]".into(),
            ),
            (format!("b64 {b64}"), "b64 [REDACTED]".into()),
            (format!("b64 {}", b64.trim_end_matches('=')), "b64 [REDACTED]".into()),
            (format!("url {b64url}"), "url [REDACTED]".into()),
            ("pct CANARY-s3cr3t%2F%2B%3D%26x%20y".into(), "pct [REDACTED]".into()),
            ("pct CANARY-s3cr3t%2f%2b%3d%26x%20y".into(), "pct [REDACTED]".into()),
            ("form CANARY-s3cr3t%2F%2B%3D%26x+y".into(), "form [REDACTED]".into()),
            (serde_json::to_string(&format!("json {raw}")).unwrap(), "\"json [REDACTED]\"".into()),
        ];
        for (text, expected) in &cases {
            check(text, expected);
        }
        // Inside a longer base64 text (Basic auth of user:secret) the secret's part is gone.
        for (encoded, secret) in [(basic, raw), (basic2, "tok_9f8e7d6c5b4a")] {
            let s = scrubber(&[secret]);
            let out = s.scrub(&encoded);
            assert!(out.contains(REDACTED), "{encoded} -> {out}");
            let whole = base64(secret.as_bytes(), STANDARD);
            assert!(!out.contains(&whole[..8]), "{out}");
        }
    }

    #[test]
    fn the_pair_filter_passes_over_only_texts_that_hold_no_form() {
        let s = scrubber(&["CANARY-s3cr3t/+=&x y", "tok_9f8e7d6c5b4a"]);
        // The search without the filter: every form looked for in every text.
        let unfiltered = |text: &str| {
            let mut out = text.to_owned();
            for n in s.needles.iter() {
                out = out.replace(n.as_str(), REDACTED);
            }
            out
        };
        let mut texts = vec![String::new(), "a".into(), "allow".into(), "rule-00".into()];
        for n in s.needles.iter() {
            for lead in 0..=2 * STRIDE {
                // Each form whole inside other text, at every position modulo the stride.
                texts.push(format!("{}{n}y", "x".repeat(lead)));
            }
            for cut in 0..n.len() {
                // Each of its heads and tails alone.
                texts.push(n[..cut].to_owned());
                texts.push(n[cut..].to_owned());
                texts.push(format!("{}{}", &n[cut..], &n[..cut]));
            }
        }
        for text in &texts {
            assert_eq!(s.scrub(text), unfiltered(text), "{text}");
        }
    }

    #[test]
    fn short_secrets_are_left_alone() {
        let s = scrubber(&["abc"]);
        assert!(s.is_empty());
        assert_eq!(s.scrub("abcabc"), "abcabc");
    }
}
