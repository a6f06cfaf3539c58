//! Operator configuration: one TOML file, validated up front so that a bad value is reported with its key
//! and line instead of surfacing later as a runtime failure.
//!
//! The key names under `[sip]`, `[api]`, `[database]`, `[storage]` and `[[carriers]]` are a contract with
//! tools outside this repository; keep them.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

mod admission;
mod observability;
pub mod outbound;
pub mod restart;
mod security;
pub use observability::ObservabilitySettings;
mod cluster;
pub use cluster::ClusterSettings;
mod webhooks;
pub use outbound::{AgentNetwork, OperatorTrunk, OutboundSettings};
pub use security::SecuritySettings;
pub use webhooks::WebhookSettings;

/// A configuration problem, always naming the key and (where the file has it) the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        line: usize,
        message: String,
    },
}

/// Raw file shape. `deny_unknown_fields` turns a misspelt key into an error with its line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    sip: RawSip,
    api: RawApi,
    database: RawDatabase,
    storage: RawStorage,
    secrets: RawSecrets,
    log: RawLog,
    carriers: Vec<RawCarrier>,
    agent_networks: Vec<outbound::RawAgentNetwork>,
    outbound: outbound::RawOutbound,
    routing: RawRouting,
    media: RawMedia,
    inventory: RawInventory,
    runtime: RawRuntime,
    admission: admission::RawAdmission,
    security: security::RawSecurity,
    node: RawNode,
    observability: observability::RawObservability,
    cluster: cluster::RawCluster,
    shutdown: RawShutdown,
    webhooks: webhooks::RawWebhooks,
}

/// `[shutdown]`: how SIGTERM drains the node (issue 21).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawShutdown {
    drain_timeout_s: Spanned<u64>,
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown {
            drain_timeout_s: Spanned::new(0..0, 300),
        }
    }
}

/// `[node]`: which edge this is, when several share a database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNode {
    id: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRuntime {
    worker_threads: Spanned<u64>,
    engine_shards: Option<Spanned<u64>>,
}

impl Default for RawRuntime {
    fn default() -> Self {
        RawRuntime {
            worker_threads: Spanned::new(0..0, 0),
            engine_shards: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawInventory {
    provider: Option<Spanned<String>>,
    ranges: Vec<Spanned<edge_providers::InventoryRange>>,
    twilio: Option<Spanned<RawTwilio>>,
    telnyx: Option<Spanned<RawTelnyx>>,
    /// Purchased numbers one account may hold; more purchases answer 429.
    max_purchased_numbers_per_account: Option<Spanned<u64>>,
}

/// `[inventory.twilio]`: the operator's Twilio account (optional) and the API base URL, which
/// also serves calls made with customers' integration credentials (ownership, set-up checks).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTwilio {
    account_sid: Option<String>,
    auth_token: Option<edge_providers::SecretString>,
    trunk_sid: Option<String>,
    base_url: Option<String>,
}

/// `[inventory.telnyx]`: like [`RawTwilio`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelnyx {
    api_key: Option<edge_providers::SecretString>,
    connection_id: Option<String>,
    base_url: Option<String>,
}

/// Where `/v1/phone-numbers/search` and `purchase` get numbers (`[inventory]`).
#[derive(Debug, Clone)]
pub struct InventorySettings {
    /// The provider that serves search and purchase by default.
    pub default: edge_providers::ProviderKind,
    /// Number blocks of the local inventory; empty: the fictional 555-0100..0199 block of any US/CA area code.
    pub ranges: Vec<edge_providers::InventoryRange>,
    pub twilio: Option<edge_providers::TwilioConfig>,
    pub telnyx: Option<edge_providers::TelnyxConfig>,
    /// `[inventory.twilio] base_url`, with or without operator credentials.
    pub twilio_base_url: Option<String>,
    /// `[inventory.telnyx] base_url`, with or without operator credentials.
    pub telnyx_base_url: Option<String>,
    pub max_purchased_numbers_per_account: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMedia {
    enabled: bool,
    public_ip: Option<Spanned<String>>,
    bind_ip: Spanned<String>,
    rtp_ports: Spanned<String>,
    media_timeout_s: Spanned<u64>,
    port_quarantine_ms: Spanned<u64>,
    socket_cache: Spanned<u64>,
    max_sockets: Spanned<u64>,
    workers: Spanned<u64>,
    codecs: Option<Vec<String>>,
    voicemail_max_length_s: Spanned<u64>,
    voicemail_silence_limit_s: Spanned<u64>,
    espeak: String,
}

impl Default for RawMedia {
    fn default() -> Self {
        let s = |v: u64| Spanned::new(0..0, v);
        let t = |v: &str| Spanned::new(0..0, v.to_owned());
        RawMedia {
            enabled: true,
            public_ip: None,
            bind_ip: t("0.0.0.0"),
            rtp_ports: t("10000-20000"),
            media_timeout_s: s(30),
            port_quarantine_ms: s(5_000),
            socket_cache: s(2_048),
            max_sockets: s(0),
            workers: s(0),
            codecs: None,
            voicemail_max_length_s: s(120),
            voicemail_silence_limit_s: s(10),
            espeak: "espeak-ng".into(),
        }
    }
}

/// RTP anchoring and voicemail (`[media]`).
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub enabled: bool,
    /// Address written in our SDP; default: the SIP advertised host if it is an IP, else loopback.
    pub public_ip: Option<IpAddr>,
    pub bind_ip: IpAddr,
    pub rtp_ports: (u16, u16),
    pub media_timeout: Duration,
    pub port_quarantine: Duration,
    /// Released port pairs kept bound for reuse (`media.socket_cache`).
    pub socket_cache_pairs: usize,
    /// Media sockets open at most (`media.max_sockets`); 0: the open-files limit less what the rest of
    /// the edge needs ([`MediaSettings::socket_ceiling`]).
    pub max_sockets: usize,
    /// Media worker processes that take relays past `max_sockets` (`media.workers`), each with an
    /// open-files limit of its own; 0: none (past the ceiling, 503).
    pub workers: usize,
    /// The program run as a media worker (with the argument `media-worker`); `None`: this executable.
    /// Not a config key: tests point it at the built binary.
    pub worker_program: Option<std::path::PathBuf>,
    /// Codec names allowed through (e.g. PCMU, PCMA); `None` passes every offered codec.
    pub codecs: Option<Vec<String>>,
    pub voicemail_max_length: Duration,
    pub voicemail_silence_limit: Duration,
    pub espeak: String,
}

/// Open files kept for everything but media (SIP TCP, API connections, the store, logs) when
/// `media.max_sockets` is 0; at most half the limit.
pub const NON_MEDIA_FILES: u64 = 1_024;

/// Open files a media worker keeps for itself (its standard streams, control socket, reactor).
pub const WORKER_SPARE_FILES: u64 = 64;

impl MediaSettings {
    /// Media sockets one worker may hold when its (hard) open-files limit is `open_files`.
    pub fn worker_socket_ceiling(open_files: Option<u64>) -> usize {
        match open_files {
            Some(n) => usize::try_from(n - WORKER_SPARE_FILES.min(n / 2)).unwrap_or(usize::MAX),
            None => usize::MAX,
        }
    }

    /// The media socket ceiling for a process allowed `open_files` descriptors (`None`: unlimited):
    /// `media.max_sockets` when set, else the limit less [`NON_MEDIA_FILES`] (less half of it when it
    /// is small).
    pub fn socket_ceiling(&self, open_files: Option<u64>) -> usize {
        if self.max_sockets > 0 {
            return self.max_sockets;
        }
        match open_files {
            Some(n) => usize::try_from(n - NON_MEDIA_FILES.min(n / 2)).unwrap_or(usize::MAX),
            None => usize::MAX,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSip {
    udp: Option<Spanned<String>>,
    tcp: Option<Spanned<String>>,
    /// SIP over TLS; off unless set.
    tls: Option<Spanned<String>>,
    tls_certificate: Option<Spanned<String>>,
    tls_private_key: Option<Spanned<String>>,
    advertised_host: Option<Spanned<String>>,
    max_message_size: Spanned<u64>,
    tcp_idle_timeout_s: Spanned<u64>,
    tcp_max_connections: Spanned<u64>,
    tcp_max_connections_per_ip: Spanned<u64>,
    /// Defaults derived from the caps above when left out (see [`Validator::tcp_budget`]).
    tcp_carrier_reserved_connections: Option<Spanned<u64>>,
    tcp_stranger_max_connections: Option<Spanned<u64>>,
    tcp_stranger_max_connections_per_ip: Option<Spanned<u64>>,
    tcp_first_message_timeout_s: Spanned<u64>,
    t1_ms: Spanned<u64>,
    t2_ms: Spanned<u64>,
    t4_ms: Spanned<u64>,
    max_transactions: Spanned<u64>,
    server_name: String,
}

impl Default for RawSip {
    fn default() -> Self {
        let s = |v| Spanned::new(0..0, v);
        RawSip {
            udp: Some(Spanned::new(0..0, "0.0.0.0:5060".into())),
            tcp: Some(Spanned::new(0..0, "0.0.0.0:5060".into())),
            tls: None,
            tls_certificate: None,
            tls_private_key: None,
            advertised_host: None,
            max_message_size: s(65_535),
            tcp_idle_timeout_s: s(600),
            tcp_max_connections: s(10_000),
            tcp_max_connections_per_ip: s(256),
            tcp_carrier_reserved_connections: None,
            tcp_stranger_max_connections: None,
            tcp_stranger_max_connections_per_ip: None,
            tcp_first_message_timeout_s: s(5),
            t1_ms: s(500),
            t2_ms: s(4_000),
            t4_ms: s(5_000),
            max_transactions: s(200_000),
            server_name: "oneinbox-edge".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawApi {
    listen: Option<Spanned<String>>,
    /// Where carriers must send inbound calls; the set-up checks compare trunks against it.
    public_sip_uri: Option<Spanned<String>>,
    /// Where API users reach the API, for absolute URLs in webhook events.
    public_url: Option<Spanned<String>>,
    metrics_token: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    metrics_agent_labels: bool,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            listen: Some(Spanned::new(0..0, "127.0.0.1:8080".into())),
            public_sip_uri: None,
            public_url: None,
            metrics_token: None,
            metrics_listen: None,
            metrics_agent_labels: false,
        }
    }
}

/// Who may read `/metrics` (`[api] metrics_*`). With neither a token nor a listener of its own,
/// `/metrics` is not served: its labels name accounts' agents.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// `Authorization: Bearer <token>` required for `/metrics` (on either listener).
    pub token: Option<String>,
    /// A listener for `/metrics` and `/healthz` only, e.g. on a private interface.
    pub listen: Option<SocketAddr>,
    /// Per-agent series (`edge_agent_active_calls{agent_id=...}`); off unless asked for.
    pub agent_labels: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    data_dir: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            data_dir: "data".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSecrets {
    key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: Spanned<String>,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: Spanned::new(0..0, "auto".into()),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarrier {
    name: Spanned<String>,
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    media_encryption: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRouting {
    unknown_source: Spanned<String>,
    default_country_code: Option<Spanned<String>>,
    agent_setup_timeout_ms: Spanned<u64>,
    agent_ring_timeout_s: Spanned<u64>,
    default_voicemail_message: String,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            unknown_source: Spanned::new(0..0, "reject".into()),
            default_country_code: None,
            agent_setup_timeout_ms: Spanned::new(0..0, 2_000),
            agent_ring_timeout_s: Spanned::new(0..0, 20),
            default_voicemail_message:
                "Sorry, nobody can take your call right now. Please leave a message after the tone.".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human format on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

/// What the edge does with a request from an address outside every carrier's allow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSource {
    /// Answer 403 Forbidden.
    Reject,
    /// Say nothing: scanners learn nothing about us.
    Drop,
}

/// A carrier (Twilio, Telnyx, a test peer) allowed to send us calls.
#[derive(Debug, Clone)]
pub struct Carrier {
    pub name: String,
    pub allow: Vec<IpNet>,
    /// SRTP toward this carrier's leg (`media_encryption`, default `none`): `srtp` offers RTP/SAVP with the
    /// edge's keys, `srtp_required` also refuses its plain offers with 488.
    pub media_encryption: edge_media::MediaEncryption,
}

/// SIP listener and protocol settings.
#[derive(Debug, Clone)]
pub struct SipConfig {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// The SIP-over-TLS listener (`sip.tls`, off by default). Its connections take the TCP budgets,
    /// limits and time-outs below.
    pub tls: Option<SocketAddr>,
    /// PEM files of the TLS listener (`sip.tls_certificate`: the chain, leaf first; `sip.tls_private_key`),
    /// set whenever `tls` is; re-read on SIGHUP and when they change.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// Host written into our Via/Contact; defaults to the listener's IP.
    pub advertised_host: Option<String>,
    pub max_message_size: usize,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_connections_per_ip: usize,
    /// Slots of `tcp_max_connections` only carriers may take.
    pub tcp_carrier_reserved_connections: usize,
    /// Connections from strangers (outside every carrier and agent network) open at once.
    pub tcp_stranger_max_connections: usize,
    /// A stranger's connections from one address (one /64 for IPv6).
    pub tcp_stranger_max_connections_per_ip: usize,
    /// An accepted connection without a SIP message this long after accept is closed.
    pub tcp_first_message_timeout: Duration,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub max_transactions: usize,
    pub server_name: String,
}

/// The validated configuration the edge runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub sip: SipConfig,
    pub api_listen: Option<SocketAddr>,
    pub metrics: MetricsSettings,
    /// `None`: the embedded SQLite store under `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    /// Key for secrets at rest (64 hex characters); `None` means take it from the environment
    /// (`ONEINBOX_SECRET_KEY`) or generate one under `data_dir`.
    pub secret_key: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Tokio worker threads (`[runtime] worker_threads`); 0 picks one per core but one.
    pub worker_threads: usize,
    /// SIP engine tasks (`[runtime] engine_shards`), each owning the calls whose Call-ID hashes to it;
    /// when the file leaves it out, [`crate::shard::default_shards`] of the box's cores.
    pub engine_shards: usize,
    pub carriers: Vec<Carrier>,
    pub unknown_source: UnknownSource,
    pub default_country_code: Option<String>,
    /// An agent that sends no provisional answer within this is unavailable.
    pub agent_setup_timeout: Duration,
    /// An agent that sends no final answer within this is unavailable.
    pub agent_ring_timeout: Duration,
    pub default_voicemail_message: String,
    pub media: MediaSettings,
    pub inventory: InventorySettings,
    /// Sources trusted as agents placing outbound calls (`[[agent_networks]]`).
    pub agent_networks: Vec<AgentNetwork>,
    pub outbound: OutboundSettings,
    /// Flood limits per source and class (`[admission]`).
    pub admission: crate::sip::admission::AdmissionConfig,
    /// `[security]`.
    pub security: SecuritySettings,
    /// `[observability]`: per-call SIP traces and HEP export.
    pub observability: ObservabilitySettings,
    /// `[api] public_sip_uri` (default `sip:voice.oneinbox.ai:5060`).
    pub public_sip_uri: String,
    /// `[api] public_url`: the API's address as API users reach it (`https://api.example.com`, stored
    /// without a trailing slash); webhook events carry absolute URLs under it. `None`: API paths alone.
    pub public_api_url: Option<String>,
    /// `[node] id`: this edge node's name, on every call record it makes and in the `nodes` table (its
    /// heartbeat). Unique per node sharing a database: at start a node closes the records it left live.
    /// Default: the host name, or `edge-1`.
    pub node_id: String,
    /// `[cluster]`: limits counted across nodes in Redis.
    pub cluster: ClusterSettings,
    /// `[shutdown] drain_timeout_s`: after SIGTERM, how long calls in progress may go on before the edge
    /// ends them with BYE (new calls get 503 meanwhile).
    pub drain_timeout: Duration,
    /// `[webhooks]`: the delivery worker.
    pub webhooks: WebhookSettings,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates config text; `path` only labels errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Validator { path, text }.finish(raw)
    }

    /// The `[api] metrics_token` of [`Config::for_tests`].
    pub const METRICS_TOKEN_FOR_TESTS: &'static str = "test-metrics-token-0123456789";

    /// Loopback-only defaults for tests and local trials: every listener on 127.0.0.1 port 0.
    pub fn for_tests(data_dir: &Path) -> Config {
        let text = format!(
            "[sip]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\nmetrics_token = \"{METRICS_TOKEN_FOR_TESTS}\"\nmetrics_agent_labels = true\n\
             [media]\nbind_ip = \"127.0.0.1\"\npublic_ip = \"127.0.0.1\"\n\
             [storage]\ndata_dir = {:?}\n[[carriers]]\nname = \"loopback\"\nallow = [\"127.0.0.0/8\", \"::1/128\"]\n\
             [security]\ninternal_targets = [\"127.0.0.0/8\", \"::1/128\"]\n",
            data_dir.display().to_string(),
            METRICS_TOKEN_FOR_TESTS = Config::METRICS_TOKEN_FOR_TESTS,
        );
        // The text above is fixed and valid; a failure here is a bug in this function, caught by its test.
        Config::parse(Path::new("<tests>"), &text).unwrap_or_else(|e| panic!("test config: {e}"))
    }
}

/// `[node] id` when the host has no usable name.
pub const DEFAULT_NODE_ID: &str = "edge-1";

/// The host's name (Linux: `/proc/sys/kernel/hostname`; else `$HOSTNAME`).
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// A `media_encryption` value (`none` when absent), or the error naming `key` and its line.
    fn media_encryption(
        &self,
        key: &str,
        v: &Option<Spanned<String>>,
    ) -> Result<edge_media::MediaEncryption, ConfigError> {
        let Some(v) = v else {
            return Ok(edge_media::MediaEncryption::None);
        };
        match edge_media::MediaEncryption::parse(v.get_ref()) {
            Some(m) => Ok(m),
            None => self.err(
                key,
                v.span(),
                format!("`{}`: expected \"none\", \"srtp\" or \"srtp_required\"", v.get_ref()),
            ),
        }
    }

    fn err<T>(&self, key: &str, span: std::ops::Range<usize>, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            line: self.line_of(span),
            message: message.into(),
        })
    }

    fn socket(&self, key: &str, v: &Option<Spanned<String>>) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let s = v.get_ref().trim();
        if s.is_empty() || s == "off" {
            return Ok(None);
        }
        match s.parse::<SocketAddr>() {
            Ok(a) => Ok(Some(a)),
            Err(_) => self.err(
                key,
                v.span(),
                format!("`{s}` is not IP:PORT (e.g. \"0.0.0.0:5060\" or \"[::]:5060\"); use \"off\" to disable"),
            ),
        }
    }

    fn range(&self, key: &str, v: &Spanned<u64>, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n = *v.get_ref();
        if n < min || n > max {
            return self.err(key, v.span(), format!("{n} is out of range {min}..={max}"));
        }
        Ok(n)
    }

    /// `[node] id`: 1-64 of `A-Z a-z 0-9 . _ -`; left out, the host name (cut to 64), else `edge-1`.
    fn node_id(&self, raw: &RawNode) -> Result<String, ConfigError> {
        let valid = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        match &raw.id {
            Some(v) => {
                let s = v.get_ref().trim();
                if !valid(s) {
                    return self.err(
                        "node.id",
                        v.span(),
                        format!("`{s}`: expected 1-64 characters of A-Z a-z 0-9 . _ -"),
                    );
                }
                Ok(s.to_owned())
            }
            None => Ok(host_name()
                .map(|h| h.chars().take(64).collect::<String>())
                .filter(|h| valid(h))
                .unwrap_or_else(|| DEFAULT_NODE_ID.to_owned())),
        }
    }

    fn finish(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let s = &raw.sip;
        let udp = self.socket("sip.udp", &s.udp)?;
        let tcp = self.socket("sip.tcp", &s.tcp)?;
        let tls = self.socket("sip.tls", &s.tls)?;
        if udp.is_none() && tcp.is_none() && tls.is_none() {
            let span = s.udp.as_ref().map(|v| v.span()).unwrap_or(0..0);
            return self.err(
                "sip.udp",
                span,
                "sip.udp, sip.tcp and sip.tls are all off: the edge would hear nothing",
            );
        }
        let (tls_certificate, tls_private_key) = self.tls_files(s, tls, tcp)?;
        let advertised_host = match &s.advertised_host {
            Some(h) => {
                let v = h.get_ref().trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
                    return self.err(
                        "sip.advertised_host",
                        h.span(),
                        format!("`{v}` is not a host name or IP"),
                    );
                }
                Some(v.to_owned())
            }
            None => None,
        };
        let caps = self.tcp_budget(s)?;
        let t1 = self.range("sip.t1_ms", &s.t1_ms, 50, 10_000)?;
        let t2 = self.range("sip.t2_ms", &s.t2_ms, t1, 60_000)?;
        let t4 = self.range("sip.t4_ms", &s.t4_ms, t1, 60_000)?;
        let sip = SipConfig {
            udp,
            tcp,
            tls,
            tls_certificate,
            tls_private_key,
            advertised_host,
            max_message_size: self.range("sip.max_message_size", &s.max_message_size, 1_500, 65_535)? as usize,
            tcp_idle_timeout: Duration::from_secs(self.range(
                "sip.tcp_idle_timeout_s",
                &s.tcp_idle_timeout_s,
                1,
                86_400,
            )?),
            tcp_max_connections: caps.max_connections,
            tcp_max_connections_per_ip: caps.max_per_ip,
            tcp_carrier_reserved_connections: caps.carrier_reserved,
            tcp_stranger_max_connections: caps.stranger_max,
            tcp_stranger_max_connections_per_ip: caps.stranger_max_per_ip,
            tcp_first_message_timeout: Duration::from_secs(self.range(
                "sip.tcp_first_message_timeout_s",
                &s.tcp_first_message_timeout_s,
                1,
                600,
            )?),
            t1: Duration::from_millis(t1),
            t2: Duration::from_millis(t2),
            t4: Duration::from_millis(t4),
            max_transactions: self.range("sip.max_transactions", &s.max_transactions, 100, 10_000_000)? as usize,
            server_name: s.server_name.clone(),
        };

        let api_listen = self.socket("api.listen", &raw.api.listen)?;
        let metrics = MetricsSettings {
            token: match &raw.api.metrics_token {
                None => None,
                Some(t) => {
                    let v = t.get_ref();
                    if v.len() < 16 || v.len() > 256 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                        return self.err(
                            "api.metrics_token",
                            t.span(),
                            "expected 16 to 256 visible ASCII characters (e.g. `openssl rand -hex 32`)",
                        );
                    }
                    Some(v.clone())
                }
            },
            listen: self.socket("api.metrics_listen", &raw.api.metrics_listen)?,
            agent_labels: raw.api.metrics_agent_labels,
        };
        let database_url = match &raw.database.url {
            Some(u) if !u.get_ref().trim().is_empty() => {
                let v = u.get_ref().trim();
                if !(v.starts_with("postgres://") || v.starts_with("postgresql://") || v.starts_with("sqlite:")) {
                    return self.err(
                        "database.url",
                        u.span(),
                        "expected postgres://… or sqlite:…; leave it out for the embedded SQLite store",
                    );
                }
                Some(v.to_owned())
            }
            _ => None,
        };
        let secret_key = match &raw.secrets.key {
            Some(k) if !k.get_ref().trim().is_empty() => match parse_hex_key(k.get_ref().trim()) {
                Some(_) => Some(k.get_ref().trim().to_owned()),
                None => return self.err("secrets.key", k.span(), "expected 64 hex characters (32 bytes)"),
            },
            _ => None,
        };
        let log_format = match raw.log.format.get_ref().as_str() {
            "auto" => LogFormat::Auto,
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return self.err(
                    "log.format",
                    raw.log.format.span(),
                    format!("`{other}`: expected auto, human or json"),
                )
            }
        };
        let mut carriers = Vec::with_capacity(raw.carriers.len());
        for (i, c) in raw.carriers.iter().enumerate() {
            let name = c.name.get_ref().trim();
            if name.is_empty() || name.len() > 64 {
                return self.err(&format!("carriers[{i}].name"), c.name.span(), "must be 1-64 characters");
            }
            if carriers.iter().any(|k: &Carrier| k.name == name) {
                return self.err(
                    &format!("carriers[{i}].name"),
                    c.name.span(),
                    format!("carrier `{name}` is declared twice"),
                );
            }
            let allow = self.cidrs(&format!("carriers[{i}].allow"), &c.allow)?;
            let media_encryption =
                self.media_encryption(&format!("carriers[{i}].media_encryption"), &c.media_encryption)?;
            carriers.push(Carrier {
                name: name.to_owned(),
                allow,
                media_encryption,
            });
        }
        let agent_networks = self.agent_networks(&raw.agent_networks, &carriers)?;
        let unknown_source = match raw.routing.unknown_source.get_ref().as_str() {
            "reject" => UnknownSource::Reject,
            "drop" => UnknownSource::Drop,
            other => {
                return self.err(
                    "routing.unknown_source",
                    raw.routing.unknown_source.span(),
                    format!("`{other}`: expected \"reject\" (answer 403) or \"drop\" (silence)"),
                )
            }
        };
        let default_country_code = match &raw.routing.default_country_code {
            Some(c) => match sip_core::e164::country_code(c.get_ref()) {
                Ok(v) => Some(v.to_owned()),
                Err(_) => {
                    return self.err(
                        "routing.default_country_code",
                        c.span(),
                        "expected an E.164 country code such as \"1\" or \"44\"",
                    )
                }
            },
            None => None,
        };
        Ok(Config {
            path: self.path.to_owned(),
            sip,
            api_listen,
            metrics,
            database_url,
            data_dir: PathBuf::from(&raw.storage.data_dir),
            secret_key,
            log_format,
            log_level: raw.log.level.clone(),
            worker_threads: usize::try_from(self.range(
                "runtime.worker_threads",
                &raw.runtime.worker_threads,
                0,
                1024,
            )?)
            .unwrap_or(0),
            engine_shards: match &raw.runtime.engine_shards {
                Some(v) => {
                    usize::try_from(self.range("runtime.engine_shards", v, 1, crate::shard::MAX_SHARDS as u64)?)
                        .unwrap_or(1)
                }
                None => crate::shard::default_shards(std::thread::available_parallelism().map_or(1, |n| n.get())),
            },
            carriers,
            unknown_source,
            default_country_code,
            agent_setup_timeout: Duration::from_millis(self.range(
                "routing.agent_setup_timeout_ms",
                &raw.routing.agent_setup_timeout_ms,
                50,
                60_000,
            )?),
            agent_ring_timeout: Duration::from_secs(self.range(
                "routing.agent_ring_timeout_s",
                &raw.routing.agent_ring_timeout_s,
                1,
                600,
            )?),
            default_voicemail_message: raw.routing.default_voicemail_message.clone(),
            media: self.media(&raw.media)?,
            inventory: self.inventory(&raw.inventory)?,
            agent_networks,
            outbound: self.outbound(&raw.outbound)?,
            admission: self.admission(&raw.admission)?,
            security: SecuritySettings {
                verify_number_ownership: raw.security.verify_number_ownership,
                internal_targets: self.cidrs("security.internal_targets", &raw.security.internal_targets)?,
            },
            public_sip_uri: self.public_sip_uri(&raw.api)?,
            public_api_url: self.public_api_url(&raw.api)?,
            node_id: self.node_id(&raw.node)?,
            observability: self.observability(&raw.observability)?,
            cluster: self.cluster(&raw.cluster)?,
            drain_timeout: Duration::from_secs(self.range(
                "shutdown.drain_timeout_s",
                &raw.shutdown.drain_timeout_s,
                0,
                86_400,
            )?),
            webhooks: self.webhooks(&raw.webhooks)?,
        })
    }
}

/// The validated TCP connection caps of `[sip]`.
struct TcpCaps {
    max_connections: usize,
    max_per_ip: usize,
    carrier_reserved: usize,
    stranger_max: usize,
    stranger_max_per_ip: usize,
}

impl Validator<'_> {
    /// The TLS listener's certificate and key: both required when `sip.tls` is on, and loaded here as
    /// the listener will load them, so that `check` names the file and key at fault.
    fn tls_files(
        &self,
        s: &RawSip,
        tls: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
    ) -> Result<(Option<PathBuf>, Option<PathBuf>), ConfigError> {
        let Some(addr) = tls else {
            return Ok((None, None));
        };
        let tls_span = s.tls.as_ref().map(|v| v.span()).unwrap_or(0..0);
        if let Some(tcp) = tcp {
            let overlap = tcp.ip() == addr.ip() || tcp.ip().is_unspecified() || addr.ip().is_unspecified();
            if tcp.port() == addr.port() && overlap {
                return self.err(
                    "sip.tls",
                    tls_span,
                    format!("{addr} is sip.tcp's port ({tcp}): TLS needs a port of its own (5061 is the usual one)"),
                );
            }
        }
        let path = |key: &str, v: &Option<Spanned<String>>, what: &str| match v {
            Some(p) if !p.get_ref().trim().is_empty() => Ok((PathBuf::from(p.get_ref().trim()), p.span())),
            _ => self.err(
                key,
                v.as_ref().map(|p| p.span()).unwrap_or(tls_span.clone()),
                format!("sip.tls is on ({addr}): set {key} to the PEM file of {what}"),
            ),
        };
        let (certificate, cert_span) = path(
            "sip.tls_certificate",
            &s.tls_certificate,
            "the certificate chain (leaf first)",
        )?;
        let (private_key, key_span) = path("sip.tls_private_key", &s.tls_private_key, "its private key")?;
        let files = crate::transport::tls::TlsFiles {
            certificate,
            private_key,
        };
        if let Err(e) = crate::transport::tls::load(&files) {
            use crate::transport::tls::TlsFile;
            return match e.file() {
                Some(TlsFile::Certificate) => self.err("sip.tls_certificate", cert_span, e.to_string()),
                Some(TlsFile::PrivateKey) => self.err("sip.tls_private_key", key_span, e.to_string()),
                None => self.err(
                    "sip.tls_private_key",
                    key_span,
                    format!("{e} (is it the key of sip.tls_certificate?)"),
                ),
            };
        }
        Ok((Some(files.certificate), Some(files.private_key)))
    }
}

/// `sip.tcp_stranger_max_connections_per_ip` when left out (at most `tcp_max_connections_per_ip`): a
/// host that dials in with digest needs one or two connections; a scanner gets no more than this.
const STRANGER_PER_IP_DEFAULT: u64 = 4;

impl Validator<'_> {
    /// The TCP caps. Left out, the carriers' reserve and the strangers' total are a tenth of
    /// `tcp_max_connections` each (the strangers' at most what the reserve leaves), and a stranger's per
    /// address [`STRANGER_PER_IP_DEFAULT`]; set, each must fit inside the caps it narrows.
    fn tcp_budget(&self, s: &RawSip) -> Result<TcpCaps, ConfigError> {
        let max = self.range("sip.tcp_max_connections", &s.tcp_max_connections, 1, 1_000_000)?;
        let per_ip = self.range(
            "sip.tcp_max_connections_per_ip",
            &s.tcp_max_connections_per_ip,
            1,
            1_000_000,
        )?;
        let reserved = match &s.tcp_carrier_reserved_connections {
            Some(v) => self.range("sip.tcp_carrier_reserved_connections", v, 0, max)?,
            None => max / 10,
        };
        let unreserved = max - reserved;
        let stranger_max = match &s.tcp_stranger_max_connections {
            Some(v) if *v.get_ref() > unreserved => {
                return self.err(
                    "sip.tcp_stranger_max_connections",
                    v.span(),
                    format!(
                        "{} is more than the {unreserved} slots strangers could ever take \
                         (tcp_max_connections {max} less tcp_carrier_reserved_connections {reserved})",
                        v.get_ref()
                    ),
                )
            }
            Some(v) => *v.get_ref(),
            None => (max / 10).min(unreserved),
        };
        let stranger_per_ip = match &s.tcp_stranger_max_connections_per_ip {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > per_ip => {
                return self.err(
                    "sip.tcp_stranger_max_connections_per_ip",
                    v.span(),
                    format!(
                        "{} is out of range 1..={per_ip} (tcp_max_connections_per_ip); to keep strangers \
                         off TCP set tcp_stranger_max_connections = 0",
                        v.get_ref()
                    ),
                )
            }
            Some(v) => *v.get_ref(),
            None => STRANGER_PER_IP_DEFAULT.min(per_ip),
        };
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(TcpCaps {
            max_connections: n(max),
            max_per_ip: n(per_ip),
            carrier_reserved: n(reserved),
            stranger_max: n(stranger_max),
            stranger_max_per_ip: n(stranger_per_ip),
        })
    }

    fn inventory(&self, inv: &RawInventory) -> Result<InventorySettings, ConfigError> {
        use edge_providers::ProviderKind;
        let ranges: Vec<_> = inv.ranges.iter().map(|r| r.get_ref().clone()).collect();
        // The local inventory checks every range and names the bad one (`ranges[2].last`).
        if let Err(e) = edge_providers::LocalInventory::try_new(ranges.clone()) {
            let msg = e.to_string();
            let idx = msg
                .split("ranges[")
                .nth(1)
                .and_then(|r| r.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0);
            let span = inv.ranges.get(idx).map(|r| r.span()).unwrap_or(0..0);
            return self.err(&format!("inventory.ranges[{idx}]"), span, msg);
        }
        // Credentials are optional (a base_url alone serves integration calls) but come in pairs.
        let twilio = match &inv.twilio {
            None => None,
            Some(t) => {
                let r = t.get_ref();
                match (&r.account_sid, &r.auth_token) {
                    (None, None) => None,
                    (Some(sid), Some(token)) => Some(edge_providers::TwilioConfig {
                        account_sid: sid.clone(),
                        auth_token: token.clone(),
                        trunk_sid: r.trunk_sid.clone(),
                        base_url: r.base_url.clone(),
                    }),
                    _ => return self.err("inventory.twilio", t.span(), "account_sid and auth_token go together"),
                }
            }
        };
        let telnyx = match &inv.telnyx {
            None => None,
            Some(t) => {
                let r = t.get_ref();
                r.api_key.as_ref().map(|key| edge_providers::TelnyxConfig {
                    api_key: key.clone(),
                    connection_id: r.connection_id.clone(),
                    base_url: r.base_url.clone(),
                })
            }
        };
        let probe_twilio = edge_providers::TwilioConfig {
            account_sid: format!("AC{}", "0".repeat(32)),
            auth_token: "probe".into(),
            trunk_sid: None,
            base_url: None,
        };
        if let Some(t) = &inv.twilio {
            let cfg = twilio.clone().unwrap_or(edge_providers::TwilioConfig {
                base_url: t.get_ref().base_url.clone(),
                ..probe_twilio
            });
            if let Err(e) = edge_providers::TwilioProvider::new(cfg) {
                return self.err("inventory.twilio", t.span(), e.to_string());
            }
        }
        if let Some(t) = &inv.telnyx {
            let cfg = telnyx.clone().unwrap_or(edge_providers::TelnyxConfig {
                api_key: "probe".into(),
                connection_id: None,
                base_url: t.get_ref().base_url.clone(),
            });
            if let Err(e) = edge_providers::TelnyxProvider::new(cfg) {
                return self.err("inventory.telnyx", t.span(), e.to_string());
            }
        }
        let default = match &inv.provider {
            None => ProviderKind::Local,
            Some(p) => match p.get_ref().as_str() {
                "local" => ProviderKind::Local,
                "twilio" if twilio.is_some() => ProviderKind::Twilio,
                "telnyx" if telnyx.is_some() => ProviderKind::Telnyx,
                "twilio" | "telnyx" => {
                    return self.err(
                        "inventory.provider",
                        p.span(),
                        format!(
                            "`{}` needs an [inventory.{}] table with its credentials",
                            p.get_ref(),
                            p.get_ref()
                        ),
                    )
                }
                other => {
                    return self.err(
                        "inventory.provider",
                        p.span(),
                        format!("`{other}`: expected local, twilio or telnyx"),
                    )
                }
            },
        };
        let max_purchased_numbers_per_account = match &inv.max_purchased_numbers_per_account {
            None => None,
            Some(v) => Some(
                u32::try_from(self.range("inventory.max_purchased_numbers_per_account", v, 0, 1_000_000)?)
                    .unwrap_or(u32::MAX),
            ),
        };
        Ok(InventorySettings {
            default,
            ranges,
            twilio_base_url: inv.twilio.as_ref().and_then(|t| t.get_ref().base_url.clone()),
            telnyx_base_url: inv.telnyx.as_ref().and_then(|t| t.get_ref().base_url.clone()),
            twilio,
            telnyx,
            max_purchased_numbers_per_account,
        })
    }

    fn public_sip_uri(&self, api: &RawApi) -> Result<String, ConfigError> {
        let Some(v) = &api.public_sip_uri else {
            return Ok(edge_api::DEFAULT_PUBLIC_SIP_URI.to_owned());
        };
        let uri = v.get_ref().trim();
        let host = uri
            .strip_prefix("sip:")
            .or_else(|| uri.strip_prefix("sips:"))
            .unwrap_or("");
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) || host.len() > 255 {
            return self.err(
                "api.public_sip_uri",
                v.span(),
                "expected a SIP URI such as \"sip:voice.example.com:5060\"",
            );
        }
        Ok(uri.to_owned())
    }

    /// `http(s)://host[:port][/prefix]`, nothing else: it is put in front of API paths in what receivers get.
    fn public_api_url(&self, api: &RawApi) -> Result<Option<String>, ConfigError> {
        let Some(v) = &api.public_url else {
            return Ok(None);
        };
        let url = v.get_ref().trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or("");
        let host = rest.split('/').next().unwrap_or("");
        let ok = !host.is_empty()
            && url.len() <= 255
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_~:/[]%".contains(&b));
        if !ok {
            return self.err(
                "api.public_url",
                v.span(),
                "expected the API's public address such as \"https://api.example.com\" (no query or fragment)",
            );
        }
        Ok(Some(url.to_owned()))
    }

    fn media(&self, m: &RawMedia) -> Result<MediaSettings, ConfigError> {
        let ip = |key: &str, v: &Spanned<String>| -> Result<IpAddr, ConfigError> {
            v.get_ref()
                .trim()
                .parse()
                .or_else(|_| self.err(key, v.span(), format!("`{}` is not an IP address", v.get_ref().trim())))
        };
        let public_ip = match &m.public_ip {
            Some(v) => Some(ip("media.public_ip", v)?),
            None => None,
        };
        let bind_ip = ip("media.bind_ip", &m.bind_ip)?;
        let ports = m.rtp_ports.get_ref().trim();
        let range = ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
        let rtp_ports = match range {
            Some((a, b)) if a >= 1024 && b > a && b - a >= 3 => (a, b),
            _ => {
                return self.err(
                    "media.rtp_ports",
                    m.rtp_ports.span(),
                    format!("`{ports}`: expected LOW-HIGH within 1024-65535 with room for two port pairs"),
                )
            }
        };
        if m.codecs.as_ref().is_some_and(|c| c.is_empty()) {
            return self.err(
                "media.codecs",
                0..0,
                "an empty list refuses every call; leave it out to allow all",
            );
        }
        Ok(MediaSettings {
            enabled: m.enabled,
            public_ip,
            bind_ip,
            rtp_ports,
            media_timeout: Duration::from_secs(self.range("media.media_timeout_s", &m.media_timeout_s, 1, 86_400)?),
            port_quarantine: Duration::from_millis(self.range(
                "media.port_quarantine_ms",
                &m.port_quarantine_ms,
                0,
                600_000,
            )?),
            socket_cache_pairs: usize::try_from(self.range("media.socket_cache", &m.socket_cache, 0, 32_768)?)
                .unwrap_or(0),
            max_sockets: usize::try_from(self.range("media.max_sockets", &m.max_sockets, 0, 4_000_000)?).unwrap_or(0),
            workers: usize::try_from(self.range("media.workers", &m.workers, 0, 64)?).unwrap_or(0),
            worker_program: None,
            codecs: m.codecs.clone(),
            voicemail_max_length: Duration::from_secs(self.range(
                "media.voicemail_max_length_s",
                &m.voicemail_max_length_s,
                1,
                3_600,
            )?),
            voicemail_silence_limit: Duration::from_secs(self.range(
                "media.voicemail_silence_limit_s",
                &m.voicemail_silence_limit_s,
                1,
                600,
            )?),
            espeak: m.espeak.clone(),
        })
    }
}

/// Parses 64 hex characters into a key.
pub fn parse_hex_key(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl Config {
    /// Worker threads to start: as configured, else one per core but one (at least one).
    ///
    /// Each SIP engine shard is one task (it owns its calls, no locks); more workers than shards only
    /// serve media relays, the API and DNS, and each costs cross-thread wake-ups and task stealing on
    /// every hand-off. Under
    /// SIPp on two cores (`benches/README.md`), one worker used 10-20% less CPU per call than two and held
    /// 7,000 calls/s where two collapsed at 6,000; a dedicated engine thread beside one worker did worse
    /// than both on one (more wake-ups between them). The core left over runs the store's SQLite thread
    /// and the kernel's network work.
    ///
    /// With several engine shards (`engine_shards`), there are at least as many workers as shards (up to
    /// the cores), or the shards would take turns on one thread.
    pub fn runtime_workers(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1).max(self.engine_shards.min(cores))
    }

    /// The carrier whose allow list holds `ip`, if any.
    pub fn carrier_for(&self, ip: IpAddr) -> Option<&Carrier> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.carriers.iter().find(|c| c.allow.iter().any(|n| n.contains(&ip)))
    }

    /// The agent network whose allow list holds `ip`, if any.
    pub fn agent_network_for(&self, ip: IpAddr) -> Option<&AgentNetwork> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.agent_networks
            .iter()
            .find(|c| c.allow.iter().any(|n| n.contains(&ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("edge.toml"), text)
    }

    #[test]
    fn shipped_configs_are_valid() {
        for f in ["config/edge.toml", "config/production.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            Config::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn security_and_metrics_settings() {
        let load = |f: &str| Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap();
        let trial = load("config/edge.toml");
        let lo: IpNet = "127.0.0.0/8".parse().unwrap();
        assert!(trial.security.internal_targets.contains(&lo));
        assert!(trial.metrics.listen.is_some() && !trial.metrics.agent_labels);
        let prod = load("config/production.example.toml");
        assert!(prod.security.internal_targets.is_empty());
        assert!(prod.metrics.token.is_some());
        // Nothing internal and no metrics unless asked for.
        let c = parse("").unwrap();
        assert!(c.security.internal_targets.is_empty());
        assert!(c.metrics.token.is_none() && c.metrics.listen.is_none() && !c.metrics.agent_labels);
        let e = parse("[security]\ninternal_targets = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("security.internal_targets") && e.contains(":2:"), "{e}");
        let e = parse("[api]\nmetrics_token = \"short\"\n").unwrap_err().to_string();
        assert!(e.contains("api.metrics_token"), "{e}");
    }

    #[test]
    fn node_id_is_named_or_the_host_name() {
        assert_eq!(
            parse("[node]\nid = \"edge-a.fra_1\"\n").unwrap().node_id,
            "edge-a.fra_1"
        );
        let default = parse("").unwrap().node_id;
        let host = host_name().unwrap_or_else(|| DEFAULT_NODE_ID.into());
        assert!(
            default == host || default == DEFAULT_NODE_ID,
            "{default} is neither the host name {host} nor {DEFAULT_NODE_ID}"
        );
        for bad in ["", "a b", "edge/1", &"x".repeat(65)] {
            let e = parse(&format!("\n[node]\nid = {bad:?}\n")).unwrap_err().to_string();
            assert!(e.contains("node.id") && e.contains(":3:"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_listen_on_5060() {
        let c = parse("").unwrap();
        assert_eq!(c.sip.udp, Some("0.0.0.0:5060".parse().unwrap()));
        assert_eq!(c.sip.tcp, Some("0.0.0.0:5060".parse().unwrap()));
        assert_eq!(c.api_listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.sip.t1, Duration::from_millis(500));
    }

    #[test]
    fn carrier_media_encryption_is_read_and_a_bad_one_named_by_key_and_line() {
        let text =
            "[[carriers]]\nname = \"twilio\"\nallow = [\"54.172.60.0/30\"]\nmedia_encryption = \"srtp_required\"\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c.carriers[0].media_encryption,
            edge_media::MediaEncryption::SrtpRequired
        );
        let c = parse("[[carriers]]\nname = \"t\"\nallow = [\"192.0.2.1\"]\n").unwrap();
        assert_eq!(c.carriers[0].media_encryption, edge_media::MediaEncryption::None);
        let text = "[[carriers]]\nname = \"twilio\"\nallow = [\"54.172.60.0/30\"]\nmedia_encryption = \"dtls\"\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("edge.toml:4: key `carriers[0].media_encryption`"), "{e}");
        assert!(e.contains("srtp_required"), "{e}");
    }

    #[test]
    fn an_agent_network_inside_a_carrier_range_is_refused_by_key_and_line() {
        let text = "[[carriers]]\nname = \"twilio\"\nallow = [\"54.172.60.0/30\", \"10.0.0.0/8\"]\n\n\
                    [[agent_networks]]\nname = \"agents\"\nallow = [\"192.0.2.0/24\",\n  \"10.20.0.0/16\"]\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("edge.toml:8: key `agent_networks[0].allow`"), "{e}");
        assert!(
            e.contains("10.20.0.0/16") && e.contains("10.0.0.0/8") && e.contains("twilio"),
            "{e}"
        );
        // Wider than a carrier's range overlaps it too; disjoint ranges are fine.
        let wide = "[[carriers]]\nname = \"c\"\nallow = [\"192.0.2.10\"]\n[[agent_networks]]\nname = \"a\"\nallow = [\"192.0.2.0/24\"]\n";
        let e = parse(wide).unwrap_err().to_string();
        assert!(e.contains("edge.toml:6: key `agent_networks[0].allow`"), "{e}");
        let apart = "[[carriers]]\nname = \"c\"\nallow = [\"192.0.2.0/25\"]\n[[agent_networks]]\nname = \"a\"\nallow = [\"192.0.2.128/25\"]\n";
        assert!(parse(apart).is_ok());
    }

    #[test]
    fn bad_cidr_names_key_and_line() {
        let e = parse("[sip]\nudp = \"127.0.0.1:5060\"\n\n[[carriers]]\nname = \"twilio\"\nallow = [\"10.0.0.0/8\", \"54.172.60.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("carriers[0].allow"), "{e}");
        assert!(e.contains("edge.toml:6"), "{e}");
        assert!(e.contains("54.172.60.0/33"), "{e}");
    }

    #[test]
    fn tls_is_off_by_default_and_needs_both_files() {
        let c = parse("").unwrap();
        assert_eq!(
            (c.sip.tls, c.sip.tls_certificate, c.sip.tls_private_key),
            (None, None, None)
        );
        let e = parse("[sip]\n\ntls = \"127.0.0.1:5061\"\n").unwrap_err().to_string();
        assert!(e.contains("sip.tls_certificate") && e.contains(":3:"), "{e}");
        let e = parse("[sip]\ntcp = \"0.0.0.0:5070\"\ntls = \"127.0.0.1:5070\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sip.tls") && e.contains(":3:") && e.contains("port of its own"),
            "{e}"
        );
    }

    #[test]
    fn tls_files_are_loaded_by_check_and_name_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("edge.crt"), dir.path().join("edge.key"));
        let text = |cert: &Path, key: &Path| {
            format!(
                "[sip]\ntls = \"127.0.0.1:5061\"\ntls_certificate = {:?}\n\ntls_private_key = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            )
        };
        // Missing certificate file: its key and line, and the OS's reason.
        let e = parse(&text(&cert, &key)).unwrap_err().to_string();
        assert!(
            e.contains("sip.tls_certificate") && e.contains(":3:") && e.contains("edge.crt"),
            "{e}"
        );
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        // Certificate fine, key missing.
        let e = parse(&text(&cert, &key)).unwrap_err().to_string();
        assert!(e.contains("sip.tls_private_key") && e.contains(":5:"), "{e}");
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let e = parse(&text(&cert, &key)).unwrap_err().to_string();
        assert!(
            e.contains("sip.tls_private_key") && e.contains("sip.tls_certificate"),
            "{e}"
        );
        // The pair.
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        let c = parse(&text(&cert, &key)).unwrap();
        assert_eq!(c.sip.tls, Some("127.0.0.1:5061".parse().unwrap()));
        assert_eq!(c.sip.tls_certificate.as_deref(), Some(cert.as_path()));
        assert_eq!(c.sip.tls_private_key.as_deref(), Some(key.as_path()));
    }

    #[test]
    fn bad_socket_names_key_and_line() {
        let e = parse("[api]\n\nlisten = \"localhost\"\n").unwrap_err().to_string();
        assert!(e.contains("api.listen") && e.contains(":3:"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let e = parse("[sip]\nupd = \"0.0.0.0:5060\"\n").unwrap_err().to_string();
        assert!(e.contains("upd") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn out_of_range_timer() {
        let e = parse("[sip]\nt1_ms = 5\n").unwrap_err().to_string();
        assert!(e.contains("sip.t1_ms") && e.contains(":2:"), "{e}");
    }

    #[test]
    fn tcp_budgets_default_to_shares_of_the_total() {
        let c = parse("").unwrap().sip;
        assert_eq!(
            (
                c.tcp_max_connections,
                c.tcp_carrier_reserved_connections,
                c.tcp_stranger_max_connections,
                c.tcp_stranger_max_connections_per_ip
            ),
            (10_000, 1_000, 1_000, 4)
        );
        assert_eq!(c.tcp_first_message_timeout, Duration::from_secs(5));
        // Left out, the derived values follow smaller caps instead of contradicting them.
        let c = parse(
            "[sip]\ntcp_max_connections = 50\ntcp_max_connections_per_ip = 2\ntcp_carrier_reserved_connections = 48\n",
        )
        .unwrap()
        .sip;
        assert_eq!(
            (c.tcp_stranger_max_connections, c.tcp_stranger_max_connections_per_ip),
            (2, 2)
        );
        let c = parse(
            "[sip]\ntcp_carrier_reserved_connections = 0\ntcp_stranger_max_connections = 0\n\
             tcp_stranger_max_connections_per_ip = 9\ntcp_first_message_timeout_s = 2\n",
        )
        .unwrap()
        .sip;
        assert_eq!(
            (
                c.tcp_carrier_reserved_connections,
                c.tcp_stranger_max_connections,
                c.tcp_stranger_max_connections_per_ip
            ),
            (0, 0, 9)
        );
        assert_eq!(c.tcp_first_message_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_tcp_budgets_name_key_and_line() {
        for (text, key, line) in [
            (
                "[sip]\ntcp_max_connections = 100\n\ntcp_carrier_reserved_connections = 101\n",
                "sip.tcp_carrier_reserved_connections",
                ":4:",
            ),
            (
                "[sip]\ntcp_max_connections = 100\ntcp_carrier_reserved_connections = 30\ntcp_stranger_max_connections = 71\n",
                "sip.tcp_stranger_max_connections",
                ":4:",
            ),
            (
                "[sip]\ntcp_stranger_max_connections_per_ip = 0\n",
                "sip.tcp_stranger_max_connections_per_ip",
                ":2:",
            ),
            (
                "[sip]\ntcp_max_connections_per_ip = 8\n\ntcp_stranger_max_connections_per_ip = 9\n",
                "sip.tcp_stranger_max_connections_per_ip",
                ":4:",
            ),
            (
                "[sip]\ntcp_first_message_timeout_s = 0\n",
                "sip.tcp_first_message_timeout_s",
                ":2:",
            ),
            (
                "[sip]\ntcp_first_message_timeout_s = 601\n",
                "sip.tcp_first_message_timeout_s",
                ":2:",
            ),
            (
                "[sip]\ntcp_stranger_max_connections = -1\n",
                "tcp_stranger_max_connections",
                "line 2",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(line), "{text:?}: {e}");
        }
        let e = parse("[sip]\ntcp_max_connections = 100\ntcp_carrier_reserved_connections = 30\ntcp_stranger_max_connections = 71\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("70 slots"), "{e}");
    }

    #[test]
    fn media_socket_ceiling_follows_the_open_files_limit_unless_set() {
        let auto = parse("").unwrap().media;
        assert_eq!(auto.max_sockets, 0);
        assert_eq!(auto.socket_ceiling(Some(20_000)), 18_976);
        assert_eq!(
            auto.socket_ceiling(Some(1_024)),
            512,
            "half kept when the limit is small"
        );
        assert_eq!(auto.socket_ceiling(None), usize::MAX);
        let set = parse("[media]\nmax_sockets = 4000\n").unwrap().media;
        assert_eq!(set.socket_ceiling(Some(20_000)), 4_000);
        let e = parse("[media]\n\nmax_sockets = -1\n").unwrap_err().to_string();
        assert!(e.contains("max_sockets") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn media_workers_are_off_unless_asked_and_bounded() {
        assert_eq!(parse("").unwrap().media.workers, 0);
        assert_eq!(parse("[media]\nworkers = 3\n").unwrap().media.workers, 3);
        let e = parse("[media]\nworkers = 65\n").unwrap_err().to_string();
        assert!(e.contains("media.workers") && e.contains(":2:"), "{e}");
        // A worker keeps 64 of its own open files, half when its limit is small.
        assert_eq!(MediaSettings::worker_socket_ceiling(Some(20_000)), 19_936);
        assert_eq!(MediaSettings::worker_socket_ceiling(Some(100)), 50);
        assert_eq!(MediaSettings::worker_socket_ceiling(None), usize::MAX);
    }

    #[test]
    fn runtime_workers_and_socket_cache() {
        let c = parse("[runtime]\nworker_threads = 3\n[media]\nsocket_cache = 0\n").unwrap();
        assert_eq!(c.runtime_workers(), 3);
        assert_eq!(c.media.socket_cache_pairs, 0);
        let auto = parse("").unwrap();
        assert_eq!(auto.media.socket_cache_pairs, 2048);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = auto.engine_shards.min(cores);
        assert_eq!(auto.runtime_workers(), cores.saturating_sub(1).max(1).max(shards));
        let e = parse("[runtime]\n\nworker_threads = 5000\n").unwrap_err().to_string();
        assert!(e.contains("runtime.worker_threads") && e.contains(":3:"), "{e}");
        assert_eq!(auto.engine_shards, crate::shard::default_shards(cores));
        assert_eq!(parse("[runtime]\nengine_shards = 2\n").unwrap().engine_shards, 2);
        for bad in ["0", "65", "100000"] {
            let e = parse(&format!("[runtime]\nworker_threads = 2\nengine_shards = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("runtime.engine_shards") && e.contains(":3:"), "{bad}: {e}");
        }
        let e = parse("[runtime]\n\nworker_threads = 5000\n").unwrap_err().to_string();
        assert!(e.contains("runtime.worker_threads") && e.contains(":3:"), "{e}");
        let e = parse("[media]\nsocket_cache = 99999\n").unwrap_err().to_string();
        assert!(e.contains("media.socket_cache") && e.contains(":2:"), "{e}");
    }

    #[test]
    fn carrier_lookup_by_source() {
        let c = parse("[[carriers]]\nname = \"a\"\nallow = [\"192.0.2.0/24\"]\n[[carriers]]\nname = \"b\"\nallow = [\"198.51.100.7\"]\n").unwrap();
        assert_eq!(c.carrier_for("192.0.2.9".parse().unwrap()).unwrap().name, "a");
        assert_eq!(c.carrier_for("198.51.100.7".parse().unwrap()).unwrap().name, "b");
        assert_eq!(c.carrier_for("::ffff:198.51.100.7".parse().unwrap()).unwrap().name, "b");
        assert!(c.carrier_for("198.51.100.8".parse().unwrap()).is_none());
    }

    #[test]
    fn inventory_ranges_and_providers() {
        let c = parse(
            "[inventory]\nprovider = \"local\"\n[[inventory.ranges]]\ncountry = \"US\"\narea_code = \"212\"\n\
             first = \"+12125550000\"\nlast = \"+12125550099\"\n",
        )
        .unwrap();
        assert_eq!(c.inventory.ranges.len(), 1);
        let e = parse(
            "[inventory]\n[[inventory.ranges]]\ncountry = \"US\"\narea_code = \"212\"\nfirst = \"+12125550099\"\nlast = \"+1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("inventory.ranges[0]") && e.contains(":2:"), "{e}");
        let e = parse("[inventory]\nprovider = \"twilio\"\n").unwrap_err().to_string();
        assert!(
            e.contains("inventory.provider") && e.contains("[inventory.twilio]"),
            "{e}"
        );
    }

    #[test]
    fn security_public_uri_and_provider_base_urls() {
        let c = parse("").unwrap();
        assert!(
            c.security.verify_number_ownership,
            "on unless the operator turns it off"
        );
        assert_eq!(c.public_sip_uri, "sip:voice.oneinbox.ai:5060");
        assert!(c.inventory.twilio.is_none() && c.inventory.twilio_base_url.is_none());
        let c = parse(
            "[security]\nverify_number_ownership = false\n[api]\npublic_sip_uri = \"sip:edge.example.com:5080\"\n\
             [inventory]\nmax_purchased_numbers_per_account = 5\n\
             [inventory.twilio]\nbase_url = \"http://127.0.0.1:9\"\n[inventory.telnyx]\nbase_url = \"http://127.0.0.1:8\"\n",
        )
        .unwrap();
        assert!(!c.security.verify_number_ownership);
        assert_eq!(c.public_sip_uri, "sip:edge.example.com:5080");
        assert_eq!(c.inventory.max_purchased_numbers_per_account, Some(5));
        // A base URL alone serves integration calls; the operator has no account there.
        assert!(c.inventory.twilio.is_none() && c.inventory.telnyx.is_none());
        assert_eq!(c.inventory.twilio_base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.inventory.telnyx_base_url.as_deref(), Some("http://127.0.0.1:8"));
        let e = parse("[inventory.twilio]\naccount_sid = \"AC00000000000000000000000000000000\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth_token"), "{e}");
        let e = parse("[inventory.twilio]\nbase_url = \"ftp://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inventory.twilio"), "{e}");
        let e = parse("[api]\npublic_sip_uri = \"voice.example.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.public_sip_uri"), "{e}");
    }

    #[test]
    fn public_url_is_an_http_address_kept_without_its_trailing_slash() {
        let dir = Path::new("/tmp/x");
        let parse = |v: &str| parse(&format!("[api]\npublic_url = {v:?}\n"));
        assert_eq!(
            parse("https://api.example.com/").unwrap().public_api_url.as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(
            parse("http://10.0.0.2:8080/edge").unwrap().public_api_url.as_deref(),
            Some("http://10.0.0.2:8080/edge")
        );
        for bad in [
            "api.example.com",
            "https://",
            "ftp://x",
            "https://a.com/?k=1",
            "https://a.com/#x",
            "https://a b",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("api.public_url") && e.contains(":2:"), "{bad}: {e}");
        }
        assert!(Config::for_tests(dir).public_api_url.is_none());
    }

    #[test]
    fn for_tests_is_valid() {
        let c = Config::for_tests(Path::new("/tmp/x"));
        assert_eq!(c.sip.udp.unwrap().port(), 0);
    }
}
