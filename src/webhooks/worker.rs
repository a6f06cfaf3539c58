//! The delivery worker: claims due deliveries from the store (a lease, so one node sends each), POSTs
//! them signed, and writes back the outcome: delivered on 2xx, else retried with exponential back-off
//! until the retry window (24 h) is over. A task of the API's runtime; the SIP engine never waits on it.

use super::signature::{signature_header, SIGNATURE_HEADER};
use super::target::{literal_refusal, PolicyResolver};
use crate::config::WebhookSettings;
use edge_contract::TargetPolicy;
use edge_store::{AttemptOutcome, ClaimedDelivery, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The delivery's id (`whd_…`, also the body's `id`): receivers de-duplicate on it.
pub const DELIVERY_HEADER: &str = "OneInbox-Delivery";
/// The event's type (`call.completed`, ...), also the body's `type`.
pub const EVENT_HEADER: &str = "OneInbox-Event";

/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Starts the worker on the current runtime; it stops when `stop` turns true (deliveries in flight end
/// first; a claimed one not finished is re-sent by any node once its lease is over).
pub fn spawn_worker(
    store: Arc<Store>,
    settings: WebhookSettings,
    policy: TargetPolicy,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // reqwest is built without a bundled crypto provider; ring as for the providers' clients. An `Err`
    // only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = Arc::new(policy);
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        // A redirect is the receiver's misconfiguration and could point anywhere: a failed attempt.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PolicyResolver {
            policy: Arc::clone(&policy),
        }))
        .user_agent(concat!("oneinbox-edge-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let worker = Worker {
        store,
        settings,
        policy,
        client,
    };
    Ok(tokio::spawn(worker.run(stop)))
}

struct Worker {
    store: Arc<Store>,
    settings: WebhookSettings,
    policy: Arc<TargetPolicy>,
    client: reqwest::Client,
}

impl Worker {
    /// Keeps up to `concurrency` deliveries in flight: claims as many as slots are free, and again as
    /// soon as one ends; with nothing due, looks again every `poll_interval`.
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // Longer than an attempt can take, so a live worker never loses its claim mid-send.
        let lease_ms = (this.settings.timeout.as_millis() as i64).saturating_mul(2) + 5_000;
        let slots = this.settings.concurrency.max(1);
        let mut backlog_at = tokio::time::Instant::now();
        let mut warned = false;
        let mut set = tokio::task::JoinSet::new();
        while !*stop.borrow() {
            if tokio::time::Instant::now() >= backlog_at {
                backlog_at = tokio::time::Instant::now() + BACKLOG_EVERY;
                if let Ok(n) = this.store.webhook_backlog().await {
                    metrics::gauge!("edge_webhook_backlog").set(n as f64);
                }
            }
            while set.try_join_next().is_some() {}
            let free = slots.saturating_sub(set.len());
            // Claims in batches (half the slots free, or all when idle): one claim statement per many
            // deliveries rather than one per delivery.
            if free > 0 && (set.is_empty() || free * 2 >= slots) {
                match this
                    .store
                    .claim_webhook_deliveries(now_ms(), lease_ms, u32::try_from(free).unwrap_or(256))
                    .await
                {
                    Ok(claimed) => {
                        warned = false;
                        for d in claimed {
                            let w = Arc::clone(&this);
                            set.spawn(async move { w.deliver(d).await });
                        }
                    }
                    Err(e) if !warned => {
                        tracing::warn!(error = %e, "webhook deliveries not claimed (logged once until they are)");
                        warned = true;
                    }
                    Err(_) => {}
                }
            }
            if set.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(this.settings.poll_interval) => {}
                    _ = stop.changed() => {}
                }
            } else {
                tokio::select! {
                    _ = set.join_next() => {}
                    _ = tokio::time::sleep(this.settings.poll_interval) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        while set.join_next().await.is_some() {}
    }

    async fn deliver(&self, d: ClaimedDelivery) {
        let (outcome, code) = self.attempt(&d).await;
        let outcome = match outcome {
            Ok(()) => AttemptOutcome::Delivered {
                response_code: code.unwrap_or(200),
            },
            Err(error) => {
                let now = now_ms();
                let next = now.saturating_add(backoff_ms(&self.settings, d.attempts));
                let window = i64::try_from(self.settings.retry_window.as_millis()).unwrap_or(i64::MAX);
                if next > d.created_at.saturating_add(window) {
                    AttemptOutcome::GaveUp {
                        response_code: code,
                        error,
                    }
                } else {
                    AttemptOutcome::Retry {
                        response_code: code,
                        error,
                        next_attempt_at: next,
                    }
                }
            }
        };
        let label = match &outcome {
            AttemptOutcome::Delivered { .. } => "delivered",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::GaveUp { .. } => "gave_up",
        };
        metrics::counter!("edge_webhook_deliveries_total", "outcome" => label).increment(1);
        if let Err(e) = self.store.finish_webhook_delivery(&d.id, &outcome).await {
            // The lease runs out and the delivery is sent again: at least once, never lost.
            tracing::warn!(delivery = %d.id, error = %e, "webhook delivery outcome not stored");
        }
    }

    /// One POST: `Ok` on 2xx; else why, with the status when the receiver answered.
    async fn attempt(&self, d: &ClaimedDelivery) -> (Result<(), String>, Option<u16>) {
        let url = match reqwest::Url::parse(&d.url) {
            Ok(u) => u,
            Err(e) => return (Err(format!("bad URL: {e}")), None),
        };
        if let Some(kind) = url.host_str().and_then(|h| literal_refusal(&self.policy, h)) {
            return (Err(format!("points at a {kind} address (internal_target)")), None);
        }
        let t = now_ms() / 1000;
        let sig = signature_header(d.secret.expose(), t, d.body.as_bytes());
        let event = serde_json::from_str::<serde_json::Value>(&d.body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header(DELIVERY_HEADER, &d.id)
            .header(EVENT_HEADER, event)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let code = resp.status().as_u16();
                if resp.status().is_success() {
                    (Ok(()), Some(code))
                } else {
                    (Err(format!("HTTP {code}")), Some(code))
                }
            }
            Err(e) => (Err(describe(&e)), None),
        }
    }
}

/// The wait after the `attempts_before + 1`-th failed attempt: `retry_initial` doubled per earlier
/// failure, at most `retry_max`.
pub fn backoff_ms(s: &WebhookSettings, attempts_before: i64) -> i64 {
    let initial = i64::try_from(s.retry_initial.as_millis()).unwrap_or(i64::MAX);
    let max = i64::try_from(s.retry_max.as_millis()).unwrap_or(i64::MAX);
    let shift = u32::try_from(attempts_before.clamp(0, 40)).unwrap_or(40);
    initial.saturating_mul(1i64 << shift).min(max)
}

/// reqwest's error with its causes (the top one alone says only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn now_ms() -> i64 {
    edge_store::time::now_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = WebhookSettings {
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            ..WebhookSettings::default()
        };
        assert_eq!(backoff_ms(&s, 0), 10_000);
        assert_eq!(backoff_ms(&s, 1), 20_000);
        assert_eq!(backoff_ms(&s, 3), 80_000);
        assert_eq!(backoff_ms(&s, 20), 3_600_000);
        assert_eq!(backoff_ms(&s, i64::MAX), 3_600_000);
    }
}
