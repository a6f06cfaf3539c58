//! Config reload (issue 21, item 1) on loopback: SIGHUP with a changed `[[carriers]]` list applies it while
//! a call is up (the call goes on and ends normally; the new carrier's INVITE is taken, the removed one's
//! refused); a file that fails validation keeps the running config; keys that need a restart are named
//! and not applied; `oneinbox-edge reload` end to end against the binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{start_edge_at, Agent, Carrier, Mode};
use edge_store::AgentStatus;
use oneinbox_edge::config::Config;
use sip_core::message::{HeaderName, Method};

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";

/// An edge config on loopback whose `[[carriers]]` are `carriers` (name, address), plus `extra` lines.
fn config_text(dir: &Path, rtp: u16, carriers: &[(&str, &str)], extra: &str) -> String {
    let mut t = format!(
        "[sip]\nudp = \"127.0.0.1:0\"\ntcp = \"off\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind_ip = \"127.0.0.1\"\npublic_ip = \"127.0.0.1\"\nrtp_ports = \"{rtp}-{}\"\nport_quarantine_ms = 200\n\
         [storage]\ndata_dir = {:?}\n\
         [routing]\nagent_setup_timeout_ms = 300\nagent_ring_timeout_s = 2\n\
         [security]\ninternal_targets = [\"127.0.0.0/8\"]\n\
         [outbound]\nagent_digest = false\n{extra}\n",
        rtp + 99,
        dir.display().to_string(),
    );
    for (name, ip) in carriers {
        t.push_str(&format!("[[carriers]]\nname = \"{name}\"\nallow = [\"{ip}/32\"]\n"));
    }
    t
}

/// A carrier on loopback address `ip`.
async fn carrier_at(ip: &str, edge: std::net::SocketAddr) -> Carrier {
    let mut c = Carrier::new(edge, DID).await;
    c.sock = tokio::net::UdpSocket::bind(format!("{ip}:0")).await.unwrap();
    c
}

/// Starts an edge from the config file `text` written under a fresh directory.
async fn edge_from_file(rtp: u16, carriers: &[(&str, &str)]) -> (common::TestEdge, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, config_text(dir.path(), rtp, carriers, "")).unwrap();
    let f = file.clone();
    let t = start_edge_at(dir, move |c| *c = Config::load(&f).unwrap()).await;
    (t, file)
}

#[tokio::test]
async fn sighup_applies_a_new_carrier_list_while_a_call_is_up() {
    // The agents answer from 127.0.0.1, kept as carrier "local" (as in the tests' default config).
    let (t, file) = edge_from_file(31_000, &[("local", "127.0.0.1"), ("old", "127.0.0.2")]).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    assert_eq!(t.edge.config_generation(), 1);

    // A call from carrier "old", answered.
    let mut old = carrier_at("127.0.0.2", t.sip()).await;
    old.invite().await;
    let (_, ok) = old.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    old.ack(&ok).await;
    let inv = agent.expect(Method::Invite, S).await;
    let id = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    agent.expect(Method::Ack, S).await;

    // "old" removed, "new" added; SIGHUP to this process.
    let dir = file.parent().unwrap();
    std::fs::write(
        &file,
        config_text(dir, 31_000, &[("local", "127.0.0.1"), ("new", "127.0.0.3")], ""),
    )
    .unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    for _ in 0..150 {
        if t.edge.config_generation() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.edge.config_generation() >= 2, "SIGHUP applied no reload");

    // The new carrier's INVITE is taken, and named on the agent leg.
    let mut new = carrier_at("127.0.0.3", t.sip()).await;
    new.invite().await;
    let (_, ok_new) = new.final_response(S).await;
    assert_eq!(ok_new.status(), Some(200));
    new.ack(&ok_new).await;
    let inv = agent.expect(Method::Invite, S).await;
    assert_eq!(inv.header(&HeaderName::Other("X-OneInbox-Carrier".into())), Some("new"));
    // The removed carrier's new call is refused (routing.unknown_source = "reject"; no agent digest here,
    // which would challenge it with 407 instead).
    let mut gone = carrier_at("127.0.0.2", t.sip()).await;
    gone.invite().await;
    let (_, refused) = gone.final_response(S).await;
    assert_eq!(refused.status(), Some(403));

    // The call that was up goes on and ends normally, through its dialog.
    old.in_dialog("BYE", false).await;
    let bye_ok = old.recv(S).await.expect("200 to BYE");
    assert_eq!(bye_ok.status(), Some(200));
    agent.expect(Method::Bye, S).await;
    let rec = t.final_call(&id, S).await;
    assert_eq!(rec["status"], "completed");
    assert_eq!(rec["end_reason"], "caller hung up");
    assert_eq!(rec["carrier"], "old");
}

#[tokio::test]
async fn a_bad_file_keeps_the_running_config_and_restart_keys_are_named() {
    let (t, file) = edge_from_file(31_200, &[("local", "127.0.0.1"), ("old", "127.0.0.2")]).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let dir = file.parent().unwrap().to_owned();

    // A file that fails `check`: nothing applied, the key and line reported.
    let mut bad = config_text(&dir, 31_200, &[("local", "127.0.0.1")], "");
    bad.push_str("[[carriers]]\nname = \"broken\"\nallow = [\"not-an-address\"]\n");
    std::fs::write(&file, &bad).unwrap();
    let report = t.edge.reload().await;
    assert!(!report.applied);
    let err = report.error.unwrap();
    assert!(err.contains("edge.toml:") && err.contains("carriers"), "{err}");
    let mut old = carrier_at("127.0.0.2", t.sip()).await;
    old.invite().await;
    let (_, ok) = old.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "the running carrier list stays");
    old.ack(&ok).await;

    // A listener change needs a restart: named, not applied; the rest of the file is.
    let extra = "[admission]\nstranger_requests_per_s = 5\n";
    let mut text = config_text(&dir, 31_200, &[("local", "127.0.0.1")], extra);
    text = text
        .replace("[media]\n", "[media]\nport_quarantine_ms = 300\n")
        .replace("port_quarantine_ms = 200\n", "");
    std::fs::write(&file, text.replace("udp = \"127.0.0.1:0\"", "udp = \"127.0.0.1:5999\"")).unwrap();
    let report = t.edge.reload().await;
    assert!(report.applied, "{report:?}");
    assert_eq!(report.needs_restart, vec!["sip.udp".to_owned(), "media".to_owned()]);
    let mut gone = carrier_at("127.0.0.2", t.sip()).await;
    gone.invite().await;
    assert_eq!(gone.final_response(S).await.1.status(), Some(403));
}

/// `oneinbox-edge reload` against the binary: a bad file is refused before the edge is signalled (exit 2,
/// `file:line: key`), a good one is applied and reported, and /healthz shows the new generation.
#[test]
fn reload_subcommand_end_to_end() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    let bin = env!("CARGO_BIN_EXE_oneinbox-edge");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let write = |carriers: &[(&str, &str)], extra: &str| {
        let text = config_text(dir.path(), 31_400, carriers, extra)
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
        std::fs::write(&file, text).unwrap();
    };
    write(&[("a", "127.0.0.1")], "");
    let mut edge = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = || -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
    };
    let mut up = None;
    for _ in 0..200 {
        up = health();
        if up.is_some() && dir.path().join("oneinbox-edge.pid").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(up.expect("edge up")["config_generation"], 1);
    let reload = || {
        Command::new(bin)
            .args(["reload", "--config"])
            .arg(&file)
            .output()
            .unwrap()
    };

    // Refused before signalling: exit 2 with the key and line; the edge keeps generation 1.
    let mut bad = config_text(dir.path(), 31_400, &[], "");
    bad = bad.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    bad.push_str("[shutdown]\ndrain_timeout_s = \"soon\"\n");
    std::fs::write(&file, &bad).unwrap();
    let out = reload();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("edge.toml"), "{err}");

    // Applied: a new carrier and a new drain time-out.
    write(
        &[("a", "127.0.0.1"), ("b", "127.0.0.2")],
        "[shutdown]\ndrain_timeout_s = 5\n",
    );
    let out = reload();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("applied (configuration generation 2)"), "{said}");
    assert_eq!(health().unwrap()["config_generation"], 2);

    // A restart-bound key is named.
    write(&[("a", "127.0.0.1")], "[runtime]\nengine_shards = 3\n");
    let out = reload();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        said.contains("needs a restart, not applied: runtime.engine_shards"),
        "{said}"
    );

    // SIGTERM with no call up: the edge drains at once and exits 0, its pid file gone.
    rustix::process::kill_process(rustix::process::Pid::from_child(&edge), rustix::process::Signal::TERM).unwrap();
    let mut status = None;
    for _ in 0..200 {
        status = edge.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = edge.kill();
        panic!("edge still running 10 s after SIGTERM with no call up");
    };
    assert!(status.success(), "{status}");
    assert!(!dir.path().join("oneinbox-edge.pid").exists());
}
