//! `Idempotency-Key` on POSTs that buy or create: the same key with the same request gets the
//! first answer again (for 24 h, per account) instead of a second purchase; the same key with
//! another request is a 409. The request runs in its own task and records its answer even when
//! the client gave up or the request time-out answered first, so a retry after a slow purchase
//! gets the purchase's real outcome.

use crate::error::ApiError;
use crate::extract::Account;
use crate::ApiState;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edge_store::{idempotency_request_hash, IdempotencyBegin};

pub(crate) const HEADER: &str = "idempotency-key";

/// Request extension: this request runs under an Idempotency-Key, so handlers may finish
/// long work instead of answering early; this layer answers the client in time.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    /// Where a purchase notes its `pending` number, for this layer's 503 to name it.
    pub(crate) progress: crate::numbers::ProgressSlot,
}
/// Longest accepted key (Stripe-style UUIDs are 36).
const MAX_KEY_LEN: usize = 255;
/// Largest response body remembered (a phone number record is ~1 KiB).
const MAX_STORED_BODY: usize = 256 * 1024;

pub(crate) async fn layer(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match raw.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_owned(),
        _ => {
            return ApiError::field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_KEY_LEN} printable ASCII characters"),
            )
            .into_response()
        }
    };
    let (mut parts, body) = req.into_parts();
    let account = match Account::from_request_parts(&mut parts, &state).await {
        Ok(Account(a)) => a,
        Err(e) => return e.into_response(),
    };
    let Ok(bytes) = axum::body::to_bytes(body, state.config.max_body_bytes).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {} bytes", state.config.max_body_bytes),
        )
        .into_response();
    };
    let hash = idempotency_request_hash("POST", parts.uri.path(), &bytes);
    match state.store.idempotency_begin(&account, &key, &hash).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(IdempotencyBegin::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut resp = (status, body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Ok(IdempotencyBegin::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still running; retry in a few seconds to get its answer",
        )
        .with_field("Idempotency-Key")
        .into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        )
        .with_field("Idempotency-Key")
        .into_response(),
        Ok(IdempotencyBegin::Started) => {
            let purchase = parts.uri.path().ends_with("/purchase");
            let mut req = Request::from_parts(parts, Body::from(bytes));
            let progress = crate::numbers::ProgressSlot::default();
            req.extensions_mut().insert(Active {
                progress: std::sync::Arc::clone(&progress),
            });
            let store = state.store.clone();
            let task = tokio::spawn(async move {
                let resp = next.run(req).await;
                let (parts, body) = resp.into_parts();
                let bytes = axum::body::to_bytes(body, MAX_STORED_BODY).await.unwrap_or_default();
                let status = parts.status;
                // Errors a retry may fix (5xx, 429, still-running) are not remembered.
                let keep = !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS;
                let stored = match (keep, std::str::from_utf8(&bytes)) {
                    (true, Ok(text)) => store.idempotency_finish(&account, &key, status.as_u16(), text).await,
                    _ => store.idempotency_abandon(&account, &key).await,
                };
                if let Err(e) = stored {
                    tracing::error!(error = %e, "could not record Idempotency-Key outcome");
                }
                Response::from_parts(parts, Body::from(bytes))
            });
            // Answer before the router's request time-out; the task goes on and records the
            // outcome, which a retry with the same key then receives.
            let wait = state.config.answer_within();
            match tokio::time::timeout(wait, task).await {
                Ok(joined) => joined.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "idempotent request task failed");
                    ApiError::internal().into_response()
                }),
                Err(_) if purchase => {
                    let pending = progress.lock().await.pending_id.clone();
                    crate::error::purchase_in_progress(crate::numbers::PURCHASE_IN_PROGRESS, pending)
                }
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request_in_progress",
                    "the request continues. Retry with the same Idempotency-Key to get its \
                     result (409 idempotency_in_progress until it is done)",
                )
                .into_response(),
            }
        }
    }
}
