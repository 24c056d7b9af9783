//! Money: an exact [`Decimal`] amount in an ISO 4217 [`Currency`].
//!
//! Nothing in this module goes through a float. Decimal strings are parsed with a strict grammar
//! (`-?digits(.digits)?`), JSON numbers reach [`ExactDecimal`] as their exact text (serde_json's
//! `arbitrary_precision`), and minor units are plain integer arithmetic.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors about amounts and currencies. Each names the value it refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The code is not an ISO 4217 currency this engine knows.
    #[error("unknown currency `{0}` (expected an ISO 4217 code such as USD, JPY or KWD)")]
    UnknownCurrency(String),
    /// The text is not a plain decimal number.
    #[error("`{0}` is not a decimal amount (expected digits with an optional `.` and fraction, e.g. 100.10)")]
    NotADecimal(String),
    /// More decimal places than the currency has.
    #[error("{amount} has {places} decimal places but {currency} allows {allowed}")]
    TooManyDecimals {
        /// The amount as given.
        amount: String,
        /// Its decimal places.
        places: u32,
        /// The currency.
        currency: &'static str,
        /// The currency's exponent.
        allowed: u32,
    },
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(&'static str, &'static str),
    /// The amount does not fit the integer range used for minor units.
    #[error("{0} is out of range")]
    Overflow(String),
}

/// An ISO 4217 currency with its exponent (number of minor-unit digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

/// ISO 4217 active currencies and their exponents (minor-unit digits).
#[rustfmt::skip]
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2),
    ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHF", 2), ("CLP", 0), ("CNY", 2), ("COP", 2), ("CRC", 2),
    ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2),
    ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2),
    ("GIP", 2), ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2),
    ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2),
    ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2),
    ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2),
    ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2),
    ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2),
    ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2),
    ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("UYI", 0), ("UYU", 2), ("UZS", 2),
    ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XOF", 0), ("XPF", 0),
    ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

impl Currency {
    /// Looks up an ISO 4217 code; case-insensitive (`usd` is `USD`, as Medusa writes it).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        let upper = code.to_ascii_uppercase();
        CURRENCIES
            .binary_search_by(|(c, _)| (*c).cmp(upper.as_str()))
            .map(|i| Currency { code: CURRENCIES[i].0, exponent: CURRENCIES[i].1 })
            .map_err(|_| MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// The upper-case ISO 4217 code.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// Number of digits after the decimal point (0 for JPY, 2 for USD, 3 for KWD).
    pub fn exponent(self) -> u32 {
        self.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code).map_err(de::Error::custom)
    }
}

/// Parses a decimal with the strict grammar `-?[0-9]+(\.[0-9]+)?`: no exponent, no `+`, no spaces.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let bad = || MoneyError::NotADecimal(text.to_owned());
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(bad());
    }
    Decimal::from_str_exact(text).map_err(|_| MoneyError::Overflow(text.to_owned()))
}

/// An amount with its currency. The amount is kept at exactly the currency's exponent
/// (`100.1` USD is stored and shown as `100.10`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Makes money from an exact decimal; refuses more decimal places than the currency has.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        let places = amount.normalize().scale();
        if places > currency.exponent {
            return Err(MoneyError::TooManyDecimals {
                amount: amount.to_string(),
                places,
                currency: currency.code,
                allowed: currency.exponent,
            });
        }
        let mut amount = amount;
        amount.rescale(currency.exponent);
        Ok(Money { amount, currency })
    }

    /// Parses a decimal string (see [`parse_decimal`]) in `currency`.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        Money::new(parse_decimal(text)?, currency)
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Money {
        Money { amount: Decimal::new(0, currency.exponent), currency }
    }

    /// From an integer count of minor units (cents for USD, yen for JPY, fils for KWD).
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { amount: Decimal::new(minor, currency.exponent), currency }
    }

    /// The amount as an integer count of minor units.
    pub fn to_minor(self) -> Result<i64, MoneyError> {
        let mantissa = self.amount.mantissa();
        i64::try_from(mantissa).map_err(|_| MoneyError::Overflow(self.amount.to_string()))
    }

    /// The exact decimal amount.
    pub fn amount(self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// The amount with exactly the currency's decimal places, e.g. `100.10`, `1500`, `1.250`.
    pub fn to_decimal_string(self) -> String {
        let mut buf = [0u8; 64];
        self.write_decimal(&mut buf).to_owned()
    }

    /// [`Money::to_decimal_string`] without an allocation (and without `core::fmt`): the text
    /// written into the end of `buf`, which is returned.
    pub fn write_decimal(self, buf: &mut [u8; 64]) -> &str {
        let d = self.amount;
        let scale = usize::try_from(d.scale()).unwrap_or(0);
        // At most 29 digits (96 bits), a point and a sign, and at least `scale` + 1 digits (at most
        // 29): within `buf`. Written backwards from its end; in `u64` when the digits fit (128-bit
        // division is a library call).
        let mantissa = d.mantissa().unsigned_abs();
        let (mut small, mut big) = match u64::try_from(mantissa) {
            Ok(m) => (m, None),
            Err(_) => (0, Some(mantissa)),
        };
        let mut at = buf.len();
        let mut written = 0usize;
        loop {
            if written == scale && scale > 0 {
                at -= 1;
                buf[at] = b'.';
            }
            at -= 1;
            // A remainder of a division by 10 is below 10.
            let (digit, zero) = match &mut big {
                Some(b) => {
                    let digit = (*b % 10) as u8;
                    *b /= 10;
                    (digit, *b == 0)
                }
                None => {
                    let digit = (small % 10) as u8;
                    small /= 10;
                    (digit, small == 0)
                }
            };
            buf[at] = b'0' + digit;
            written += 1;
            if zero && written > scale {
                break;
            }
        }
        if d.is_sign_negative() {
            at -= 1;
            buf[at] = b'-';
        }
        // Only ASCII digits, a point and a sign were written.
        std::str::from_utf8(&buf[at..]).unwrap_or_default()
    }

    /// True for an amount below zero.
    pub fn is_negative(self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.amount.is_zero()
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency.code, other.currency.code))
        }
    }

    /// `self + other`, same currency, no overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or_else(|| MoneyError::Overflow(format!("{} + {}", self.amount, other.amount)))?;
        Money::new(sum, self.currency)
    }

    /// `self - other`, same currency, no overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let diff = self
            .amount
            .checked_sub(other.amount)
            .ok_or_else(|| MoneyError::Overflow(format!("{} - {}", self.amount, other.amount)))?;
        Money::new(diff, self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency.code)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency.code)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An exact amount: the decimal as a string with the currency's places, and the ISO 4217 code",
            "type": "object",
            "properties": {
                "amount": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": "The decimal, e.g. `\"100.10\"`, `\"1500\"` (JPY), `\"1.250\"` (KWD)"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code"}
            },
            "required": ["amount", "currency"],
            "additionalProperties": false
        })
    }
}

/// Money in reports and messages: `{"amount": "100.10", "currency": "USD"}` (the amount is a string).
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Money", 2)?;
        st.serialize_field("amount", &self.to_decimal_string())?;
        st.serialize_field("currency", self.currency.code)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            amount: ExactDecimal,
            currency: Currency,
        }
        let w = Wire::deserialize(d)?;
        Money::new(w.amount.0, w.currency).map_err(de::Error::custom)
    }
}

/// A decimal read exactly from JSON: a string (`"100.10"`) or a number (`100.1`) whose text
/// arrives intact through serde_json's `arbitrary_precision`. A float from another format is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactDecimal(pub Decimal);

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ExactDecimal {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Decimal".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A decimal amount as a string (`\"100.10\"`) or a JSON number (read from its exact text, never as a float), with at most the currency's places",
            "anyOf": [
                {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"},
                {"type": "number"}
            ]
        })
    }
}

/// The private key serde_json uses to hand an arbitrary-precision number to a visitor.
const SERDE_JSON_NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Deserialize<'de> for ExactDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExactDecimalVisitor)
    }
}

struct ExactDecimalVisitor;

impl<'de> Visitor<'de> for ExactDecimalVisitor {
    type Value = ExactDecimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal amount as a JSON number or string, e.g. 100.10 or \"100.10\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ExactDecimal, E> {
        parse_decimal(v).map(ExactDecimal).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExactDecimal, E> {
        Ok(ExactDecimal(Decimal::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExactDecimal, E> {
        Ok(ExactDecimal(Decimal::from(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExactDecimal, A::Error> {
        match map.next_key::<String>()? {
            Some(key) if key == SERDE_JSON_NUMBER_TOKEN => {
                let text: String = map.next_value()?;
                // JSON allows exponents (1e2); the exact decimal parser accepts them, no float involved.
                let parsed = if text.contains(['e', 'E']) {
                    Decimal::from_scientific(&text).map_err(|_| MoneyError::NotADecimal(text.clone()))
                } else {
                    parse_decimal(&text)
                };
                parsed.map(ExactDecimal).map_err(de::Error::custom)
            }
            _ => Err(de::Error::custom("expected a decimal amount, found an object")),
        }
    }
}

impl FromStr for ExactDecimal {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        parse_decimal(s).map(ExactDecimal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(c: &str) -> Currency {
        Currency::from_code(c).unwrap()
    }

    #[test]
    fn the_decimal_text_is_what_rust_decimal_writes() {
        let mut buf = [0u8; 64];
        let mut check = |m: Money| {
            assert_eq!(m.write_decimal(&mut buf), m.amount().to_string(), "{:?}", m.amount());
            assert_eq!(m.to_decimal_string(), m.amount().to_string());
        };
        for code in ["USD", "JPY", "KWD", "BHD"] {
            let c = cur(code);
            for minor in [0, 1, -1, 9, 10, 99, 100, 101, 10010, -10010, 123_456_789, i64::MAX, i64::MIN] {
                check(Money::from_minor(minor, c));
            }
            for text in ["0", "-0", "0.5", "-0.01", "1500", "1.2", "-0.000"] {
                if let Ok(m) = Money::parse(text, c) {
                    check(m);
                }
            }
            // Mantissas past u64 (the 128-bit path), up to the largest Decimal, both signs.
            for m in
                [Decimal::MAX, Decimal::MIN, Decimal::from(u64::MAX) + Decimal::ONE, -Decimal::from(u64::MAX)]
            {
                let mut d = m.trunc();
                d.rescale(0);
                if let Ok(m) = Money::new(d, c) {
                    check(m);
                }
            }
        }
        // Every scale and a spread of digits.
        let mut x: i64 = 1;
        for _ in 0..400 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            for code in ["USD", "JPY", "KWD", "BHD"] {
                check(Money::from_minor(x >> (x & 63).min(62), cur(code)));
            }
        }
    }

    #[test]
    fn currency_table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn exponents_cover_zero_two_and_three() {
        assert_eq!(cur("JPY").exponent(), 0);
        assert_eq!(cur("usd").exponent(), 2);
        assert_eq!(cur("KWD").exponent(), 3);
        assert_eq!(Currency::from_code("XXY"), Err(MoneyError::UnknownCurrency("XXY".into())));
    }

    #[test]
    fn minor_units_round_trip_exactly() {
        for (text, c, minor) in
            [("100.10", "USD", 10010), ("1500", "JPY", 1500), ("1.250", "KWD", 1250), ("0.30", "EUR", 30)]
        {
            let m = Money::parse(text, cur(c)).unwrap();
            assert_eq!(m.to_minor().unwrap(), minor);
            assert_eq!(Money::from_minor(minor, cur(c)), m);
            assert_eq!(m.to_decimal_string(), text);
        }
    }

    #[test]
    fn too_many_decimals_names_the_currency() {
        let err = Money::parse("10.123", cur("USD")).unwrap_err();
        assert_eq!(err.to_string(), "10.123 has 3 decimal places but USD allows 2");
        assert!(Money::parse("10.5", cur("JPY")).is_err());
        // Trailing zeros are not extra precision.
        assert_eq!(Money::parse("10.500", cur("USD")).unwrap().to_decimal_string(), "10.50");
    }

    #[test]
    fn strict_grammar() {
        for bad in ["", "1e2", "+1", " 1", "1.", ".5", "1,00", "NaN", "0x10"] {
            assert!(parse_decimal(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse_decimal("-0.01").unwrap(), Decimal::new(-1, 2));
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        let d: ExactDecimal = serde_json::from_str("100.1").unwrap();
        assert_eq!(d.0.to_string(), "100.1");
        let sum: Vec<ExactDecimal> = serde_json::from_str("[0.1, 0.2, \"0.3\", 7, 1e2]").unwrap();
        assert_eq!(sum[0].0 + sum[1].0, sum[2].0);
        assert_eq!(sum[3].0, Decimal::from(7));
        assert_eq!(sum[4].0, Decimal::from(100));
        let long: ExactDecimal = serde_json::from_str("12345678901234567.89").unwrap();
        assert_eq!(long.0.to_string(), "12345678901234567.89");
    }

    #[test]
    fn arithmetic_checks_currency() {
        let a = Money::parse("1.00", cur("USD")).unwrap();
        let b = Money::parse("1.00", cur("EUR")).unwrap();
        assert_eq!(a.checked_add(b), Err(MoneyError::CurrencyMismatch("USD", "EUR")));
        assert_eq!(a.checked_add(a).unwrap().to_decimal_string(), "2.00");
    }
}
