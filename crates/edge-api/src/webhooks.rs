//! `/v1/webhooks`: where the account is told about its calls and voicemails. Each delivery is signed
//! with the webhook's secret (shown once, at creation) and retried with back-off; its state is listed at
//! `/v1/webhooks/{id}/deliveries`. Target addresses follow the same internal-target rules as agents.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account, ApiJson};
use crate::wire::ListParams;
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use edge_contract::TargetPolicy;
use edge_store::time::rfc3339;
use edge_store::{DeliveryRecord, DeliveryStatus, IdKind, WebhookEvent, WebhookRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest accepted webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// Event names, as sent in `type` and accepted in `events`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum WebhookEventName {
    #[serde(rename = "call.ringing")]
    CallRinging,
    #[serde(rename = "call.answered")]
    CallAnswered,
    #[serde(rename = "call.completed")]
    CallCompleted,
    #[serde(rename = "call.failed")]
    CallFailed,
    #[serde(rename = "call.transferred")]
    CallTransferred,
    #[serde(rename = "voicemail.recorded")]
    VoicemailRecorded,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://` (or `http://`) URL the events are POSTed to. Internal addresses (loopback, private,
    /// link-local) are refused unless the operator allows them (`[security] internal_targets`).
    #[schema(
        max_length = 2048,
        pattern = r"^[hH][tT][tT][pP][sS]?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%=&+-]*)?$"
    )]
    pub url: String,
    /// The events to send, at least one.
    #[schema(value_type = Vec<WebhookEventName>, min_items = 1, max_items = 6)]
    pub events: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    /// `whk_…`
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<WebhookEventName>)]
    pub events: Vec<&'static str>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// `whk_…`
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<WebhookEventName>)]
    pub events: Vec<&'static str>,
    pub created_at: String,
    /// Signing secret (`whsec_…`): shown in this answer only. Each delivery carries
    /// `OneInbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<Webhook>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatusName {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after 24 hours of retries.
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// `whd_…`, also the `OneInbox-Delivery` header and the body's `id`: receivers de-duplicate on it.
    pub id: String,
    pub webhook_id: String,
    #[schema(value_type = WebhookEventName)]
    pub event: String,
    pub status: DeliveryStatusName,
    /// Attempts made so far.
    pub attempts: i64,
    /// HTTP status of the last attempt, when the receiver answered.
    pub response_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (RFC 3339); `null` once delivered or given up.
    pub next_attempt_at: Option<String>,
    /// When the last attempt ended (RFC 3339); `null` before the first.
    pub last_attempt_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub data: Vec<WebhookDelivery>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

fn names(events: &[WebhookEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.as_str()).collect()
}

impl From<WebhookRecord> for Webhook {
    fn from(w: WebhookRecord) -> Self {
        Webhook {
            id: w.id,
            url: w.url,
            events: names(&w.events),
            created_at: rfc3339(w.created_at),
        }
    }
}

impl From<DeliveryRecord> for WebhookDelivery {
    fn from(d: DeliveryRecord) -> Self {
        let status = match d.status {
            DeliveryStatus::Pending => DeliveryStatusName::Pending,
            DeliveryStatus::Delivered => DeliveryStatusName::Delivered,
            DeliveryStatus::Failed => DeliveryStatusName::Failed,
        };
        WebhookDelivery {
            id: d.id,
            webhook_id: d.webhook_id,
            event: d.event_type,
            status,
            attempts: d.attempts,
            response_code: d.response_code,
            last_error: d.last_error,
            next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_attempt_at)),
            last_attempt_at: (d.attempts > 0).then(|| rfc3339(d.updated_at)),
            created_at: rfc3339(d.created_at),
        }
    }
}

/// `url` checked: http(s), a host, no credentials or fragment, at most [`MAX_URL_LEN`], and a host the
/// edge may send to (literal addresses and `localhost` judged now; names again by the worker after DNS).
pub fn webhook_url(field: &str, v: &str, policy: &TargetPolicy) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > MAX_URL_LEN {
        return Err(ApiError::field(
            field,
            format!("must be a URL of 1 to {MAX_URL_LEN} characters"),
        ));
    }
    if !has_url_shape(v) {
        return Err(ApiError::field(
            field,
            "must be http(s)://host[:port][/path][?query] with a DNS name or IP address as host and only \
             letters, digits and . _ ~ % / - in the path (= & + too in the query)",
        ));
    }
    let url = url::Url::parse(v).map_err(|e| ApiError::field(field, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ApiError::field(field, "must be an https:// (or http://) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::field(
            field,
            "must not carry credentials; verify deliveries with the signature instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::field(field, "must not have a #fragment"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(ApiError::field(field, "must name a host"));
    };
    if let Some(kind) = policy.host_refusal(host) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "internal_target",
            message: format!(
                "points at a {kind} address; the edge does not send webhooks into internal networks \
                 (an operator can allow ranges with [security] internal_targets)"
            ),
            field: Some(field.to_owned()),
        });
    }
    Ok(url.to_string())
}

/// The shape the OpenAPI pattern states, checked here too: a URL parser accepts hosts such as `c7m*` that
/// no DNS name can be, and the document must not promise a refusal the API does not make.
fn has_url_shape(v: &str) -> bool {
    let lower = v.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower.starts_with("https://") {
        &v[8..]
    } else if lower.starts_with("http://") {
        &v[7..]
    } else {
        return false;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => (h, Some(p)),
        _ => (authority, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    let port_ok = port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let path_ok = path.is_empty()
        || (path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~%/-".contains(&b)));
    let query_ok = query.is_none_or(|q| q.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~%=&+-".contains(&b)));
    host_ok && port_ok && path_ok && query_ok
}

/// `events` checked: at least one, each a known name (duplicates folded).
pub fn webhook_events(field: &str, v: &[String]) -> Result<Vec<WebhookEvent>, ApiError> {
    let known = || {
        WebhookEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if v.is_empty() {
        return Err(ApiError::field(field, format!("must list at least one of {}", known())));
    }
    let mut out = Vec::new();
    for name in v {
        let Some(e) = WebhookEvent::parse(name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::field(
                field,
                format!("unknown event {shown:?}; known events: {}", known()),
            ));
        };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

async fn find(state: &ApiState, account: &str, id: &str) -> ApiResult<WebhookRecord> {
    if !IdKind::Webhook.is_valid(id) {
        return Err(ApiError::not_found());
    }
    state
        .store
        .get_webhook(account, id)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Create a webhook: the signing secret is in this answer only.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    request_body = CreateWebhookRequest,
    responses((status = 201, description = "The new webhook and its secret, shown this once", body = CreatedWebhook),
        (status = 400, description = "Invalid field (`url`, `events`), or an internal target", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Account(account): Account,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let url = webhook_url("url", &req.url, &state.config.targets)?;
    let events = webhook_events("events", &req.events)?;
    let (rec, secret) = state.store.create_webhook(&account, &url, &events).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id: rec.id,
            url: rec.url,
            events: names(&rec.events),
            created_at: rfc3339(rec.created_at),
            secret: secret.expose().to_owned(),
        }),
    ))
}

/// List the account's webhooks, newest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    params(ListParams),
    responses((status = 200, description = "The account's webhooks", body = WebhookList),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<WebhookList>> {
    let Query(q) = q.map_err(query_error)?;
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = q
        .parse()?
        .resolve(IdKind::Webhook, |id| async move {
            Ok(store.get_webhook(acct, &id).await?.map(|w| w.created_at))
        })
        .await?;
    let page = state.store.list_webhooks(&account, limit, cursor.as_ref()).await?;
    Ok(Json(WebhookList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

/// One webhook (never its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook",
    params(("id" = String, Path, description = "whk_…")),
    responses((status = 200, description = "The webhook", body = Webhook),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook in this account", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(find(&state, &account, &id).await?.into()))
}

/// Delete a webhook: nothing more is sent to it, pending deliveries included.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    params(("id" = String, Path, description = "whk_…")),
    responses((status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook in this account", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !IdKind::Webhook.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    state.store.delete_webhook(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The webhook's deliveries, newest first: status, attempts, last response code, next attempt.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "whk_…"), ListParams),
    responses((status = 200, description = "The webhook's deliveries", body = WebhookDeliveryList),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook in this account", body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<WebhookDeliveryList>> {
    let hook = find(&state, &account, &id).await?;
    let Query(q) = q.map_err(query_error)?;
    let (store, hook_id) = (&state.store, hook.id.as_str());
    let (limit, cursor) = q
        .parse()?
        .resolve(IdKind::WebhookDelivery, |d| async move {
            Ok(store.get_webhook_delivery(hook_id, &d).await?.map(|d| d.created_at))
        })
        .await?;
    let page = state
        .store
        .list_webhook_deliveries(&hook.id, limit, cursor.as_ref())
        .await?;
    Ok(Json(WebhookDeliveryList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_with_their_field() {
        let none = TargetPolicy::default();
        assert_eq!(
            webhook_url("url", "https://hooks.example.com/x?y=1", &none).unwrap(),
            "https://hooks.example.com/x?y=1"
        );
        assert!(webhook_url("url", "HTTPS://Hooks.Example.com:8443/a/b-c_d.e~f%20?k=v&x=1+2", &none).is_ok());
        for bad in [
            "",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "not a url",
            "https://",
            "httP://C7m*",
            " https://example.com/",
            "https://exa mple.com/",
            "https://example.com:123456/",
            "https://example.com/a b",
            "https://example.com/x?y=<script>",
        ] {
            let e = webhook_url("url", bad, &none).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("url"), "{bad}");
        }
        for internal in [
            "http://127.0.0.1:9/",
            "http://localhost/",
            "http://[::1]/",
            "http://10.1.2.3/",
        ] {
            let e = webhook_url("url", internal, &none).unwrap_err();
            assert_eq!(e.code, "internal_target", "{internal}");
        }
        let lo = TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(webhook_url("url", "http://127.0.0.1:9/", &lo).is_ok());
    }

    #[test]
    fn events_are_known_names() {
        let ok = webhook_events("events", &["call.completed".into(), "call.completed".into()]).unwrap();
        assert_eq!(ok, vec![WebhookEvent::CallCompleted]);
        let e = webhook_events("events", &["call.exploded".into()]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("events"));
        assert!(e.message.contains("call.exploded"));
        assert!(webhook_events("events", &[]).is_err());
    }
}
