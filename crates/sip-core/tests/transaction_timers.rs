//! One test per RFC 3261/6026 transaction timer, driven by a fake clock.

mod transaction_support;

use std::time::{Duration, Instant};

use sip_core::transaction::{
    AutoTrying, Incoming, InviteClientState, InviteServerState, NonInviteClientState, NonInviteServerState,
    TimerConfig, TimerKind, TransactionLayer, TxConfig, TxEvent, TxState,
};
use transaction_support::*;

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default())
}

fn layer_no_trying() -> TransactionLayer {
    TransactionLayer::new(TxConfig {
        auto_trying: AutoTrying::Off,
        ..TxConfig::default()
    })
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

#[test]
fn timer_a_doubles_from_t1_until_timer_b_at_64_t1() {
    let wall = Instant::now();
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("INVITE", "z9hG4bKa1", 1)).unwrap();
    assert_eq!(drain(&mut l).len(), 1, "initial INVITE sent once");
    let ticks = run_until(&mut l, t0, secs(40.0));
    let times = transmit_times(&ticks);
    let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5].iter().map(|s| secs(*s)).collect();
    assert_eq!(times, expected, "Timer A intervals 0.5,1,2,4,8,16 s");
    let last = ticks.last().unwrap();
    assert_eq!(last.at, secs(32.0), "Timer B at 64*T1");
    assert_eq!(
        last.events,
        vec![
            TxEvent::Timeout {
                key: key.clone(),
                timer: TimerKind::B
            },
            TxEvent::Terminated { key: key.clone() }
        ]
    );
    assert_eq!(l.state(&key), None);
    assert!(l.is_empty());
    assert!(
        wall.elapsed() < Duration::from_millis(200),
        "32 s of protocol time must run in (micro)seconds"
    );
}

#[test]
fn timer_b_over_tcp_without_retransmissions() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("INVITE", "z9hG4bKb1", 1)).unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert!(transmit_times(&ticks).is_empty(), "no Timer A on TCP");
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(32.0));
    assert!(ticks[0].events.contains(&TxEvent::Timeout {
        key,
        timer: TimerKind::B
    }));
}

#[test]
fn timer_a_stops_on_provisional_and_timer_b_does_not_fire_in_proceeding() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig {
        timer_c: None,
        ..TimerConfig::default()
    });
    let key = l.send_request(t0, udp(), request("INVITE", "z9hG4bKb2", 1)).unwrap();
    drain(&mut l);
    let ticks = run_until(&mut l, t0, secs(1.0));
    assert_eq!(transmit_times(&ticks), vec![secs(0.5)]);
    let r = l.handle_incoming(
        t0 + secs(1.0),
        udp(),
        response(180, "z9hG4bKb2", 1, "INVITE", Some("to1")),
    );
    assert!(matches!(r, Incoming::Response { .. }));
    let ticks = run_until(&mut l, t0, secs(100.0));
    assert!(ticks.is_empty(), "no retransmission, no Timer B: {ticks:?}");
    assert_eq!(
        l.state(&key),
        Some(TxState::InviteClient(InviteClientState::Proceeding))
    );
}

#[test]
fn timer_c_bounds_invite_in_proceeding() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("INVITE", "z9hG4bKc1", 1)).unwrap();
    drain(&mut l);
    l.handle_incoming(
        t0 + secs(1.0),
        tcp(),
        response(180, "z9hG4bKc1", 1, "INVITE", Some("to1")),
    );
    let ticks = run_until(&mut l, t0, secs(400.0));
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    assert_eq!(ticks[0].at, secs(181.0), "Timer C 180 s after the 180");
    assert_eq!(
        ticks[0].events,
        vec![TxEvent::Timeout {
            key: key.clone(),
            timer: TimerKind::C
        }]
    );
    assert_eq!(ticks[1].at, secs(213.0), "terminated 64*T1 later");
    assert_eq!(ticks[1].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn timer_d_absorbs_final_retransmissions_and_resends_ack() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("INVITE", "z9hG4bKd1", 1)).unwrap();
    drain(&mut l);
    let r = l.handle_incoming(
        t0 + secs(0.1),
        udp(),
        response(486, "z9hG4bKd1", 1, "INVITE", Some("busy")),
    );
    assert!(matches!(r, Incoming::Response { .. }), "final goes to TU");
    let acks = drain(&mut l);
    assert_eq!(acks.len(), 1);
    assert!(acks[0].bytes.starts_with(b"ACK "));
    let r = l.handle_incoming(
        t0 + secs(2.0),
        udp(),
        response(486, "z9hG4bKd1", 1, "INVITE", Some("busy")),
    );
    assert!(matches!(r, Incoming::Absorbed { .. }), "retransmission absorbed");
    let again = drain(&mut l);
    assert_eq!(again.len(), 1, "ACK re-sent for the retransmitted final");
    assert_eq!(again[0].bytes, acks[0].bytes);
    assert_eq!(l.state(&key), Some(TxState::InviteClient(InviteClientState::Completed)));
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert!(transmit_times(&ticks).is_empty(), "Timer A stopped");
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(32.1), "Timer D = 32 s");
    assert_eq!(ticks[0].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn timer_d_is_zero_over_tcp() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("INVITE", "z9hG4bKd2", 1)).unwrap();
    drain(&mut l);
    l.handle_incoming(t0, tcp(), response(603, "z9hG4bKd2", 1, "INVITE", Some("x")));
    assert_eq!(drain(&mut l).len(), 1, "ACK sent");
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { key }]);
    assert!(l.is_empty());
}

#[test]
fn timer_e_doubles_to_t2_until_timer_f() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKe1", 1)).unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    let ticks = run_until(&mut l, t0, secs(40.0));
    let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .iter()
        .map(|s| secs(*s))
        .collect();
    assert_eq!(transmit_times(&ticks), expected, "E: 0.5,1,2,4,4,4... s");
    let last = ticks.last().unwrap();
    assert_eq!(last.at, secs(32.0));
    assert_eq!(
        last.events,
        vec![
            TxEvent::Timeout {
                key: key.clone(),
                timer: TimerKind::F
            },
            TxEvent::Terminated { key }
        ]
    );
}

#[test]
fn timer_e_runs_at_t2_in_proceeding() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("REGISTER", "z9hG4bKe2", 1)).unwrap();
    drain(&mut l);
    let r = l.handle_incoming(t0 + secs(0.2), udp(), response(100, "z9hG4bKe2", 1, "REGISTER", None));
    assert!(matches!(r, Incoming::Response { .. }));
    assert_eq!(
        l.state(&key),
        Some(TxState::NonInviteClient(NonInviteClientState::Proceeding))
    );
    let ticks = run_until(&mut l, t0, secs(14.0));
    assert_eq!(
        transmit_times(&ticks),
        vec![secs(0.5), secs(4.5), secs(8.5), secs(12.5)],
        "after the provisional, E fires every T2"
    );
}

#[test]
fn timer_f_over_tcp_fires_without_retransmissions() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("BYE", "z9hG4bKf1", 2)).unwrap();
    drain(&mut l);
    let ticks = run_until(&mut l, t0, secs(40.0));
    assert_eq!(ticks.len(), 1);
    assert!(ticks[0].transmits.is_empty());
    assert_eq!(ticks[0].at, secs(32.0));
    assert_eq!(
        ticks[0].events[0],
        TxEvent::Timeout {
            key,
            timer: TimerKind::F
        }
    );
}

#[test]
fn timer_k_absorbs_response_retransmissions_for_t4() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKk1", 1)).unwrap();
    drain(&mut l);
    let r = l.handle_incoming(
        t0 + secs(1.0),
        udp(),
        response(200, "z9hG4bKk1", 1, "OPTIONS", Some("t")),
    );
    assert!(matches!(r, Incoming::Response { .. }));
    let r = l.handle_incoming(
        t0 + secs(2.0),
        udp(),
        response(200, "z9hG4bKk1", 1, "OPTIONS", Some("t")),
    );
    assert!(matches!(r, Incoming::Absorbed { .. }));
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert!(transmit_times(&ticks).is_empty(), "E stopped by the final");
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(6.0), "Timer K = T4 after the final");
    assert_eq!(ticks[0].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn timer_k_is_zero_over_tcp() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("OPTIONS", "z9hG4bKk2", 1)).unwrap();
    drain(&mut l);
    l.handle_incoming(t0, tcp(), response(200, "z9hG4bKk2", 1, "OPTIONS", Some("t")));
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { key }]);
    assert!(l.is_empty());
}

#[test]
fn timer_g_caps_at_t2_and_timer_h_times_out() {
    let t0 = Instant::now();
    let mut l = layer_no_trying();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKg1", 1)) else {
        panic!("new INVITE")
    };
    assert!(drain(&mut l).is_empty(), "auto 100 off");
    l.respond(t0, &key, response_msg(486, "z9hG4bKg1", "INVITE", Some("s")))
        .unwrap();
    let first = drain(&mut l);
    assert_eq!(first.len(), 1);
    assert_eq!(status_line(&first[0]), "SIP/2.0 486 Reason");
    let ticks = run_until(&mut l, t0, secs(40.0));
    let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .iter()
        .map(|s| secs(*s))
        .collect();
    assert_eq!(transmit_times(&ticks), expected, "G: 0.5,1,2,4,4,... s");
    assert!(ticks
        .iter()
        .flat_map(|t| &t.transmits)
        .all(|t| t.bytes == first[0].bytes));
    let last = ticks.last().unwrap();
    assert_eq!(last.at, secs(32.0), "Timer H = 64*T1");
    assert_eq!(
        last.events,
        vec![
            TxEvent::Timeout {
                key: key.clone(),
                timer: TimerKind::H
            },
            TxEvent::Terminated { key }
        ]
    );
}

#[test]
fn timer_g_not_started_over_tcp() {
    let t0 = Instant::now();
    let mut l = layer_no_trying();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, tcp(), request("INVITE", "z9hG4bKg2", 1)) else {
        panic!("new INVITE")
    };
    l.respond(t0, &key, response_msg(480, "z9hG4bKg2", "INVITE", Some("s")))
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    let ticks = run_until(&mut l, t0, secs(40.0));
    assert_eq!(ticks.len(), 1, "only Timer H");
    assert!(ticks[0].transmits.is_empty());
    assert_eq!(ticks[0].at, secs(32.0));
}

#[test]
fn timer_i_after_ack_stops_g_and_absorbs_acks() {
    let t0 = Instant::now();
    let mut l = layer_no_trying();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKi1", 1)) else {
        panic!("new INVITE")
    };
    l.respond(t0, &key, response_msg(404, "z9hG4bKi1", "INVITE", Some("s")))
        .unwrap();
    drain(&mut l);
    let ticks = run_until(&mut l, t0, secs(1.0));
    assert_eq!(transmit_times(&ticks), vec![secs(0.5)]);
    let ack = request_with("ACK", "z9hG4bKi1", 1, Some("s"));
    let r = l.handle_incoming(t0 + secs(1.0), udp(), ack);
    assert!(matches!(r, Incoming::Absorbed { .. }), "{r:?}");
    assert_eq!(l.state(&key), Some(TxState::InviteServer(InviteServerState::Confirmed)));
    let r = l.handle_incoming(t0 + secs(2.0), udp(), request_with("ACK", "z9hG4bKi1", 1, Some("s")));
    assert!(matches!(r, Incoming::Absorbed { .. }), "ACK retransmission");
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert!(transmit_times(&ticks).is_empty(), "G stopped by the ACK");
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(6.0), "Timer I = T4 after the ACK");
    assert_eq!(ticks[0].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn timer_i_is_zero_over_tcp() {
    let t0 = Instant::now();
    let mut l = layer_no_trying();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, tcp(), request("INVITE", "z9hG4bKi2", 1)) else {
        panic!("new INVITE")
    };
    l.respond(t0, &key, response_msg(404, "z9hG4bKi2", "INVITE", Some("s")))
        .unwrap();
    drain(&mut l);
    l.handle_incoming(t0, tcp(), request_with("ACK", "z9hG4bKi2", 1, Some("s")));
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { key }]);
    assert!(l.is_empty());
}

#[test]
fn timer_j_answers_request_retransmissions_then_terminates() {
    let t0 = Instant::now();
    let mut l = layer();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, udp(), request("OPTIONS", "z9hG4bKj1", 1)) else {
        panic!("new OPTIONS")
    };
    assert!(drain(&mut l).is_empty(), "no automatic 100 for non-INVITE");
    assert_eq!(
        l.state(&key),
        Some(TxState::NonInviteServer(NonInviteServerState::Trying))
    );
    l.respond(
        t0 + secs(0.1),
        &key,
        response_msg(200, "z9hG4bKj1", "OPTIONS", Some("s")),
    )
    .unwrap();
    let ok = drain(&mut l);
    assert_eq!(ok.len(), 1);
    let r = l.handle_incoming(t0 + secs(1.0), udp(), request("OPTIONS", "z9hG4bKj1", 1));
    assert!(matches!(r, Incoming::Absorbed { .. }));
    let again = drain(&mut l);
    assert_eq!(again.len(), 1, "retransmitted request answered with last response");
    assert_eq!(again[0].bytes, ok[0].bytes);
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert_eq!(ticks.len(), 1);
    assert!(ticks[0].transmits.is_empty(), "server never retransmits on its own");
    assert_eq!(ticks[0].at, secs(32.1), "Timer J = 64*T1");
    assert_eq!(ticks[0].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn timer_j_is_zero_over_tcp() {
    let t0 = Instant::now();
    let mut l = layer();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, tcp(), request("OPTIONS", "z9hG4bKj2", 1)) else {
        panic!("new OPTIONS")
    };
    l.respond(t0, &key, response_msg(200, "z9hG4bKj2", "OPTIONS", Some("s")))
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { key }]);
    assert!(l.is_empty());
}

#[test]
fn timer_l_accepted_absorbs_invite_retransmissions_and_passes_2xx_acks() {
    let t0 = Instant::now();
    let mut l = layer();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKl1", 1)) else {
        panic!("new INVITE")
    };
    drain(&mut l);
    l.respond(t0, &key, response_msg(200, "z9hG4bKl1", "INVITE", Some("s")))
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    assert_eq!(l.state(&key), Some(TxState::InviteServer(InviteServerState::Accepted)));
    let r = l.handle_incoming(t0 + secs(0.5), udp(), request("INVITE", "z9hG4bKl1", 1));
    assert!(matches!(r, Incoming::Absorbed { .. }));
    assert!(drain(&mut l).is_empty(), "TU, not the transaction, retransmits 2xx");
    l.respond(
        t0 + secs(0.5),
        &key,
        response_msg(200, "z9hG4bKl1", "INVITE", Some("s")),
    )
    .unwrap();
    assert_eq!(drain(&mut l).len(), 1, "TU 2xx retransmission passes through");
    let r = l.handle_incoming(
        t0 + secs(1.0),
        udp(),
        request_with("ACK", "z9hG4bKnewbranch", 1, Some("s")),
    );
    assert!(
        matches!(r, Incoming::Ack { key: None, .. }),
        "2xx ACK is the dialog's: {r:?}"
    );
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(32.0), "Timer L = 64*T1");
    assert_eq!(ticks[0].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn timer_m_accepted_passes_2xx_retransmissions_to_tu() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("INVITE", "z9hG4bKm1", 1)).unwrap();
    drain(&mut l);
    let r = l.handle_incoming(
        t0 + secs(0.2),
        udp(),
        response(200, "z9hG4bKm1", 1, "INVITE", Some("s")),
    );
    assert!(matches!(r, Incoming::Response { .. }));
    assert!(drain(&mut l).is_empty(), "no ACK for 2xx from the transaction");
    assert_eq!(l.state(&key), Some(TxState::InviteClient(InviteClientState::Accepted)));
    let r = l.handle_incoming(
        t0 + secs(1.0),
        udp(),
        response(200, "z9hG4bKm1", 1, "INVITE", Some("s")),
    );
    assert!(matches!(r, Incoming::Response { .. }), "2xx retransmission to TU");
    let ticks = run_until(&mut l, t0, secs(60.0));
    assert!(transmit_times(&ticks).is_empty(), "Timer A stopped by the 2xx");
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(32.2), "Timer M = 64*T1");
    assert_eq!(ticks[0].events, vec![TxEvent::Terminated { key }]);
}

#[test]
fn custom_t1_scales_all_timers() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig {
        t1: ms(100),
        t2: ms(400),
        ..TimerConfig::default()
    });
    l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKt1", 1)).unwrap();
    drain(&mut l);
    let ticks = run_until(&mut l, t0, secs(10.0));
    let times = transmit_times(&ticks);
    assert_eq!(&times[..4], &[ms(100), ms(300), ms(700), ms(1100)]);
    assert_eq!(ticks.last().unwrap().at, ms(6400), "F = 64*T1");
}

#[test]
fn zero_t1_from_config_cannot_spin() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        ..TimerConfig::default()
    });
    l.send_request(t0, udp(), request("INVITE", "z9hG4bKz1", 1)).unwrap();
    drain(&mut l);
    l.handle_timeout(t0 + secs(10.0));
    assert!(l.is_empty(), "B fired after the clamped 64 ms");
    assert!(drain(&mut l).len() < 20);
}

#[test]
fn immediate_100_trying_and_retransmitted_invite_gets_last_provisional() {
    let t0 = Instant::now();
    let mut l = layer();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKp1", 1)) else {
        panic!("new INVITE")
    };
    let trying = drain(&mut l);
    assert_eq!(trying.len(), 1);
    assert_eq!(status_line(&trying[0]), "SIP/2.0 100 Trying");
    let r = l.handle_incoming(t0 + ms(500), udp(), request("INVITE", "z9hG4bKp1", 1));
    assert!(matches!(r, Incoming::Absorbed { .. }));
    let again = drain(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(status_line(&again[0]), "SIP/2.0 100 Trying");
    l.respond(t0 + ms(600), &key, response_msg(180, "z9hG4bKp1", "INVITE", Some("s")))
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    l.handle_incoming(t0 + ms(1500), udp(), request("INVITE", "z9hG4bKp1", 1));
    let again = drain(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(status_line(&again[0]), "SIP/2.0 180 Reason", "last provisional");
    let ticks = run_until(&mut l, t0, secs(300.0));
    assert_eq!(ticks.len(), 1, "no retransmissions in Proceeding: {ticks:?}");
    assert!(ticks[0].transmits.is_empty());
    assert_eq!(ticks[0].at, secs(212.0), "guard = Timer C + 64*T1");
    assert_eq!(
        ticks[0].events,
        vec![
            TxEvent::Timeout {
                key: key.clone(),
                timer: TimerKind::Guard
            },
            TxEvent::Terminated { key }
        ]
    );
}

#[test]
fn delayed_100_trying_is_skipped_when_tu_answers_first() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TxConfig {
        auto_trying: AutoTrying::After(ms(200)),
        ..TxConfig::default()
    });
    let Incoming::NewRequest { key: k1, .. } = l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKq1", 1)) else {
        panic!("new INVITE")
    };
    let Incoming::NewRequest { .. } = l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKq2", 1)) else {
        panic!("new INVITE")
    };
    assert!(drain(&mut l).is_empty(), "nothing before 200 ms");
    l.respond(t0 + ms(100), &k1, response_msg(180, "z9hG4bKq1", "INVITE", Some("s")))
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    let ticks = run_until(&mut l, t0, secs(1.0));
    let sent: Vec<_> = ticks.iter().flat_map(|t| &t.transmits).collect();
    assert_eq!(sent.len(), 1, "only the unanswered INVITE gets the 100");
    assert_eq!(ticks[0].at, ms(200));
    assert_eq!(status_line(sent[0]), "SIP/2.0 100 Trying");
    assert!(std::str::from_utf8(&sent[0].bytes).unwrap().contains("z9hG4bKq2"));
}

#[test]
fn unanswered_non_invite_server_transaction_is_reclaimed_after_64_t1() {
    let t0 = Instant::now();
    let mut l = layer();
    let Incoming::NewRequest { key, .. } = l.handle_incoming(t0, udp(), request("MESSAGE", "z9hG4bKgu1", 1)) else {
        panic!("new MESSAGE")
    };
    l.respond(t0 + secs(1.0), &key, response_msg(100, "z9hG4bKgu1", "MESSAGE", None))
        .unwrap();
    let ticks = run_until(&mut l, t0, secs(100.0));
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, secs(32.0));
    assert_eq!(
        ticks[0].events,
        vec![
            TxEvent::Timeout {
                key: key.clone(),
                timer: TimerKind::Guard
            },
            TxEvent::Terminated { key }
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn timer_c_restarts_on_each_provisional_above_100() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("INVITE", "z9hG4bKc2", 1)).unwrap();
    drain(&mut l);
    l.handle_incoming(t0, tcp(), response(100, "z9hG4bKc2", 1, "INVITE", None));
    assert!(run_until(&mut l, t0, secs(100.0)).is_empty());
    l.handle_incoming(
        t0 + secs(100.0),
        tcp(),
        response(183, "z9hG4bKc2", 1, "INVITE", Some("t")),
    );
    let ticks = run_until(&mut l, t0, secs(281.0));
    assert_eq!(ticks.len(), 1, "{ticks:?}");
    assert_eq!(ticks[0].at, secs(280.0), "C restarted by the 183");
    assert_eq!(
        ticks[0].events,
        vec![TxEvent::Timeout {
            key,
            timer: TimerKind::C
        }]
    );
}

/// RFC 3261 17.1.4 / 8.1.3.1: a send failure ends a client INVITE transaction at once (the TU treats it
/// as a 503 and fails over), instead of Timer A retransmitting into the void until Timer B at 32 s.
#[test]
fn transport_error_ends_client_invite_at_once_not_after_timer_b() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("INVITE", "z9hG4bKte1", 1)).unwrap();
    let sent = drain(&mut l);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key.as_ref(), Some(&key), "the transmit names its transaction");
    // The driver's send fails 1 ms later.
    l.transport_error(sent[0].key.as_ref().unwrap());
    assert_eq!(
        events(&mut l),
        vec![
            TxEvent::TransportError { key: key.clone() },
            TxEvent::Terminated { key: key.clone() }
        ]
    );
    assert_eq!(l.state(&key), None);
    assert!(l.is_empty());
    // Nothing is left to fire: no Timer A retransmission, no Timer B timeout at 32 s.
    let ticks = run_until(&mut l, t0, secs(64.0));
    assert!(ticks.is_empty(), "{ticks:?}");
    // A late report (e.g. a second queued send failing) is ignored.
    l.transport_error(&key);
    assert!(events(&mut l).is_empty());
}

/// The same for a non-INVITE client transaction (Timer F would otherwise end it at 32 s).
#[test]
fn transport_error_ends_client_non_invite_at_once() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("OPTIONS", "z9hG4bKte2", 1)).unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    l.transport_error(&key);
    assert_eq!(
        events(&mut l),
        vec![
            TxEvent::TransportError { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    assert!(run_until(&mut l, t0, secs(64.0)).is_empty());
}

/// RFC 3261 17.2.4: a server transaction whose response cannot be sent is terminated (no Timer G
/// retransmissions, no Timer H timeout); the TU is told.
#[test]
fn transport_error_ends_server_transaction() {
    let t0 = Instant::now();
    let mut l = layer_no_trying();
    let key = match l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKte3", 1)) {
        Incoming::NewRequest { key, .. } => key,
        other => panic!("{other:?}"),
    };
    l.respond(t0, &key, response_msg(486, "z9hG4bKte3", "INVITE", Some("s")))
        .unwrap();
    let sent = drain(&mut l);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key.as_ref(), Some(&key));
    l.transport_error(&key);
    assert_eq!(
        events(&mut l),
        vec![
            TxEvent::TransportError { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    assert!(run_until(&mut l, t0, secs(64.0)).is_empty());
}
