//! Orders loaded from a JSON file, for `capture sandbox --orders FILE`: one object with a key per
//! platform; a platform named in the file starts with exactly those orders (instead of its demo
//! data), the others keep their demo data. Unknown keys are refused, and every error names the
//! file and the field.
//!
//! ```json
//! {
//!   "optty": [
//!     {"orderReference": "ORD-9001", "currency": "USD", "amount": "120.00",
//!      "surcharge": "2.50", "paymentMethod": "afterpay"}
//!   ],
//!   "bigcommerce": [
//!     {"id": 900, "currency": "USD", "total": "75.00", "payment_status": "authorized"}
//!   ],
//!   "medusa": {
//!     "payments": [{"id": "pay_90", "order_id": "order_90", "amount": 7500, "currency_code": "usd"}],
//!     "orders": [{"id": "order_90", "payment_ids": ["pay_90"]}]
//!   },
//!   "wix": [
//!     {"id": "9a000000-0000-4000-8000-000000000001", "currency": "USD",
//!      "payments": [{"id": "9b000000-0000-4000-8000-000000000001", "amount": "30.00"}]}
//!   ]
//! }
//! ```
//!
//! | platform | field | meaning |
//! |---|---|---|
//! | optty | `orderReference` | the order's reference (no `/`, `?`, `#`) |
//! | optty | `currency` | ISO 4217 code |
//! | optty | `amount`, `surcharge` (default `"0"`) | decimal strings, `>= 0`, at most 2 places |
//! | optty | `paymentMethod` | one of [`crate::optty::PAYMENT_METHODS`] |
//! | bigcommerce | `id` | positive integer |
//! | bigcommerce | `currency`, `total` | ISO 4217 code; decimal string with at most the currency's places |
//! | bigcommerce | `payment_status` (default `authorized`) | `authorized`, `captured`, `capture pending`, `declined`, `void`, ... |
//! | medusa | `payments[].id`, `order_id`, `amount`, `currency_code` | the payment; `amount` an integer in minor units |
//! | medusa | `payments[].captured_at` (default none), `canceled` (default false) | its state |
//! | medusa | `orders[].id`, `payment_ids`, `canceled`, `requires_action` | the order; every payment id must be listed under `payments` |
//! | wix | `id`, `payments[].id`, `payments[].captures[].id` | GUIDs |
//! | wix | `currency`, `chargebacks` (default false) | the order |
//! | wix | `payments[].amount`, `status` (default `AUTHORIZED`) | the payment, a decimal string |
//! | wix | `payments[].captures[]`: `amount`, `status` | earlier captures: `PENDING`, `SUCCEEDED`, `FAILED` |

use std::path::Path;

use capture_core::{Currency, parse_decimal};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::bigcommerce::BigCommerceOrder;
use crate::medusa::{MedusaOrder, MedusaPayment};
use crate::optty::{OpttyOrder, PAYMENT_METHODS};
use crate::wix::{WixCapture, WixOrder, WixPayment};

/// An orders file that could not be read or is not valid; the message names the file and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("orders file {file}: {problem}")]
pub struct OrderFileError {
    /// The file.
    pub file: String,
    /// What is wrong, starting with the field's path (`optty[0].amount: ...`).
    pub problem: String,
}

/// The orders of each platform the file names (`None`: the platform keeps its demo data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFile {
    /// Optty's orders.
    pub optty: Option<Vec<OpttyOrder>>,
    /// BigCommerce's orders.
    pub bigcommerce: Option<Vec<BigCommerceOrder>>,
    /// Medusa's payments and orders.
    pub medusa: Option<(Vec<MedusaPayment>, Vec<MedusaOrder>)>,
    /// Wix's orders.
    pub wix: Option<Vec<WixOrder>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    optty: Option<Vec<OpttySpec>>,
    bigcommerce: Option<Vec<BigCommerceSpec>>,
    medusa: Option<MedusaSpec>,
    wix: Option<Vec<WixSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OpttySpec {
    order_reference: String,
    currency: String,
    amount: String,
    surcharge: Option<String>,
    payment_method: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BigCommerceSpec {
    id: u64,
    currency: String,
    total: String,
    payment_status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MedusaSpec {
    payments: Vec<MedusaPaymentSpec>,
    orders: Vec<MedusaOrderSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MedusaPaymentSpec {
    id: String,
    order_id: String,
    amount: i64,
    currency_code: String,
    captured_at: Option<String>,
    #[serde(default)]
    canceled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MedusaOrderSpec {
    id: String,
    payment_ids: Vec<String>,
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    requires_action: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WixSpec {
    id: String,
    currency: String,
    #[serde(default)]
    chargebacks: bool,
    payments: Vec<WixPaymentSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WixPaymentSpec {
    id: String,
    amount: String,
    status: Option<String>,
    #[serde(default)]
    captures: Vec<WixCaptureSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WixCaptureSpec {
    id: String,
    amount: String,
    status: String,
}

/// A decimal string `>= 0` with at most `places` places.
fn amount(field: &str, text: &str, places: u32) -> Result<Decimal, String> {
    let value = parse_decimal(text).map_err(|e| format!("{field}: `{text}` is not a decimal amount: {e}"))?;
    if value < Decimal::ZERO {
        return Err(format!("{field}: `{text}` is negative"));
    }
    if value.scale() > places {
        return Err(format!("{field}: `{text}` has more than {places} decimal places"));
    }
    Ok(value)
}

fn currency(field: &str, code: &str) -> Result<Currency, String> {
    Currency::from_code(code).map_err(|e| format!("{field}: {e}"))
}

fn guid(field: &str, id: &str) -> Result<(), String> {
    if crate::wix::is_guid(id) {
        Ok(())
    } else {
        Err(format!("{field}: `{id}` is not a GUID (8-4-4-4-12 hex digits)"))
    }
}

impl OrderFile {
    /// Reads and checks an orders file.
    pub fn load(path: &Path) -> Result<OrderFile, OrderFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| OrderFileError {
            file: path.display().to_string(),
            problem: format!("cannot read it: {e}"),
        })?;
        OrderFile::parse(&text)
            .map_err(|problem| OrderFileError { file: path.display().to_string(), problem })
    }

    /// Parses and checks the text of an orders file; the error starts with the field's path.
    pub fn parse(text: &str) -> Result<OrderFile, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let spec: FileSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) }
        })?;
        de.end().map_err(|e| format!("trailing text after the JSON object: {e}"))?;
        let mut file = OrderFile::default();
        if let Some(list) = spec.optty {
            let mut orders = Vec::new();
            for (i, o) in list.into_iter().enumerate() {
                let f = |name: &str| format!("optty[{i}].{name}");
                if o.order_reference.is_empty() || o.order_reference.contains(['/', '?', '#']) {
                    return Err(format!(
                        "{}: must be non-empty, without '/', '?' or '#'",
                        f("orderReference")
                    ));
                }
                let cur = currency(&f("currency"), &o.currency)?;
                let a = amount(&f("amount"), &o.amount, 2)?;
                let s = amount(&f("surcharge"), o.surcharge.as_deref().unwrap_or("0"), 2)?;
                if !PAYMENT_METHODS.iter().any(|(m, _)| *m == o.payment_method) {
                    let known: Vec<&str> = PAYMENT_METHODS.iter().map(|(m, _)| *m).collect();
                    return Err(format!(
                        "{}: `{}` is not one of {}",
                        f("paymentMethod"),
                        o.payment_method,
                        known.join(", ")
                    ));
                }
                orders.push(OpttyOrder::new(o.order_reference, cur.code(), a, s, o.payment_method));
            }
            file.optty = Some(orders);
        }
        if let Some(list) = spec.bigcommerce {
            let mut orders = Vec::new();
            for (i, o) in list.into_iter().enumerate() {
                let f = |name: &str| format!("bigcommerce[{i}].{name}");
                if o.id == 0 {
                    return Err(format!("{}: must be a positive integer", f("id")));
                }
                let cur = currency(&f("currency"), &o.currency)?;
                let total = amount(&f("total"), &o.total, cur.exponent())?;
                let status = o.payment_status.unwrap_or_else(|| "authorized".to_owned());
                orders.push(BigCommerceOrder::new(o.id, cur.code(), total, status));
            }
            file.bigcommerce = Some(orders);
        }
        if let Some(m) = spec.medusa {
            let mut payments = Vec::new();
            for (i, p) in m.payments.into_iter().enumerate() {
                let f = |name: &str| format!("medusa.payments[{i}].{name}");
                let cur = currency(&f("currency_code"), &p.currency_code)?;
                if p.amount < 0 {
                    return Err(format!("{}: {} is negative", f("amount"), p.amount));
                }
                let mut payment = MedusaPayment::new(&p.id, &p.order_id, p.amount, cur.code());
                payment.captured_at = p.captured_at;
                payment.canceled = p.canceled;
                payments.push(payment);
            }
            let mut orders = Vec::new();
            for (i, o) in m.orders.into_iter().enumerate() {
                for (j, id) in o.payment_ids.iter().enumerate() {
                    if !payments.iter().any(|p| &p.id == id) {
                        return Err(format!(
                            "medusa.orders[{i}].payment_ids[{j}]: `{id}` is not listed under medusa.payments"
                        ));
                    }
                }
                let ids: Vec<&str> = o.payment_ids.iter().map(String::as_str).collect();
                let mut order = MedusaOrder::new(&o.id, &ids);
                order.canceled = o.canceled;
                order.requires_action = o.requires_action;
                orders.push(order);
            }
            file.medusa = Some((payments, orders));
        }
        if let Some(list) = spec.wix {
            let mut orders = Vec::new();
            for (i, o) in list.into_iter().enumerate() {
                guid(&format!("wix[{i}].id"), &o.id)?;
                let cur = currency(&format!("wix[{i}].currency"), &o.currency)?;
                let mut payments = Vec::new();
                for (j, p) in o.payments.into_iter().enumerate() {
                    let f = |name: &str| format!("wix[{i}].payments[{j}].{name}");
                    guid(&f("id"), &p.id)?;
                    let mut captures = Vec::new();
                    for (k, c) in p.captures.into_iter().enumerate() {
                        let cf = |name: &str| format!("wix[{i}].payments[{j}].captures[{k}].{name}");
                        guid(&cf("id"), &c.id)?;
                        if !matches!(c.status.as_str(), "PENDING" | "SUCCEEDED" | "FAILED") {
                            return Err(format!(
                                "{}: `{}` is not PENDING, SUCCEEDED or FAILED",
                                cf("status"),
                                c.status
                            ));
                        }
                        let amount = amount(&cf("amount"), &c.amount, cur.exponent())?;
                        captures.push(WixCapture { id: c.id, amount, status: c.status });
                    }
                    payments.push(WixPayment {
                        id: p.id,
                        amount: amount(&f("amount"), &p.amount, cur.exponent())?,
                        status: p.status.unwrap_or_else(|| "AUTHORIZED".to_owned()),
                        captures,
                    });
                }
                orders.push(WixOrder {
                    id: o.id,
                    currency: cur.code().to_owned(),
                    payments,
                    chargebacks: o.chargebacks,
                });
            }
            file.wix = Some(orders);
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_loads() {
        let file = OrderFile::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/orders.example.json")))
            .expect("the example loads");
        let optty = file.optty.expect("optty orders");
        assert_eq!(optty[0].reference, "ORD-9001");
        assert_eq!(optty[0].surcharge, Decimal::new(250, 2));
        assert_eq!(file.bigcommerce.expect("bigcommerce")[0].total, Decimal::new(7500, 2));
        let (payments, orders) = file.medusa.expect("medusa");
        assert_eq!((payments[0].amount, orders[0].payment_ids.clone()), (7500, vec!["pay_90".to_owned()]));
        assert_eq!(file.wix.expect("wix")[0].payments[0].status, "AUTHORIZED");
    }

    /// Each bad file, and the start of the error it must give.
    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"shopify": []}"#, "shopify: unknown field `shopify`, expected one of `optty`"),
            (
                r#"{"optty": [{"orderReference": "A", "currency": "USD", "amount": "1.001", "paymentMethod": "zip"}]}"#,
                "optty[0].amount: `1.001` has more than 2 decimal places",
            ),
            (
                r#"{"optty": [{"orderReference": "A", "currency": "USD", "amount": "1", "paymentMethod": "cash"}]}"#,
                "optty[0].paymentMethod: `cash` is not one of afterpay",
            ),
            (
                r#"{"optty": [{"orderReference": "A", "currency": "USD", "amount": 1, "paymentMethod": "zip"}]}"#,
                "optty[0].amount: invalid type",
            ),
            (r#"{"bigcommerce": [{"id": 1, "currency": "XXQ", "total": "1"}]}"#, "bigcommerce[0].currency:"),
            (
                r#"{"bigcommerce": [{"id": 1, "currency": "JPY", "total": "1.5"}]}"#,
                "bigcommerce[0].total: `1.5` has more than 0 decimal places",
            ),
            (
                r#"{"medusa": {"payments": [], "orders": [{"id": "o", "payment_ids": ["pay_x"]}]}}"#,
                "medusa.orders[0].payment_ids[0]: `pay_x` is not listed under medusa.payments",
            ),
            (
                r#"{"wix": [{"id": "not-a-guid", "currency": "USD", "payments": []}]}"#,
                "wix[0].id: `not-a-guid` is not a GUID",
            ),
            (r#"{"optty": []} {"optty": []}"#, "trailing text after the JSON object"),
        ];
        for (text, expected) in cases {
            let error = OrderFile::parse(text).expect_err(text);
            assert!(
                error.starts_with(expected),
                "{text}: got `{error}`, expected it to start with `{expected}`"
            );
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = OrderFile::load(Path::new("/nonexistent/orders.json")).expect_err("no file");
        assert!(
            error.to_string().starts_with("orders file /nonexistent/orders.json: cannot read it:"),
            "{error}"
        );
    }
}
