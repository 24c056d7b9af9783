//! The canonical capture request and the order snapshot it carries, with validation that names
//! the offending field and value.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::limits;
use crate::money::{Currency, ExactDecimal, Money, MoneyError};

/// A request the engine refuses before anything else runs: malformed JSON or an invalid field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The text is not JSON of the request's shape (wrong type, unknown or missing field, syntax).
    #[error("malformed capture request at `{path}`: {message}")]
    Malformed {
        /// Where in the document (`order.payments[0].amount`, or `.` for the whole document).
        path: String,
        /// What serde_json said, with line and column.
        message: String,
    },
    /// A field has a value the engine refuses.
    #[error("invalid field `{field}`: {problem}")]
    Invalid {
        /// The field path, e.g. `order.payments[1].amount`.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
}

impl RequestError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RequestError {
        RequestError::Invalid { field: field.into(), problem: problem.into() }
    }

    /// The field path the error is about.
    pub fn field(&self) -> &str {
        match self {
            RequestError::Malformed { path, .. } => path,
            RequestError::Invalid { field, .. } => field,
        }
    }
}

fn money_err(field: &str) -> impl Fn(MoneyError) -> RequestError + '_ {
    move |e| RequestError::invalid(field, e.to_string())
}

/// What the request asks to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestedAmount {
    /// Everything still capturable.
    Full,
    /// Exactly this much.
    Exact(Money),
}

/// A payment the platform authorized for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizedPayment {
    /// The platform's payment id.
    pub id: String,
    /// The authorized amount.
    pub amount: Money,
    /// The payment method (e.g. `afterpay`, `card`), when the host knows it.
    pub method: Option<String>,
    /// Whether the payment method allows partial capture, when the host knows it.
    pub partial_capture: Option<bool>,
}

/// A capture already made on the order, before this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarlierCapture {
    /// The capture's reference (idempotency key or platform id).
    pub reference: String,
    /// The payment it was taken from, if known.
    pub payment_id: Option<String>,
    /// How much was captured.
    pub amount: Money,
}

/// What the host knows of the order at the time of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSnapshot {
    /// The platform's order id (BigCommerce integer, Optty order reference, Wix GUID...).
    pub id: String,
    /// The order currency; every amount of the request is in it.
    pub currency: Currency,
    /// The order amount.
    pub amount: Money,
    /// A surcharge the platform adds to the order amount (Optty), zero if none.
    pub surcharge: Money,
    /// Authorized payments; at least one.
    pub payments: Vec<AuthorizedPayment>,
    /// Captures made earlier.
    pub captures: Vec<EarlierCapture>,
}

impl OrderSnapshot {
    /// Sum of the authorized payments.
    pub fn authorized_total(&self) -> Result<Money, MoneyError> {
        self.payments.iter().try_fold(Money::zero(self.currency), |acc, p| acc.checked_add(p.amount))
    }

    /// Sum of the earlier captures.
    pub fn captured_total(&self) -> Result<Money, MoneyError> {
        self.captures.iter().try_fold(Money::zero(self.currency), |acc, c| acc.checked_add(c.amount))
    }

    /// What may still be captured: the authorized total minus earlier captures (never below zero).
    pub fn capturable(&self) -> Result<Money, MoneyError> {
        let left = self.authorized_total()?.checked_sub(self.captured_total()?)?;
        Ok(if left.is_negative() { Money::zero(self.currency) } else { left })
    }

    /// What may still be captured from one payment.
    pub fn payment_capturable(&self, payment: &AuthorizedPayment) -> Result<Money, MoneyError> {
        let taken = self
            .captures
            .iter()
            .filter(|c| c.payment_id.as_deref() == Some(payment.id.as_str()))
            .try_fold(Money::zero(self.currency), |acc, c| acc.checked_add(c.amount))?;
        let left = payment.amount.checked_sub(taken)?;
        Ok(if left.is_negative() { Money::zero(self.currency) } else { left })
    }
}

/// An amount for one named payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentAmount {
    /// The payment id; must be one of the order's payments.
    pub payment_id: String,
    /// How much to capture from it.
    pub amount: Money,
}

/// Shipping details some platforms want with a capture; all three or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingInfo {
    /// The carrier (DHL, UPS...).
    pub company: String,
    /// The service level.
    pub method: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// A scalar merchant metadata value (strings, integers, booleans; no floats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MetadataValue {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A flag.
    Bool(bool),
}

/// A validated capture request: every amount is [`Money`] in the order currency within its bounds
/// of form (positive, right number of decimals). Bounds against the order are checked by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureRequest {
    /// The platform (connector id), e.g. `optty`.
    pub platform: String,
    /// The order snapshot.
    pub order: OrderSnapshot,
    /// Full or an exact amount.
    pub amount: RequestedAmount,
    /// Per-payment amounts, when the host splits the capture itself.
    pub payments: Vec<PaymentAmount>,
    /// The caller's idempotency key: the same key always means the same capture.
    pub idempotency_key: String,
    /// A note for the platform.
    pub description: Option<String>,
    /// Shipping details.
    pub shipping: Option<ShippingInfo>,
    /// Merchant metadata, handed to rules.
    pub metadata: BTreeMap<String, MetadataValue>,
}

// ---- wire form ----

/// A capture request, as a host sends it (JSON). Unknown fields are refused.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "CaptureRequest"))]
#[serde(deny_unknown_fields)]
struct RawRequest {
    /// The connector id of the platform (`optty`, `bigcommerce`, `medusa`, `wix`, ...).
    platform: String,
    /// The order as the host knows it: what was authorized and what was captured already.
    order: RawOrder,
    /// `"full"` (everything still capturable) or the amount to capture, as a decimal string
    /// (`"100.10"`) or a JSON number read from its exact text, with at most the currency's places.
    amount: RawAmount,
    /// Per-payment amounts for a partial capture (default: none, the engine splits).
    #[serde(default)]
    payments: Vec<RawPaymentAmount>,
    /// Unique per merchant and platform: the same key never captures twice (a replay returns the
    /// recorded outcome).
    idempotency_key: String,
    /// A note for the platform (Optty `description`).
    #[serde(default)]
    description: Option<String>,
    /// Shipping details: all three fields, or none.
    #[serde(default)]
    shipping: Option<RawShipping>,
    /// Free-form values the rules can read (`ctx.metadata`); not sent to the platform.
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
}

/// The order snapshot.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Order"))]
#[serde(deny_unknown_fields)]
struct RawOrder {
    /// The platform's order id.
    id: String,
    /// ISO 4217 code (`USD`, `JPY`, `KWD`); its exponent bounds every amount's places.
    currency: String,
    /// The order's authorized amount.
    amount: ExactDecimal,
    /// A surcharge on top of the amount (Optty), capturable with it (default 0).
    #[serde(default)]
    surcharge: Option<ExactDecimal>,
    /// The authorized payments (at least one).
    payments: Vec<RawPayment>,
    /// Captures already made (default none): the engine never captures more than authorized minus these.
    #[serde(default)]
    captures: Vec<RawCapture>,
}

/// One authorized payment of the order.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Payment"))]
#[serde(deny_unknown_fields)]
struct RawPayment {
    /// The platform's payment id.
    id: String,
    /// Its authorized amount.
    amount: ExactDecimal,
    /// The payment method (`afterpay`, `card`, ...), if known.
    #[serde(default)]
    method: Option<String>,
    /// Whether the method allows a partial capture (default: unknown, the connector decides).
    #[serde(default)]
    partial_capture: Option<bool>,
}

/// A capture made earlier.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "EarlierCapture"))]
#[serde(deny_unknown_fields)]
struct RawCapture {
    /// Its reference (idempotency key or platform id).
    reference: String,
    /// The payment it took from, if known.
    #[serde(default)]
    payment_id: Option<String>,
    /// The amount it captured.
    amount: ExactDecimal,
}

/// The amount to take from one payment.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "PaymentAmount"))]
#[serde(deny_unknown_fields)]
struct RawPaymentAmount {
    /// One of `order.payments[].id`.
    payment_id: String,
    /// The amount to capture from it.
    amount: ExactDecimal,
}

/// Shipping details (all three, or none).
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Shipping"))]
#[serde(deny_unknown_fields)]
struct RawShipping {
    /// The carrier.
    company: Option<String>,
    /// The service level.
    method: Option<String>,
    /// The carrier's tracking number.
    tracking_number: Option<String>,
}

/// The JSON Schema of a capture request (the wire form `CaptureRequest::from_json` reads).
#[cfg(feature = "schema")]
pub fn request_schema() -> schemars::Schema {
    schemars::schema_for!(RawRequest)
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for RawAmount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`\"full\"`, or a decimal amount as a string (`\"100.10\"`) or a JSON number (read from its exact text, never as a float)",
            "anyOf": [
                {"const": "full"},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

/// `"full"`, a decimal string or a JSON number.
struct RawAmount(Option<Decimal>);

impl<'de> Deserialize<'de> for RawAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawAmount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"full\" or a decimal amount such as 100.10 or \"100.10\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawAmount, E> {
                if v == "full" {
                    return Ok(RawAmount(None));
                }
                v.parse::<ExactDecimal>().map(|d| RawAmount(Some(d.0))).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawAmount, E> {
                Ok(RawAmount(Some(Decimal::from(v))))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawAmount, E> {
                Ok(RawAmount(Some(Decimal::from(v))))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawAmount, A::Error> {
                let d = ExactDecimal::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawAmount(Some(d.0)))
            }
        }
        d.deserialize_any(V)
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), RequestError> {
    if value.trim().is_empty() { Err(RequestError::invalid(field, "must not be empty")) } else { Ok(()) }
}

/// At most `max` bytes, no control or bidirectional formatting character.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), RequestError> {
    if value.len() > max {
        return Err(RequestError::invalid(
            field,
            format!("is {} bytes; the limit is {max} bytes (see LIMITS.md)", value.len()),
        ));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| limits::is_forbidden_char(*c)) {
        return Err(RequestError::invalid(
            field,
            format!(
                "contains the control or formatting character {} at byte {at}; control characters \
                 (NUL, CR, LF, ESC...) and bidirectional controls are not allowed",
                limits::describe_char(c)
            ),
        ));
    }
    Ok(())
}

/// A non-empty identifier of at most `max` bytes without control characters.
fn identifier(field: &str, value: &str, max: usize) -> Result<(), RequestError> {
    non_empty(field, value)?;
    bounded(field, value, max)
}

/// At most `max` entries.
fn at_most(field: &str, len: usize, max: usize) -> Result<(), RequestError> {
    if len > max {
        Err(RequestError::invalid(field, format!("has {len} entries; the limit is {max} (see LIMITS.md)")))
    } else {
        Ok(())
    }
}

fn positive(field: &str, m: Money) -> Result<Money, RequestError> {
    if m.is_negative() {
        Err(RequestError::invalid(field, format!("{m} is negative")))
    } else if m.is_zero() {
        Err(RequestError::invalid(field, format!("{m} is zero: nothing to capture")))
    } else {
        Ok(m)
    }
}

fn not_negative(field: &str, m: Money) -> Result<Money, RequestError> {
    if m.is_negative() { Err(RequestError::invalid(field, format!("{m} is negative"))) } else { Ok(m) }
}

impl CaptureRequest {
    /// Parses and validates a request from JSON text. Amounts are read exactly (numbers or strings).
    ///
    /// The text must be exactly one JSON document (whitespace around it is fine): anything
    /// after it, garbage or a second document, is [`RequestError::Malformed`]. Every field is
    /// checked against the limits of [`crate::limits`].
    pub fn from_json(text: &[u8]) -> Result<CaptureRequest, RequestError> {
        if text.len() > limits::MAX_REQUEST_BYTES {
            return Err(RequestError::invalid(
                ".",
                format!(
                    "the request is {} bytes; the limit is {} bytes (see LIMITS.md)",
                    text.len(),
                    limits::MAX_REQUEST_BYTES
                ),
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(text);
        let raw: RawRequest = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            // serde_path_to_error shows an unknown position as `?`; the whole document is `.`.
            let path = match e.path().to_string() {
                p if p == "?" => ".".to_owned(),
                p => p,
            };
            RequestError::Malformed { path, message: e.into_inner().to_string() }
        })?;
        de.end().map_err(|e| RequestError::Malformed {
            path: ".".into(),
            message: format!(
                "input continues after the request document ({e}): a request is exactly one JSON \
                 document, with nothing after it"
            ),
        })?;
        raw.validate()
    }
}

impl RawRequest {
    fn validate(self) -> Result<CaptureRequest, RequestError> {
        identifier("platform", &self.platform, limits::MAX_PLATFORM)?;
        non_empty("idempotency_key", &self.idempotency_key)?;
        if self.idempotency_key.len() > limits::MAX_IDEMPOTENCY_KEY {
            return Err(RequestError::invalid(
                "idempotency_key",
                format!(
                    "is {} bytes; the limit is {} bytes (see LIMITS.md)",
                    self.idempotency_key.len(),
                    limits::MAX_IDEMPOTENCY_KEY
                ),
            ));
        }
        if let Some((at, c)) =
            self.idempotency_key.char_indices().find(|(_, c)| !limits::key_char_allowed(*c))
        {
            return Err(RequestError::invalid(
                "idempotency_key",
                format!(
                    "character {} at byte {at} is not allowed: a key is visible ASCII, `!` to `~` \
                     (no space, control or non-ASCII character)",
                    limits::describe_char(c)
                ),
            ));
        }
        if let Some(d) = &self.description {
            bounded("description", d, limits::MAX_DESCRIPTION)?;
        }
        at_most("payments", self.payments.len(), limits::MAX_PAYMENTS)?;
        at_most("metadata", self.metadata.len(), limits::MAX_METADATA_KEYS)?;
        let order = self.order.validate()?;
        let cur = order.currency;
        let amount = match self.amount.0 {
            None => RequestedAmount::Full,
            Some(d) => {
                RequestedAmount::Exact(positive("amount", Money::new(d, cur).map_err(money_err("amount"))?)?)
            }
        };
        let mut payments = Vec::with_capacity(self.payments.len());
        for (i, p) in self.payments.into_iter().enumerate() {
            let field = format!("payments[{i}].payment_id");
            identifier(&field, &p.payment_id, limits::MAX_ID)?;
            if !order.payments.iter().any(|op| op.id == p.payment_id) {
                return Err(RequestError::invalid(
                    field,
                    format!("`{}` is not a payment of order `{}`", p.payment_id, order.id),
                ));
            }
            if payments.iter().any(|q: &PaymentAmount| q.payment_id == p.payment_id) {
                return Err(RequestError::invalid(field, format!("`{}` is listed twice", p.payment_id)));
            }
            let field = format!("payments[{i}].amount");
            let m = positive(&field, Money::new(p.amount.0, cur).map_err(money_err(&field))?)?;
            payments.push(PaymentAmount { payment_id: p.payment_id, amount: m });
        }
        if let (RequestedAmount::Exact(total), false) = (amount, payments.is_empty()) {
            let sum = payments
                .iter()
                .try_fold(Money::zero(cur), |a, p| a.checked_add(p.amount))
                .map_err(money_err("payments"))?;
            if sum != total {
                return Err(RequestError::invalid(
                    "payments",
                    format!("per-payment amounts add up to {sum} but `amount` is {total}"),
                ));
            }
        }
        let shipping = match self.shipping {
            None => None,
            Some(s) => {
                let take = |v: Option<String>, name: &str| -> Result<String, RequestError> {
                    let field = format!("shipping.{name}");
                    let v = v.ok_or_else(|| {
                        RequestError::invalid(
                            &field,
                            "missing: shipping info needs company, method and tracking_number together",
                        )
                    })?;
                    identifier(&field, &v, limits::MAX_SHIPPING_FIELD)?;
                    Ok(v)
                };
                Some(ShippingInfo {
                    company: take(s.company, "company")?,
                    method: take(s.method, "method")?,
                    tracking_number: take(s.tracking_number, "tracking_number")?,
                })
            }
        };
        let mut metadata = BTreeMap::new();
        let mut metadata_bytes = 0usize;
        for (k, v) in self.metadata {
            identifier("metadata (a key)", &k, limits::MAX_METADATA_KEY)?;
            let field = format!("metadata.{k}");
            metadata_bytes += k.len();
            let value = match v {
                serde_json::Value::String(s) => {
                    bounded(&field, &s, limits::MAX_METADATA_VALUE)?;
                    metadata_bytes += s.len();
                    MetadataValue::Text(s)
                }
                serde_json::Value::Bool(b) => MetadataValue::Bool(b),
                serde_json::Value::Number(n) => match n.to_string().parse::<i64>() {
                    Ok(i) => MetadataValue::Integer(i),
                    Err(_) => {
                        return Err(RequestError::invalid(
                            field,
                            format!("{n} is not a whole number; write fractional values as strings"),
                        ));
                    }
                },
                other => {
                    let shown = if other.is_object() || other.is_array() {
                        format!(
                            "a nested {} (metadata has a depth of {}: values are scalars)",
                            if other.is_object() { "object" } else { "array" },
                            limits::MAX_METADATA_DEPTH
                        )
                    } else {
                        other.to_string()
                    };
                    return Err(RequestError::invalid(
                        field,
                        format!("{shown} is not a string, whole number or boolean"),
                    ));
                }
            };
            if metadata_bytes > limits::MAX_METADATA_BYTES {
                return Err(RequestError::invalid(
                    "metadata",
                    format!(
                        "keys and text values add up to more than {} bytes (see LIMITS.md)",
                        limits::MAX_METADATA_BYTES
                    ),
                ));
            }
            metadata.insert(k, value);
        }
        Ok(CaptureRequest {
            platform: self.platform,
            order,
            amount,
            payments,
            idempotency_key: self.idempotency_key,
            description: self.description,
            shipping,
            metadata,
        })
    }
}

impl RawOrder {
    fn validate(self) -> Result<OrderSnapshot, RequestError> {
        identifier("order.id", &self.id, limits::MAX_ID)?;
        at_most("order.payments", self.payments.len(), limits::MAX_ORDER_PAYMENTS)?;
        at_most("order.captures", self.captures.len(), limits::MAX_CAPTURES)?;
        let currency = Currency::from_code(&self.currency).map_err(money_err("order.currency"))?;
        let amount = not_negative(
            "order.amount",
            Money::new(self.amount.0, currency).map_err(money_err("order.amount"))?,
        )?;
        let surcharge = match self.surcharge {
            None => Money::zero(currency),
            Some(d) => not_negative(
                "order.surcharge",
                Money::new(d.0, currency).map_err(money_err("order.surcharge"))?,
            )?,
        };
        if self.payments.is_empty() {
            return Err(RequestError::invalid("order.payments", "the order has no authorized payment"));
        }
        let mut payments: Vec<AuthorizedPayment> = Vec::with_capacity(self.payments.len());
        for (i, p) in self.payments.into_iter().enumerate() {
            let field = format!("order.payments[{i}]");
            identifier(&format!("{field}.id"), &p.id, limits::MAX_ID)?;
            if let Some(m) = &p.method {
                bounded(&format!("{field}.method"), m, limits::MAX_METHOD)?;
            }
            if payments.iter().any(|q| q.id == p.id) {
                return Err(RequestError::invalid(
                    format!("{field}.id"),
                    format!("`{}` is listed twice", p.id),
                ));
            }
            let af = format!("{field}.amount");
            let m = not_negative(&af, Money::new(p.amount.0, currency).map_err(money_err(&af))?)?;
            payments.push(AuthorizedPayment {
                id: p.id,
                amount: m,
                method: p.method,
                partial_capture: p.partial_capture,
            });
        }
        // The payments cannot authorize more than the order costs: a snapshot whose payments
        // exceed the order amount plus its surcharge is inconsistent in itself.
        let authorized = payments
            .iter()
            .try_fold(Money::zero(currency), |acc, p| acc.checked_add(p.amount))
            .map_err(money_err("order.payments"))?;
        let order_total = amount.checked_add(surcharge).map_err(money_err("order.amount"))?;
        if authorized > order_total {
            return Err(RequestError::invalid(
                "order.payments",
                format!(
                    "the payments authorize {authorized}, more than the order amount plus surcharge ({order_total})"
                ),
            ));
        }
        let mut captures = Vec::with_capacity(self.captures.len());
        for (i, c) in self.captures.into_iter().enumerate() {
            let field = format!("order.captures[{i}]");
            bounded(&format!("{field}.reference"), &c.reference, limits::MAX_ID)?;
            if let Some(pid) = &c.payment_id {
                bounded(&format!("{field}.payment_id"), pid, limits::MAX_ID)?;
            }
            if let Some(pid) = &c.payment_id
                && !payments.iter().any(|p| &p.id == pid)
            {
                return Err(RequestError::invalid(
                    format!("{field}.payment_id"),
                    format!("`{pid}` is not a payment of the order"),
                ));
            }
            let af = format!("{field}.amount");
            let m = not_negative(&af, Money::new(c.amount.0, currency).map_err(money_err(&af))?)?;
            captures.push(EarlierCapture { reference: c.reference, payment_id: c.payment_id, amount: m });
        }
        Ok(OrderSnapshot { id: self.id, currency, amount, surcharge, payments, captures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(amount: &str, extra: &str) -> String {
        format!(
            r#"{{"platform":"optty","idempotency_key":"k1","amount":{amount}{extra},
               "order":{{"id":"O1","currency":"USD","amount":"100.00","surcharge":5,
                         "payments":[{{"id":"p1","amount":105}}]}}}}"#
        )
    }

    fn err(text: &str) -> RequestError {
        CaptureRequest::from_json(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn full_and_exact_amounts() {
        let r = CaptureRequest::from_json(req("\"full\"", "").as_bytes()).unwrap();
        assert_eq!(r.amount, RequestedAmount::Full);
        assert_eq!(r.order.capturable().unwrap().to_decimal_string(), "105.00");
        let r = CaptureRequest::from_json(req("100.1", "").as_bytes()).unwrap();
        let RequestedAmount::Exact(m) = r.amount else { panic!("exact expected") };
        assert_eq!(m.to_decimal_string(), "100.10");
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert_eq!(err(&req("-1", "")).field(), "amount");
        assert_eq!(err(&req("0", "")).field(), "amount");
        let e = err(&req("\"10.123\"", ""));
        assert_eq!(e.to_string(), "invalid field `amount`: 10.123 has 3 decimal places but USD allows 2");
        let e = err(&req("1", "").replace("USD", "XYZ"));
        assert_eq!(e.field(), "order.currency");
        let e = err("{not json");
        assert!(matches!(e, RequestError::Malformed { .. }), "{e}");
        let e = err(&req("\"ten\"", ""));
        assert_eq!(e.field(), "amount");
        let e = err(&req("1", r#","shipping":{"company":"DHL","method":"Express"}"#));
        assert_eq!(e.field(), "shipping.tracking_number");
        let e = err(&req("1", r#","payments":[{"payment_id":"nope","amount":1}]"#));
        assert_eq!(e.field(), "payments[0].payment_id");
        let e = err(&req("2", r#","payments":[{"payment_id":"p1","amount":1}]"#));
        assert_eq!(e.field(), "payments");
        let e = err(&req("1", r#","surprise":true"#));
        assert!(e.to_string().contains("surprise"), "{e}");
        let e = err(&req("1", r#","metadata":{"score":0.5}"#));
        assert_eq!(e.field(), "metadata.score");
    }
}

impl CaptureRequest {
    /// The request in its wire form (what [`CaptureRequest::from_json`] reads), amounts as
    /// decimal strings: stored by the ledger so a capture can be resolved without its caller.
    pub fn to_wire_json(&self) -> serde_json::Value {
        // A view of borrowed fields cannot fail to become a value (string keys, no floats).
        serde_json::to_value(Wire(self)).unwrap_or(serde_json::Value::Null)
    }

    /// [`CaptureRequest::to_wire_json`] as text, written straight from the request (no value
    /// tree in between): the same text as `to_wire_json().to_string()`.
    pub fn to_wire_string(&self) -> String {
        // Serializing borrowed strings, numbers and booleans into a `Vec` cannot fail; were it
        // to, `null` keeps the text JSON (and reads back as no request, as `to_wire_json` does).
        serde_json::to_string(&Wire(self)).unwrap_or_else(|_| "null".into())
    }
}

// The wire form, borrowed. Every object's keys are written in alphabetical order, as a
// `serde_json::Value` object keeps them, so both forms above give the same text.

struct Wire<'a>(&'a CaptureRequest);

/// A money amount as its decimal string (`"100.10"`).
struct DecimalText<'a>(&'a Money);

impl Serialize for DecimalText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        s.serialize_str(self.0.write_decimal(&mut buf))
    }
}

impl Serialize for Wire<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        match &r.amount {
            RequestedAmount::Full => m.serialize_entry("amount", "full")?,
            RequestedAmount::Exact(a) => m.serialize_entry("amount", &DecimalText(a))?,
        }
        if let Some(d) = &r.description {
            m.serialize_entry("description", d)?;
        }
        m.serialize_entry("idempotency_key", &r.idempotency_key)?;
        m.serialize_entry("metadata", &r.metadata)?;
        m.serialize_entry("order", &WireOrder(&r.order))?;
        m.serialize_entry("payments", &Seq(&r.payments, |p: &PaymentAmount| WirePayment(p)))?;
        m.serialize_entry("platform", &r.platform)?;
        if let Some(sh) = &r.shipping {
            m.serialize_entry("shipping", &WireShipping(sh))?;
        }
        m.end()
    }
}

/// A slice written as a list of `view(item)`.
struct Seq<'a, T, V, F: Fn(&'a T) -> V>(&'a [T], F);

impl<'a, T, V: Serialize, F: Fn(&'a T) -> V> Serialize for Seq<'a, T, V, F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

struct WireOrder<'a>(&'a OrderSnapshot);

impl Serialize for WireOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let o = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("amount", &DecimalText(&o.amount))?;
        m.serialize_entry("captures", &Seq(&o.captures, |c: &EarlierCapture| WireCapture(c)))?;
        m.serialize_entry("currency", o.currency.code())?;
        m.serialize_entry("id", &o.id)?;
        m.serialize_entry("payments", &Seq(&o.payments, |p: &AuthorizedPayment| WireAuthorized(p)))?;
        m.serialize_entry("surcharge", &DecimalText(&o.surcharge))?;
        m.end()
    }
}

struct WirePayment<'a>(&'a PaymentAmount);

impl Serialize for WirePayment<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("amount", &DecimalText(&self.0.amount))?;
        m.serialize_entry("payment_id", &self.0.payment_id)?;
        m.end()
    }
}

struct WireAuthorized<'a>(&'a AuthorizedPayment);

impl Serialize for WireAuthorized<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("amount", &DecimalText(&p.amount))?;
        m.serialize_entry("id", &p.id)?;
        m.serialize_entry("method", &p.method)?;
        m.serialize_entry("partial_capture", &p.partial_capture)?;
        m.end()
    }
}

struct WireCapture<'a>(&'a EarlierCapture);

impl Serialize for WireCapture<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let c = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("amount", &DecimalText(&c.amount))?;
        m.serialize_entry("payment_id", &c.payment_id)?;
        m.serialize_entry("reference", &c.reference)?;
        m.end()
    }
}

struct WireShipping<'a>(&'a ShippingInfo);

impl Serialize for WireShipping<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let sh = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("company", &sh.company)?;
        m.serialize_entry("method", &sh.method)?;
        m.serialize_entry("tracking_number", &sh.tracking_number)?;
        m.end()
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    /// The wire form as a value tree built field by field (how it was written before the
    /// borrowed view): the reference the view must match byte for byte.
    fn reference_wire(r: &CaptureRequest) -> serde_json::Value {
        use serde_json::{Value, json};
        let money = |m: &Money| Value::String(m.to_decimal_string());
        let mut out = json!({
            "platform": r.platform,
            "idempotency_key": r.idempotency_key,
            "amount": match r.amount { RequestedAmount::Full => Value::String("full".into()), RequestedAmount::Exact(m) => money(&m) },
            "payments": r.payments.iter().map(|p| json!({"payment_id": p.payment_id, "amount": money(&p.amount)})).collect::<Vec<_>>(),
            "metadata": r.metadata,
            "order": {
                "id": r.order.id,
                "currency": r.order.currency.code(),
                "amount": money(&r.order.amount),
                "surcharge": money(&r.order.surcharge),
                "payments": r.order.payments.iter().map(|p| json!({
                    "id": p.id, "amount": money(&p.amount), "method": p.method, "partial_capture": p.partial_capture,
                })).collect::<Vec<_>>(),
                "captures": r.order.captures.iter().map(|c| json!({
                    "reference": c.reference, "payment_id": c.payment_id, "amount": money(&c.amount),
                })).collect::<Vec<_>>(),
            },
        });
        if let Some(d) = &r.description {
            out["description"] = Value::String(d.clone());
        }
        if let Some(s) = &r.shipping {
            out["shipping"] =
                json!({"company": s.company, "method": s.method, "tracking_number": s.tracking_number});
        }
        out
    }

    #[test]
    fn the_wire_text_is_the_reference_value_tree_byte_for_byte() {
        let requests: [&[u8]; 4] = [
            br#"{"platform":"optty","idempotency_key":"k1","amount":50.1,"description":"d",
                "shipping":{"company":"DHL","method":"Express","tracking_number":"T"},
                "metadata":{"n":3,"b":true,"s":"x","z":-9223372036854775808},
                "order":{"id":"O1","currency":"USD","amount":"100.00","surcharge":5,
                         "payments":[{"id":"p1","amount":104.99,"method":"afterpay","partial_capture":true},
                                     {"id":"p2","amount":"0.01"}],
                         "captures":[{"reference":"r","payment_id":"p1","amount":"1.00"},
                                     {"reference":"r2","amount":"2.00"}]}}"#,
            br#"{"platform":"wix","idempotency_key":"k","amount":"full",
                "order":{"id":"O","currency":"JPY","amount":"100","payments":[{"id":"p","amount":"100"}]}}"#,
            br#"{"platform":"optty","idempotency_key":"\"quoted\"\\<&>","amount":"1.00",
                "payments":[{"payment_id":"p\\1\"","amount":"1.00"}],
                "description":"</script> \"q\" \\ \u00e9 \ud83d\ude00","metadata":{"\"key\"":"\\","\u043a\u043b\u044e\u0447":false},
                "order":{"id":"..","currency":"EUR","amount":"1.00","payments":[{"id":"p\\1\"","amount":"1.00","partial_capture":false}]}}"#,
            br#"{"platform":"bigcommerce","idempotency_key":"k","amount":"0.001",
                "order":{"id":"1","currency":"BHD","amount":"1.000","surcharge":"0.125","payments":[{"id":"p","amount":"1.125"}]}}"#,
        ];
        for text in requests {
            let req = CaptureRequest::from_json(text).expect("a valid request");
            let reference = reference_wire(&req).to_string();
            assert_eq!(req.to_wire_string(), reference);
            assert_eq!(req.to_wire_json().to_string(), reference);
            assert_eq!(CaptureRequest::from_json(req.to_wire_string().as_bytes()).expect("reads back"), req);
        }
    }

    #[test]
    fn wire_form_round_trips() {
        let text = br#"{"platform":"optty","idempotency_key":"k1","amount":50.1,"description":"d",
            "shipping":{"company":"DHL","method":"Express","tracking_number":"T"},
            "metadata":{"n":3,"b":true,"s":"x"},
            "order":{"id":"O1","currency":"USD","amount":"100.00","surcharge":5,
                     "payments":[{"id":"p1","amount":105,"method":"afterpay","partial_capture":true}],
                     "captures":[{"reference":"r","payment_id":"p1","amount":"1.00"}]}}"#;
        let req = CaptureRequest::from_json(text).unwrap();
        let again = CaptureRequest::from_json(req.to_wire_json().to_string().as_bytes()).unwrap();
        assert_eq!(again, req);
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    const GOOD: &str = r#"{"platform":"optty","idempotency_key":"k1","amount":"10.00",
        "order":{"id":"O1","currency":"USD","amount":"100.00",
                 "payments":[{"id":"p1","amount":"100.00"}]}}"#;

    /// A request with `field` (a JSON fragment `"key": value` placed in the top-level object,
    /// or a replacement of the order id) and what the error must say.
    fn with_top(extra: &str) -> String {
        GOOD.replacen('{', &format!("{{{extra},"), 1)
    }

    fn with_order_id(id: &str) -> String {
        GOOD.replace(r#""id":"O1""#, &format!(r#""id":{}"#, serde_json::Value::String(id.into())))
    }

    /// `input` is refused, naming `field`, with `words` in the message.
    fn check(case: &str, input: &[u8], field: &str, words: &str) {
        let e = CaptureRequest::from_json(input).expect_err(case);
        // A path into nested JSON goes deeper than the field (`metadata.a[0][0]...`).
        assert!(e.field() == field || e.field().starts_with(&format!("{field}[")), "{case}: {e}");
        assert!(e.to_string().contains(words), "{case}: `{e}` should say `{words}`");
    }

    #[test]
    fn hostile_requests_are_refused_naming_the_field_and_the_limit() {
        assert!(CaptureRequest::from_json(GOOD.as_bytes()).is_ok());
        assert!(CaptureRequest::from_json(format!(" \n{GOOD}\n\t ").as_bytes()).is_ok(), "whitespace");
        let big = |n: usize| "a".repeat(n);
        let many = |n: usize, item: &dyn Fn(usize) -> String| (0..n).map(item).collect::<Vec<_>>().join(",");
        let cases: Vec<(&str, String, &str, &str)> = vec![
            ("trailing garbage", format!("{GOOD}this is not JSON {{{{{{"), ".", "input continues after"),
            ("two documents", format!("{GOOD}{GOOD}"), ".", "exactly one JSON document"),
            ("a second value", format!("{GOOD} 1"), ".", "trailing characters"),
            ("document over 1 MiB", format!("{GOOD}{}", " ".repeat(1 << 20)), ".", "limit is 1048576 bytes"),
            ("order id of 10 MB", with_order_id(&big(10_000_000)), ".", "limit is 1048576 bytes"),
            ("order id of 256 bytes", with_order_id(&big(256)), "order.id", "limit is 255 bytes"),
            ("order id with NUL", with_order_id("O\u{0}1"), "order.id", "U+0000"),
            ("order id with CR LF", with_order_id("O1\r\nX-Injected: 1"), "order.id", "U+000D"),
            ("order id with ESC", with_order_id("\u{1b}[2J"), "order.id", "U+001B"),
            ("order id with RLO", with_order_id("O\u{202e}1"), "order.id", "U+202E"),
            ("key with NUL", GOOD.replace("\"k1\"", "\"k\\u0000\""), "idempotency_key", "U+0000"),
            ("key with CR LF", GOOD.replace("\"k1\"", "\"k\\r\\n1\""), "idempotency_key", "U+000D"),
            ("key with RLO", GOOD.replace("\"k1\"", "\"k\u{202e}1\""), "idempotency_key", "U+202E"),
            ("key with a space", GOOD.replace("\"k1\"", "\"k 1\""), "idempotency_key", "U+0020"),
            ("key with é", GOOD.replace("\"k1\"", "\"clé\""), "idempotency_key", "U+00E9"),
            (
                "key of 256 bytes",
                GOOD.replace("\"k1\"", &format!("\"{}\"", big(256))),
                "idempotency_key",
                "limit is 255",
            ),
            (
                "platform of 65 bytes",
                GOOD.replace("\"optty\"", &format!("\"{}\"", big(65))),
                "platform",
                "limit is 64",
            ),
            (
                "description over 1000",
                with_top(&format!(r#""description":"{}""#, big(1001))),
                "description",
                "limit is 1000",
            ),
            (
                "description with ESC",
                with_top(r#""description":"\u001b]0;owned\u0007""#),
                "description",
                "U+001B",
            ),
            (
                "251 order payments",
                GOOD.replace(
                    r#"[{"id":"p1","amount":"100.00"}]"#,
                    &format!("[{}]", many(251, &|i| format!(r#"{{"id":"p{i}","amount":"1.00"}}"#))),
                ),
                "order.payments",
                "limit is 250",
            ),
            (
                "251 payments",
                with_top(&format!(
                    r#""payments":[{}]"#,
                    many(251, &|_| r#"{"payment_id":"p1","amount":"1.00"}"#.to_owned())
                )),
                "payments",
                "limit is 250",
            ),
            (
                "1001 earlier captures",
                GOOD.replace(
                    r#""payments":[{"id":"p1""#,
                    &format!(
                        r#""captures":[{}],"payments":[{{"id":"p1""#,
                        many(1001, &|i| format!(r#"{{"reference":"r{i}","amount":"0.01"}}"#))
                    ),
                ),
                "order.captures",
                "limit is 1000",
            ),
            (
                "payment method of 65",
                GOOD.replace(r#""id":"p1","#, &format!(r#""id":"p1","method":"{}","#, big(65))),
                "order.payments[0].method",
                "limit is 64",
            ),
            (
                "payment id with LF",
                GOOD.replace(r#""id":"p1""#, r#""id":"p\n1""#),
                "order.payments[0].id",
                "U+000A",
            ),
            (
                "65 metadata keys",
                with_top(&format!(r#""metadata":{{{}}}"#, many(65, &|i| format!(r#""k{i}":1"#)))),
                "metadata",
                "limit is 64",
            ),
            (
                "metadata key of 65",
                with_top(&format!(r#""metadata":{{"{}":1}}"#, big(65))),
                "metadata (a key)",
                "limit is 64",
            ),
            (
                "metadata value over 1 KiB",
                with_top(&format!(r#""metadata":{{"k":"{}"}}"#, big(1025))),
                "metadata.k",
                "limit is 1024",
            ),
            (
                "metadata over 16 KiB",
                with_top(&format!(
                    r#""metadata":{{{}}}"#,
                    many(20, &|i| format!(r#""k{i}":"{}""#, big(1000)))
                )),
                "metadata",
                "16384 bytes",
            ),
            ("nested metadata", with_top(r#""metadata":{"a":{"b":1}}"#), "metadata.a", "depth of 1"),
            ("metadata value with NUL", with_top(r#""metadata":{"a":"x\u0000"}"#), "metadata.a", "U+0000"),
            (
                "shipping field over 255",
                with_top(&format!(
                    r#""shipping":{{"company":"DHL","method":"x","tracking_number":"{}"}}"#,
                    big(256)
                )),
                "shipping.tracking_number",
                "limit is 255",
            ),
            (
                "capture reference over 255",
                GOOD.replace(
                    r#""payments":[{"id":"p1""#,
                    &format!(
                        r#""captures":[{{"reference":"{}","amount":"1.00"}}],"payments":[{{"id":"p1""#,
                        big(256)
                    ),
                ),
                "order.captures[0].reference",
                "limit is 255",
            ),
            (
                "deep nesting",
                with_top(&format!(r#""metadata":{{"a":{}{}}}"#, "[".repeat(200), "]".repeat(200))),
                "metadata.a",
                "recursion limit",
            ),
        ];
        for (case, input, field, words) in &cases {
            check(case, input.as_bytes(), field, words);
        }
    }
}
