//! Bring-your-own numbers at Twilio/Telnyx: proof of ownership with the account's integration
//! credentials, and the set-up doctor (`GET /v1/phone-numbers/{id}/checks`) that reads the
//! provider's own configuration and says, in one sentence per item, what stops calls arriving.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Account;
use crate::ApiState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use edge_providers::{
    ProviderError, SecretString, TelnyxConfig, TelnyxOwnedNumber, TelnyxProvider, TwilioConfig, TwilioOwnedNumber,
    TwilioProvider,
};
use edge_store::{IdKind, NumberRecord, Provider};
use serde::Serialize;
use utoipa::ToSchema;

/// Integrations looked at per provider (an account has a handful at most).
const MAX_INTEGRATIONS: u32 = 20;

/// A provider client built from one of the account's integrations.
pub(crate) enum Client {
    Twilio(TwilioProvider),
    Telnyx(TelnyxProvider),
}

/// Where the number was found: the integration and the provider's record of it.
pub(crate) enum Owner {
    Twilio(TwilioProvider, TwilioOwnedNumber),
    Telnyx(TelnyxProvider, TelnyxOwnedNumber),
}

fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Twilio => "Twilio",
        Provider::Telnyx => "Telnyx",
        Provider::Local => "local",
    }
}

/// Clients for every integration of `provider` in the account, with the ids of those that
/// could not be used (missing `account_sid`, malformed key).
async fn clients(state: &ApiState, account: &str, provider: Provider) -> ApiResult<(Vec<Client>, Vec<String>)> {
    let page = state.store.list_integrations(account, MAX_INTEGRATIONS, None).await?;
    let mut out = Vec::new();
    let mut unusable = Vec::new();
    for rec in page.items.into_iter().filter(|r| r.provider == provider) {
        let Some(key) = state.store.integration_api_key(account, &rec.id).await? else {
            continue;
        };
        let secret = SecretString::from(key.expose().to_owned());
        let client = match provider {
            Provider::Twilio => rec
                .metadata
                .get("account_sid")
                .and_then(|v| v.as_str())
                .and_then(|sid| {
                    TwilioProvider::new(TwilioConfig {
                        account_sid: sid.to_owned(),
                        auth_token: secret,
                        trunk_sid: None,
                        base_url: state.config.twilio_base_url.clone(),
                    })
                    .ok()
                })
                .map(Client::Twilio),
            Provider::Telnyx => TelnyxProvider::new(TelnyxConfig {
                api_key: secret,
                connection_id: None,
                base_url: state.config.telnyx_base_url.clone(),
            })
            .ok()
            .map(Client::Telnyx),
            Provider::Local => None,
        };
        match client {
            Some(c) => out.push(c),
            None => unusable.push(rec.id),
        }
    }
    Ok((out, unusable))
}

/// Finds which of the account's integrations for `provider` holds `phone_number`. Refuses
/// without saying whether anyone else registered the number here.
pub(crate) async fn find_owner(
    state: &ApiState,
    account: &str,
    provider: Provider,
    phone_number: &str,
) -> ApiResult<Owner> {
    let label = provider_label(provider);
    let (clients, unusable) = clients(state, account, provider).await?;
    if clients.is_empty() {
        let message = if unusable.is_empty() {
            format!(
                "add your {label} account first (POST /v1/integrations with provider \"{}\"): \
                 numbers you bring are checked against it",
                provider.as_str()
            )
        } else {
            format!(
                "your {label} integration {} cannot be used: it needs the api_key{} of the {label} account",
                unusable.join(", "),
                if provider == Provider::Twilio {
                    " and metadata.account_sid"
                } else {
                    ""
                }
            )
        };
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "integration_required",
            message,
            field: Some("provider".into()),
        });
    }
    let mut refused = 0;
    let count = clients.len();
    for client in clients {
        let found = match &client {
            Client::Twilio(c) => c
                .find_number(phone_number)
                .await
                .map(|n| n.map(|n| Owner::Twilio(c.clone(), n))),
            Client::Telnyx(c) => c
                .find_number(phone_number)
                .await
                .map(|n| n.map(|n| Owner::Telnyx(c.clone(), n))),
        };
        match found {
            Ok(Some(owner)) => return Ok(owner),
            Ok(None) => {}
            Err(ProviderError::Unauthorized(_)) => refused += 1,
            Err(e) => {
                tracing::warn!(error = %e, "ownership lookup failed");
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_error",
                    format!("could not check with {label} that you own this number; try again: {e}"),
                ));
            }
        }
    }
    if refused == count {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "integration_rejected",
            message: format!("{label} refused the credentials of your integration; update them and try again"),
            field: Some("provider".into()),
        });
    }
    Err(ApiError {
        status: StatusCode::FORBIDDEN,
        code: "number_not_owned",
        message: format!(
            "{phone_number} is not a number of the {label} account in your integration; \
             buy or port it into that account first"
        ),
        field: Some("phone_number".into()),
    })
}

/// One item of the set-up doctor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    /// Stable name, e.g. `number_on_trunk`.
    pub name: &'static str,
    /// `ok`, `problem` or `unknown` (the provider could not tell us).
    pub status: &'static str,
    /// What was found.
    pub message: String,
    /// The fix in one sentence; `null` when `ok`.
    pub fix: Option<String>,
}

fn ok(name: &'static str, message: impl Into<String>) -> Check {
    Check {
        name,
        status: "ok",
        message: message.into(),
        fix: None,
    }
}

fn problem(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: "problem",
        message: message.into(),
        fix: Some(fix.into()),
    }
}

fn unknown(name: &'static str, message: impl Into<String>) -> Check {
    Check {
        name,
        status: "unknown",
        message: message.into(),
        fix: None,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckList {
    /// `true` when every check is `ok`.
    pub ready: bool,
    pub data: Vec<Check>,
}

/// `host:port` of a SIP URI or address, lower case, default port 5060, parameters dropped.
fn host_port(uri: &str) -> String {
    let s = uri.trim();
    let s = s.strip_prefix("sips:").or_else(|| s.strip_prefix("sip:")).unwrap_or(s);
    let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
    let s = s.split(';').next().unwrap_or(s).to_ascii_lowercase();
    if s.rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
    {
        s
    } else {
        format!("{s}:5060")
    }
}

fn host_only(addr: &str) -> String {
    let hp = host_port(addr);
    hp.rsplit_once(':').map_or(hp.clone(), |(h, _)| h.to_owned())
}

/// Runs the set-up checks for a BYO number.
pub(crate) async fn run(state: &ApiState, owner: &Owner, rec: &NumberRecord) -> Vec<Check> {
    let edge = host_port(&state.config.public_sip_uri);
    let (trunk_address, username) = match &rec.provider_config {
        Some(p) => (p.trunk_address.clone(), p.auth_username.clone()),
        None => (String::new(), None),
    };
    let mut out = vec![ok(
        "number_in_account",
        format!("{} is in your provider account", rec.phone_number),
    )];
    match owner {
        Owner::Twilio(c, n) => {
            let Some(trunk_sid) = &n.trunk_sid else {
                out.push(problem(
                    "number_on_trunk",
                    "the number is not attached to an Elastic SIP trunk, so Twilio does not send its calls here",
                    "In Twilio Console open Elastic SIP Trunking → your trunk → Numbers and add this number.",
                ));
                out.push(unknown("origination_uri", "no trunk to inspect"));
                out.push(unknown("termination_domain", "no trunk to inspect"));
                out.push(unknown("credential_list", "no trunk to inspect"));
                return out;
            };
            out.push(ok("number_on_trunk", format!("the number is on trunk {trunk_sid}")));
            match c.origination_urls(trunk_sid).await {
                Ok(urls) if urls.iter().any(|u| host_port(u) == edge) => out.push(ok(
                    "origination_uri",
                    format!("the trunk sends inbound calls to {edge}"),
                )),
                Ok(_) => out.push(problem(
                    "origination_uri",
                    format!(
                        "the trunk has no origination URI pointing at {}",
                        state.config.public_sip_uri
                    ),
                    format!(
                        "On the trunk's Origination tab add {} with priority 10 and weight 10.",
                        state.config.public_sip_uri
                    ),
                )),
                Err(e) => out.push(unknown("origination_uri", format!("Twilio did not answer: {e}"))),
            }
            match c.trunk(trunk_sid).await {
                Ok(Some(t)) => match t.domain_name {
                    Some(d) if host_only(&d) == host_only(&trunk_address) => out.push(ok(
                        "termination_domain",
                        format!("the trunk's termination domain is {d}"),
                    )),
                    Some(d) => out.push(problem(
                        "termination_domain",
                        format!("the trunk's termination domain is {d}, not {trunk_address}"),
                        format!(
                            "Set provider_config.trunk_address to {d} with PATCH /v1/phone-numbers/{}.",
                            rec.id
                        ),
                    )),
                    None => out.push(problem(
                        "termination_domain",
                        "the trunk has no termination SIP URI",
                        "On the trunk's Termination tab create a Termination SIP URI and register it as trunk_address.",
                    )),
                },
                Ok(None) => out.push(unknown("termination_domain", "Twilio does not know the trunk")),
                Err(e) => out.push(unknown("termination_domain", format!("Twilio did not answer: {e}"))),
            }
            match (&username, c.trunk_usernames(trunk_sid).await) {
                (None, _) => out.push(unknown(
                    "credential_list",
                    "no auth_username registered, so outbound calls cannot authenticate with credentials",
                )),
                (Some(u), Ok(names)) if names.iter().any(|n| n == u) => {
                    out.push(ok("credential_list", format!("a credential list with user {u} is on the trunk")))
                }
                (Some(u), Ok(_)) => out.push(problem(
                    "credential_list",
                    format!("no credential list on the trunk has the user {u}"),
                    format!(
                        "On the trunk's Termination tab attach a credential list containing the user {u} and its password."
                    ),
                )),
                (Some(_), Err(e)) => out.push(unknown("credential_list", format!("Twilio did not answer: {e}"))),
            }
        }
        Owner::Telnyx(c, n) => {
            let Some(conn_id) = &n.connection_id else {
                out.push(problem(
                    "connection",
                    "the number is not assigned to a SIP connection, so Telnyx does not send its calls here",
                    "In Telnyx Mission Control open Numbers and assign this number to your SIP connection.",
                ));
                out.push(unknown("inbound_target", "no connection to inspect"));
                out.push(unknown("outbound_credentials", "no connection to inspect"));
                return out;
            };
            match c.connection(conn_id).await {
                Ok(Some(conn)) => {
                    out.push(ok("connection", format!("the number uses connection {conn_id}")));
                    if conn.targets.iter().any(|t| host_port(t) == edge) {
                        out.push(ok(
                            "inbound_target",
                            format!("the connection sends inbound calls to {edge}"),
                        ));
                    } else {
                        out.push(problem(
                            "inbound_target",
                            format!("connection {conn_id} ({}) does not point at {edge}", conn.record_type),
                            format!("Make it an FQDN connection with {edge} as its FQDN and port."),
                        ));
                    }
                    match (&username, &conn.user_name) {
                        (Some(u), Some(cu)) if u == cu => {
                            out.push(ok("outbound_credentials", format!("the connection's user is {u}")))
                        }
                        (Some(u), Some(cu)) => out.push(problem(
                            "outbound_credentials",
                            format!("the connection's user is {cu}, not {u}"),
                            format!("Set provider_config.auth_username to {cu} (and its password) with PATCH."),
                        )),
                        _ => out.push(unknown(
                            "outbound_credentials",
                            "cannot compare outbound credentials (none registered or none on the connection)",
                        )),
                    }
                }
                Ok(None) => out.push(problem(
                    "connection",
                    format!("connection {conn_id} does not exist"),
                    "Assign the number to an existing SIP connection in Mission Control.",
                )),
                Err(e) => out.push(unknown("connection", format!("Telnyx did not answer: {e}"))),
            }
        }
    }
    out
}

async fn load(state: &ApiState, account: &str, id: &str) -> ApiResult<(NumberRecord, ApiResult<Owner>)> {
    if !IdKind::PhoneNumber.is_valid(id) {
        return Err(ApiError::not_found());
    }
    let rec = state
        .store
        .get_number(account, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !matches!(rec.provider, Provider::Twilio | Provider::Telnyx) || rec.provider_config.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_applicable",
            "set-up checks are for numbers brought from Twilio or Telnyx",
        ));
    }
    let owner = find_owner(state, account, rec.provider, &rec.phone_number).await;
    Ok((rec, owner))
}

/// The checks, or when the number cannot be found at the provider, why, as a check: the
/// doctor reports what it can rather than failing.
async fn run_or_explain(state: &ApiState, owner: &ApiResult<Owner>, rec: &NumberRecord) -> CheckList {
    let data = match owner {
        Ok(o) => run(state, o, rec).await,
        Err(e) => {
            let label = provider_label(rec.provider);
            let fix = match e.code {
                "integration_required" => Some(format!(
                    "Add your {label} account with POST /v1/integrations (provider \"{}\").",
                    rec.provider.as_str()
                )),
                "integration_rejected" => Some(format!("Update your {label} integration with working credentials.")),
                "number_not_owned" => Some(format!(
                    "Move the number into the {label} account of your integration, or add the integration of the account that has it."
                )),
                _ => None,
            };
            vec![Check {
                name: "number_in_account",
                status: if fix.is_some() { "problem" } else { "unknown" },
                message: e.message.clone(),
                fix,
            }]
        }
    };
    CheckList {
        ready: data.iter().all(|c| c.status == "ok"),
        data,
    }
}

/// What stands between this number and working calls, read from the provider's own API.
#[utoipa::path(get, path = "/v1/phone-numbers/{id}/checks", tag = "phone-numbers", operation_id = "check_phone_number",
    params(("id" = String, Path, description = "phn_…")),
    responses((status = 200, description = "set-up checks (an unreachable provider is an `unknown` check)", body = CheckList),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not found", body = ErrorBody),
        (status = 409, description = "not a BYO number", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckList>> {
    let (rec, owner) = load(&state, &account, &id).await?;
    Ok(Json(run_or_explain(&state, &owner, &rec).await))
}

/// Applies the fixes the provider's API allows (Twilio: number-to-trunk association,
/// origination URI), then answers the checks again.
#[utoipa::path(post, path = "/v1/phone-numbers/{id}/checks/fix", tag = "phone-numbers", operation_id = "fix_phone_number",
    params(("id" = String, Path, description = "phn_…")),
    responses((status = 200, description = "checks after fixing", body = CheckList),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not found", body = ErrorBody),
        (status = 409, description = "not a BYO number", body = ErrorBody),
        (status = 502, description = "the provider refused a fix", body = ErrorBody),
        (status = 503, description = "the provider is rate limiting", body = ErrorBody)))]
pub async fn fix(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckList>> {
    let (rec, mut owner) = load(&state, &account, &id).await?;
    let mut changed = false;
    if let Ok(Owner::Twilio(c, n)) = &owner {
        let trunk_sid = match &n.trunk_sid {
            Some(t) => Some(t.clone()),
            None => {
                // Attach to the trunk whose termination domain is the registered trunk_address.
                let want = rec
                    .provider_config
                    .as_ref()
                    .map(|p| host_only(&p.trunk_address))
                    .unwrap_or_default();
                let trunks = c.trunks().await?;
                let found = trunks
                    .into_iter()
                    .find(|t| t.domain_name.as_deref().is_some_and(|d| host_only(d) == want));
                if let Some(t) = &found {
                    c.attach_number(&t.sid, &n.sid).await?;
                }
                found.map(|t| t.sid)
            }
        };
        if let Some(trunk) = trunk_sid {
            let edge = host_port(&state.config.public_sip_uri);
            if !c.origination_urls(&trunk).await?.iter().any(|u| host_port(u) == edge) {
                c.add_origination_url(&trunk, &state.config.public_sip_uri).await?;
            }
        }
        changed = true;
    }
    if changed {
        owner = find_owner(&state, &account, rec.provider, &rec.phone_number).await;
    }
    Ok(Json(run_or_explain(&state, &owner, &rec).await))
}
