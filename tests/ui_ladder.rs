//! The ladder page in a real browser: headless Chromium (Debian's `chromium`) loads `/ui/calls/{id}` for a
//! call that failed over and was then transferred, and the test reads the DOM the page's script built:
//! one arrow per message of the call's trace, a column for every party. The screenshot is kept in the
//! target directory (`ui-ladder.png`) for a human to look at.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{start_edge, Agent, Carrier, Mode};
use edge_store::AgentStatus;
use sip_core::message::{HeaderName, Method};

const DID: &str = "+14155550142";
const S: Duration = Duration::from_secs(5);

/// Runs headless Chromium on `url` and returns the DOM after the page's script ran (or the screenshot's
/// path with `screenshot`).
async fn chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(90), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("chromium did not start ({e}): scripts/test.sh installs Debian's `chromium`"),
        Err(_) => panic!("chromium did not finish within 90 s"),
    };
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The values of `attr="..."` in `dom`, in order.
fn attr_values<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    dom.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &dom[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test]
async fn the_ladder_of_a_failed_over_and_transferred_call_in_chromium() {
    let t = start_edge(|_| {}).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let fallback = Agent::spawn(Mode::Answer).await;
    let target = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fallback, 5, AgentStatus::Active).await;
    let x = t.add_agent("target", &target, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;

    // The carrier's call: the primary is busy, the fallback answers.
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let inv = fallback.expect(Method::Invite, S).await;
    let call_id = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .expect("X-OneInbox-Call-Id")
        .to_owned();
    t.wait_status(&call_id, "in-progress", S).await;

    // The fallback agent's controller transfers the caller to a third agent through the API.
    let (code, body) = t
        .http(
            "POST",
            &format!("/v1/calls/{call_id}/transfer"),
            Some(&format!(r#"{{"to":"{x}"}}"#)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    target.expect(Method::Invite, S).await;
    fallback.expect(Method::Bye, S).await;
    // The caller hangs up on the target.
    c.in_dialog("BYE", false).await;
    target.expect(Method::Bye, S).await;
    let record = t.final_call(&call_id, S).await;
    assert_eq!(record["status"], "completed", "{record}");

    // The trace is stored off the engine: wait for it, then count what the page must draw.
    let deadline = tokio::time::Instant::now() + S;
    let trace = loop {
        let (code, body) = t.http("GET", &format!("/v1/calls/{call_id}/trace"), None).await;
        if code == 200 {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no trace for {call_id}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let messages = trace["messages"].as_array().expect("messages").len();
    assert!(
        messages >= 12,
        "a failover and a transfer take more than {messages} messages"
    );

    let api = t.edge.api.unwrap();
    let url = format!("http://{api}/ui/calls/{call_id}#key={}", t.api_key);
    let dom = chromium(&url, &["--dump-dom"]).await;
    assert!(
        dom.contains(r#"data-ready="true""#),
        "the page did not finish loading: {dom}"
    );
    let arrows = attr_values(&dom, "class")
        .into_iter()
        .filter(|c| c.starts_with("arrow"))
        .count();
    assert_eq!(arrows, messages, "one arrow per message of the trace");
    let parties = attr_values(&dom, "data-party");
    assert!(parties.contains(&"edge"), "{parties:?}");
    assert_eq!(
        parties.len(),
        5,
        "carrier, edge, primary, fallback and transfer target: {parties:?}"
    );
    for hop in record["hops"].as_array().unwrap() {
        assert!(
            dom.contains(hop["outcome"].as_str().unwrap()),
            "hop {hop} is above the ladder"
        );
    }
    // Nobody without the key gets anything: the page asks for one.
    let dom = chromium(&format!("http://{api}/ui/calls/{call_id}"), &["--dump-dom"]).await;
    assert!(dom.contains("Enter an API key"), "{dom}");
    assert_eq!(attr_values(&dom, "data-party").len(), 0);

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-ladder.png");
    chromium(
        &url,
        &["--window-size=1400,1200", &format!("--screenshot={}", shot.display())],
    )
    .await;
    assert!(
        std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
}
