//! SIP over TLS toward trunks and agents, end to end on loopback: test trunks (and an agent) on TLS with
//! certificates from a test CA given to the edge as `outbound.tls_extra_roots`; digest over TLS; the
//! certificate failures a user must be told about (expired, wrong name, unknown issuer, a client
//! certificate demanded); `_sips._tcp` SRV targets; mutual TLS with the operator trunk's certificate.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::trunk::{TestTrunk, TrunkAuth, TrunkMode};
use common::{dns, start_edge, Agent, Carrier, Mode, TestEdge};
use edge_store::{AgentStatus, NewAgent, Provider};
use oneinbox_edge::transport::tls::TlsFiles;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sip_core::digest::{Algorithm, AuthHeader};
use sip_core::message::{HeaderName, Message, Method};

const S: Duration = Duration::from_secs(4);
const DID: &str = "+14155550100";
const DEST: &str = "+447700900123";

/// A test certificate authority, its root in a PEM file for `outbound.tls_extra_roots`.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    root: PathBuf,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    Server,
    Client,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(format!("{name}.pem"));
        std::fs::write(&root, ca.pem()).unwrap();
        Pki { dir, ca, root }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now unless `expired`.
    fn leaf(&self, names: &[&str], usage: Use, expired: bool) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        p.extended_key_usages = vec![match usage {
            Use::Server => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            Use::Client => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        (cert, key)
    }

    /// A trunk's (or agent's) TLS acceptor with a leaf for `names`; with `clients`, it demands a client
    /// certificate issued by that CA.
    fn acceptor(&self, names: &[&str], expired: bool, clients: Option<&Pki>) -> tokio_rustls::TlsAcceptor {
        let (cert, key) = self.leaf(names, Use::Server, expired);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.ca.der().clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let cfg = builder.with_single_cert(vec![cert.der().clone()], key).unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }

    /// A client certificate and key in PEM files, for the edge's config.
    fn client_files(&self, name: &str) -> TlsFiles {
        let (cert, key) = self.leaf(&[name], Use::Client, false);
        let files = TlsFiles {
            certificate: self.dir.path().join(format!("{name}.crt")),
            private_key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&files.certificate, cert.pem()).unwrap();
        std::fs::write(&files.private_key, key.serialize_pem()).unwrap();
        files
    }
}

/// An edge trusting `pki`'s root besides the bundled ones, resolving through `ns` when given.
async fn edge(
    pki: &Pki,
    ns: Option<std::net::SocketAddr>,
    tweak: impl FnOnce(&mut oneinbox_edge::config::Config),
) -> TestEdge {
    start_edge(|c| {
        c.outbound.tls.extra_roots = vec![pki.root.clone()];
        c.outbound.trunk_setup_timeout = Duration::from_millis(1500);
        c.outbound.default_cps = 100.0;
        c.outbound.telnyx_cps = 100.0;
        c.outbound.twilio_cps = 100.0;
        if let Some(ns) = ns {
            c.outbound.nameservers = Some(vec![ns]);
            c.outbound.dns_timeout = Duration::from_millis(500);
        }
        tweak(c);
    })
    .await
}

fn header(m: &Message, name: &str) -> String {
    m.header(&HeaderName::from(name)).unwrap_or_default().to_owned()
}

async fn json(t: &TestEdge, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (code, text) = t.http(method, path, body).await;
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// `POST /v1/calls` from `did` through its trunk; the call's id.
async fn api_call(t: &TestEdge, did: &str, agent_id: &str) -> String {
    let body = format!(r#"{{"from": "{did}", "to": "{DEST}", "agent_id": "{agent_id}"}}"#);
    let (code, call) = json(t, "POST", "/v1/calls", Some(&body)).await;
    assert!(code < 300, "{call}");
    call["id"].as_str().unwrap().to_owned()
}

async fn add_agent_uri(t: &TestEdge, name: &str, sip_uri: &str) -> String {
    t.edge
        .store
        .create_agent(
            &t.account,
            NewAgent {
                name: name.into(),
                sip_uri: sip_uri.into(),
                max_concurrent_calls: 5,
                voicemail_message: None,
                status: AgentStatus::Active,
                sip_username: None,
                sip_password: None,
                media_encryption: Default::default(),
            },
        )
        .await
        .unwrap()
        .id
}

async fn metric(t: &TestEdge, name: &str) -> u64 {
    let (_, text) = t.http("GET", "/metrics", None).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn digest_call_over_tls_to_a_trunk_named_in_dns() {
    let pki = Pki::new("test-ca");
    let trunk = TestTrunk::spawn_tls(
        TrunkMode::Answer,
        Some(TrunkAuth {
            username: "tls-user".into(),
            password: "tls-pass".into(),
            header: AuthHeader::ProxyAuthorization,
            algorithm: Algorithm::Md5,
        }),
        pki.acceptor(&["trunk.test"], false, None),
    )
    .await;
    let ns = dns::serve(vec![dns::a("trunk.test.", [127, 0, 0, 1])]).await;
    let t = edge(&pki, Some(ns), |_| {}).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    let address = format!("sips:trunk.test:{}", trunk.addr.port());
    t.add_byo_number(
        DID,
        &agent_id,
        Provider::Twilio,
        &address,
        Some(("tls-user", "tls-pass")),
    )
    .await;
    let id = api_call(&t, DID, &agent_id).await;

    let first = trunk.expect(Method::Invite, S).await;
    let second = trunk.expect(Method::Invite, S).await;
    for inv in [&first, &second] {
        assert!(header(inv, "Via").starts_with("SIP/2.0/TLS "), "{inv:?}");
        assert_eq!(
            inv.request_uri_raw().unwrap(),
            format!("sips:{DEST}@trunk.test:{}", trunk.addr.port())
        );
        assert!(header(inv, "Contact").starts_with("<sips:"), "{inv:?}");
    }
    assert!(
        !header(&second, "Proxy-Authorization").is_empty(),
        "digest answered over TLS"
    );
    trunk.expect(Method::Ack, S).await;
    agent.expect(Method::Invite, S).await;
    t.wait_status(&id, "in-progress", S).await;
    // One TLS connection carried the challenge, the answer and the ACK.
    assert_eq!(metric(&t, "edge_tls_handshakes_total").await, 1);
    assert_eq!(metric(&t, "edge_tcp_connections_opened_total").await, 1);

    // A second call to the same trunk reuses the connection.
    let did2 = "+14155550101";
    t.add_byo_number(
        did2,
        &agent_id,
        Provider::Twilio,
        &address,
        Some(("tls-user", "tls-pass")),
    )
    .await;
    api_call(&t, did2, &agent_id).await;
    trunk.expect(Method::Invite, S).await;
    assert_eq!(metric(&t, "edge_tls_handshakes_total").await, 1, "connection reused");
}

#[tokio::test]
async fn certificate_failures_say_what_is_wrong() {
    let pki = Pki::new("test-ca");
    let stranger = Pki::new("stranger-ca");
    let expired = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["127.0.0.1"], true, None)).await;
    let wrong_name = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["other.test"], false, None)).await;
    let unknown = TestTrunk::spawn_tls(TrunkMode::Answer, None, stranger.acceptor(&["127.0.0.1"], false, None)).await;
    let ns = dns::serve(vec![dns::a("trunk.test.", [127, 0, 0, 1])]).await;
    let t = edge(&pki, Some(ns), |_| {}).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    let cases = [
        (
            "+14155550111",
            format!("sips:127.0.0.1:{}", expired.addr.port()),
            "certificate for 127.0.0.1 expired at 2021-01-01",
        ),
        (
            "+14155550112",
            format!("trunk.test:{};transport=tls", wrong_name.addr.port()),
            "is not valid for name trunk.test (it names other.test)",
        ),
        (
            "+14155550113",
            format!("sips:127.0.0.1:{}", unknown.addr.port()),
            "certificate for 127.0.0.1 has an unknown issuer",
        ),
    ];
    for (did, address, words) in &cases {
        t.add_byo_number(did, &agent_id, Provider::Twilio, address, None).await;
        let started = std::time::Instant::now();
        let id = api_call(&t, did, &agent_id).await;
        let done = t.final_call(&id, S).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"]["code"], "trunk_tls", "{done}");
        let msg = done["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{address}: {msg}");
        // Told at once, not after the set-up time-out.
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(!agent.got(Method::Invite, Duration::from_millis(100)).await);
    assert_eq!(metric(&t, "edge_tls_handshake_failures_total").await, 3);
}

#[tokio::test]
async fn sips_srv_target_is_dialled_over_tls_and_checked_against_the_trunk_name() {
    let pki = Pki::new("test-ca");
    // The certificate names the trunk's domain (RFC 5922), not the SRV target host.
    let trunk = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["secure.test"], false, None)).await;
    let ns = dns::serve(vec![
        dns::srv("_sips._tcp.secure.test.", 10, 0, trunk.addr.port(), "a.secure.test."),
        dns::a("a.secure.test.", [127, 0, 0, 1]),
        dns::a("secure.test.", [192, 0, 2, 1]),
    ])
    .await;
    let t = edge(&pki, Some(ns), |_| {}).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(DID, &agent_id, Provider::Telnyx, "sips:secure.test", None)
        .await;
    let id = api_call(&t, DID, &agent_id).await;
    let inv = trunk.expect(Method::Invite, S).await;
    assert_eq!(inv.request_uri_raw().unwrap(), format!("sips:{DEST}@secure.test"));
    agent.expect(Method::Invite, S).await;
    t.wait_status(&id, "in-progress", S).await;
    assert!(header(&inv, "Via").starts_with("SIP/2.0/TLS "), "{inv:?}");
}

/// A customer registers a TLS trunk through the API as the README says (`sips:` or `;transport=tls`): the
/// address keeps what makes it TLS (the API used to strip `sips:` and refuse `;transport=`, so a TLS trunk
/// was dialled over UDP in the clear) and calls go out over TLS. Found by SIPp + stunnel (tests/sipp/tls.sh).
#[tokio::test]
async fn tls_trunk_registered_through_the_api_is_dialled_over_tls() {
    let pki = Pki::new("test-ca");
    let trunk = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["127.0.0.1"], false, None)).await;
    let t = edge(&pki, None, |c| c.security.verify_number_ownership = false).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    let port = trunk.addr.port();
    let numbers = [
        (DID, format!("SIPS:127.0.0.1:{port}"), format!("sips:127.0.0.1:{port}")),
        (
            "+14155550121",
            format!("sip:127.0.0.1:{port};Transport=TLS"),
            format!("127.0.0.1:{port};transport=tls"),
        ),
    ];
    let mut ids = Vec::new();
    for (did, written, stored) in &numbers {
        let body = serde_json::json!({
            "phone_number": did, "provider": "telnyx", "agent_id": agent_id,
            "provider_config": {"trunk_address": written},
        });
        let (code, n) = json(&t, "POST", "/v1/phone-numbers", Some(&body.to_string())).await;
        assert_eq!(code, 201, "{n}");
        assert_eq!(n["provider_config"]["trunk_address"], stored.as_str(), "{n}");
        ids.push(n["id"].as_str().unwrap().to_owned());
        let id = api_call(&t, did, &agent_id).await;
        let inv = trunk.expect(Method::Invite, S).await;
        assert!(header(&inv, "Via").starts_with("SIP/2.0/TLS "), "{inv:?}");
        agent.expect(Method::Invite, S).await;
        t.wait_status(&id, "in-progress", S).await;
    }
    // PATCH keeps it as well; a transport the edge does not speak is refused in words.
    let patch = |addr: &str| serde_json::json!({"provider_config": {"trunk_address": addr}}).to_string();
    let path = format!("/v1/phone-numbers/{}", ids[0]);
    let (code, n) = json(
        &t,
        "PATCH",
        &path,
        Some(&patch(&format!("127.0.0.1:{port};transport=tls"))),
    )
    .await;
    assert_eq!(code, 200, "{n}");
    assert_eq!(
        n["provider_config"]["trunk_address"],
        format!("127.0.0.1:{port};transport=tls")
    );
    let (code, e) = json(&t, "PATCH", &path, Some(&patch("127.0.0.1;transport=sctp"))).await;
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("transport=sctp is not supported"),
        "{e}"
    );
}

#[tokio::test]
async fn mutual_tls_with_the_operator_trunks_client_certificate() {
    let pki = Pki::new("test-ca");
    let trunk = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["127.0.0.1"], false, Some(&pki))).await;
    let client = pki.client_files("edge.test");
    let address = format!("sips:127.0.0.1:{}", trunk.addr.port());
    let t = edge(&pki, None, |c| {
        let name = oneinbox_edge::transport::tls_client::trunk_identity("local");
        c.outbound.tls.identities.push((name.clone(), client));
        c.outbound.trunks = vec![oneinbox_edge::config::OperatorTrunk {
            provider: Provider::Local,
            address: address.clone(),
            username: None,
            password: None,
            cps: None,
            tls_identity: Some(name),
            media_encryption: edge_media::MediaEncryption::None,
        }];
    })
    .await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    // A purchased number goes out through the operator's trunk, with its client certificate.
    t.add_number(DID, &agent_id, None).await;
    let id = api_call(&t, DID, &agent_id).await;
    trunk.expect(Method::Invite, S).await;
    agent.expect(Method::Invite, S).await;
    t.wait_status(&id, "in-progress", S).await;

    // The same trunk as a customer's own, without a client certificate: the trunk refuses the connection
    // after the handshake (TLS 1.3), and the call says so.
    let did2 = "+14155550121";
    t.add_byo_number(did2, &agent_id, Provider::Twilio, &address, None)
        .await;
    let id = api_call(&t, did2, &agent_id).await;
    let done = t.final_call(&id, S).await;
    assert_eq!(done["error"]["code"], "trunk_tls", "{done}");
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("requires a client certificate"), "{msg}");
}

#[tokio::test]
async fn inbound_call_reaches_an_agent_over_tls() {
    let pki = Pki::new("test-ca");
    // The TLS test trunk answers INVITEs as an agent would.
    let good = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["127.0.0.1"], false, None)).await;
    let stranger = Pki::new("stranger-ca");
    let bad = TestTrunk::spawn_tls(TrunkMode::Answer, None, stranger.acceptor(&["127.0.0.1"], false, None)).await;
    let t = edge(&pki, None, |_| {}).await;
    let bad_id = add_agent_uri(&t, "bad", &format!("sips:bot@127.0.0.1:{}", bad.addr.port())).await;
    let good_id = add_agent_uri(
        &t,
        "good",
        &format!("sip:bot@127.0.0.1:{};transport=tls", good.addr.port()),
    )
    .await;
    t.add_number(DID, &bad_id, Some(&good_id)).await;
    let mut carrier = Carrier::new(t.sip(), DID).await;
    carrier.invite().await;
    let (_, ok) = carrier.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    carrier.ack(&ok).await;
    let inv = good.expect(Method::Invite, S).await;
    assert!(header(&inv, "Via").starts_with("SIP/2.0/TLS "), "{inv:?}");
    assert!(header(&inv, "Contact").contains("transport=tls"), "{inv:?}");
    good.expect(Method::Ack, S).await;
    // The first agent's certificate was refused, in words, on its hop.
    let (_, list) = json(&t, "GET", "/v1/calls", None).await;
    let hops = list["data"][0]["hops"].clone();
    let first = hops[0]["outcome"].as_str().unwrap_or_default();
    assert!(first.contains("unknown issuer"), "{hops}");
}

/// A customer's own trunk demanding a client certificate (issue 20 item 2): the pair given in
/// `provider_config` through the API is shown by the dialler; calls with the same pair share the connection;
/// a new pair (PATCH) gets its own connection, and one the trunk does not trust fails the call in words.
#[tokio::test]
async fn mutual_tls_with_a_customer_trunks_client_certificate() {
    let pki = Pki::new("test-ca");
    let trunk = TestTrunk::spawn_tls(TrunkMode::Answer, None, pki.acceptor(&["127.0.0.1"], false, Some(&pki))).await;
    let address = format!("sips:127.0.0.1:{}", trunk.addr.port());
    let t = edge(&pki, None, |_| {}).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    let number = t.add_byo_number(DID, &agent_id, Provider::Twilio, &address, None).await;
    let path = format!("/v1/phone-numbers/{number}");
    let set_pair = |cert: String, key: String| {
        serde_json::json!({"provider_config": {"tls_client_certificate": cert, "tls_client_key": key}}).to_string()
    };
    let (cert, key) = pki.leaf(&["edge.customer.example"], Use::Client, false);
    let (code, body) = json(&t, "PATCH", &path, Some(&set_pair(cert.pem(), key.serialize_pem()))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["provider_config"]["tls_client_key_set"], true);
    assert!(!body.to_string().contains(key.serialize_pem().lines().nth(1).unwrap()));

    let id = api_call(&t, DID, &agent_id).await;
    trunk.expect(Method::Invite, S).await;
    trunk.expect(Method::Ack, S).await;
    agent.expect(Method::Invite, S).await;
    t.wait_status(&id, "in-progress", S).await;
    assert_eq!(metric(&t, "edge_tls_handshakes_total").await, 1);

    // A second call with the same pair reuses the connection.
    let id = api_call(&t, DID, &agent_id).await;
    trunk.expect(Method::Invite, S).await;
    t.wait_status(&id, "in-progress", S).await;
    assert_eq!(metric(&t, "edge_tls_handshakes_total").await, 1, "connection reused");

    // A pair from a CA the trunk does not trust: a connection of its own, refused by the trunk.
    let other = Pki::new("other-ca");
    let (cert, key) = other.leaf(&["edge.customer.example"], Use::Client, false);
    let (code, body) = json(&t, "PATCH", &path, Some(&set_pair(cert.pem(), key.serialize_pem()))).await;
    assert_eq!(code, 200, "{body}");
    let id = api_call(&t, DID, &agent_id).await;
    let done = t.final_call(&id, S).await;
    assert_eq!(done["error"]["code"], "trunk_tls", "{done}");
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("refused our client certificate"), "{msg}");
}
