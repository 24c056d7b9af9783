//! Request bodies: JSON parsing as Express's `body-parser` does it, and the capture DTO's
//! `class-validator` rules with their exact messages. Amounts are read from the JSON text, exactly.

use capture_core::{Currency, parse_decimal};
use rust_decimal::Decimal;
use serde_json::{Map, Number, Value};

use super::{CaptureRequest, OpttyOrder, PAYMENT_METHODS, two_places};

/// The body as the application sees it, or the parse error's message.
///
/// Like `body-parser`'s `json()` (strict): a body without a JSON content type, or an empty one, is
/// `{}`; a top-level scalar is an error.
pub(super) fn parse_json_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, String> {
    if !content_type.is_some_and(is_json_content_type) || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Ok(value),
        Ok(_) => Err("Body must be valid JSON: the top level must be an object or an array".to_owned()),
        Err(e) => Err(format!("Body must be valid JSON: {e}")),
    }
}

/// `application/json`, `application/*+json`, with or without parameters.
fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The exact value of a JSON number, from its text (`100.1`, `1e2`, `-0`); `None` if it does not fit.
pub(super) fn number_to_decimal(n: &Number) -> Option<Decimal> {
    let text = n.as_str();
    if text.contains(['e', 'E']) { Decimal::from_scientific(text).ok() } else { parse_decimal(text).ok() }
}

/// Decimal places as JavaScript counts them: trailing zeros do not count (`1.10` has 1).
fn places(d: Decimal) -> u32 {
    d.normalize().scale()
}

/// A `null` or missing property: `class-validator`'s `@IsOptional()` skips both.
fn absent(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

const AMOUNT_MIN: &str = "amount must not be less than 0";
const AMOUNT_NUMBER: &str = "amount must be a number conforming to the specified constraints";

/// Validates a capture body (`CaptureOrderDto`), listing every failure in field order.
pub(super) fn validate_capture(body: &Value) -> Result<CaptureRequest, Vec<String>> {
    let empty = Map::new();
    // An array body has none of the DTO's properties.
    let obj = body.as_object().unwrap_or(&empty);
    let mut errors = Vec::new();

    // captureReference: @IsNotEmpty() @IsString()
    let capture_reference = match obj.get("captureReference") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.push("captureReference should not be empty".to_owned());
            None
        }
        v if absent(v) => {
            errors.push("captureReference should not be empty".to_owned());
            errors.push("captureReference must be a string".to_owned());
            None
        }
        _ => {
            errors.push("captureReference must be a string".to_owned());
            None
        }
    };

    // description: @IsOptional() @IsString()
    let description = match obj.get("description") {
        Some(Value::String(s)) => Some(s.clone()),
        v if absent(v) => None,
        _ => {
            errors.push("description must be a string".to_owned());
            None
        }
    };

    // amount: @Min(0) @IsNumber({ maxDecimalPlaces: 2 })
    let amount = match obj.get("amount") {
        Some(Value::Number(n)) => match number_to_decimal(n) {
            Some(d) => {
                let negative = d < Decimal::ZERO;
                let too_precise = places(d) > 2;
                if negative {
                    errors.push(AMOUNT_MIN.to_owned());
                }
                if too_precise {
                    errors.push(AMOUNT_NUMBER.to_owned());
                }
                (!negative && !too_precise).then_some(d)
            }
            None => {
                errors.push(AMOUNT_NUMBER.to_owned());
                None
            }
        },
        // A string, boolean, object, array, null or nothing: both constraints fail.
        _ => {
            errors.push(AMOUNT_MIN.to_owned());
            errors.push(AMOUNT_NUMBER.to_owned());
            None
        }
    };

    // shippingInfo: @IsOptional() @ValidateNested() @Type(() => ShippingInfo), whose three
    // properties are each @IsString().
    let shipping_info = match obj.get("shippingInfo") {
        v if absent(v) => None,
        Some(Value::Object(info)) => {
            let mut kept = Map::new();
            for field in ["shippingCompany", "shippingMethod", "trackingNumber"] {
                match info.get(field) {
                    Some(Value::String(s)) => {
                        kept.insert(field.to_owned(), Value::String(s.clone()));
                    }
                    _ => errors.push(format!("shippingInfo.{field} must be a string")),
                }
            }
            Some(Value::Object(kept))
        }
        Some(Value::Array(_)) => {
            errors.push("shippingInfo must be an object".to_owned());
            None
        }
        _ => {
            errors.push("nested property shippingInfo must be either object or array".to_owned());
            None
        }
    };

    match (capture_reference, amount) {
        (Some(capture_reference), Some(amount)) if errors.is_empty() => {
            Ok(CaptureRequest { capture_reference, description, amount, shipping_info })
        }
        _ => Err(errors),
    }
}

/// An amount for the control API: a decimal string or a JSON number, `>= 0`, at most 2 places.
fn control_amount(name: &str, value: Option<&Value>, errors: &mut Vec<String>) -> Option<Decimal> {
    let parsed = match value {
        Some(Value::String(s)) => parse_decimal(s).ok(),
        Some(Value::Number(n)) => number_to_decimal(n),
        _ => None,
    };
    match parsed {
        Some(d) if d >= Decimal::ZERO && places(d) <= 2 => Some(two_places(d)),
        _ => {
            errors.push(format!(
                "{name} must be a non-negative decimal with at most 2 decimal places, as a string or a number"
            ));
            None
        }
    }
}

/// Validates a `POST /_sandbox/orders` body.
pub(super) fn validate_order(body: &Value) -> Result<OpttyOrder, Vec<String>> {
    let empty = Map::new();
    let obj = body.as_object().unwrap_or(&empty);
    let mut errors = Vec::new();

    let reference = match obj.get("orderReference") {
        Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', '?', '#']) => Some(s.clone()),
        _ => {
            errors.push("orderReference must be a non-empty string without '/', '?' or '#'".to_owned());
            None
        }
    };
    let currency = match obj.get("currency") {
        Some(Value::String(s)) => match Currency::from_code(s) {
            Ok(c) => Some(c.code().to_owned()),
            Err(e) => {
                errors.push(format!("currency: {e}"));
                None
            }
        },
        _ => {
            errors.push("currency must be an ISO 4217 code such as USD".to_owned());
            None
        }
    };
    let amount = control_amount("amount", obj.get("amount"), &mut errors);
    let surcharge = match obj.get("surcharge") {
        v if absent(v) => Some(two_places(Decimal::ZERO)),
        v => control_amount("surcharge", v, &mut errors),
    };
    let payment_method = match obj.get("paymentMethod") {
        Some(Value::String(s)) if PAYMENT_METHODS.iter().any(|(m, _)| m == s) => Some(s.clone()),
        _ => {
            let known: Vec<&str> = PAYMENT_METHODS.iter().map(|(m, _)| *m).collect();
            errors.push(format!("paymentMethod must be one of: {}", known.join(", ")));
            None
        }
    };

    match (reference, currency, amount, surcharge, payment_method) {
        (Some(reference), Some(currency), Some(amount), Some(surcharge), Some(payment_method))
            if errors.is_empty() =>
        {
            Ok(OpttyOrder { reference, currency, amount, surcharge, payment_method })
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(body: &str) -> Vec<String> {
        let value: Value = serde_json::from_str(body).unwrap();
        validate_capture(&value).unwrap_err()
    }

    #[test]
    fn a_valid_body_keeps_the_exact_amount_and_drops_unknown_fields() {
        let value: Value = serde_json::from_str(
            r#"{"captureReference":"c1","amount":100.1,"extra":1,
                "shippingInfo":{"shippingCompany":"UPS","shippingMethod":"Ground","trackingNumber":"1Z","x":2}}"#,
        )
        .unwrap();
        let req = validate_capture(&value).unwrap();
        assert_eq!(req.amount.to_string(), "100.1");
        assert_eq!(req.description, None);
        assert_eq!(
            req.shipping_info.unwrap(),
            serde_json::json!({"shippingCompany":"UPS","shippingMethod":"Ground","trackingNumber":"1Z"})
        );
    }

    #[test]
    fn messages_follow_the_dto_field_order() {
        assert_eq!(
            errors("{}"),
            [
                "captureReference should not be empty",
                "captureReference must be a string",
                AMOUNT_MIN,
                AMOUNT_NUMBER
            ]
        );
        assert_eq!(
            errors(r#"{"captureReference":7,"description":false,"amount":-1.234,"shippingInfo":3}"#),
            [
                "captureReference must be a string",
                "description must be a string",
                AMOUNT_MIN,
                AMOUNT_NUMBER,
                "nested property shippingInfo must be either object or array"
            ]
        );
        assert_eq!(
            errors(r#"{"captureReference":"","amount":"1.00"}"#),
            ["captureReference should not be empty", AMOUNT_MIN, AMOUNT_NUMBER]
        );
    }

    #[test]
    fn decimal_places_are_counted_like_javascript() {
        for ok in ["100", "100.1", "100.10", "100.100", "1e2", "1.5E1", "0", "-0"] {
            let body = format!(r#"{{"captureReference":"c","amount":{ok}}}"#);
            let value: Value = serde_json::from_str(&body).unwrap();
            assert!(validate_capture(&value).is_ok(), "{ok} should be accepted");
        }
        for bad in ["100.001", "0.005", "1e-3", "1e40"] {
            assert_eq!(
                errors(&format!(r#"{{"captureReference":"c","amount":{bad}}}"#)),
                [AMOUNT_NUMBER],
                "{bad}"
            );
        }
    }

    #[test]
    fn body_parser_rules() {
        let json = Some("application/json; charset=utf-8");
        assert_eq!(parse_json_body(None, b"{\"a\":1}").unwrap(), serde_json::json!({}));
        assert_eq!(parse_json_body(Some("text/plain"), b"{").unwrap(), serde_json::json!({}));
        assert_eq!(parse_json_body(json, b"").unwrap(), serde_json::json!({}));
        assert_eq!(parse_json_body(Some("application/vnd.x+json"), b"[]").unwrap(), serde_json::json!([]));
        assert!(parse_json_body(json, b"{\"a\":").unwrap_err().starts_with("Body must be valid JSON"));
        assert!(parse_json_body(json, b"12").is_err());
    }

    #[test]
    fn control_orders_accept_strings_and_numbers() {
        let value = serde_json::json!({"orderReference":"X-1","currency":"aud","amount":"10.5",
            "surcharge":1,"paymentMethod":"zip"});
        let order = validate_order(&value).unwrap();
        assert_eq!(order.currency, "AUD");
        assert_eq!(order.amount.to_string(), "10.50");
        assert_eq!(order.surcharge.to_string(), "1.00");
        let bad =
            serde_json::json!({"orderReference":"","currency":"XXX","amount":"1.001","paymentMethod":"cash"});
        assert_eq!(validate_order(&bad).unwrap_err().len(), 4);
    }
}
