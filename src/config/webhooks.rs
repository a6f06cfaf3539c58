//! `[webhooks]`: how the delivery worker sends the events queued in the store (issue 22 item 4).

use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebhooks {
    pub enabled: bool,
    pub poll_interval_ms: Spanned<u64>,
    pub retry_initial_ms: Spanned<u64>,
    pub retry_max_ms: Spanned<u64>,
    pub retry_window_s: Spanned<u64>,
    pub timeout_ms: Spanned<u64>,
    pub concurrency: Spanned<u64>,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        let d = WebhookSettings::default();
        let ms = |v: Duration| Spanned::new(0..0, v.as_millis() as u64);
        RawWebhooks {
            enabled: d.enabled,
            poll_interval_ms: ms(d.poll_interval),
            retry_initial_ms: ms(d.retry_initial),
            retry_max_ms: ms(d.retry_max),
            retry_window_s: Spanned::new(0..0, d.retry_window.as_secs()),
            timeout_ms: ms(d.timeout),
            concurrency: Spanned::new(0..0, d.concurrency as u64),
        }
    }
}

/// The validated `[webhooks]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Run this node's delivery worker (events are queued either way; another node may send them).
    pub enabled: bool,
    /// How often the worker looks for due deliveries when it found none.
    pub poll_interval: Duration,
    /// Wait before the second attempt; doubled after each failure up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Retried until this long after the event, then given up (`failed`).
    pub retry_window: Duration,
    /// One attempt's time limit (connect, send, answer).
    pub timeout: Duration,
    /// Deliveries in flight at once on this node.
    pub concurrency: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            enabled: true,
            poll_interval: Duration::from_millis(500),
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            retry_window: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

impl super::Validator<'_> {
    pub(super) fn webhooks(&self, raw: &RawWebhooks) -> Result<WebhookSettings, super::ConfigError> {
        let ms =
            |key: &str, v: &Spanned<u64>, min: u64, max: u64| self.range(key, v, min, max).map(Duration::from_millis);
        let retry_initial = ms("webhooks.retry_initial_ms", &raw.retry_initial_ms, 10, 86_400_000)?;
        let retry_max = ms("webhooks.retry_max_ms", &raw.retry_max_ms, 10, 86_400_000)?;
        if retry_max < retry_initial {
            return self.err(
                "webhooks.retry_max_ms",
                raw.retry_max_ms.span(),
                "must not be below webhooks.retry_initial_ms".to_owned(),
            );
        }
        Ok(WebhookSettings {
            enabled: raw.enabled,
            poll_interval: ms("webhooks.poll_interval_ms", &raw.poll_interval_ms, 10, 60_000)?,
            retry_initial,
            retry_max,
            retry_window: Duration::from_secs(self.range(
                "webhooks.retry_window_s",
                &raw.retry_window_s,
                1,
                7 * 86_400,
            )?),
            timeout: ms("webhooks.timeout_ms", &raw.timeout_ms, 100, 60_000)?,
            concurrency: self.range("webhooks.concurrency", &raw.concurrency, 1, 256)? as usize,
        })
    }
}
