//! Edge nodes and the records they leave live: each node says when it started and, every few seconds, that
//! it is still alive; at its next start it closes the records a crash or a kill left `queued`, `ringing` or
//! `in-progress` (issue 21: records that are always true).

use crate::calls::{CallRecord, CallStatus, HangupBy};
use crate::error::Result;
use crate::store::Store;
use sqlx::Row;

/// The `end_reason` of the records a node closes at its start.
pub const EDGE_RESTARTED: &str = "edge restarted";

/// Live records read and closed per transaction at a node's start.
const CLOSE_BATCH: usize = 256;

/// When a node last started and was last seen alive (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSeen {
    pub started_at_ms: i64,
    pub last_seen_at_ms: i64,
}

/// `rec` closed as of a restart: answered calls `completed` (hung up by the edge), the others `failed`;
/// ended when the node was last seen alive (its heartbeat, or the record's own last write if later); hops
/// still open end then too, and one still trying says why.
fn closed(mut rec: CallRecord, last_seen_ms: Option<i64>, updated_ms: i64) -> CallRecord {
    let ended = last_seen_ms
        .unwrap_or(updated_ms)
        .max(updated_ms)
        .max(rec.created_at_ms)
        .max(rec.answered_at_ms.unwrap_or(0));
    if rec.answered_at_ms.is_some() {
        rec.status = CallStatus::Completed;
        rec.hangup_by = Some(HangupBy::Edge);
    } else {
        rec.status = CallStatus::Failed;
        rec.hangup_by = None;
    }
    rec.end_reason = Some(EDGE_RESTARTED.into());
    rec.ended_at_ms = Some(ended);
    for h in rec.hops.iter_mut().filter(|h| h.ended_at_ms.is_none()) {
        h.ended_at_ms = Some(ended.max(h.started_at_ms));
        if h.outcome.starts_with("trying") {
            h.outcome = EDGE_RESTARTED.into();
        }
    }
    rec
}

impl Store {
    /// When `node` last started and was last seen alive; `None` for a node never started on this store.
    pub async fn node(&self, node: &str) -> Result<Option<NodeSeen>> {
        let row = sqlx::query("SELECT started_at, last_seen_at FROM nodes WHERE id = $1")
            .bind(node)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(NodeSeen {
                started_at_ms: r.try_get("started_at")?,
                last_seen_at_ms: r.try_get("last_seen_at")?,
            })
        })
        .transpose()
    }

    /// Records that `node` starts now (it is seen alive now too).
    pub async fn node_started(&self, node: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (id, started_at, last_seen_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, last_seen_at = excluded.last_seen_at",
        )
        .bind(node)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that `node` is alive now (its heartbeat). Under the store's write lock, like the API's
    /// writes: on SQLite a write committed while another connection's transaction reads would fail that
    /// transaction's first write (`SQLITE_BUSY_SNAPSHOT`, "database is locked").
    pub async fn node_seen(&self, node: &str, now_ms: i64) -> Result<()> {
        let _w = self.write_lock.lock().await;
        sqlx::query("UPDATE nodes SET last_seen_at = $2 WHERE id = $1")
            .bind(node)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many nodes were seen alive at or after `since_ms` (their heartbeat): what the cluster's limits
    /// are divided by when the nodes cannot count together.
    pub async fn live_nodes(&self, since_ms: i64) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM nodes WHERE last_seen_at >= $1")
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Closes the records `node` left live (no end was ever written: the node was killed or crashed), as
    /// of `last_seen_ms`, the last time it was seen alive ([`closed`] says how); records of other nodes are
    /// untouched. Run by a node at its start, before it takes calls. The number of records closed.
    pub async fn close_left_live(&self, node: &str, last_seen_ms: Option<i64>) -> Result<u64> {
        self.close_live(Some(node), |_| last_seen_ms).await
    }

    /// Closes every live record, whatever node made it (or none: records stored before nodes were named),
    /// each as of the last time its node was seen alive. For a store only one edge uses (SQLite: a file per
    /// edge), where at start every live record is a leftover, even one of a node id since changed (a host
    /// name that changed with the container). Run before the edge takes calls.
    pub async fn close_every_left_live(&self) -> Result<u64> {
        let rows = sqlx::query("SELECT id, last_seen_at FROM nodes")
            .fetch_all(&self.pool)
            .await?;
        let mut seen = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            seen.insert(r.try_get::<String, _>("id")?, r.try_get::<i64, _>("last_seen_at")?);
        }
        self.close_live(None, |rec| rec.node.as_ref().and_then(|n| seen.get(n)).copied())
            .await
    }

    /// The live records of `node` (or of every node), closed in batches as [`closed`] says, each as of
    /// `last_seen(record)`.
    async fn close_live(&self, node: Option<&str>, last_seen: impl Fn(&CallRecord) -> Option<i64>) -> Result<u64> {
        let of_node = concat!(
            "SELECT ",
            call_cols!(),
            ", updated_at FROM calls WHERE node = $1 AND ended_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
        );
        let of_all = concat!(
            "SELECT ",
            call_cols!(),
            ", updated_at FROM calls WHERE ended_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
        );
        let mut after = String::new();
        let mut total = 0u64;
        loop {
            let q = match node {
                Some(n) => sqlx::query(of_node).bind(n),
                None => sqlx::query(of_all),
            };
            let rows = q.bind(&after).bind(CLOSE_BATCH as i64).fetch_all(&self.pool).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            let mut recs = Vec::with_capacity(rows.len());
            for row in &rows {
                let updated: i64 = row.try_get("updated_at")?;
                match crate::call_log::call_from_row(row) {
                    Ok(rec) => {
                        let seen = last_seen(&rec);
                        recs.push(closed(rec, seen, updated));
                    }
                    Err(e) => {
                        // A row this version cannot read is still closed, by its columns alone.
                        let id: String = row.try_get("id")?;
                        tracing::warn!(call = %id, error = %e, "unreadable live record closed as failed");
                        sqlx::query(
                            "UPDATE calls SET status = 'failed', end_reason = $2, ended_at = updated_at \
                             WHERE id = $1 AND ended_at IS NULL",
                        )
                        .bind(&id)
                        .bind(EDGE_RESTARTED)
                        .execute(&self.pool)
                        .await?;
                        total += 1;
                    }
                }
            }
            let refused = self.upsert_calls(&recs).await?;
            for (i, e) in &refused {
                tracing::warn!(call = recs.get(*i).map_or("?", |r| r.id.as_str()), error = %e, "live record not closed");
            }
            total += (recs.len() - refused.len()) as u64;
            if rows.len() < CLOSE_BATCH {
                break;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{Hop, Route};

    fn live(answered: Option<i64>) -> CallRecord {
        CallRecord {
            id: "call_1".into(),
            account_id: "acc_1".into(),
            direction: "inbound".into(),
            carrier: "c".into(),
            from: "+15005550006".into(),
            caller_name: None,
            to: "+14155551234".into(),
            phone_number_id: None,
            status: if answered.is_some() {
                CallStatus::InProgress
            } else {
                CallStatus::Ringing
            },
            answered_by: None,
            agent_id: None,
            hops: vec![Hop {
                route: Route::Primary,
                agent_id: Some("agt_1".into()),
                target: None,
                sip_status: None,
                outcome: if answered.is_some() { "answered" } else { "trying" }.into(),
                started_at_ms: 1_010,
                ended_at_ms: None,
            }],
            end_reason: None,
            hangup_by: None,
            sip_status: None,
            sip_call_id: "x@y".into(),
            error: None,
            created_at_ms: 1_000,
            answered_at_ms: answered,
            ended_at_ms: None,
            node: Some("edge-a".into()),
        }
    }

    #[test]
    fn answered_calls_complete_and_ringing_ones_fail_when_last_seen() {
        let c = closed(live(Some(1_500)), Some(9_000), 2_000);
        assert_eq!(c.status, CallStatus::Completed);
        assert_eq!(c.hangup_by, Some(HangupBy::Edge));
        assert_eq!(c.end_reason.as_deref(), Some("edge restarted"));
        assert_eq!(c.ended_at_ms, Some(9_000));
        assert_eq!(c.hops[0].outcome, "answered");
        assert_eq!(c.hops[0].ended_at_ms, Some(9_000));

        let f = closed(live(None), None, 2_000);
        assert_eq!(f.status, CallStatus::Failed);
        assert_eq!(f.hangup_by, None);
        assert_eq!(f.ended_at_ms, Some(2_000), "no heartbeat: the record's last write");
        assert_eq!(f.hops[0].outcome, "edge restarted");
        // A record written after the last heartbeat ends no earlier than that write.
        assert_eq!(closed(live(None), Some(1_200), 2_000).ended_at_ms, Some(2_000));
    }
}
