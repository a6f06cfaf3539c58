//! `[admission]`: how much work outsiders and agents may cost the edge (the flood limits), in the words of
//! Kamailio's `pike` (requests per source per second) and `ratelimit` (a pipe shared by a class).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};
use crate::sip::admission::AdmissionConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmission {
    stranger_requests_per_s: Spanned<f64>,
    stranger_burst: Spanned<f64>,
    strangers_total_requests_per_s: Spanned<f64>,
    agent_requests_per_s: Spanned<f64>,
    agent_burst: Spanned<f64>,
    carrier_reserved_transactions_percent: Spanned<u64>,
    tracked_sources: Spanned<u64>,
}

impl Default for RawAdmission {
    fn default() -> Self {
        let d = AdmissionConfig::default();
        let s = |v| Spanned::new(0..0, v);
        RawAdmission {
            stranger_requests_per_s: s(d.stranger_rate),
            stranger_burst: s(d.stranger_burst),
            strangers_total_requests_per_s: s(d.strangers_total_rate),
            agent_requests_per_s: s(d.agent_rate),
            agent_burst: s(d.agent_burst),
            carrier_reserved_transactions_percent: Spanned::new(0..0, u64::from(d.carrier_reserved_percent)),
            tracked_sources: Spanned::new(0..0, d.tracked_sources as u64),
        }
    }
}

impl Validator<'_> {
    fn rate(&self, key: &str, v: &Spanned<f64>, min: f64, max: f64) -> Result<f64, ConfigError> {
        let n = *v.get_ref();
        if !(min..=max).contains(&n) {
            return self.err(key, v.span(), format!("{n} is out of range {min}..={max}"));
        }
        Ok(n)
    }

    pub(super) fn admission(&self, a: &RawAdmission) -> Result<AdmissionConfig, ConfigError> {
        let stranger_rate = self.rate(
            "admission.stranger_requests_per_s",
            &a.stranger_requests_per_s,
            0.1,
            1e6,
        )?;
        let stranger_burst = self.rate("admission.stranger_burst", &a.stranger_burst, 1.0, 1e6)?;
        let agent_rate = self.rate("admission.agent_requests_per_s", &a.agent_requests_per_s, 0.1, 1e6)?;
        let agent_burst = self.rate("admission.agent_burst", &a.agent_burst, 1.0, 1e6)?;
        let total = self.rate(
            "admission.strangers_total_requests_per_s",
            &a.strangers_total_requests_per_s,
            1.0,
            1e7,
        )?;
        if total < stranger_burst {
            return self.err(
                "admission.strangers_total_requests_per_s",
                a.strangers_total_requests_per_s.span(),
                format!("{total} is less than admission.stranger_burst ({stranger_burst}): one stranger's burst would use the whole pipe"),
            );
        }
        Ok(AdmissionConfig {
            stranger_rate,
            stranger_burst,
            strangers_total_rate: total,
            agent_rate,
            agent_burst,
            tracked_sources: self.range("admission.tracked_sources", &a.tracked_sources, 16, 10_000_000)? as usize,
            voucher_ttl: Duration::from_secs(2 * 3600),
            carrier_reserved_percent: self.range(
                "admission.carrier_reserved_transactions_percent",
                &a.carrier_reserved_transactions_percent,
                0,
                90,
            )? as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("edge.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn admission_reads_as_written_with_defaults() {
        let c =
            parse("[admission]\nstranger_requests_per_s = 5\ncarrier_reserved_transactions_percent = 40\n").unwrap();
        assert_eq!(c.admission.stranger_rate, 5.0);
        assert_eq!(c.admission.carrier_reserved_percent, 40);
        assert_eq!(c.admission.agent_rate, 200.0, "default");
    }

    #[test]
    fn admission_errors_name_key_and_line() {
        let e = parse("[admission]\n\nstranger_burst = 0\n").unwrap_err();
        assert!(e.contains("edge.toml:3: key `admission.stranger_burst`"), "{e}");
        let e = parse("[admission]\ncarrier_reserved_transactions_percent = 95\n").unwrap_err();
        assert!(
            e.contains(":2: key `admission.carrier_reserved_transactions_percent`"),
            "{e}"
        );
        let e = parse("[admission]\nstranger_burst = 50\nstrangers_total_requests_per_s = 10\n").unwrap_err();
        assert!(e.contains("key `admission.strangers_total_requests_per_s`"), "{e}");
        let e = parse("[admission]\nstrangers_per_s = 10\n").unwrap_err();
        assert!(e.contains("strangers_per_s"), "misspelt keys are errors: {e}");
    }
}
