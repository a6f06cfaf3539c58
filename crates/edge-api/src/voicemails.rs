//! `/v1/voicemails`: messages callers left, their WAV recordings, and deletion (row and
//! file). Records are written by the SIP side; the recording lives under the data dir.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account};
use crate::wire::page_request;
use crate::ApiState;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use edge_store::time::rfc3339;
use edge_store::{is_safe_recording_path, IdKind, VoicemailFilter, VoicemailRecord};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use tokio::io::AsyncReadExt;
use utoipa::ToSchema;

/// Bytes read from the recording per response chunk: memory per download stays fixed
/// whatever the file size.
const CHUNK: usize = 64 * 1024;

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VoicemailEndedBy {
    /// The caller hung up.
    Hangup,
    /// The maximum message length was reached.
    MaxLength,
    /// The caller stayed silent too long.
    Silence,
    /// The caller pressed `#`.
    DtmfHash,
    /// The edge was shutting down.
    Shutdown,
}

impl VoicemailEndedBy {
    const ALL: [VoicemailEndedBy; 5] = [
        VoicemailEndedBy::Hangup,
        VoicemailEndedBy::MaxLength,
        VoicemailEndedBy::Silence,
        VoicemailEndedBy::DtmfHash,
        VoicemailEndedBy::Shutdown,
    ];

    /// The stored and wire spelling (one of [`edge_store::VOICEMAIL_ENDED_BY`]).
    fn as_str(self) -> &'static str {
        match self {
            VoicemailEndedBy::Hangup => "hangup",
            VoicemailEndedBy::MaxLength => "max-length",
            VoicemailEndedBy::Silence => "silence",
            VoicemailEndedBy::DtmfHash => "dtmf-hash",
            VoicemailEndedBy::Shutdown => "shutdown",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The recording's bytes (a RIFF/WAVE file).
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes the response body in the OpenAPI document.
#[schema(value_type = String, format = Binary)]
pub struct WavFile(Vec<u8>);

#[derive(Debug, Serialize, ToSchema)]
pub struct Voicemail {
    /// `vm_…`
    pub id: String,
    /// The call that left the message (see `/v1/calls`).
    pub call_id: String,
    /// The number that was called (`phn_…`), when known.
    pub phone_number_id: Option<String>,
    /// Caller's E.164 number, or SIP user when the carrier sent no number; empty if anonymous.
    pub caller: String,
    /// The dialled number, E.164.
    pub to: String,
    /// Length of the recording in milliseconds.
    pub duration_ms: i64,
    pub ended_by: VoicemailEndedBy,
    /// RFC 3339, when the message was left.
    pub created_at: String,
    /// Where to `GET` the WAV file (same authentication).
    #[schema(example = "/v1/voicemails/vm_abc/recording")]
    pub recording_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoicemailList {
    /// Newest first.
    pub data: Vec<Voicemail>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// Query string of `GET /v1/voicemails`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VoicemailListParams {
    /// Only voicemails left on this number (`phn_…`).
    #[param(pattern = r"^phn_[A-Za-z0-9]{1,64}$")]
    pub phone_number_id: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque `next_cursor` from the previous page (only values this API returned are valid).
    #[param(min_length = 1, max_length = 200, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Id of the last voicemail of the previous page (`vm_…`).
    #[param(pattern = r"^vm_[A-Za-z0-9]{1,64}$")]
    pub starting_after: Option<String>,
}

impl TryFrom<VoicemailRecord> for Voicemail {
    type Error = ApiError;

    /// Fails only on a row the store would not have accepted (an unknown `ended_by`).
    fn try_from(v: VoicemailRecord) -> ApiResult<Self> {
        let Some(ended_by) = VoicemailEndedBy::parse(&v.ended_by) else {
            tracing::error!(voicemail_id = %v.id, "stored voicemail has an unknown ended_by");
            return Err(ApiError::internal());
        };
        Ok(Voicemail {
            recording_url: format!("/v1/voicemails/{}/recording", v.id),
            id: v.id,
            call_id: v.call_id,
            phone_number_id: v.phone_number_id,
            caller: v.caller,
            to: v.to,
            duration_ms: v.duration_ms,
            ended_by,
            created_at: rfc3339(v.created_at_ms),
        })
    }
}

/// The recording exists in the database but cannot be served from disk for a reason that is
/// ours, not the client's; details go to the log only (they name server paths).
fn unavailable(id: &str, why: &str) -> ApiError {
    tracing::error!(voicemail_id = %id, reason = why, "voicemail recording cannot be served");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "recording_unavailable",
        "the recording cannot be served",
    )
}

fn recording_missing() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "recording file not found")
}

/// The account's voicemail or 404 (junk ids never reach the database).
async fn find(state: &ApiState, account: &str, id: &str) -> ApiResult<VoicemailRecord> {
    if !IdKind::Voicemail.is_valid(id) {
        return Err(ApiError::not_found());
    }
    state
        .store
        .get_voicemail(account, id)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// List voicemails, newest first.
#[utoipa::path(get, path = "/v1/voicemails", tag = "voicemails", operation_id = "list_voicemails",
    params(VoicemailListParams),
    responses((status = 200, body = VoicemailList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<VoicemailListParams>, QueryRejection>,
) -> ApiResult<Json<VoicemailList>> {
    let Query(q) = q.map_err(query_error)?;
    let phone_number_id = match q.phone_number_id {
        None => None,
        Some(v) if IdKind::PhoneNumber.is_valid(&v) => Some(v),
        Some(_) => return Err(ApiError::field("phone_number_id", "must be a phone number id (phn_…)")),
    };
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = page_request(q.limit.as_deref(), q.cursor.as_deref(), q.starting_after.as_deref())?
        .resolve(IdKind::Voicemail, |id| async move {
            Ok(store.get_voicemail(acct, &id).await?.map(|v| v.created_at_ms))
        })
        .await?;
    let page = state
        .store
        .list_voicemails(&account, VoicemailFilter { phone_number_id }, limit, cursor.as_ref())
        .await?;
    Ok(Json(VoicemailList {
        data: page
            .items
            .into_iter()
            .map(Voicemail::try_from)
            .collect::<ApiResult<_>>()?,
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/voicemails/{id}", tag = "voicemails", operation_id = "get_voicemail",
    params(("id" = String, Path, description = "vm_…")),
    responses((status = 200, body = Voicemail),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<Voicemail>> {
    Ok(Json(find(&state, &account, &id).await?.try_into()?))
}

/// The recording as a WAV file.
#[utoipa::path(get, path = "/v1/voicemails/{id}/recording", tag = "voicemails",
    operation_id = "get_voicemail_recording",
    params(("id" = String, Path, description = "vm_…")),
    responses(
        (status = 200, description = "WAV audio", content_type = "audio/wav", body = inline(WavFile)),
        (status = 401, body = ErrorBody),
        (status = 404, description = "unknown voicemail, or its file is gone", body = ErrorBody),
        (status = 500, description = "the file cannot be served", body = ErrorBody)))]
pub async fn recording(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let rec = find(&state, &account, &id).await?;
    // Checked on insert too; checked again because the row may have been written by an
    // older version or by hand, and this path is joined to the data dir.
    if !is_safe_recording_path(&rec.recording_path) {
        return Err(unavailable(
            &rec.id,
            "stored recording_path is not a safe relative path",
        ));
    }
    let path = state.config.data_dir.join(&rec.recording_path);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(recording_missing()),
        Err(e) => return Err(unavailable(&rec.id, &format!("open: {e}"))),
    };
    let meta = file
        .metadata()
        .await
        .map_err(|e| unavailable(&rec.id, &format!("metadata: {e}")))?;
    if !meta.is_file() {
        return Err(unavailable(&rec.id, "not a regular file"));
    }
    let len = meta.len();
    if len > state.config.max_recording_bytes {
        return Err(unavailable(&rec.id, "larger than max_recording_bytes"));
    }
    // Exactly `len` bytes, the Content-Length promised: a file that grows meanwhile is cut
    // there, one that shrinks ends the stream with an error (the client sees a short body).
    let body = futures_util::stream::try_unfold((file, len), |(mut file, remaining)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        // `min` with CHUNK makes the cast lossless.
        let mut buf = vec![0u8; remaining.min(CHUNK as u64) as usize];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "recording shrank while served",
            ));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, remaining - n as u64))))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Delete the voicemail and its recording.
#[utoipa::path(delete, path = "/v1/voicemails/{id}", tag = "voicemails", operation_id = "delete_voicemail",
    params(("id" = String, Path, description = "vm_…")),
    responses((status = 204, description = "deleted, recording included"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 500, body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let rec = find(&state, &account, &id).await?;
    // The file goes first: a 204 must mean the audio is gone. If removal fails the row
    // stays, so the client can retry; if the row delete then fails, the row points to a
    // missing file (404 on the recording) and a retry finishes the job.
    if is_safe_recording_path(&rec.recording_path) {
        let path = state.config.data_dir.join(&rec.recording_path);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable(&rec.id, &format!("remove: {e}"))),
        }
    } else {
        tracing::warn!(voicemail_id = %rec.id, "unsafe recording_path: row deleted, file left alone");
    }
    // `None` here means a concurrent delete won; the voicemail is gone either way.
    state.store.delete_voicemail(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_by_matches_the_store_and_serde() {
        let ours: Vec<&str> = VoicemailEndedBy::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(ours, edge_store::VOICEMAIL_ENDED_BY);
        for v in VoicemailEndedBy::ALL {
            assert_eq!(VoicemailEndedBy::parse(v.as_str()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(VoicemailEndedBy::parse("max_length"), None);
    }
}
