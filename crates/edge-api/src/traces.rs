//! `GET /v1/calls/{id}/trace`: every SIP message of a call's legs as the edge sent and received them
//! (secrets removed), as JSON or (`?format=pcap`) as a capture file for tshark, Wireshark and sngrep.
//! The document is built and stored by the edge's trace writer when the call ends; this module is also
//! where its shape is defined, so writer and API cannot disagree.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account};
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use edge_store::IdKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A call's SIP trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallTrace {
    /// `call_…`
    pub call_id: String,
    /// Every leg of the call: its SIP Call-ID and what it is (`carrier`, `agent agt_… (primary)`,
    /// `trunk (trunk)`...), in the order the legs were opened.
    pub legs: Vec<TraceLeg>,
    /// The messages in the order they were received or sent.
    pub messages: Vec<TraceMessage>,
    /// True when messages were left out (`[observability] trace_max_messages` or `trace_max_bytes`).
    pub truncated: bool,
    /// Messages left out, and their bytes.
    pub omitted_messages: u64,
    pub omitted_bytes: u64,
}

/// One leg of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceLeg {
    /// Which leg: `carrier`, `agent agt_… (primary|fallback|transfer)`, `trunk (trunk|transfer)`, `agent`
    /// (the agent placing an outbound call).
    pub leg: String,
    /// The leg's SIP Call-ID.
    pub sip_call_id: String,
}

/// Whether the edge received or sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraceDirection {
    In,
    Out,
}

/// One header field as sent (Authorization values replaced by `[redacted]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceHeader {
    pub name: String,
    pub value: String,
}

/// One SIP message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TraceMessage {
    /// When the edge received or sent it: microseconds since the Unix epoch.
    pub t_us: i64,
    /// Which leg (see `legs`).
    pub leg: String,
    pub direction: TraceDirection,
    /// The other party's address (`ip:port`).
    pub peer: String,
    /// The edge's own address on that transport (`ip:port`).
    pub local: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    /// `INVITE sip:… SIP/2.0`, `SIP/2.0 200 OK`...
    pub start_line: String,
    pub headers: Vec<TraceHeader>,
    /// The body (SDP `a=crypto` keys replaced by `X`s of the same length, so Content-Length holds).
    pub body: String,
}

impl TraceMessage {
    /// The message as text again: start line, headers, blank line, body.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.start_line.len() + self.body.len() + 64 * self.headers.len());
        out.extend_from_slice(self.start_line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// `?format=json` (default) or `?format=pcap`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceParams {
    /// `json` (default) or `pcap` (a libpcap file with synthetic Ethernet/IP/UDP or TCP headers).
    #[param(pattern = "^(json|pcap)$")]
    pub format: Option<String>,
}

/// The pcap file's bytes.
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes the response body in the OpenAPI document.
#[schema(value_type = String, format = Binary)]
pub struct PcapFile(Vec<u8>);

/// A call's SIP trace. Stored when the call ends (a live call, a call older than the retention, or one
/// ended while tracing was off has none: 404).
#[utoipa::path(get, path = "/v1/calls/{id}/trace", tag = "calls", operation_id = "get_call_trace",
    params(("id" = String, Path, description = "call_…"), TraceParams),
    responses(
        (status = 200, description = "the trace as JSON (`format=json`, default) or a libpcap capture (`format=pcap`)",
            content((CallTrace = "application/json"), (inline(PcapFile) = "application/vnd.tcpdump.pcap"))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "unknown call, or no trace stored for it", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
    q: Result<Query<TraceParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(query_error)?;
    let pcap = match q.format.as_deref() {
        None | Some("json") => false,
        Some("pcap") => true,
        Some(_) => return Err(ApiError::field("format", "must be json or pcap")),
    };
    if !IdKind::Call.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    // The account rule of GET /v1/calls/{id}: another account's call is not found.
    state
        .store
        .get_call(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let stored = state.store.get_trace(&id).await?.ok_or_else(no_trace)?;
    if !pcap {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            stored.body,
        )
            .into_response());
    }
    let trace: CallTrace = serde_json::from_str(&stored.body).map_err(|e| {
        tracing::error!(call = %id, error = %e, "stored trace unreadable");
        ApiError::internal()
    })?;
    let file = crate::pcap::write(&trace.messages);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.pcap\""),
            ),
        ],
        file,
    )
        .into_response())
}

fn no_trace() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no trace stored for this call (live, older than the retention, or traced off)",
    )
}
