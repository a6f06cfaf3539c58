//! Routing messages to the shard that owns them: the TCP readers hand each frame to its shard's queue,
//! and a shard reading the shared UDP socket passes on the datagrams that belong to another shard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::ShardMap;
use crate::transport::{Inbound, Input, SendFailure};

/// The shards' message queues and the map that picks one. Cheap to clone.
#[derive(Clone)]
pub struct Dispatch {
    map: ShardMap,
    shards: Arc<[mpsc::Sender<Input>]>,
    /// Datagrams passed to another shard, and those dropped because its queue was full.
    pub forwarded: Arc<AtomicU64>,
    pub forward_dropped: Arc<AtomicU64>,
}

impl Dispatch {
    /// `shards[i]` is shard i's queue; `map.count()` must equal `shards.len()`.
    pub fn new(map: ShardMap, shards: Vec<mpsc::Sender<Input>>) -> Self {
        debug_assert_eq!(map.count(), shards.len());
        Dispatch {
            map,
            shards: shards.into(),
            forwarded: Arc::default(),
            forward_dropped: Arc::default(),
        }
    }

    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// The shard owning the message in `data` (0 when there is one shard or no Call-ID).
    pub fn shard_of(&self, data: &[u8]) -> usize {
        self.map.of_message(data)
    }

    /// Queues `m` for its shard, waiting while that queue is full (a TCP reader: the wait pushes back on
    /// the peer). `Err` when the shard is gone.
    pub async fn send(&self, m: Inbound) -> Result<(), ShardGone> {
        let shard = self.shard_of(&m.data);
        match self.shards.get(shard) {
            Some(q) => q.send(Input::Message(m)).await.map_err(|_| ShardGone),
            None => Err(ShardGone),
        }
    }

    /// Tells the shards that bytes of a transaction never left (a TCP connect or write failed). Which
    /// shard owns the transaction is not known here, so each is told; the others know no such key and
    /// ignore it (failures are rare). `Err` when every shard is gone.
    pub async fn send_failed(&self, f: SendFailure) -> Result<(), ShardGone> {
        let mut told = false;
        for q in self.shards.iter() {
            told |= q.send(Input::SendFailed(f.clone())).await.is_ok();
        }
        if told {
            Ok(())
        } else {
            Err(ShardGone)
        }
    }

    /// Hands a datagram to `shard` without waiting (an engine must not block on another): a full queue
    /// drops it, as the kernel would, and the sender's retransmission comes again.
    pub fn forward(&self, shard: usize, m: Inbound) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let ok = self
            .shards
            .get(shard)
            .is_some_and(|q| q.try_send(Input::Message(m)).is_ok());
        if !ok {
            self.forward_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True once every shard is gone (the edge is shutting down).
    pub fn is_closed(&self) -> bool {
        self.shards.iter().all(|q| q.is_closed())
    }
}

/// Every engine shard is gone: the edge is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine shards are gone")]
pub struct ShardGone;
