//! What goes in and out of the sans-IO transaction layer.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::message::{Message, Transport};

use super::{TimerKind, TxError, TxKey};

/// Where a message came from or goes to. The layer never touches sockets; it only echoes
/// this back in [`Transmit`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// Transport; decides whether retransmission timers run.
    pub transport: Transport,
    /// Connection id for connection-oriented transports, so responses reuse the connection.
    pub conn: Option<u64>,
}

impl Peer {
    /// True when the transport itself retransmits (everything but UDP and unknown transports):
    /// Timers A/E/G are not started and D/I/J/K are zero (RFC 3261 17).
    pub fn is_reliable(&self) -> bool {
        match self.transport {
            Transport::Tcp | Transport::Tls | Transport::Sctp | Transport::Ws | Transport::Wss => true,
            Transport::Udp | Transport::Other => false,
        }
    }
}

/// Bytes the IO layer must send: the one type from the transaction layer (and the stateless answers of
/// the TU) down to the socket.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Destination: address, transport, and the connection to reuse.
    pub to: Peer,
    /// Serialized message.
    pub bytes: Bytes,
    /// Transaction the send belongs to (`None`: stateless answers, ACKs for 2xx); the IO layer reports
    /// a failed send of one with
    /// [`TransactionLayer::transport_error`](super::TransactionLayer::transport_error).
    pub key: Option<TxKey>,
}

/// What the TU must do with an incoming message.
#[derive(Debug)]
pub enum Incoming {
    /// A request that created a new server transaction; answer it with `respond(key, ..)`.
    NewRequest {
        /// New server transaction.
        key: TxKey,
        /// The request.
        msg: Message,
    },
    /// Handled inside the layer: a request or response retransmission (the last response or
    /// ACK is re-sent through `poll_transmit`), or the ACK of a non-2xx final response.
    Absorbed {
        /// Transaction that absorbed it.
        key: TxKey,
    },
    /// A response matched to a client transaction (provisional, or first/retransmitted final;
    /// 2xx retransmissions in Accepted are passed up so the TU re-sends its ACK).
    Response {
        /// Client transaction.
        key: TxKey,
        /// The response.
        msg: Message,
    },
    /// An ACK that belongs to no server transaction or to one in Accepted: the ACK for a 2xx,
    /// which is the dialog's business.
    Ack {
        /// The INVITE server transaction it matched in Accepted state, if any.
        key: Option<TxKey>,
        /// The ACK.
        msg: Message,
    },
    /// A new CANCEL (its own non-INVITE server transaction `cancel_key`). `invite_key` is the
    /// INVITE server transaction it targets (RFC 3261 9.2), or `None`: answer 481. Otherwise
    /// answer 200 to the CANCEL and, if the INVITE is still pending, 487 to the INVITE.
    Cancel {
        /// Server transaction of the CANCEL itself.
        cancel_key: TxKey,
        /// Matched INVITE server transaction.
        invite_key: Option<TxKey>,
        /// The CANCEL.
        msg: Message,
    },
    /// A response matching no client transaction; nothing was stored.
    StrayResponse {
        /// The response.
        msg: Message,
    },
    /// A message the layer refused: `TxError::Overloaded` (answer 503 statelessly) or
    /// `TxError::Malformed` (missing/invalid Via, CSeq, ...). Nothing was stored.
    Rejected {
        /// The message.
        msg: Message,
        /// Why.
        error: TxError,
    },
}

/// Asynchronous notifications for the TU, drained with `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A transaction timed out: B/F (client, TU synthesizes 408), H (no ACK for a non-2xx
    /// final), or C (INVITE in Proceeding too long: TU should CANCEL; the transaction
    /// terminates 64*T1 later if no final arrives), or Guard (server transaction the TU never
    /// finished; it is terminated).
    Timeout {
        /// Transaction.
        key: TxKey,
        /// Which timer fired.
        timer: TimerKind,
    },
    /// The IO layer reported a failed send; the transaction is terminated.
    TransportError {
        /// Transaction.
        key: TxKey,
    },
    /// The transaction is gone; its key will not be seen again.
    Terminated {
        /// Transaction.
        key: TxKey,
    },
}
