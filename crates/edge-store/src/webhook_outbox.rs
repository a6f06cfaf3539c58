//! The webhook outbox: the events a call or voicemail record implies, queued as deliveries in the same
//! transaction as the record itself, so a crash can lose neither without the other.
//!
//! Events are derived from the record's state, not from what changed: `(webhook, event key)` is unique,
//! so writing a record again (the writer writes a call at start, answer and end, and closes records at a
//! restart) queues nothing twice, and a state the writer folded away (a call that rang and was answered
//! within one batch) still yields every event it implies.

use crate::calls::{CallRecord, CallStatus, Route};
use crate::error::Result;
use crate::ids::{new_id, IdKind};
use crate::time::{now_millis, rfc3339};
use crate::voicemails::VoicemailRecord;
use crate::webhooks::{parse_events, WebhookEvent};
use serde_json::{json, Value};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

/// One webhook subscribed to some events of an account.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    id: String,
    account_id: String,
    events: Vec<WebhookEvent>,
}

/// An event a record implies: its type, a key unique for that event of that record, and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub account_id: String,
    pub event: WebhookEvent,
    pub key: String,
    pub data: Value,
}

/// The call fields every call event carries.
fn call_data(rec: &CallRecord) -> Value {
    let duration_ms = match (rec.answered_at_ms, rec.ended_at_ms) {
        (Some(a), Some(e)) => (e - a).max(0),
        _ => 0,
    };
    json!({
        "call_id": rec.id,
        "direction": rec.direction,
        "carrier": rec.carrier,
        "from": rec.from,
        "to": rec.to,
        "phone_number_id": rec.phone_number_id,
        "agent_id": rec.agent_id,
        "status": rec.status.as_str(),
        "answered_by": rec.answered_by.map(Route::as_str),
        "hops": rec.hops,
        "ended_by": rec.hangup_by.map(|h| h.as_str()),
        "end_reason": rec.end_reason,
        "sip_status": rec.sip_status,
        "duration_ms": duration_ms,
        "duration_s": duration_ms / 1000,
        "created_at": rfc3339(rec.created_at_ms),
        "answered_at": rec.answered_at_ms.map(rfc3339),
        "ended_at": rec.ended_at_ms.map(rfc3339),
    })
}

/// The events `rec` implies in the order they happened: `call.ringing` once it rang (status `ringing`, or
/// answered since), `call.answered` once a leg other than voicemail answered, `call.transferred` per
/// transfer leg that answered, then `call.completed` (answered and ended, voicemail included) or
/// `call.failed` (any other end: busy, no answer, canceled, failed).
pub fn call_events(rec: &CallRecord) -> Vec<PendingEvent> {
    let mut out = Vec::new();
    let answered_by_leg = rec.answered_at_ms.is_some() && rec.answered_by != Some(Route::Voicemail);
    let mut push = |event: WebhookEvent, key: String, data: Value| {
        out.push(PendingEvent {
            account_id: rec.account_id.clone(),
            event,
            key,
            data,
        })
    };
    let ringing = rec.status == CallStatus::Ringing || answered_by_leg;
    if ringing || rec.status.is_final() || rec.status == CallStatus::InProgress {
        // Built once, shared by the events of this version of the record.
        let data = call_data(rec);
        if ringing {
            push(WebhookEvent::CallRinging, format!("{}:ringing", rec.id), data.clone());
        }
        if answered_by_leg {
            push(WebhookEvent::CallAnswered, format!("{}:answered", rec.id), data.clone());
        }
        for (i, hop) in rec.hops.iter().enumerate() {
            if hop.route == Route::Transfer && hop.outcome == "answered" {
                let mut d = data.clone();
                if let Some(o) = d.as_object_mut() {
                    o.insert("transfer".into(), json!(hop));
                }
                push(WebhookEvent::CallTransferred, format!("{}:transferred:{i}", rec.id), d);
            }
        }
        if rec.status.is_final() {
            let (event, key) = if rec.status == CallStatus::Completed {
                (WebhookEvent::CallCompleted, "completed")
            } else {
                (WebhookEvent::CallFailed, "failed")
            };
            push(event, format!("{}:{key}", rec.id), data);
        }
    }
    out
}

/// The `voicemail.recorded` event of a stored voicemail; the recording is at `recording_url`, fetched with
/// the account's API key: under `public_api_url` (`[api] public_url`) when it is set, else the API path.
pub fn voicemail_event(vm: &VoicemailRecord, public_api_url: Option<&str>) -> PendingEvent {
    PendingEvent {
        account_id: vm.account_id.clone(),
        event: WebhookEvent::VoicemailRecorded,
        key: format!("{}:recorded", vm.id),
        data: json!({
            "voicemail_id": vm.id,
            "call_id": vm.call_id,
            "phone_number_id": vm.phone_number_id,
            "caller": vm.caller,
            "to": vm.to,
            "duration_ms": vm.duration_ms,
            "ended_by": vm.ended_by,
            "recording_url": format!("{}/v1/voicemails/{}/recording", public_api_url.unwrap_or(""), vm.id),
            "created_at": rfc3339(vm.created_at_ms),
        }),
    }
}

/// Accounts looked up per statement at most.
const ACCOUNTS_PER_QUERY: usize = 64;

/// The webhooks of `accounts` (distinct, any order).
pub(crate) async fn subscriptions(conn: &mut AnyConnection, accounts: &[&str]) -> Result<Vec<Subscription>> {
    let mut out = Vec::new();
    for chunk in accounts.chunks(ACCOUNTS_PER_QUERY) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Only placeholders are spliced in; values are bound.
        let sql = format!(
            "SELECT id, account_id, events FROM webhooks WHERE account_id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in chunk {
            q = q.bind(a.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let events: String = r.try_get("events")?;
            out.push(Subscription {
                id: r.try_get("id")?,
                account_id: r.try_get("account_id")?,
                events: parse_events(&events)?,
            });
        }
    }
    Ok(out)
}

/// The distinct accounts of `recs`.
pub(crate) fn accounts_of<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Queues a delivery of each event to each webhook of its account subscribed to it (an event already
/// queued for that webhook is left as it is). Runs inside the caller's transaction.
pub(crate) async fn enqueue(conn: &mut AnyConnection, subs: &[Subscription], events: &[PendingEvent]) -> Result<u64> {
    let now = now_millis();
    let mut queued = 0;
    for ev in events {
        for sub in subs
            .iter()
            .filter(|s| s.account_id == ev.account_id && s.events.contains(&ev.event))
        {
            let id = new_id(IdKind::WebhookDelivery)?;
            let body = json!({
                "id": id,
                "type": ev.event.as_str(),
                "created_at": rfc3339(now),
                "webhook_id": sub.id,
                "data": ev.data,
            })
            .to_string();
            let done = sqlx::query(
                "INSERT INTO webhook_deliveries (id, webhook_id, account_id, event_type, event_key, body, status, \
                 attempts, response_code, last_error, next_attempt_at, claimed_until, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, NULL, NULL, $7, 0, $7, $7) \
                 ON CONFLICT (webhook_id, event_key) DO NOTHING",
            )
            .bind(&id)
            .bind(&sub.id)
            .bind(&ev.account_id)
            .bind(ev.event.as_str())
            .bind(&ev.key)
            .bind(body)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            queued += done.rows_affected();
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{HangupBy, Hop};

    fn rec(status: CallStatus, answered: bool) -> CallRecord {
        CallRecord {
            id: "call_1".into(),
            account_id: "acc_1".into(),
            direction: "inbound".into(),
            carrier: "c".into(),
            from: "+15005550006".into(),
            caller_name: None,
            to: "+14155551234".into(),
            phone_number_id: None,
            status,
            answered_by: answered.then_some(Route::Primary),
            agent_id: None,
            hops: vec![],
            end_reason: None,
            hangup_by: None,
            sip_status: None,
            sip_call_id: "x@y".into(),
            error: None,
            created_at_ms: 1_000,
            answered_at_ms: answered.then_some(2_000),
            ended_at_ms: status.is_final().then_some(5_500),
            node: None,
        }
    }

    fn types(r: &CallRecord) -> Vec<&'static str> {
        call_events(r).iter().map(|e| e.event.as_str()).collect()
    }

    #[test]
    fn events_follow_the_record_state() {
        assert!(types(&rec(CallStatus::Queued, false)).is_empty());
        assert_eq!(types(&rec(CallStatus::Ringing, false)), ["call.ringing"]);
        assert_eq!(
            types(&rec(CallStatus::InProgress, true)),
            ["call.ringing", "call.answered"]
        );
        let mut done = rec(CallStatus::Completed, true);
        done.hangup_by = Some(HangupBy::Caller);
        done.hops.push(Hop {
            route: Route::Transfer,
            agent_id: None,
            target: Some("+14155550000".into()),
            sip_status: Some(200),
            outcome: "answered".into(),
            started_at_ms: 3_000,
            ended_at_ms: None,
        });
        assert_eq!(
            types(&done),
            ["call.ringing", "call.answered", "call.transferred", "call.completed"]
        );
        let completed = call_events(&done).pop().unwrap();
        assert_eq!(completed.data["duration_s"], 3);
        assert_eq!(completed.data["ended_by"], "caller");
        assert_eq!(completed.key, "call_1:completed");
        assert_eq!(types(&rec(CallStatus::Busy, false)), ["call.failed"]);
        // Voicemail answered the carrier, not an agent: no call.answered.
        let mut vm = rec(CallStatus::NoAnswer, true);
        vm.answered_by = Some(Route::Voicemail);
        assert_eq!(types(&vm), ["call.failed"]);
    }
}
