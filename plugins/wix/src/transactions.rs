//! Reading Wix's `orderTransactions` (the 200 answer of the capture route and of "List
//! Transactions For Single Order") into one canonical result for a set of payments.
//!
//! Only what the result needs is read, leniently (unknown fields are ignored): each payment's `id`
//! and `regularPaymentDetails.authorizationDetails.captures[]` with their `id`, `status`, `amount`
//! and `createdDate`. Amounts are read from their decimal text, never through a float.

use capture_connector_api::{CaptureResult, FailureKind, HttpResponse, ResultStatus};
use capture_core::{Currency, ExactDecimal, Money};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionsBody {
    order_transactions: Option<OrderTransactions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderTransactions {
    order_id: Option<String>,
    #[serde(default)]
    payments: Vec<Payment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payment {
    id: Option<String>,
    regular_payment_details: Option<RegularPaymentDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegularPaymentDetails {
    status: Option<String>,
    authorization_details: Option<AuthorizationDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationDetails {
    #[serde(default)]
    captures: Vec<Capture>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Capture {
    id: Option<String>,
    status: Option<String>,
    amount: Option<Price>,
    created_date: Option<String>,
}

#[derive(Deserialize)]
struct Price {
    amount: Option<ExactDecimal>,
}

impl Payment {
    fn captures(&self) -> &[Capture] {
        self.regular_payment_details
            .as_ref()
            .and_then(|d| d.authorization_details.as_ref())
            .map_or(&[], |a| a.captures.as_slice())
    }

    fn status(&self) -> &str {
        self.regular_payment_details.as_ref().and_then(|d| d.status.as_deref()).unwrap_or("unknown")
    }

    fn is(&self, id: &str) -> bool {
        self.id.as_deref().is_some_and(|own| own.eq_ignore_ascii_case(id))
    }
}

/// Which captures a result is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Selection<'a> {
    /// Each payment's newest capture (by `createdDate`; on a tie, the later entry).
    NewestPerPayment,
    /// Exactly these capture ids (from an earlier result's `platform_capture_id`).
    Ids(&'a [String]),
}

/// A capture picked for the result, with its payment.
struct Picked<'a> {
    payment: &'a str,
    capture: &'a Capture,
}

impl Picked<'_> {
    fn id(&self) -> &str {
        self.capture.id.as_deref().unwrap_or("(no id)")
    }

    fn status(&self) -> String {
        self.capture.status.as_deref().unwrap_or("").to_ascii_uppercase()
    }

    fn describe(&self) -> String {
        format!(
            "capture {} of payment {} is {}",
            self.id(),
            self.payment,
            self.capture.status.as_deref().unwrap_or("without status")
        )
    }
}

/// The result of a 2xx answer carrying `orderTransactions`.
///
/// `payment_ids` are the payments the result is about (empty: every payment with a capture).
/// `after_capture` says the answer is the capture route's: anything missing there means the
/// outcome is unknown (money may have moved); for a status query, a missing capture means nothing
/// was captured (`not_found`).
pub(crate) fn read_transactions(
    response: &HttpResponse,
    order_id: &str,
    payment_ids: &[&str],
    currency: Currency,
    selection: Selection<'_>,
    after_capture: bool,
) -> CaptureResult {
    let status = response.status;
    // What a missing piece means: unknown after a capture, not found on a status read.
    let missing = |message: String| {
        if after_capture {
            CaptureResult::failure(
                FailureKind::OutcomeUnknown,
                false,
                status.to_string(),
                format!(
                    "{message}; the capture may have been applied: read the order's transactions before retrying"
                ),
                None,
            )
        } else {
            CaptureResult::failure(FailureKind::NotFound, false, status.to_string(), message, None)
        }
    };
    let unreadable = |problem: String| {
        CaptureResult::failure(
            FailureKind::OutcomeUnknown,
            false,
            status.to_string(),
            format!(
                "Wix answered {status} but its orderTransactions could not be read ({problem}); read the order's transactions before retrying"
            ),
            None,
        )
    };
    let body: TransactionsBody = match serde_json::from_str(&response.body) {
        Ok(b) => b,
        Err(e) => return unreadable(e.to_string()),
    };
    let Some(tx) = body.order_transactions else {
        return unreadable("no `orderTransactions` object".into());
    };
    if let Some(answered) = tx.order_id.as_deref()
        && !answered.eq_ignore_ascii_case(order_id)
    {
        return unreadable(format!("it is about order {answered}, not {order_id}"));
    }

    // The payments the result is about.
    let mut payments: Vec<(&str, &Payment)> = Vec::new();
    if payment_ids.is_empty() {
        payments.extend(
            tx.payments
                .iter()
                .filter(|p| !p.captures().is_empty())
                .map(|p| (p.id.as_deref().unwrap_or(""), p)),
        );
        if payments.is_empty() {
            return missing(format!("order {order_id} has no capture"));
        }
    } else {
        for id in payment_ids {
            match tx.payments.iter().find(|p| p.is(id)) {
                Some(p) => payments.push((id, p)),
                None => return missing(format!("payment {id} is not among order {order_id}'s transactions")),
            }
        }
    }

    // The captures the result is about.
    let mut picked: Vec<Picked<'_>> = Vec::new();
    match selection {
        Selection::NewestPerPayment => {
            for (id, p) in &payments {
                let newest = p
                    .captures()
                    .iter()
                    .enumerate()
                    .max_by(|(i, a), (j, b)| {
                        (a.created_date.as_deref().unwrap_or(""), i)
                            .cmp(&(b.created_date.as_deref().unwrap_or(""), j))
                    })
                    .map(|(_, c)| c);
                match newest {
                    Some(capture) => picked.push(Picked { payment: id, capture }),
                    None => {
                        return missing(format!(
                            "payment {id} has no capture (payment status {})",
                            p.status()
                        ));
                    }
                }
            }
        }
        Selection::Ids(ids) => {
            for wanted in ids {
                let found = payments.iter().find_map(|(id, p)| {
                    p.captures()
                        .iter()
                        .find(|c| c.id.as_deref().is_some_and(|cid| cid.eq_ignore_ascii_case(wanted)))
                        .map(|capture| Picked { payment: id, capture })
                });
                match found {
                    Some(p) => picked.push(p),
                    None => {
                        return missing(format!(
                            "capture {wanted} is not among order {order_id}'s transactions"
                        ));
                    }
                }
            }
        }
    }

    // Sum what was accepted (PENDING or SUCCEEDED), exactly.
    let mut total = Money::zero(currency);
    for p in picked.iter().filter(|p| matches!(p.status().as_str(), "PENDING" | "SUCCEEDED")) {
        let Some(amount) = p.capture.amount.as_ref().and_then(|a| a.amount) else {
            return unreadable(format!("capture {} has no amount", p.id()));
        };
        let amount = match Money::new(amount.0, currency) {
            Ok(m) => m,
            Err(e) => return unreadable(format!("capture {}: {e}", p.id())),
        };
        total = match total.checked_add(amount) {
            Ok(t) => t,
            Err(e) => return unreadable(e.to_string()),
        };
    }
    let ids = picked.iter().map(|p| p.id().to_owned()).collect::<Vec<_>>().join(",");

    if let Some(odd) =
        picked.iter().find(|p| !matches!(p.status().as_str(), "PENDING" | "SUCCEEDED" | "FAILED"))
    {
        return unreadable(format!("{}, a capture status the connector does not know", odd.describe()));
    }
    let failed: Vec<String> =
        picked.iter().filter(|p| p.status() == "FAILED").map(Picked::describe).collect();
    if !failed.is_empty() {
        let accepted: Vec<String> =
            picked.iter().filter(|p| p.status() != "FAILED").map(Picked::describe).collect();
        let mut message = failed.join("; ");
        if !accepted.is_empty() {
            message.push_str(&format!("; accepted for {total}: {}", accepted.join("; ")));
        }
        let mut result = CaptureResult::failure(FailureKind::InvalidState, false, "FAILED", message, None);
        result.platform_capture_id = Some(ids);
        return result;
    }
    let pending = picked.iter().any(|p| p.status() == "PENDING");
    CaptureResult {
        status: if pending { ResultStatus::Pending } else { ResultStatus::Captured },
        captured_amount: Some(total.to_decimal_string()),
        platform_capture_id: Some(ids),
        failure: None,
    }
}
