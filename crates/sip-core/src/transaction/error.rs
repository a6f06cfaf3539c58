//! Errors returned to the TU by the transaction layer.

use crate::message::ParseError;

/// Why the transaction layer refused a message or an operation.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// The live-transaction cap is reached; the TU should answer 503 statelessly.
    /// The cap is `TxConfig::max_transactions`.
    #[error("transaction limit reached")]
    Overloaded,
    /// No live transaction has this key (it terminated or never existed).
    #[error("no such transaction")]
    NoSuchTransaction,
    /// A client transaction with the same branch and method is already live.
    #[error("duplicate transaction (branch reused)")]
    Duplicate,
    /// The response is not allowed in the transaction's current state.
    #[error("response {status} not allowed in state {state}")]
    InvalidState {
        /// Status code the TU tried to send.
        status: u16,
        /// Current state name.
        state: &'static str,
    },
    /// The bytes handed to `respond` do not start with a valid status line.
    #[error("not a SIP response status line")]
    NotAResponse,
    /// `send_request` got a response, or an ACK (which never creates a client transaction).
    #[error("{0}")]
    NotATransactionRequest(&'static str),
    /// The top Via lacks an RFC 3261 branch (`z9hG4bK...`); new client requests need one.
    #[error("top Via branch lacks the z9hG4bK magic cookie")]
    NoMagicCookie,
    /// A header needed for transaction matching is missing or malformed.
    #[error("malformed message: {0}")]
    Malformed(#[from] ParseError),
}
