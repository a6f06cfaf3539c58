//! REST API (`/v1/...`) for phone numbers, agents, integrations, calls and voicemails.
//!
//! Every route except `GET /v1/openapi.json` needs `Authorization: Bearer <api_key>`; every
//! resource belongs to one account and other accounts' ids answer 404. Writes go through
//! [`edge_store::Store`], which updates the routing index before the response is sent.

mod agents;
mod calls;
mod checks;
mod client_cert;
mod error;
mod extract;
mod idempotency;
mod inflight;
mod integrations;
mod keys;
mod numbers;
mod openapi;
mod pcap;
mod reconcile;
mod serve;
pub mod traces;
mod ui;
mod validate;
mod voicemails;
mod webhooks;
mod wire;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use edge_providers::{NumberProvider, ProviderKind};
use edge_store::{RoutingIndex, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// The engine's side of `/v1/calls` (re-exported: `ApiState` and `ApiConfig` take them).
pub use calls::refusal_parts;
pub use edge_contract::{CallCommand, OriginateRefusal, OriginateRequest, TargetPolicy};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use openapi::ApiDoc;
pub use reconcile::{reconcile_pending, spawn_reconciler, ReconcileOutcome, Reconciler, INTERRUPTED_PURCHASE};
pub use serve::{finish, serve, ServeConfig};
pub use validate::SUPPORTED_COUNTRIES;

/// Where carriers send inbound calls unless `[api] public_sip_uri` says otherwise.
pub const DEFAULT_PUBLIC_SIP_URI: &str = "sip:voice.oneinbox.ai:5060";

/// Tunables for the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Upper bound on handling one request (provider calls included); then 503.
    pub request_timeout: Duration,
    /// The edge's data dir; voicemail `recording_path`s are relative to it.
    pub data_dir: PathBuf,
    /// Largest recording `GET /v1/voicemails/{id}/recording` serves (larger: 500, logged).
    pub max_recording_bytes: u64,
    /// How long `POST`/`DELETE /v1/calls` wait for the call engine to answer; then 503.
    pub call_control_timeout: Duration,
    /// How long a request body may take to arrive; then 408.
    pub body_read_timeout: Duration,
    /// Internal address ranges agents and trunks may point at (`[security] internal_targets`).
    pub targets: TargetPolicy,
    /// `[security] verify_number_ownership`: path C registrations of Twilio/Telnyx numbers
    /// must be in the account's own provider account (checked with its integration).
    pub verify_number_ownership: bool,
    /// `[api] public_sip_uri`: where carriers must send inbound calls (set-up checks).
    pub public_sip_uri: String,
    /// `[inventory.twilio] base_url`: Twilio API base for integration (customer) calls.
    pub twilio_base_url: Option<String>,
    /// `[inventory.telnyx] base_url`: Telnyx API base for integration (customer) calls.
    pub telnyx_base_url: Option<String>,
    /// `[inventory] max_purchased_numbers_per_account`: more purchases answer 429.
    pub max_purchased_numbers: Option<u32>,
    /// Longest a purchase may run: a `pending` row untouched for longer is taken for one a
    /// crash interrupted (also by other edges on the same database) and settled by asking the
    /// provider. Rows from before this process started are settled at once.
    pub purchase_max_duration: Duration,
}

impl ApiConfig {
    /// How long a handler may take before answering itself, a little inside `request_timeout`
    /// so a long purchase gets its own clear 503 rather than the generic time-out.
    pub(crate) fn answer_within(&self) -> Duration {
        let margin = (self.request_timeout / 10).min(Duration::from_secs(1));
        self.request_timeout.saturating_sub(margin)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            data_dir: PathBuf::from("data"),
            max_recording_bytes: 64 * 1024 * 1024,
            call_control_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            targets: TargetPolicy::default(),
            verify_number_ownership: true,
            public_sip_uri: DEFAULT_PUBLIC_SIP_URI.to_owned(),
            twilio_base_url: None,
            telnyx_base_url: None,
            max_purchased_numbers: None,
            purchase_max_duration: Duration::from_secs(10 * 60),
        }
    }
}

/// The number providers available to the API, one per kind. `default` is used for search
/// and purchase unless the request names another configured provider.
#[derive(Clone)]
pub struct ProviderSet {
    default: ProviderKind,
    by_kind: HashMap<ProviderKind, Arc<dyn NumberProvider>>,
}

impl ProviderSet {
    /// `default` (usually `LocalInventory`) serves searches and purchases by default.
    pub fn new(default: Arc<dyn NumberProvider>) -> Self {
        let kind = default.kind();
        let mut by_kind = HashMap::new();
        by_kind.insert(kind, default);
        Self { default: kind, by_kind }
    }

    /// Adds (or replaces) the provider for its kind; the default stays unless replaced.
    pub fn with(mut self, provider: Arc<dyn NumberProvider>) -> Self {
        self.by_kind.insert(provider.kind(), provider);
        self
    }

    pub fn get(&self, kind: ProviderKind) -> Option<Arc<dyn NumberProvider>> {
        self.by_kind.get(&kind).cloned()
    }

    pub fn default_provider(&self) -> Arc<dyn NumberProvider> {
        // `default` is inserted in `new` and `with` only replaces, so the lookup cannot miss;
        // the fallback keeps this panic-free anyway.
        match self.by_kind.get(&self.default) {
            Some(p) => Arc::clone(p),
            None => Arc::new(edge_providers::LocalInventory::new(Vec::new())),
        }
    }
}

impl std::fmt::Debug for ProviderSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSet")
            .field("default", &self.default)
            .field("kinds", &self.by_kind.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub index: Arc<RoutingIndex>,
    pub providers: ProviderSet,
    pub config: ApiConfig,
    purchases: inflight::PurchaseLocks,
    /// The call engine; `None` answers call placement with 503.
    call_control: Option<tokio::sync::mpsc::Sender<CallCommand>>,
}

impl ApiState {
    /// `index` is taken from the store, which keeps it current.
    pub fn new(store: Arc<Store>, providers: ProviderSet, config: ApiConfig) -> Self {
        let index = store.index();
        Self {
            store,
            index,
            providers,
            config,
            purchases: inflight::PurchaseLocks::default(),
            call_control: None,
        }
    }

    /// Enables `POST /v1/calls` and live hang-up through `DELETE /v1/calls/{id}`.
    pub fn with_call_control(mut self, tx: tokio::sync::mpsc::Sender<CallCommand>) -> Self {
        self.call_control = Some(tx);
        self
    }
}

/// The `/v1` router with JSON 404/405 fallbacks. Serve it with [`serve`], which adds the
/// edge-wide layers (JSON errors everywhere, `X-Request-Id`, access log, read time-outs).
pub fn router(state: ApiState) -> Router {
    routes(state)
        .fallback(|| async { ApiError::not_found().into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
            .into_response()
        })
}

/// The `/v1` routes without fallbacks, for `Router::merge` into a router that has its own
/// (axum refuses to merge two routers that both have a fallback).
pub fn routes(state: ApiState) -> Router {
    let spec: Arc<str> = openapi::render().into();
    let body_limit = state.config.max_body_bytes;
    let request_timeout = state.config.request_timeout;
    Router::new()
        .route(
            "/v1/openapi.json",
            get(move || {
                let spec = Arc::clone(&spec);
                async move { ([(header::CONTENT_TYPE, "application/json")], spec.to_string()) }
            }),
        )
        .route("/v1/phone-numbers/search", get(numbers::search))
        .route("/v1/phone-numbers/purchase", axum::routing::post(numbers::purchase))
        .route("/v1/phone-numbers", get(numbers::list).post(numbers::register))
        .route(
            "/v1/phone-numbers/{id}",
            get(numbers::get).patch(numbers::update).delete(numbers::delete),
        )
        .route("/v1/phone-numbers/{id}/checks", get(checks::get))
        .route("/v1/phone-numbers/{id}/checks/fix", axum::routing::post(checks::fix))
        .route("/v1/integrations", get(integrations::list).post(integrations::create))
        .route(
            "/v1/integrations/{id}",
            get(integrations::get).delete(integrations::delete),
        )
        .route("/v1/calls", get(calls::list).post(calls::create))
        .route("/v1/calls/{id}", get(calls::get).delete(calls::hang_up))
        .route("/v1/calls/{id}/transfer", post(calls::transfer))
        .route("/v1/calls/{id}/trace", get(traces::get))
        .route("/v1/voicemails", get(voicemails::list))
        .route("/v1/voicemails/{id}", get(voicemails::get).delete(voicemails::delete))
        .route("/v1/voicemails/{id}/recording", get(voicemails::recording))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{id}", get(webhooks::get).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/api-keys", get(keys::list).post(keys::create))
        .route("/v1/api-keys/{id}", axum::routing::delete(keys::revoke))
        .route("/v1/agents", get(agents::list).post(agents::create))
        .route(
            "/v1/agents/{id}",
            get(agents::get).patch(agents::update).delete(agents::delete),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next: Next| async move {
            match tokio::time::timeout(request_timeout, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "request took too long").into_response()
                }
            }
        }))
        .with_state(state)
        .merge(ui::routes())
}
