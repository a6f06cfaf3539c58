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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
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
                message: msg,
                field: Some("phone_number".into()),
            },
            ProviderError::InvalidRequest { field, message } => ApiError::field(field, message),
            ProviderError::Upstream { status, message } => {
                tracing::warn!(status, %message, "provider rejected request");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_error",
                    format!("number provider returned HTTP {status}"),
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
        }
    }
}
