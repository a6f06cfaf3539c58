//! `[observability]`: per-call SIP traces (kept with each call, served at `GET /v1/calls/{id}/trace`) and
//! HEPv3 export to a Homer collector (issue 22).

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawObservability {
    trace: bool,
    trace_max_messages: Spanned<u64>,
    trace_max_bytes: Spanned<u64>,
    trace_retention_days: Spanned<u64>,
    hep: Option<Spanned<String>>,
    hep_capture_id: Spanned<u64>,
}

impl Default for RawObservability {
    fn default() -> Self {
        let s = |v| Spanned::new(0..0, v);
        RawObservability {
            trace: true,
            trace_max_messages: s(500),
            trace_max_bytes: s(1 << 20),
            trace_retention_days: s(7),
            hep: None,
            hep_capture_id: s(2001),
        }
    }
}

/// The validated `[observability]` table.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Keep a SIP trace with each call.
    pub trace: bool,
    /// Messages and bytes one call's trace keeps at most; the rest is counted as left out.
    pub trace_max_messages: usize,
    pub trace_max_bytes: usize,
    pub trace_retention_days: u64,
    /// `host:port` of a HEPv3 collector over UDP (from `hep = "udp:host:port"`), resolved at start.
    pub hep: Option<String>,
    /// The HEP capture agent id sent with every packet.
    pub hep_capture_id: u32,
}

impl Default for ObservabilitySettings {
    fn default() -> Self {
        ObservabilitySettings {
            trace: true,
            trace_max_messages: 500,
            trace_max_bytes: 1 << 20,
            trace_retention_days: 7,
            hep: None,
            hep_capture_id: 2001,
        }
    }
}

impl Validator<'_> {
    pub(super) fn observability(&self, o: &RawObservability) -> Result<ObservabilitySettings, ConfigError> {
        let hep = match &o.hep {
            None => None,
            Some(v) => {
                let text = v.get_ref().trim();
                let Some(rest) = text.strip_prefix("udp:") else {
                    return self.err("observability.hep", v.span(), "expected \"udp:host:port\"");
                };
                let port_ok = rest
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !port_ok || rest.len() > 255 {
                    return self.err("observability.hep", v.span(), "expected \"udp:host:port\"");
                }
                Some(rest.to_owned())
            }
        };
        Ok(ObservabilitySettings {
            trace: o.trace,
            trace_max_messages: self.range("observability.trace_max_messages", &o.trace_max_messages, 1, 100_000)?
                as usize,
            trace_max_bytes: self.range("observability.trace_max_bytes", &o.trace_max_bytes, 1_024, 64 << 20)? as usize,
            trace_retention_days: self.range(
                "observability.trace_retention_days",
                &o.trace_retention_days,
                1,
                3_650,
            )?,
            hep,
            hep_capture_id: self.range(
                "observability.hep_capture_id",
                &o.hep_capture_id,
                0,
                u64::from(u32::MAX),
            )? as u32,
        })
    }
}
