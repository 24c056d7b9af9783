//! Timestamps as values: the core never reads a clock; the engine injects one.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Milliseconds since the Unix epoch, shown as RFC 3339 UTC (`2026-11-21T10:00:00.000Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Parses RFC 3339 (`2026-11-21T10:00:00Z`).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        let t =
            humantime::parse_rfc3339(text).map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))?;
        let d = t.duration_since(UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?;
        u64::try_from(d.as_millis()).map(Timestamp).map_err(|_| format!("`{text}` is out of range"))
    }

    /// Whole seconds since the epoch.
    pub fn unix_seconds(self) -> u64 {
        self.0 / 1000
    }

    /// RFC 3339 UTC with milliseconds.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0)).to_string()
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time", "description": "RFC 3339, UTC (`2026-11-21T09:00:00Z`)"})
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00.000Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
