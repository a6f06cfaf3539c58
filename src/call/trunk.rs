//! Which trunk carries an outbound call, and what its refusals mean to the user.
//!
//! A bring-your-own number uses its own `provider_config` (address and digest credentials), else its
//! account's integration `metadata.sip_trunk`; a purchased number uses the operator's `[[outbound.trunks]]`
//! entry for its provider. Failures are turned into a status word and an error a user can act on, keeping
//! the carrier's own words (reason phrase, `X-Twilio-Error`).

use edge_contract::{TrunkParams, TrunkRefusal};
use edge_store::{CallError, CallStatus, NumberRoute, Provider, RoutingIndex};
use sip_core::message::{HeaderName, Message};

use crate::config::OutboundSettings;

pub use edge_contract::{TrunkAddress, TrunkTransport};

/// Where the trunk came from: named in errors so the user knows what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkSource {
    ProviderConfig,
    Integration,
    Operator,
}

impl TrunkSource {
    fn credentials_home(self) -> &'static str {
        match self {
            TrunkSource::ProviderConfig => "provider_config",
            TrunkSource::Integration => "provider_config (the integration's sip_trunk carries no credentials)",
            TrunkSource::Operator => "the operator's [[outbound.trunks]] entry",
        }
    }
}

/// The trunk chosen for one call.
#[derive(Clone)]
pub struct TrunkChoice {
    pub address: TrunkAddress,
    pub username: Option<String>,
    pub password: Option<String>,
    pub provider: Provider,
    pub source: TrunkSource,
    pub cps: f64,
}

impl std::fmt::Debug for TrunkChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkChoice")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("provider", &self.provider)
            .field("source", &self.source)
            .field("cps", &self.cps)
            .finish_non_exhaustive()
    }
}

impl TrunkChoice {
    /// Pacing is per trunk host (Twilio counts CPS per trunk, Telnyx per source toward its host).
    pub fn pacing_key(&self) -> String {
        self.address.host.to_ascii_lowercase()
    }
}

fn error(code: &str, message: impl Into<String>) -> CallError {
    CallError {
        code: code.into(),
        message: message.into(),
    }
}

/// The trunk for a call from `number`.
pub fn choose(number: &NumberRoute, index: &RoutingIndex, cfg: &OutboundSettings) -> Result<TrunkChoice, TrunkRefusal> {
    let cps = cfg.default_cps_for(number.provider);
    if let Some(pc) = &number.provider_config {
        let address = TrunkAddress::parse(&pc.trunk_address, TrunkParams::Transport)
            .map_err(TrunkRefusal::InvalidProviderConfig)?;
        return Ok(TrunkChoice {
            address,
            username: pc.auth_username.clone(),
            password: pc.auth_password.as_ref().map(|s| s.expose().to_owned()),
            provider: number.provider,
            source: TrunkSource::ProviderConfig,
            cps,
        });
    }
    if let Some(host) = index.integration_trunk(&number.account_id, number.provider) {
        let address = TrunkAddress::parse(&host, TrunkParams::Transport).map_err(TrunkRefusal::InvalidIntegration)?;
        return Ok(TrunkChoice {
            address,
            username: None,
            password: None,
            provider: number.provider,
            source: TrunkSource::Integration,
            cps,
        });
    }
    if let Some(t) = cfg.operator_trunk(number.provider) {
        let address = TrunkAddress::parse(&t.address, TrunkParams::Transport).map_err(TrunkRefusal::InvalidOperator)?;
        return Ok(TrunkChoice {
            address,
            username: t.username.clone(),
            password: t.password.clone(),
            provider: number.provider,
            source: TrunkSource::Operator,
            cps: t.cps.unwrap_or(cps),
        });
    }
    Err(TrunkRefusal::Missing {
        number: number.phone_number.clone(),
        provider: number.provider,
    })
}

/// What a final failure from the trunk means: the call's status word and the error shown to the user.
pub fn classify(status: u16, resp: Option<&Message>, trunk: &TrunkChoice, to: &str) -> (CallStatus, CallError) {
    let reason = resp.and_then(|r| r.reason()).unwrap_or("").trim().to_owned();
    let said = if reason.is_empty() {
        format!("{status}")
    } else {
        format!("{status} {reason}")
    };
    // Twilio explains its refusals in X-Twilio-Error ("32205 Geo permission ..."); keep it verbatim.
    let twilio = resp
        .and_then(|r| r.header(&HeaderName::from("X-Twilio-Error")))
        .map(|v| format!("; Twilio error {}", v.trim()))
        .unwrap_or_default();
    let (status_word, code, message) = match status {
        401 | 407 => (
            CallStatus::Failed,
            "trunk_auth_rejected",
            if trunk.username.is_some() {
                format!(
                    "trunk rejected the SIP credentials in {} ({said})",
                    trunk.source.credentials_home()
                )
            } else {
                format!(
                    "trunk asked for SIP credentials ({said}) and {} has none: set auth_username and auth_password",
                    trunk.source.credentials_home()
                )
            },
        ),
        403 => (
            CallStatus::Failed,
            "forbidden",
            if trunk.provider == Provider::Twilio {
                format!(
                    "trunk refused the call to {to} ({said}{twilio}): outbound calls to international numbers need \
                     the destination country enabled in Twilio Console under Voice > Settings > Geo Permissions"
                )
            } else {
                format!("trunk refused the call to {to} ({said}{twilio}): check the trunk's outbound permissions")
            },
        ),
        404 | 484 | 485 | 604 => (
            CallStatus::Failed,
            "invalid_destination",
            format!("{to} is not a valid destination for the trunk ({said}{twilio})"),
        ),
        486 | 600 | 603 => (CallStatus::Busy, "busy", format!("{to} is busy ({said}{twilio})")),
        408 | 480 => (
            CallStatus::NoAnswer,
            "no_answer",
            format!("{to} did not answer ({said}{twilio})"),
        ),
        487 => (CallStatus::Canceled, "canceled", format!("call canceled ({said})")),
        500 | 502 | 503 | 504 => (
            CallStatus::Failed,
            "trunk_unavailable",
            format!("trunk {} unavailable ({said}{twilio})", trunk.address.host),
        ),
        _ => (
            CallStatus::Failed,
            "trunk_error",
            format!("trunk answered {said}{twilio}"),
        ),
    };
    (status_word, error(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(provider: Provider, user: bool) -> TrunkChoice {
        TrunkChoice {
            address: TrunkAddress::parse("t.example", TrunkParams::Transport).unwrap(),
            username: user.then(|| "u".into()),
            password: user.then(|| "p".into()),
            provider,
            source: TrunkSource::ProviderConfig,
            cps: 1.0,
        }
    }

    #[test]
    fn each_failure_class_has_its_words() {
        let t = trunk(Provider::Twilio, true);
        let (s, e) = classify(401, None, &t, "+971500000000");
        assert_eq!((s, e.code.as_str()), (CallStatus::Failed, "trunk_auth_rejected"));
        assert!(e
            .message
            .contains("trunk rejected the SIP credentials in provider_config"));
        let (_, e) = classify(403, None, &t, "+971500000000");
        assert!(
            e.message.contains("Voice > Settings > Geo Permissions"),
            "{}",
            e.message
        );
        assert_eq!(classify(404, None, &t, "+1").1.code, "invalid_destination");
        assert_eq!(classify(484, None, &t, "+1").1.code, "invalid_destination");
        assert_eq!(classify(486, None, &t, "+1").0, CallStatus::Busy);
        assert_eq!(classify(600, None, &t, "+1").0, CallStatus::Busy);
        assert_eq!(classify(480, None, &t, "+1").0, CallStatus::NoAnswer);
        assert_eq!(classify(408, None, &t, "+1").0, CallStatus::NoAnswer);
        assert_eq!(classify(503, None, &t, "+1").1.code, "trunk_unavailable");
        let (_, e) = classify(401, None, &trunk(Provider::Telnyx, false), "+1");
        assert!(e.message.contains("has none"), "{}", e.message);
    }

    #[test]
    fn carrier_words_are_kept() {
        let t = trunk(Provider::Twilio, true);
        let resp = Message::parse(bytes::Bytes::from_static(
            b"SIP/2.0 403 Geo Permission Denied\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nX-Twilio-Error: 32205 Geo permission\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let (_, e) = classify(403, Some(&resp), &t, "+971500000000");
        assert!(e.message.contains("403 Geo Permission Denied"), "{}", e.message);
        assert!(e.message.contains("Twilio error 32205 Geo permission"), "{}", e.message);
    }
}
