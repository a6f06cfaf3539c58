//! Errors of the media engine.

/// Why a relay or media endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No free port pairs (all busy or in quarantine). SIP: 503 + Retry-After.
    #[error("media ports exhausted")]
    PortsExhausted,
    /// Invalid [`crate::MediaConfig`].
    #[error("invalid media config: {0}")]
    Config(&'static str),
    /// The engine is shutting down and takes no new sessions.
    #[error("media engine is shutting down")]
    ShuttingDown,
    /// Called outside a Tokio runtime.
    #[error("media engine used outside a tokio runtime")]
    NoRuntime,
    /// The media sockets open reached `MediaConfig::max_sockets`. SIP: 503 + Retry-After.
    #[error("media sockets at their ceiling ({0} open; media.max_sockets)")]
    SocketLimit(usize),
    /// A media worker process is not running and was started again too recently.
    #[error("media worker {0} is down")]
    WorkerDown(usize),
    /// Socket error other than "address in use".
    #[error("media socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl MediaError {
    /// What a SIP peer is told (Warning of the 503): the cause without local detail.
    pub fn sip_warning(&self) -> &'static str {
        match self {
            MediaError::SocketLimit(_) => "media sockets at their ceiling (media.max_sockets)",
            MediaError::WorkerDown(_) => "media worker unavailable (media.workers)",
            _ => "media ports exhausted",
        }
    }
}
