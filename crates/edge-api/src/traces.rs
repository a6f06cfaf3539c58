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
    let row = state.store.get_trace(&id).await?.ok_or_else(no_trace)?;
    let trace = stored::decode(&id, &row.body).ok_or_else(|| {
        tracing::error!(call = %id, "stored trace unreadable");
        ApiError::internal()
    })?;
    if !pcap {
        return Ok(axum::Json(trace).into_response());
    }
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

/// The stored form of a trace: compact text the trace writer appends to without parsing headers or
/// escaping JSON (building JSON on the writer doubled what tracing cost the edge); turned into [`CallTrace`]
/// when read. Lines: `SIPTRACE1`, one `L <sip_call_id>\t<leg>` per leg, `O <messages> <bytes>` left
/// out, then per message `M <t_us> <in|out> <transport> <peer> <local> <leg index> <length>` followed by
/// the message's `length` bytes and a newline.
pub mod stored {
    use super::{CallTrace, TraceDirection, TraceHeader, TraceLeg, TraceMessage};
    use std::fmt::Write as _;

    const MAGIC: &str = "SIPTRACE1\n";

    /// One message to store (already redacted). Addresses come formatted: the writer formats each
    /// distinct one once, not once per message.
    pub struct StoredMessage<'a> {
        pub t_us: i64,
        pub direction: TraceDirection,
        pub transport: &'a str,
        pub peer: &'a str,
        pub local: &'a str,
        pub leg: usize,
        pub text: &'a str,
    }

    /// Starts a stored trace with its legs (`(sip_call_id, leg)`) and what was left out.
    pub fn begin(legs: &[(String, String)], omitted_messages: u64, omitted_bytes: u64, capacity: usize) -> String {
        let mut out = String::with_capacity(capacity + 64 * legs.len() + 32);
        out.push_str(MAGIC);
        for (sip_call_id, leg) in legs {
            let _ = writeln!(out, "L {sip_call_id}\t{leg}");
        }
        let _ = writeln!(out, "O {omitted_messages} {omitted_bytes}");
        out
    }

    /// Appends one message.
    pub fn push(out: &mut String, m: &StoredMessage<'_>) {
        let dir = match m.direction {
            TraceDirection::In => "in",
            TraceDirection::Out => "out",
        };
        // Pieces and integers pushed one by one: `write!` with its formatting machinery cost more than
        // the rest of storing a message.
        let mut n = itoa::Buffer::new();
        out.push_str("M ");
        out.push_str(n.format(m.t_us));
        out.push(' ');
        out.push_str(dir);
        out.push(' ');
        out.push_str(m.transport);
        out.push(' ');
        out.push_str(m.peer);
        out.push(' ');
        out.push_str(m.local);
        out.push(' ');
        out.push_str(n.format(m.leg));
        out.push(' ');
        out.push_str(n.format(m.text.len()));
        out.push('\n');
        out.push_str(m.text);
        out.push('\n');
    }

    /// The trace of `call_id` from its stored form; `None` when it is not one.
    pub fn decode(call_id: &str, s: &str) -> Option<CallTrace> {
        let mut rest = s.strip_prefix(MAGIC)?;
        let mut trace = CallTrace {
            call_id: call_id.to_owned(),
            ..CallTrace::default()
        };
        while !rest.is_empty() {
            let (line, after) = rest.split_once('\n')?;
            rest = after;
            if let Some(l) = line.strip_prefix("L ") {
                let (sip_call_id, leg) = l.split_once('\t')?;
                trace.legs.push(TraceLeg {
                    leg: leg.to_owned(),
                    sip_call_id: sip_call_id.to_owned(),
                });
            } else if let Some(o) = line.strip_prefix("O ") {
                let (m, b) = o.split_once(' ')?;
                trace.omitted_messages = m.parse().ok()?;
                trace.omitted_bytes = b.parse().ok()?;
                trace.truncated = trace.omitted_messages > 0;
            } else if let Some(m) = line.strip_prefix("M ") {
                let f: Vec<&str> = m.split(' ').collect();
                let [t_us, dir, transport, peer, local, leg, len] = f.as_slice() else {
                    return None;
                };
                let len: usize = len.parse().ok()?;
                let text = rest.get(..len)?;
                rest = rest.get(len..)?.strip_prefix('\n')?;
                let leg = trace
                    .legs
                    .get(leg.parse::<usize>().ok()?)
                    .map(|l| l.leg.clone())
                    .unwrap_or_default();
                let (start_line, headers, body) = split_message(text);
                trace.messages.push(TraceMessage {
                    t_us: t_us.parse().ok()?,
                    leg,
                    direction: if *dir == "in" {
                        TraceDirection::In
                    } else {
                        TraceDirection::Out
                    },
                    peer: (*peer).to_owned(),
                    local: (*local).to_owned(),
                    transport: (*transport).to_owned(),
                    start_line,
                    headers,
                    body,
                });
            } else {
                return None;
            }
        }
        Some(trace)
    }

    /// Start line, header fields (folded lines joined) and body of a message's text.
    fn split_message(text: &str) -> (String, Vec<TraceHeader>, String) {
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (&text[..i], &text[i + 4..]),
            None => (text, ""),
        };
        let mut lines = head.split("\r\n");
        let start_line = lines.next().unwrap_or("").to_owned();
        let mut headers: Vec<TraceHeader> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                if let Some(h) = headers.last_mut() {
                    h.value.push(' ');
                    h.value.push_str(line.trim());
                }
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            headers.push(TraceHeader {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        (start_line, headers, body.to_owned())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_trace_reads_back_as_written() {
            let legs = vec![("abc@h".to_owned(), "carrier".to_owned())];
            let mut s = begin(&legs, 2, 300, 0);
            let text = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nSubject: one\r\n two\r\nContent-Length: 4\r\n\r\nv=0\n";
            push(
                &mut s,
                &StoredMessage {
                    t_us: 17,
                    direction: TraceDirection::In,
                    transport: "udp",
                    peer: "127.0.0.1:5080",
                    local: "[::1]:5060",
                    leg: 0,
                    text,
                },
            );
            let t = decode("call_x", &s).unwrap();
            assert_eq!(t.legs[0].sip_call_id, "abc@h");
            assert!(t.truncated && t.omitted_messages == 2 && t.omitted_bytes == 300);
            let m = &t.messages[0];
            assert_eq!(
                (m.t_us, m.leg.as_str(), m.local.as_str()),
                (17, "carrier", "[::1]:5060")
            );
            assert_eq!(m.start_line, "INVITE sip:x@y SIP/2.0");
            assert_eq!(m.headers[1].value, "one two");
            assert_eq!(m.body, "v=0\n");
            assert!(decode("call_x", "{}").is_none());
        }
    }
}
