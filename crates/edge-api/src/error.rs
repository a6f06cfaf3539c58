//! The single JSON error shape: `{"error":{"code":"…","message":"…","field":"…"|null}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use edge_providers::ProviderError;
use edge_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `conflict`.
    pub code: String,
    pub message: String,
    /// JSON path of the offending input (`inbound_routing.fallback.agent_id`), if any.
    pub field: Option<String>,
    /// In a 503 `purchase_in_progress`: the `pending` number to poll with
    /// `GET /v1/phone-numbers/{id}` (it turns `active` or `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming the input field that is wrong.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "resource not found")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API key (use `Authorization: Bearer <api_key>`)",
        )
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = retry_after(&self);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                phone_number_id: None,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::InvalidReference { field, message } => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_reference",
                message,
                field: Some(field.to_owned()),
            },
            StoreError::InvalidField { field, message } => ApiError::field(field, message),
            StoreError::Conflict { field, message } => ApiError {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message,
                field: field.map(str::to_owned),
            },
            other => {
                // StoreError's Display never includes secrets (see edge_store::error).
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::NotAvailable(msg) => ApiError {
                status: StatusCode::CONFLICT,
                code: "number_unavailable",
                message: format!("this number is not available at the provider: {msg}"),
                field: Some("phone_number".into()),
            },
            ProviderError::InvalidRequest { field, message } => ApiError::field(field, message),
            ProviderError::Upstream { status, message } => {
                tracing::warn!(status, %message, "provider rejected request");
                // The provider's own text (bounded, credential-free) is what lets a user act.
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_error",
                    format!("number provider returned HTTP {status}: {message}"),
                )
            }
            ProviderError::Transport(message) => {
                tracing::warn!(%message, "provider unreachable");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unreachable",
                    "number provider could not be reached",
                )
            }
            ProviderError::RateLimited { retry_after_secs } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RATE_LIMITED_CODE,
                format!("the number provider is rate limiting requests; retry after {retry_after_secs} seconds"),
            ),
            ProviderError::Regulatory(message) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "regulatory_requirements_unmet",
                message: format!(
                    "the provider requires regulatory information (address or bundle) for this number: {message}"
                ),
                field: Some("phone_number".into()),
            },
            ProviderError::Unauthorized(message) => {
                tracing::error!(%message, "provider refused the server's credentials");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_error",
                    "the number provider refused the server's credentials",
                )
            }
            ProviderError::Pending { provider_ref } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "purchase_pending",
                format!("order {provider_ref} is still being processed by the provider"),
            ),
        }
    }
}

/// Code of the 503 answered when a provider keeps rate limiting; it carries `Retry-After`.
pub(crate) const RATE_LIMITED_CODE: &str = "provider_rate_limited";

/// Seconds to put in `Retry-After` for errors that have one: the provider's hint (kept in
/// the message as "retry after N seconds"), else 5 for work still in progress.
fn retry_after(e: &ApiError) -> Option<u64> {
    match e.code {
        RATE_LIMITED_CODE => e
            .message
            .split("retry after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .or(Some(1)),
        "purchase_in_progress" | "request_in_progress" | "purchase_pending" | "idempotency_in_progress" => Some(5),
        _ => None,
    }
}

/// 503 `purchase_in_progress`: the purchase goes on after the client's wait; `phone_number_id`
/// names its `pending` number when it has one yet.
pub fn purchase_in_progress(message: &str, phone_number_id: Option<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "purchase_in_progress".into(),
            message: message.into(),
            field: None,
            phone_number_id,
        },
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
