//! Exhaustive state enums, one per transaction kind (RFC 3261 figures 5-8, RFC 6026).

/// INVITE client transaction (RFC 3261 fig. 5 with RFC 6026 Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    /// Request sent, nothing received.
    Calling,
    /// Provisional received.
    Proceeding,
    /// Non-2xx final received and ACKed.
    Completed,
    /// 2xx received; absorbs 2xx retransmissions into the TU (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 fig. 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    /// Request sent, nothing received.
    Trying,
    /// Provisional received; retransmissions continue at T2.
    Proceeding,
    /// Final received.
    Completed,
    /// Done.
    Terminated,
}

/// INVITE server transaction (RFC 3261 fig. 7 with RFC 6026 Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    /// Request received, no final response yet.
    Proceeding,
    /// Non-2xx final sent, waiting for ACK.
    Completed,
    /// ACK received, absorbing ACK retransmissions.
    Confirmed,
    /// 2xx sent; absorbs INVITE retransmissions, TU retransmits the 2xx (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 fig. 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    /// Request received, nothing sent.
    Trying,
    /// Provisional sent.
    Proceeding,
    /// Final sent.
    Completed,
    /// Done.
    Terminated,
}

/// State of any transaction, as reported by `TransactionLayer::state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// INVITE client.
    InviteClient(InviteClientState),
    /// Non-INVITE client.
    NonInviteClient(NonInviteClientState),
    /// INVITE server.
    InviteServer(InviteServerState),
    /// Non-INVITE server.
    NonInviteServer(NonInviteServerState),
}

impl TxState {
    /// Short state name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            TxState::InviteClient(s) => match s {
                InviteClientState::Calling => "Calling",
                InviteClientState::Proceeding => "Proceeding",
                InviteClientState::Completed => "Completed",
                InviteClientState::Accepted => "Accepted",
                InviteClientState::Terminated => "Terminated",
            },
            TxState::NonInviteClient(s) => match s {
                NonInviteClientState::Trying => "Trying",
                NonInviteClientState::Proceeding => "Proceeding",
                NonInviteClientState::Completed => "Completed",
                NonInviteClientState::Terminated => "Terminated",
            },
            TxState::InviteServer(s) => match s {
                InviteServerState::Proceeding => "Proceeding",
                InviteServerState::Completed => "Completed",
                InviteServerState::Confirmed => "Confirmed",
                InviteServerState::Accepted => "Accepted",
                InviteServerState::Terminated => "Terminated",
            },
            TxState::NonInviteServer(s) => match s {
                NonInviteServerState::Trying => "Trying",
                NonInviteServerState::Proceeding => "Proceeding",
                NonInviteServerState::Completed => "Completed",
                NonInviteServerState::Terminated => "Terminated",
            },
        }
    }
}
