//! `/v1/calls`: call records written by the SIP side (Twilio Call vocabulary), plus placing
//! and hanging up calls through the call engine ([`crate::control`]).

use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::extract::{query_error, Account, ApiJson};
use crate::validate;
use crate::wire::page_request;
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use edge_contract::{CallCommand, OriginateRefusal, OriginateRequest, TransferRefusal, TrunkRefusal};
use edge_store::time::{parse_rfc3339, rfc3339};
use edge_store::{CallFilter, CallRecord, CallStatus, HangupBy, Hop, IdKind, Route};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

/// Call status (Twilio's Call resource statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatusName {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

/// Which hop: the routing agent, its fallback, voicemail, or an outbound call's trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteName {
    Primary,
    Fallback,
    Voicemail,
    Trunk,
    Transfer,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HangupByName {
    Caller,
    Agent,
    Edge,
}

/// One attempt to hand the call to an agent (or to voicemail).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallHop {
    pub route: RouteName,
    pub agent_id: Option<String>,
    /// A transfer's target: the E.164 number dialled or the agent's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The agent's final SIP status, when it gave one.
    pub sip_status: Option<u16>,
    /// Why the hop ended (`answered`, `rejected`, `unavailable: disabled`, ...).
    pub outcome: String,
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// Why a call failed, when there is a code for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Call {
    /// `call_…`
    pub id: String,
    /// `inbound` or `outbound`.
    #[schema(example = "inbound")]
    pub direction: String,
    pub status: CallStatusName,
    /// Caller number as the carrier sent it.
    pub from: String,
    pub caller_name: Option<String>,
    /// The dialled number, E.164.
    pub to: String,
    pub phone_number_id: Option<String>,
    pub carrier: String,
    /// Which hop took the call, when one did.
    pub answered_by: Option<RouteName>,
    /// The agent that answered.
    pub agent_id: Option<String>,
    pub hops: Vec<CallHop>,
    /// Why the call ended, in words (`caller hung up`, `no agent available`, ...).
    pub end_reason: Option<String>,
    pub hangup_by: Option<HangupByName>,
    /// SIP status sent to the carrier, for calls that were not answered.
    pub sip_status: Option<u16>,
    pub error: Option<CallErrorBody>,
    pub created_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// The edge node that handled the call (its `[node] id`); `null` for calls recorded before nodes
    /// were named.
    #[schema(example = "edge-1")]
    pub node: Option<String>,
}

/// Body of `POST /v1/calls`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCallRequest {
    /// Caller id: a number of this account assigned to `agent_id`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+14155551234")]
    pub from: String,
    /// Number to call, E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+15005550006")]
    pub to: String,
    /// The agent that talks on the call.
    #[schema(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallList {
    /// Newest first.
    pub data: Vec<Call>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// Query string of `GET /v1/calls`. Timestamps are RFC 3339 (`2026-11-27T16:00:00Z`;
/// URL-encode a `+` offset as `%2B`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallListParams {
    /// Only calls to this number (`phn_…`).
    #[param(pattern = r"^phn_[A-Za-z0-9]{1,64}$")]
    pub phone_number_id: Option<String>,
    /// Only calls taken or placed by this agent (`agt_…`).
    #[param(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: Option<String>,
    /// Only `inbound` or only `outbound` calls.
    #[param(value_type = Option<String>, pattern = "^(inbound|outbound)$")]
    pub direction: Option<String>,
    /// Only calls to or from this E.164 number (encode `+` as `%2B`).
    #[param(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+14155551234")]
    pub phone_number: Option<String>,
    /// Only calls in this status.
    #[param(value_type = Option<CallStatusName>)]
    pub status: Option<String>,
    /// RFC 3339; calls created at or after this instant.
    #[param(format = DateTime, max_length = 40, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    pub created_after: Option<String>,
    /// RFC 3339; calls created strictly before this instant.
    #[param(format = DateTime, max_length = 40, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    pub created_before: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque `next_cursor` from the previous page (only values this API returned are valid).
    #[param(min_length = 1, max_length = 200, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Id of the last call of the previous page (`call_…`).
    #[param(pattern = r"^call_[A-Za-z0-9]{1,64}$")]
    pub starting_after: Option<String>,
}

impl From<CallStatus> for CallStatusName {
    fn from(s: CallStatus) -> Self {
        match s {
            CallStatus::Queued => CallStatusName::Queued,
            CallStatus::Ringing => CallStatusName::Ringing,
            CallStatus::InProgress => CallStatusName::InProgress,
            CallStatus::Completed => CallStatusName::Completed,
            CallStatus::Busy => CallStatusName::Busy,
            CallStatus::Failed => CallStatusName::Failed,
            CallStatus::NoAnswer => CallStatusName::NoAnswer,
            CallStatus::Canceled => CallStatusName::Canceled,
        }
    }
}

impl From<Route> for RouteName {
    fn from(r: Route) -> Self {
        match r {
            Route::Primary => RouteName::Primary,
            Route::Fallback => RouteName::Fallback,
            Route::Voicemail => RouteName::Voicemail,
            Route::Trunk => RouteName::Trunk,
            Route::Transfer => RouteName::Transfer,
        }
    }
}

impl From<HangupBy> for HangupByName {
    fn from(h: HangupBy) -> Self {
        match h {
            HangupBy::Caller => HangupByName::Caller,
            HangupBy::Agent => HangupByName::Agent,
            HangupBy::Edge => HangupByName::Edge,
        }
    }
}

impl From<Hop> for CallHop {
    fn from(h: Hop) -> Self {
        CallHop {
            route: h.route.into(),
            agent_id: h.agent_id,
            target: h.target,
            sip_status: h.sip_status,
            outcome: h.outcome,
            started_at: rfc3339(h.started_at_ms),
            ended_at: h.ended_at_ms.map(rfc3339),
        }
    }
}

impl From<CallRecord> for Call {
    fn from(c: CallRecord) -> Self {
        Call {
            id: c.id,
            direction: c.direction,
            status: c.status.into(),
            from: c.from,
            caller_name: c.caller_name,
            to: c.to,
            phone_number_id: c.phone_number_id,
            carrier: c.carrier,
            answered_by: c.answered_by.map(Into::into),
            agent_id: c.agent_id,
            hops: c.hops.into_iter().map(Into::into).collect(),
            end_reason: c.end_reason,
            hangup_by: c.hangup_by.map(Into::into),
            sip_status: c.sip_status,
            error: c.error.map(|e| CallErrorBody {
                code: e.code,
                message: e.message,
            }),
            created_at: rfc3339(c.created_at_ms),
            answered_at: c.answered_at_ms.map(rfc3339),
            ended_at: c.ended_at_ms.map(rfc3339),
            node: c.node,
        }
    }
}

fn instant(field: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    v.map(|s| {
        parse_rfc3339(s.trim())
            .ok_or_else(|| ApiError::field(field, "must be an RFC 3339 timestamp, e.g. 2026-11-27T16:00:00Z"))
    })
    .transpose()
}

impl CallListParams {
    fn filter(&self) -> ApiResult<CallFilter> {
        let phone_number_id = match self.phone_number_id.as_deref() {
            None => None,
            Some(v) if IdKind::PhoneNumber.is_valid(v) => Some(v.to_owned()),
            Some(_) => return Err(ApiError::field("phone_number_id", "must be a phone number id (phn_…)")),
        };
        // An unencoded `+` arrives as a space; take it back rather than fail confusingly.
        let phone_number = self
            .phone_number
            .as_deref()
            .map(|v| match v.strip_prefix(' ') {
                Some(rest) => validate::e164("phone_number", &format!("+{rest}")),
                None => validate::e164("phone_number", v),
            })
            .transpose()?;
        let status = self
            .status
            .as_deref()
            .map(|v| {
                CallStatus::parse(v).ok_or_else(|| {
                    let all: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::field("status", format!("must be one of {}", all.join(", ")))
                })
            })
            .transpose()?;
        let created_after_ms = instant("created_after", self.created_after.as_deref())?;
        let created_before_ms = instant("created_before", self.created_before.as_deref())?;
        if let (Some(a), Some(b)) = (created_after_ms, created_before_ms) {
            if b <= a {
                return Err(ApiError::field("created_before", "must be later than created_after"));
            }
        }
        let agent_id = self
            .agent_id
            .as_deref()
            .map(|a| validate::agent_id("agent_id", a))
            .transpose()?;
        let direction = match self.direction.as_deref() {
            None => None,
            Some(d @ ("inbound" | "outbound")) => Some(d.to_owned()),
            Some(_) => return Err(ApiError::field("direction", "must be inbound or outbound")),
        };
        Ok(CallFilter {
            phone_number_id,
            agent_id,
            direction,
            phone_number,
            status,
            created_after_ms,
            created_before_ms,
        })
    }
}

/// List calls, newest first.
#[utoipa::path(get, path = "/v1/calls", tag = "calls", operation_id = "list_calls",
    params(CallListParams),
    responses((status = 200, body = CallList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<CallListParams>, QueryRejection>,
) -> ApiResult<Json<CallList>> {
    let Query(q) = q.map_err(query_error)?;
    let filter = q.filter()?;
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = page_request(q.limit.as_deref(), q.cursor.as_deref(), q.starting_after.as_deref())?
        .resolve(IdKind::Call, |id| async move {
            Ok(store.get_call(acct, &id).await?.map(|c| c.created_at_ms))
        })
        .await?;
    let page = state.store.list_calls(&account, filter, limit, cursor.as_ref()).await?;
    Ok(Json(CallList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/calls/{id}", tag = "calls", operation_id = "get_call",
    params(("id" = String, Path, description = "call_…")),
    responses((status = 200, body = Call),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    if !IdKind::Call.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let rec = state
        .store
        .get_call(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rec.into()))
}

fn outbound_disabled() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "outbound_disabled",
        "outbound calls are not enabled on this edge",
    )
}

fn engine_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "call_control_unavailable",
        "the call engine is not available; try again later",
    )
}

/// Sends `cmd` and waits for its reply, both within the configured bound; a full queue, a
/// stopped engine or a dropped reply is "unavailable" alike.
async fn ask<T>(state: &ApiState, cmd: CallCommand, rx: oneshot::Receiver<T>) -> ApiResult<T> {
    let tx = state.call_control.as_ref().ok_or_else(outbound_disabled)?;
    let exchange = async {
        tx.send(cmd).await.ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(state.config.call_control_timeout, exchange).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => {
            tracing::warn!("call engine dropped a command");
            Err(engine_unavailable())
        }
        Err(_) => {
            tracing::warn!("call engine did not answer in time");
            Err(engine_unavailable())
        }
    }
}

/// The engine's refusal in the API's error shape: the status, code and field each refusal means to a
/// client, with the engine's words as the message.
fn refusal(e: OriginateRefusal) -> Response {
    let (status, code, field) = refusal_parts(&e);
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: e.to_string(),
            field: field.map(str::to_owned),
            phone_number_id: None,
        },
    };
    (status, Json(body)).into_response()
}

/// Status, error code and field of each refusal: the one place an engine refusal becomes HTTP (public so
/// the engine's own tests can assert what an API user would see).
pub fn refusal_parts(e: &OriginateRefusal) -> (StatusCode, &'static str, Option<&'static str>) {
    use OriginateRefusal as R;
    match e {
        R::AgentNotFound { .. } => (StatusCode::BAD_REQUEST, "invalid_request", Some("agent_id")),
        R::NotANumber { field, .. } => (StatusCode::BAD_REQUEST, "invalid_request", Some(field.as_str())),
        R::NotAccountNumber { .. } | R::AnotherAgentsNumber { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_request", Some("from"))
        }
        R::Agent(_) => (StatusCode::CONFLICT, "agent_unavailable", Some("agent_id")),
        R::Trunk(t) => (StatusCode::BAD_REQUEST, trunk_code(t), Some("from")),
        R::TrunkPaced(_) => (StatusCode::SERVICE_UNAVAILABLE, "trunk_pacing", None),
        R::MediaDisabled | R::NoMediaPorts { .. } | R::EngineFault { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
        }
    }
}

fn trunk_code(t: &TrunkRefusal) -> &'static str {
    match t {
        TrunkRefusal::Missing { .. } => "no_trunk",
        _ => "invalid_trunk",
    }
}

/// Checks what the API can know before asking the engine: formats, and that `from` is this
/// account's number assigned to `agent_id` (read from the routing index the engine uses).
fn originate_request(state: &ApiState, account: &str, req: CreateCallRequest) -> ApiResult<OriginateRequest> {
    let to = validate::e164("to", &req.to)?;
    let from = validate::e164("from", &req.from)?;
    let agent_id = validate::agent_id("agent_id", &req.agent_id)?;
    if state.index.agent(&agent_id).is_none_or(|a| a.account_id != account) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_reference",
            message: format!("no agent {agent_id:?} in this account"),
            field: Some("agent_id".into()),
        });
    }
    let number = state
        .index
        .lookup_number(&from)
        .filter(|n| n.account_id == account)
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_reference",
            message: format!("{from} is not a phone number of this account"),
            field: Some("from".into()),
        })?;
    if number.agent_id != agent_id {
        return Err(ApiError::field(
            "from",
            format!("{from} is assigned to agent {}, not {agent_id}", number.agent_id),
        ));
    }
    Ok(OriginateRequest {
        account_id: account.to_owned(),
        from,
        to,
        agent_id,
    })
}

/// Place an outbound call from one of your numbers, bridged to its agent. Returns once the
/// call is queued; follow it with `GET /v1/calls/{id}`.
#[utoipa::path(post, path = "/v1/calls", tag = "calls", operation_id = "create_call",
    request_body = CreateCallRequest,
    responses((status = 201, body = Call, description = "queued"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the call cannot be placed now (e.g. agent busy)"),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "outbound calls disabled or the call engine is unavailable")))]
pub async fn create(
    State(state): State<ApiState>,
    Account(account): Account,
    ApiJson(req): ApiJson<CreateCallRequest>,
) -> Result<(StatusCode, Json<Call>), Response> {
    let req = originate_request(&state, &account, req).map_err(IntoResponse::into_response)?;
    let (reply, rx) = oneshot::channel();
    let outcome = ask(&state, CallCommand::Originate { req, reply }, rx)
        .await
        .map_err(IntoResponse::into_response)?;
    match outcome {
        Ok(rec) => own_call(rec, &account, StatusCode::CREATED).map_err(IntoResponse::into_response),
        Err(e) => Err(refusal(e)),
    }
}

/// The engine's call as the answer, if it is the asking account's (anything else is an engine bug, and
/// must not leak another account's call).
fn own_call(rec: CallRecord, account: &str, status: StatusCode) -> Result<(StatusCode, Json<Call>), ApiError> {
    if rec.account_id == account {
        return Ok((status, Json(rec.into())));
    }
    tracing::error!(call_id = %rec.id, "call engine returned another account's call");
    Err(ApiError::internal())
}

/// Hang up a call. Ending an already ended call changes nothing and returns it as stored.
#[utoipa::path(delete, path = "/v1/calls/{id}", tag = "calls", operation_id = "hang_up_call",
    params(("id" = String, Path, description = "call_…")),
    responses((status = 200, body = Call),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the call is live but the call engine is unavailable")))]
pub async fn hang_up(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    if !IdKind::Call.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let (reply, rx) = oneshot::channel();
    let cmd = CallCommand::HangUp {
        account_id: account.clone(),
        call_id: id.clone(),
        reply,
    };
    let live = ask(&state, cmd, rx).await;
    if let Ok(Some(rec)) = live {
        return Ok(Json(rec.into()));
    }
    let rec = state
        .store
        .get_call(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    match live {
        // Not live on this edge: the stored record is the answer.
        Ok(_) => Ok(Json(rec.into())),
        // Without the engine only an ended call can be answered truthfully.
        Err(_) if rec.status.is_final() => Ok(Json(rec.into())),
        Err(e) => Err(e),
    }
}

/// Body of `POST /v1/calls/{id}/transfer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferCallRequest {
    /// Where the call goes: a phone number (E.164) dialled through the trunk the call's number uses for
    /// outbound calls, or an agent of this account (`agt_...`).
    #[schema(pattern = r"^(\+[1-9][0-9]{7,14}|agt_[A-Za-z0-9]{1,64})$", example = "+14155550199")]
    pub to: String,
}

/// Transfer a live answered call to a number or another agent (a blind transfer, as an agent's SIP REFER).
/// Answered once the target's leg is being placed: the call's record shows the transfer hop; when the
/// target answers, the caller is bridged to it and the agent's leg ends; when it fails, the caller stays
/// with the agent.
#[utoipa::path(post, path = "/v1/calls/{id}/transfer", tag = "calls", operation_id = "transfer_call",
    params(("id" = String, Path, description = "call_…")),
    request_body = TransferCallRequest,
    responses((status = 202, body = Call, description = "the transfer is under way"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the call cannot be transferred now (not answered by an agent, already transferring)"),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the call engine is unavailable")))]
pub async fn transfer(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferCallRequest>,
) -> Result<(StatusCode, Json<Call>), Response> {
    if !IdKind::Call.is_valid(&id) {
        return Err(ApiError::not_found().into_response());
    }
    let to = if req.to.starts_with("agt_") {
        validate::agent_id("to", &req.to).map_err(IntoResponse::into_response)?
    } else {
        validate::e164("to", &req.to).map_err(IntoResponse::into_response)?
    };
    let (reply, rx) = oneshot::channel();
    let cmd = CallCommand::Transfer {
        account_id: account.clone(),
        call_id: id,
        to,
        reply,
    };
    match ask(&state, cmd, rx).await.map_err(IntoResponse::into_response)? {
        Ok(rec) => own_call(rec, &account, StatusCode::ACCEPTED).map_err(IntoResponse::into_response),
        Err(e) => Err(transfer_refusal(&e).into_response()),
    }
}

/// A transfer refusal in the API's error shape: the one place it becomes HTTP.
pub fn transfer_refusal(e: &TransferRefusal) -> ApiError {
    use TransferRefusal as R;
    let (status, code, field) = match e {
        R::CallNotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
        R::BadReferTo | R::Attended | R::UnknownTarget(_) => (StatusCode::BAD_REQUEST, "invalid_reference", Some("to")),
        R::AgentDisabled(_) => (StatusCode::CONFLICT, "agent_unavailable", Some("to")),
        R::NotConnected | R::NotTheAgent => (StatusCode::CONFLICT, "call_not_transferable", None),
        R::MediaRequired | R::MediaNotOffered(_) => (StatusCode::CONFLICT, "call_not_transferable", None),
        R::NoTrunk { .. } => (StatusCode::CONFLICT, "no_trunk", Some("to")),
    };
    ApiError {
        status,
        code,
        message: e.to_string(),
        field: field.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_contract::{AgentRefusal, NumberField, PacingRefusal, TrunkAddressError};
    use edge_store::Provider;
    use sip_core::e164::E164Error;
    use std::time::Duration;

    /// Every refusal keeps the status, code, field and words the engine answered with when it chose
    /// them itself.
    #[test]
    fn each_refusal_keeps_its_answer() {
        use OriginateRefusal as R;
        let cases: Vec<(R, u16, &str, Option<&str>, &str)> = vec![
            (
                R::AgentNotFound {
                    agent_id: "agt_x".into(),
                },
                400,
                "invalid_request",
                Some("agent_id"),
                "agent agt_x does not exist",
            ),
            (
                R::NotANumber {
                    field: NumberField::To,
                    input: "+0".into(),
                    reason: E164Error::InvalidLength(1),
                },
                400,
                "invalid_request",
                Some("to"),
                "`+0` is not an E.164 number: E.164 numbers have 8 to 15 digits, got 1",
            ),
            (
                R::NotAccountNumber {
                    number: "+14155550100".into(),
                },
                400,
                "invalid_request",
                Some("from"),
                "+14155550100 is not a number of this account",
            ),
            (
                R::AnotherAgentsNumber {
                    number: "+14155550100".into(),
                    assigned_to: "agt_a".into(),
                    agent_id: "agt_b".into(),
                },
                400,
                "invalid_request",
                Some("from"),
                "+14155550100 is assigned to agent agt_a, not to agt_b",
            ),
            (
                R::Agent(AgentRefusal::Disabled {
                    agent_id: "agt_a".into(),
                }),
                409,
                "agent_unavailable",
                Some("agent_id"),
                "agent agt_a is disabled",
            ),
            (
                R::Agent(AgentRefusal::AtCapacity {
                    agent_id: "agt_a".into(),
                    max_concurrent_calls: 3,
                }),
                409,
                "agent_unavailable",
                Some("agent_id"),
                "agent agt_a is at max_concurrent_calls (3)",
            ),
            (
                R::Trunk(TrunkRefusal::InvalidProviderConfig(TrunkAddressError::Port)),
                400,
                "invalid_trunk",
                Some("from"),
                "provider_config.trunk_address: port must be 1-65535",
            ),
            (
                R::Trunk(TrunkRefusal::Missing {
                    number: "+14155550100".into(),
                    provider: Provider::Telnyx,
                }),
                400,
                "no_trunk",
                Some("from"),
                "no outbound trunk for +14155550100: register it with provider_config.trunk_address, add a telnyx \
                 integration with metadata.sip_trunk, or configure [[outbound.trunks]] provider = \"telnyx\"",
            ),
            (
                R::TrunkPaced(PacingRefusal {
                    trunk: "t.example".into(),
                    cps: 0.5,
                    wait: Duration::from_millis(3000),
                    max_wait: Duration::from_millis(2000),
                }),
                503,
                "trunk_pacing",
                None,
                "trunk t.example takes 0.5 calls per second and its line is 3000 ms long \
                 (outbound.max_pacing_wait_ms is 2000): try again later",
            ),
            (
                R::MediaDisabled,
                503,
                "unavailable",
                None,
                "calls placed through the API need the media engine ([media] enabled = true)",
            ),
            (
                R::NoMediaPorts {
                    reason: "exhausted".into(),
                },
                503,
                "unavailable",
                None,
                "no media ports: exhausted",
            ),
            (
                R::EngineFault {
                    reason: "call vanished".into(),
                },
                503,
                "unavailable",
                None,
                "call vanished",
            ),
        ];
        for (refusal, status, code, field, message) in cases {
            let (s, c, f) = refusal_parts(&refusal);
            assert_eq!((s.as_u16(), c, f), (status, code, field), "{refusal:?}");
            assert_eq!(refusal.to_string(), message);
        }
    }
}
