//! The one error type every provider returns, so the API maps it to HTTP once.

/// Why a provider call failed. Messages never contain credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The number is not (or no longer) in the provider's inventory.
    #[error("phone number not available: {0}")]
    NotAvailable(String),
    /// The caller's input was rejected before any upstream call; `field` names the input.
    #[error("invalid {field}: {message}")]
    InvalidRequest { field: String, message: String },
    /// The provider answered with an error status; `message` is the provider's own text.
    #[error("provider returned HTTP {status}: {message}")]
    Upstream { status: u16, message: String },
    /// The provider could not be reached or its answer could not be read.
    #[error("provider transport error: {0}")]
    Transport(String),
    /// The provider kept answering 429 after our retries; try again after `retry_after_secs`.
    #[error("provider is rate limiting requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The purchase needs regulatory material (an address, a bundle) the provider does not have.
    #[error("regulatory requirement: {0}")]
    Regulatory(String),
    /// The provider refused the credentials (HTTP 401/403).
    #[error("provider refused the credentials: {0}")]
    Unauthorized(String),
    /// A number order was accepted but is still being processed; `provider_ref` is the order.
    #[error("order {provider_ref} still pending at the provider")]
    Pending { provider_ref: String },
}

impl ProviderError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }
}
