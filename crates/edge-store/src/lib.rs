//! Persistent store for accounts, API keys, agents, phone numbers, integrations, calls and voicemails, on SQLite
//! or PostgreSQL, plus the in-memory [`RoutingIndex`] the SIP side reads per call.

// Column lists as macros so queries stay `&'static str` (sqlx 0.9 only accepts static SQL
// without an explicit `AssertSqlSafe`).
macro_rules! agent_cols {
    () => {
        "id, account_id, name, sip_uri, max_concurrent_calls, voicemail_message, status, \
         sip_username, sip_password_sealed, created_at, updated_at, media_encryption"
    };
}
macro_rules! number_cols {
    () => {
        "id, account_id, phone_number, friendly_name, agent_id, status, provider, source, \
         provider_ref, inbound_enabled, inbound_agent_id, inbound_fallback_agent_id, \
         inbound_voicemail_message, trunk_address, auth_username, auth_password_sealed, \
         created_at, updated_at, failure_reason, inbound_transfer, tech_prefix, ip_auth_token_sealed, \
         p_charge_info, tls_client_certificate, tls_client_key_sealed, media_encryption"
    };
}
macro_rules! call_cols {
    () => {
        "id, account_id, direction, carrier, from_number, caller_name, to_number, \
         phone_number_id, status, answered_by, agent_id, hops_json, end_reason, hangup_by, sip_status, \
         sip_call_id, error_code, error_message, created_at, answered_at, ended_at, node"
    };
}
macro_rules! integration_cols {
    () => {
        "id, account_id, name, provider, metadata, created_at, updated_at"
    };
}

mod agents;
mod call_log;
pub mod calls;
mod config;
mod cursor;
mod error;
mod idempotency;
mod ids;
mod index;
mod index_sync;
mod integrations;
mod model;
mod nodes;
mod numbers;
mod pg_setup;
mod secret;
mod store;
pub mod time;
mod trace_files;
mod traces;
pub mod voicemails;
pub mod webhook_outbox;
pub mod webhooks;

pub use calls::{now_ms, CallError, CallFilter, CallRecord, CallStatus, HangupBy, Hop, Route};
pub use config::{Database, StoreConfig, SQLITE_FILE_NAME};
pub use cursor::Cursor;
pub use error::{Result, StoreError};
pub use idempotency::{idempotency_request_hash, IdempotencyBegin, IDEMPOTENCY_STUCK_MS, IDEMPOTENCY_TTL_MS};
pub use ids::IdKind;
pub use index::{InboundRoute, NumberRoute, OutboundTrunk, RoutingIndex, TransferMode, TrunkClientCert};
pub use index_sync::{IndexSyncStats, INDEX_CHECK_EVERY};
pub use model::{
    AgentPatch, AgentRecord, AgentStatus, InboundRouting, InboundRoutingPatch, IntegrationRecord, MediaEncryption,
    NewAgent, NewIntegration, NewNumber, NewProviderConfig, NumberPatch, NumberRecord, NumberSource, NumberStatus,
    Page, Provider, ProviderConfigPatch, ProviderConfigView,
};
pub use nodes::{NodeSeen, EDGE_RESTARTED};
pub use numbers::NumberFilter;
pub use secret::{Secret, SecretBox, SecretError, SecretKeyError, SECRET_KEY_ENV, SECRET_KEY_FILE};
pub use store::{ApiKeyRecord, Backend, Store};
pub use traces::StoredTrace;
pub use voicemails::{is_safe_recording_path, new_voicemail_id, VoicemailFilter, VoicemailRecord, VOICEMAIL_ENDED_BY};
pub use webhooks::{AttemptOutcome, ClaimedDelivery, DeliveryRecord, DeliveryStatus, WebhookEvent, WebhookRecord};
