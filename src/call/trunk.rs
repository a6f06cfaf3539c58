//! Which trunk carries an outbound call, and what its refusals mean to the user.
//!
//! A bring-your-own number uses its own `provider_config` (address, digest credentials and the carrier's
//! own identification: Telnyx's tech prefix, `X-Telnyx-Token`, `P-Charge-Info`), else its account's
//! integration `metadata.sip_trunk`; a purchased number uses the operator's `[[outbound.trunks]]` entry for
//! its provider. Failures are turned into a status word and an error a user can act on, keeping the
//! carrier's own words (reason phrase, `X-Twilio-Error`).

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
    /// Digits put before the dialled number, whose `+` is then dropped (Telnyx IP connections).
    pub tech_prefix: Option<String>,
    /// Sent as `X-Telnyx-Token` (Telnyx IP connections).
    pub token: Option<String>,
    /// Send `P-Charge-Info` with the caller's number (Telnyx IP connections).
    pub p_charge_info: bool,
    /// The client certificate shown over TLS (the operator trunk's `tls_client_certificate`).
    pub tls_identity: Option<String>,
    /// A customer trunk's own client certificate (`provider_config.tls_client_certificate`).
    pub tls_client: Option<std::sync::Arc<edge_store::TrunkClientCert>>,
    /// SRTP toward the trunk (`provider_config.media_encryption`, an operator trunk's `media_encryption`;
    /// `none` for integration trunks).
    pub media_encryption: edge_store::MediaEncryption,
}

impl std::fmt::Debug for TrunkChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkChoice")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("provider", &self.provider)
            .field("source", &self.source)
            .field("cps", &self.cps)
            .field("tech_prefix", &self.tech_prefix)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("p_charge_info", &self.p_charge_info)
            .field("tls_identity", &self.tls_identity)
            .field("tls_client", &self.tls_client.as_ref().map(|c| &c.fingerprint))
            .finish_non_exhaustive()
    }
}

impl TrunkChoice {
    /// Pacing is per trunk host (Twilio counts CPS per trunk, Telnyx per source toward its host).
    pub fn pacing_key(&self) -> String {
        self.address.host.to_ascii_lowercase()
    }

    /// The user part of the Request-URI and To for `dest` (E.164): the number itself, or behind a tech
    /// prefix the prefix then the digits (Telnyx: `1234` + `+18005678912` -> `123418005678912`).
    pub fn dial_string(&self, dest: &str) -> String {
        match &self.tech_prefix {
            Some(p) => format!("{p}{}", dest.trim_start_matches('+')),
            None => dest.to_owned(),
        }
    }

    /// Headers the carrier wants on every INVITE (not only after a challenge): Telnyx's
    /// `X-Telnyx-Username` (its guides for AI platforms: the digest username, so a credential or FQDN
    /// connection finds its account), `X-Telnyx-Token` and `P-Charge-Info` for IP connections.
    pub fn carrier_headers(&self, caller: &str) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if self.provider != Provider::Telnyx {
            return h;
        }
        if let Some(u) = &self.username {
            h.push(("X-Telnyx-Username", u.clone()));
        }
        if let Some(t) = &self.token {
            h.push(("X-Telnyx-Token", t.clone()));
        }
        if self.p_charge_info {
            h.push(("P-Charge-Info", format!("<sip:{caller}@{}>", self.address.hostport())));
        }
        h
    }

    /// What the trunk was given to know the call by, for refusals: "the SIP credentials", "the tech prefix"...
    fn identification(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.username.is_some() {
            v.push("auth_username/auth_password");
        }
        if self.tech_prefix.is_some() {
            v.push("tech_prefix");
        }
        if self.token.is_some() {
            v.push("ip_auth_token");
        }
        if self.p_charge_info {
            v.push("p_charge_info");
        }
        v
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
            tech_prefix: pc.tech_prefix.clone(),
            token: pc.ip_auth_token.as_ref().map(|s| s.expose().to_owned()),
            p_charge_info: pc.p_charge_info,
            tls_identity: None,
            tls_client: pc.tls_client.clone(),
            media_encryption: pc.media_encryption,
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
            tech_prefix: None,
            token: None,
            p_charge_info: false,
            tls_identity: None,
            tls_client: None,
            media_encryption: edge_store::MediaEncryption::None,
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
            tech_prefix: None,
            token: None,
            p_charge_info: false,
            tls_identity: t.tls_identity.clone(),
            tls_client: None,
            media_encryption: match t.media_encryption {
                edge_media::MediaEncryption::None => edge_store::MediaEncryption::None,
                edge_media::MediaEncryption::Srtp => edge_store::MediaEncryption::Srtp,
                edge_media::MediaEncryption::SrtpRequired => edge_store::MediaEncryption::SrtpRequired,
            },
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
    let telnyx = trunk.provider == Provider::Telnyx;
    let ids = trunk.identification();
    let (status_word, code, message) = match status {
        401 | 407 if trunk.username.is_some() => (
            CallStatus::Failed,
            "trunk_auth_rejected",
            format!(
                "trunk rejected the SIP credentials in {} ({said})",
                trunk.source.credentials_home()
            ),
        ),
        // Telnyx answers 407 to an IP-connection call without (or with a wrong) tech prefix or token.
        401 | 407 if telnyx && !ids.is_empty() => (
            CallStatus::Failed,
            "trunk_auth_rejected",
            format!(
                "trunk did not accept the call ({said}) with provider_config.{}: check it against the Telnyx \
                 IP connection's authentication settings (tech prefix or token) and that the edge's address is \
                 on that connection",
                ids.join(", provider_config.")
            ),
        ),
        401 | 407 if telnyx => (
            CallStatus::Failed,
            "trunk_auth_rejected",
            format!(
                "trunk asked the call to authenticate ({said}) and {} has nothing for it: for a Telnyx \
                 credential or FQDN connection set auth_username and auth_password; for an IP connection the \
                 tech_prefix or ip_auth_token it requires",
                trunk.source.credentials_home()
            ),
        ),
        401 | 407 => (
            CallStatus::Failed,
            "trunk_auth_rejected",
            format!(
                "trunk asked for SIP credentials ({said}) and {} has none: set auth_username and auth_password",
                trunk.source.credentials_home()
            ),
        ),
        // A Telnyx IP connection refuses a missing or wrong X-Telnyx-Token.
        403 if telnyx && trunk.username.is_none() => (
            CallStatus::Failed,
            "forbidden",
            if ids.is_empty() {
                format!(
                    "trunk refused the call to {to} ({said}): a Telnyx IP connection with token authentication \
                     needs provider_config.ip_auth_token (sent as X-Telnyx-Token), one with P-Charge-Info \
                     authentication provider_config.p_charge_info; otherwise check the edge's address on the \
                     connection and its outbound voice profile"
                )
            } else {
                format!(
                    "trunk refused the call to {to} ({said}) with provider_config.{}: check it against the \
                     Telnyx IP connection's authentication settings, the edge's address on that connection and \
                     its outbound voice profile",
                    ids.join(", provider_config.")
                )
            },
        ),
        403 => (
            CallStatus::Failed,
            "forbidden",
            if trunk.provider == Provider::Twilio {
                // Termination without a credential list accepts only addresses on its IP access control list.
                let acl = if trunk.username.is_none() {
                    "; with no auth_username/auth_password, the trunk's Termination must list the edge's public \
                     address in an IP Access Control List"
                } else {
                    ""
                };
                format!(
                    "trunk refused the call to {to} ({said}{twilio}): outbound calls to international numbers need \
                     the destination country enabled in Twilio Console under Voice > Settings > Geo Permissions{acl}"
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
            tech_prefix: None,
            token: None,
            p_charge_info: false,
            tls_identity: None,
            tls_client: None,
            media_encryption: edge_store::MediaEncryption::None,
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
        let (_, e) = classify(401, None, &trunk(Provider::Twilio, false), "+1");
        assert!(e.message.contains("has none"), "{}", e.message);
        // Telnyx: credentials, or an IP connection's own identification.
        let (_, e) = classify(407, None, &trunk(Provider::Telnyx, false), "+1");
        assert!(
            e.message.contains("set auth_username and auth_password")
                && e.message.contains("tech_prefix or ip_auth_token"),
            "{}",
            e.message
        );
    }

    #[test]
    fn telnyx_identification_goes_on_the_invite_and_never_into_logs() {
        let mut t = trunk(Provider::Telnyx, true);
        assert_eq!(t.dial_string("+18005678912"), "+18005678912");
        assert_eq!(
            t.carrier_headers("+14155550100"),
            vec![("X-Telnyx-Username", "u".to_owned())]
        );
        t.tech_prefix = Some("1234".into());
        t.token = Some("Chicagoqwhowg6ze2d7o".into());
        t.p_charge_info = true;
        // Telnyx's own example: 1234 + +18005678912 = 123418005678912.
        assert_eq!(t.dial_string("+18005678912"), "123418005678912");
        assert_eq!(
            t.carrier_headers("+14155550100"),
            vec![
                ("X-Telnyx-Username", "u".to_owned()),
                ("X-Telnyx-Token", "Chicagoqwhowg6ze2d7o".to_owned()),
                ("P-Charge-Info", "<sip:+14155550100@t.example>".to_owned()),
            ]
        );
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("Chicagoqwhowg6ze2d7o") && !debug.contains("\"p\""),
            "{debug}"
        );
        // Nothing of Telnyx's toward another carrier.
        t.provider = Provider::Twilio;
        assert!(t.carrier_headers("+14155550100").is_empty());
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
