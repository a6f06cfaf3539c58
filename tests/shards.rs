//! Engine shards (`runtime.engine_shards`, issue 18): with two shards, calls whose Call-IDs hash to
//! different shards both work end to end (the agent leg's Call-ID and the public call id hash to the
//! call's shard, so the agent's answers and requests come back to it), and what must hold for the whole
//! edge (an agent's `max_concurrent_calls`) holds across shards.

mod common;

use std::time::Duration;

use common::{start_edge, Agent, Mode};
use edge_store::AgentStatus;
use sip_core::message::{HeaderName, Method};

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";

async fn wait_load(t: &common::TestEdge, agent_id: &str, n: u32) {
    for _ in 0..100 {
        if t.edge.agent_load(agent_id) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("agent {agent_id} load is {}, want {n}", t.edge.agent_load(agent_id));
}

#[tokio::test]
async fn calls_hashing_to_either_shard_are_answered_and_hung_up_by_the_agent() {
    let t = start_edge(|c| c.engine_shards = 2).await;
    assert_eq!(t.edge.shards(), 2);
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;

    for shard in [0, 1] {
        let mut c = t.carrier_on_shard(DID, shard).await;
        c.invite().await;
        let (_, ok) = c.final_response(S).await;
        assert_eq!(ok.status(), Some(200), "call on shard {shard}");
        let inv = agent.expect(Method::Invite, S).await;
        // The edge's leg toward the agent, and the call's public id, belong to the call's shard.
        assert_eq!(t.edge.shard_of(inv.call_id().unwrap()), shard);
        let public = inv
            .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
            .unwrap()
            .to_owned();
        assert_eq!(t.edge.shard_of(&public), shard);
        agent.expect(Method::Ack, S).await;
        c.ack(&ok).await;
        wait_load(&t, &a, 1).await;

        // The agent hangs up: its BYE (on the edge's Call-ID) reaches the call and the carrier gets one.
        agent.send_in_dialog("BYE", false).await;
        let bye = c.expect_request(Method::Bye, S).await;
        assert_eq!(bye.call_id().unwrap(), c.call_id);
        c.ok(&bye, None).await;
        wait_load(&t, &a, 0).await;
        let rec = t.final_call(&public, S).await;
        assert_eq!(rec["status"], "completed", "{rec}");
        assert_eq!(rec["hangup_by"], "agent", "{rec}");
    }
}

#[tokio::test]
async fn max_concurrent_calls_holds_across_shards() {
    let t = start_edge(|c| c.engine_shards = 2).await;
    let primary = Agent::spawn(Mode::Answer).await;
    let fallback = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("primary", &primary, 1, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fallback, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;

    // The primary's one slot is taken by a call on shard 0 ...
    let mut c0 = t.carrier_on_shard(DID, 0).await;
    c0.invite().await;
    let (_, ok0) = c0.final_response(S).await;
    assert_eq!(ok0.status(), Some(200));
    primary.expect(Method::Invite, S).await;
    c0.ack(&ok0).await;
    wait_load(&t, &p, 1).await;

    // ... so a call on shard 1 skips it and goes to the fallback.
    let mut c1 = t.carrier_on_shard(DID, 1).await;
    c1.invite().await;
    let (_, ok1) = c1.final_response(S).await;
    assert_eq!(ok1.status(), Some(200));
    let inv = fallback.expect(Method::Invite, S).await;
    assert_eq!(
        inv.header(&HeaderName::Other("X-OneInbox-Route".into())),
        Some("fallback")
    );
    assert!(
        !primary.got(Method::Invite, Duration::from_millis(300)).await,
        "the primary, at max_concurrent_calls on the other shard, was rung"
    );
    let public = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    c1.ack(&ok1).await;
    wait_load(&t, &p, 1).await;
    wait_load(&t, &f, 1).await;

    // The skipped hop says why, in the call's record.
    c1.in_dialog("BYE", false).await;
    let rec = t.final_call(&public, S).await;
    let hops = rec["hops"].as_array().expect("hops");
    assert_eq!(hops[0]["route"], "primary", "{rec}");
    assert!(
        hops[0]["outcome"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_calls (1)"),
        "{rec}"
    );
    wait_load(&t, &f, 0).await;
}
