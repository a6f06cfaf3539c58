//! `/v1/api-keys`: an account's keys, listed by prefix only, created (the key is in that one
//! answer and never again) and revoked.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account, ApiJson};
use crate::validate::{self, MAX_NAME_LEN};
use crate::wire::ListParams;
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use edge_store::{ApiKeyRecord, IdKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    pub name: String,
    /// `oik_` and the key's first 8 hex digits, to tell keys apart; `null` for keys made before
    /// prefixes were kept.
    pub prefix: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// `key_…`
    pub id: String,
    pub name: String,
    pub prefix: Option<String>,
    pub created_at: String,
    /// The key itself: shown in this answer only, store it now.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

impl From<ApiKeyRecord> for ApiKey {
    fn from(k: ApiKeyRecord) -> Self {
        ApiKey {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created_at: edge_store::time::rfc3339(k.created_at),
        }
    }
}

/// List the account's API keys, newest first (prefixes only).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    params(ListParams),
    responses((status = 200, description = "The account's keys", body = ApiKeyList),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<ApiKeyList>> {
    let Query(q) = q.map_err(query_error)?;
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = q
        .parse()?
        .resolve(IdKind::ApiKey, |id| async move {
            Ok(store.get_api_key(Some(acct), &id).await?.map(|k| k.created_at))
        })
        .await?;
    let page = state
        .store
        .list_api_keys(Some(&account), limit, cursor.as_ref())
        .await?;
    Ok(Json(ApiKeyList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

/// Create another key for this account (e.g. to rotate): the key is in this answer only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", operation_id = "create_api_key",
    request_body = CreateApiKeyRequest,
    responses((status = 201, description = "The new key, shown this once", body = CreatedApiKey),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Account(account): Account,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let name = validate::text("name", &req.name, MAX_NAME_LEN)?;
    let (rec, key) = state.store.create_api_key_record(Some(&account), &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            id: rec.id,
            name: rec.name,
            prefix: rec.prefix,
            created_at: edge_store::time::rfc3339(rec.created_at),
            key,
        }),
    ))
}

/// Revoke a key: it stops working at once. The key making the request cannot revoke itself (409
/// `key_in_use`): a script that did would lock itself out half-way; revoke it with another key.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key",
    params(("id" = String, Path, description = "key_…")),
    responses((status = 204, description = "Revoked"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such key in this account", body = ErrorBody),
        (status = 409, description = "The key making the request: revoke it with another key", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<ApiState>,
    Account(account): Account,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !IdKind::ApiKey.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    if let Some(own) = bearer(&headers) {
        if state.store.api_key_id_of(own).await?.as_deref() == Some(id.as_str()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "key_in_use",
                "this request is made with that key; revoke it with another key of the account",
            ));
        }
    }
    state.store.revoke_api_key(Some(&account), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bearer token of a request (already authenticated by [`Account`]).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, key) = headers.get(AUTHORIZATION)?.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}
