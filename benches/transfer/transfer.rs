//! Transfer set-up time (issue 19): how long the edge takes to act on an agent's blind transfer, at a
//! paced rate, on loopback. Bounded in count and time, stops by itself.
//!
//! Starts the edge (`EDGE_BIN`) with SQLite and media anchored, provisions an agent and one
//! bring-your-own number whose trunk (`provider_config.trunk_address`) is this process, then
//! plays the carrier, the agent and the trunk over UDP from one thread:
//!
//! - carrier: INVITE with SDP to the number (calls paced at `RATE`), ACK on 200, then RTP to the edge's
//!   relay every `RTP_MS` (PCMU, 160 bytes; the payload carries the call and the send time; each call's
//!   stream at its own phase), BYE once the trunk has had media for `HOLD_MS`;
//! - agent: 200 with SDP to the edge's INVITE; after the ACK, REFER (`Refer-To: <sip:+1212555NNNN@edge>`)
//!   at `REFER_AFTER_MS` after its call's INVITE, so REFERs are paced at `RATE` too; 200 to every NOTIFY
//!   and to the edge's BYE;
//! - trunk: 180 at once and 200 with SDP `ANSWER_MS` later to the edge's INVITE (under `TRUNK_DIGEST=1`
//!   the first INVITE of each transfer gets a 407 digest challenge, and the number has credentials for
//!   it: the INVITE the edge sends again with them is the one answered), 200 to BYE. From the
//!   moment the trunk sends its 200 the carrier adds a probe RTP packet every `PROBE_US` for that call
//!   (until the trunk has its first packet, at most 100 ms), so the time to media is not rounded up to
//!   the next 20 ms packet.
//!
//! Measures (receive times are the kernel's `SO_TIMESTAMPNS`, send times the clock just before
//! `sendto`, one clock):
//!
//! - (a) REFER sent by the agent -> the edge's INVITE at the trunk;
//! - (b) trunk's 200 sent -> the caller's first RTP packet at the trunk;
//! - (a2), under `TRUNK_DIGEST=1`: REFER sent -> the INVITE with credentials at the trunk;
//! - baselines from the same run: (a0) carrier INVITE sent -> the edge's INVITE at the agent (the edge's
//!   plain forwarding of a call); (b0) carrier RTP sent -> relayed to the agent, per packet; (b1) the same
//!   relayed to the trunk once transferred; the loopback floor: a datagram from this process to itself.
//!
//! Prints counts (transfers started, answered 202, INVITEs at the trunk, media at the trunk, failures by
//! reason), the edge's CPU, a table of p50/p90/p99/max per measure and ratios against the baselines.
//!
//! Run through `benches/transfer/run.sh` (`cargo bench --bench transfer_setup`: builds the edge with the
//! release settings and runs it, or `EDGE_BIN`). Without `--bench` (`cargo test --all-targets`) it is a
//! smoke test of a few seconds against the debug edge on free ports: 20 transfers at 20/s through a trunk
//! that challenges; it fails unless every transfer put the caller's media on the trunk, every agent was
//! told `200 OK` by NOTIFY and hung up, and every call ended.

#[path = "../support/process.rs"]
mod process;

use process::{cpu_ticks, free_port, free_udp_port, http, EdgeProcess};
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The number the carrier dials: the agent's, with the bench trunk for transfers.
const DID: &str = "+14155550100";
/// Bearer token of the bench edge's /metrics.
const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";
/// First bytes of every RTP payload this bench sends.
const MAGIC: u32 = 0x5846_4552; // "XFER"

/// The number call `i` is transferred to (the trunk reads `i` back from the Request-URI).
fn target(i: usize) -> String {
    format!("+1212555{i:04}")
}

#[derive(Clone)]
struct Settings {
    edge_bin: PathBuf,
    transfers: usize,
    rate: f64,
    refer_after_ms: u64,
    answer_ms: u64,
    hold_ms: u64,
    rtp_ms: u64,
    probe_us: u64,
    cps: f64,
    /// The trunk challenges every INVITE (407, digest) and the number has credentials for it.
    digest: bool,
    log_level: String,
    rtp_ports: String,
    sip_port: u16,
    api_port: u16,
    /// The bench's own sockets: carrier, agent, trunk SIP, then carrier, agent, trunk RTP, then two for
    /// the loopback floor, at consecutive ports from here (or free ports in the smoke test).
    ports: [u16; 8],
}

impl Settings {
    fn smoke() -> Settings {
        let mut ports = [0; 8];
        for (i, p) in ports.iter_mut().enumerate() {
            *p = free_udp_port(19_561 + i as u16);
        }
        Settings {
            edge_bin: PathBuf::from(env!("CARGO_BIN_EXE_oneinbox-edge")),
            transfers: 20,
            rate: 20.0,
            refer_after_ms: 500,
            answer_ms: 50,
            hold_ms: 100,
            rtp_ms: 20,
            probe_us: 500,
            cps: 1000.0,
            digest: true,
            log_level: "warn".into(),
            rtp_ports: "46000-46999".into(),
            sip_port: free_udp_port(19_560),
            api_port: free_port(),
            ports,
        }
    }

    fn from_env() -> Settings {
        let base: u16 = env_or("BENCH_PORT", 19_461);
        let mut ports = [0; 8];
        for (i, p) in ports.iter_mut().enumerate() {
            *p = base + i as u16;
        }
        Settings {
            // Default: the edge `cargo bench` built alongside this bench (release settings).
            edge_bin: std::env::var_os("EDGE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oneinbox-edge"))),
            transfers: env_or::<usize>("TRANSFERS", 1500).clamp(1, 9999),
            rate: env_or::<f64>("RATE", 100.0).clamp(0.1, 2000.0),
            refer_after_ms: env_or("REFER_AFTER_MS", 300),
            answer_ms: env_or("ANSWER_MS", 100),
            hold_ms: env_or("HOLD_MS", 200),
            rtp_ms: env_or::<u64>("RTP_MS", 20).max(1),
            probe_us: match env_or::<u64>("PROBE_US", 200) {
                0 => 0,
                p => p.max(50),
            },
            cps: env_or("TRUNK_CPS", 1000.0),
            digest: env_or::<u8>("TRUNK_DIGEST", 0) == 1,
            log_level: std::env::var("EDGE_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            rtp_ports: std::env::var("EDGE_RTP_PORTS").unwrap_or_else(|_| "42000-45999".into()),
            sip_port: env_or("SIP_PORT", 19_460),
            api_port: env_or("API_PORT", 19_480),
            ports,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The edge process and its API (as benches/flood/udp_invite.rs)

fn start_edge(s: &Settings, dir: &Path) -> std::io::Result<EdgeProcess> {
    let cfg = dir.join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = \"127.0.0.1:{sip}\"\ntcp = \"off\"\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\nmetrics_token = \"{METRICS_TOKEN}\"\n\
             [storage]\ndata_dir = {data:?}\n\
             [log]\nformat = \"json\"\nlevel = \"{level}\"\n\
             [media]\nenabled = true\nbind_ip = \"127.0.0.1\"\npublic_ip = \"127.0.0.1\"\n\
             rtp_ports = \"{rtp}\"\nport_quarantine_ms = 1000\n\
             [outbound]\ntelnyx_cps = {cps}\n\
             [security]\nverify_number_ownership = false\ninternal_targets = [\"127.0.0.0/8\"]\n\
             [inventory.twilio]\nbase_url = \"http://127.0.0.1:9\"\n\
             [inventory.telnyx]\nbase_url = \"http://127.0.0.1:9\"\n\
             [[carriers]]\nname = \"bench-carrier\"\nallow = [\"127.0.0.1/32\"]\n",
            sip = s.sip_port,
            api = s.api_port,
            data = dir.join("data").display().to_string(),
            level = s.log_level,
            rtp = s.rtp_ports,
            cps = s.cps,
        ),
    )?;
    EdgeProcess::spawn(&s.edge_bin, cfg, &dir.join("edge.log"))
}

/// An API key, the agent at this process's agent socket, and [`DID`] routed to it with this process's
/// trunk socket as its `provider_config.trunk_address` (with digest credentials under `TRUNK_DIGEST=1`).
fn provision(s: &Settings, edge: &EdgeProcess, api: SocketAddr) -> Result<(), String> {
    let key = edge.create_key(&s.edge_bin)?;
    let agent = format!(
        "{{\"name\":\"bench-agent\",\"sip_uri\":\"sip:agent@127.0.0.1:{}\",\"max_concurrent_calls\":10000}}",
        s.ports[1]
    );
    let (st, body) = http(api, "POST", "/v1/agents", Some(&key), Some(&agent)).ok_or("POST /v1/agents: no answer")?;
    let id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        .ok_or_else(|| format!("POST /v1/agents: {st} {body}"))?;
    let auth = if s.digest {
        ",\"auth_username\":\"bench\",\"auth_password\":\"bench-trunk-secret\""
    } else {
        ""
    };
    let number = format!(
        "{{\"phone_number\":\"{DID}\",\"provider\":\"telnyx\",\"agent_id\":\"{id}\",\
         \"inbound_routing\":{{\"agent_id\":\"{id}\"}},\
         \"provider_config\":{{\"trunk_address\":\"127.0.0.1:{}\"{auth}}}}}",
        s.ports[2]
    );
    match http(api, "POST", "/v1/phone-numbers", Some(&key), Some(&number)) {
        Some((st, _)) if (200..300).contains(&st) => Ok(()),
        Some((st, body)) => Err(format!("POST /v1/phone-numbers: {st} {body}")),
        None => Err("POST /v1/phone-numbers: no answer".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Clock and sockets

/// Nanoseconds on the clock the kernel stamps received datagrams with (`CLOCK_REALTIME`).
fn now_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn bind(port: u16) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(("127.0.0.1", port))?;
    s.set_nonblocking(true)?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and an int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Room for bursts: the bench reads between timer events.
    let size: libc::c_int = 4 << 20;
    // SAFETY: as above.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(s)
}

/// One datagram and the kernel's receive time, or `None` when the queue is empty.
fn recv_ts(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, i64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at a live buffer and control area.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let mut at = None;
    // SAFETY: walking the control messages the kernel wrote into `control`, as CMSG_* intend.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, at.unwrap_or_else(now_ns)))
}

// ---------------------------------------------------------------------------------------------
// SIP text

/// Values of the headers named `name` (or its compact form), in order.
fn headers<'a>(msg: &'a str, name: &'a str, compact: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n").skip(1).filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        let k = k.trim();
        (k.eq_ignore_ascii_case(name) || (!compact.is_empty() && k.eq_ignore_ascii_case(compact))).then(|| v.trim())
    })
}

fn header<'a>(msg: &'a str, name: &'static str, compact: &'static str) -> &'a str {
    headers(msg, name, compact).next().unwrap_or("")
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn uri_of(contact: &str) -> &str {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if b > a => &contact[a + 1..b],
        _ => contact.split(';').next().unwrap_or(contact),
    }
}

/// The RTP port of an SDP's first `m=audio` line.
fn sdp_port(msg: &str) -> Option<u16> {
    body(msg)
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next()?.parse().ok())
}

fn sdp(port: u16, id: usize) -> String {
    format!(
        "v=0\r\no=- {id} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=ptime:20\r\na=sendrecv\r\n"
    )
}

/// A response to `req`: its Vias, From, Call-ID and CSeq; To with `tag` added unless it has one.
fn response(req: &str, code: u16, reason: &str, tag: &str, extra: &str, sdp_body: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via", "v") {
        r.push_str(&format!("Via: {v}\r\n"));
    }
    let to = header(req, "To", "t");
    let to = if to.contains(";tag=") || tag.is_empty() {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    r.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
        header(req, "From", "f"),
        header(req, "Call-ID", "i"),
        header(req, "CSeq", ""),
    ));
    match sdp_body {
        Some(b) => r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => r.push_str("Content-Length: 0\r\n\r\n"),
    }
    r
}

// ---------------------------------------------------------------------------------------------
// One run

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Invite(usize),
    Refer(usize),
    TrunkAnswer(usize),
    Rtp(usize),
    Probe(usize),
    Bye(usize),
}

#[derive(Default)]
struct Call {
    // carrier
    invite_sent: i64,
    carrier_to: String,
    carrier_contact: String,
    edge_a_port: Option<u16>,
    rtp_on: bool,
    seq: u16,
    bye_sent: bool,
    done: bool,
    // agent
    agent_invite_at: Option<i64>,
    agent_leg: Option<AgentLeg>,
    agent_acked: bool,
    refer_due: bool,
    refer_sent: Option<i64>,
    refer_status: Option<u16>,
    notified: Vec<String>,
    agent_byed: bool,
    // trunk
    /// The first INVITE at the trunk (the one challenged under `TRUNK_DIGEST=1`).
    trunk_invite_at: Option<i64>,
    /// The INVITE the trunk answers (with credentials under `TRUNK_DIGEST=1`).
    trunk_dialed_at: Option<i64>,
    trunk_invite: String,
    trunk_answered: Option<i64>,
    trunk_ok: String,
    trunk_media_at: Option<i64>,
    probes_until: i64,
    /// Carrier packets sent for this call since the trunk's 200, until the trunk had one.
    sent_after_answer: u32,
    failed: Option<String>,
}

struct AgentLeg {
    invite: String,
    ok: String,
}

#[derive(Default)]
struct Samples {
    refer_to_trunk: Vec<i64>,
    refer_to_dialed: Vec<i64>,
    invite_to_agent: Vec<i64>,
    answer_to_media: Vec<i64>,
    /// Per (b) sample: the total, the carrier's send of the packet that got through (after the 200), its
    /// way through the relay, and which of the packets the carrier sent since the 200 it was (1: the first).
    media_detail: Vec<(i64, i64, i64, u32)>,
    relay_agent: Vec<i64>,
    relay_trunk: Vec<i64>,
    floor: Vec<i64>,
}

struct Bench<'a> {
    s: &'a Settings,
    edge: SocketAddr,
    socks: [UdpSocket; 8],
    calls: Vec<Call>,
    by_agent_call_id: HashMap<String, usize>,
    timers: BinaryHeap<std::cmp::Reverse<(i64, Event)>>,
    t0: i64,
    x: Samples,
    send_errors: u64,
    strays: u64,
}

const CARRIER: usize = 0;
const AGENT: usize = 1;
const TRUNK: usize = 2;
const C_RTP: usize = 3;
const A_RTP: usize = 4;
const T_RTP: usize = 5;
const PING_TX: usize = 6;
const PING_RX: usize = 7;

impl Bench<'_> {
    fn addr(&self, sock: usize) -> String {
        format!("127.0.0.1:{}", self.s.ports[sock])
    }

    fn send(&mut self, sock: usize, to: SocketAddr, data: &[u8]) -> i64 {
        let at = now_ns();
        if self.socks[sock].send_to(data, to).is_err() {
            self.send_errors += 1;
        }
        at
    }

    fn at(&mut self, when: i64, e: Event) {
        self.timers.push(std::cmp::Reverse((when, e)));
    }

    fn fail(&mut self, i: usize, why: String) {
        if self.calls[i].failed.is_none() && self.calls[i].trunk_media_at.is_none() {
            self.calls[i].failed = Some(why);
        }
    }

    fn on_timer(&mut self, now: i64, e: Event) {
        match e {
            Event::Invite(i) => self.carrier_invite(i),
            Event::Refer(i) => {
                self.calls[i].refer_due = true;
                if self.calls[i].agent_acked {
                    self.refer(i);
                }
            }
            Event::TrunkAnswer(i) => self.trunk_answer(i),
            Event::Rtp(i) => {
                if self.calls[i].rtp_on {
                    self.rtp(i);
                    self.at(now + self.s.rtp_ms as i64 * 1_000_000, Event::Rtp(i));
                }
            }
            Event::Probe(i) => {
                let c = &self.calls[i];
                if c.rtp_on && c.trunk_media_at.is_none() && now < c.probes_until {
                    self.rtp(i);
                    self.at(now + self.s.probe_us as i64 * 1000, Event::Probe(i));
                }
            }
            Event::Bye(i) => self.carrier_bye(i),
        }
    }

    fn carrier_invite(&mut self, i: usize) {
        let me = self.addr(CARRIER);
        let edge = self.edge;
        let body = sdp(self.s.ports[C_RTP], i);
        let msg = format!(
            "INVITE sip:{DID}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-xc{i}-1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+18005550199@{me}>;tag=c{i}\r\nTo: <sip:{DID}@{edge}>\r\n\
             Call-ID: xfer-{i}@bench\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@{me}>\r\nX-Bench-Call: {i}\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.calls[i].invite_sent = self.send(CARRIER, edge, msg.as_bytes());
    }

    fn carrier_bye(&mut self, i: usize) {
        let c = &self.calls[i];
        if c.bye_sent || c.carrier_to.is_empty() {
            return;
        }
        let me = self.addr(CARRIER);
        let msg = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-xc{i}-3;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+18005550199@{me}>;tag=c{i}\r\nTo: {}\r\nCall-ID: xfer-{i}@bench\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            c.carrier_contact, c.carrier_to
        );
        self.calls[i].bye_sent = true;
        self.calls[i].rtp_on = false;
        let edge = self.edge;
        self.send(CARRIER, edge, msg.as_bytes());
    }

    fn rtp(&mut self, i: usize) {
        let Some(port) = self.calls[i].edge_a_port else { return };
        let c = &mut self.calls[i];
        if c.trunk_answered.is_some() && c.trunk_media_at.is_none() {
            c.sent_after_answer += 1;
        }
        let seq = self.calls[i].seq;
        self.calls[i].seq = seq.wrapping_add(1);
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&(0x1000_0000 + i as u32).to_be_bytes());
        p[12..16].copy_from_slice(&MAGIC.to_be_bytes());
        p[16..20].copy_from_slice(&(i as u32).to_be_bytes());
        p[20..28].copy_from_slice(&now_ns().to_be_bytes());
        p[28..32].copy_from_slice(&self.calls[i].sent_after_answer.to_be_bytes());
        p[32..].fill(0xff);
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let _ = self.socks[C_RTP].send_to(&p, to);
    }

    fn refer(&mut self, i: usize) {
        let Some(leg) = &self.calls[i].agent_leg else { return };
        if self.calls[i].refer_sent.is_some() {
            return;
        }
        let inv = &leg.invite;
        let me = self.addr(AGENT);
        let msg = format!(
            "REFER {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-xa{i}-1;rport\r\nMax-Forwards: 70\r\n\
             From: {};tag=a{i}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 REFER\r\nContact: <sip:agent@{me}>\r\n\
             Refer-To: <sip:{}@{}>\r\nReferred-By: <sip:agent@{me}>\r\nContent-Length: 0\r\n\r\n",
            uri_of(header(inv, "Contact", "m")),
            header(inv, "To", "t"),
            header(inv, "From", "f"),
            header(inv, "Call-ID", "i"),
            target(i),
            self.edge
        );
        let edge = self.edge;
        let at = self.send(AGENT, edge, msg.as_bytes());
        self.calls[i].refer_sent = Some(at);
        // The loopback floor: a datagram of the same size to this process's own socket.
        let to = SocketAddr::from(([127, 0, 0, 1], self.s.ports[PING_RX]));
        let mut ping = vec![0u8; msg.len()];
        ping[..8].copy_from_slice(&now_ns().to_be_bytes());
        let _ = self.socks[PING_TX].send_to(&ping, to);
    }

    fn trunk_answer(&mut self, i: usize) {
        let inv = self.calls[i].trunk_invite.clone();
        let me = self.addr(TRUNK);
        let body = sdp(self.s.ports[T_RTP], i);
        let ok = response(
            &inv,
            200,
            "OK",
            &format!("t{i}"),
            &format!("Contact: <sip:trunk@{me}>\r\n"),
            Some(&body),
        );
        let edge = self.edge;
        let at = self.send(TRUNK, edge, ok.as_bytes());
        let c = &mut self.calls[i];
        c.trunk_ok = ok;
        c.trunk_answered = Some(at);
        c.probes_until = at + 100_000_000;
        if self.s.probe_us > 0 {
            self.on_timer(at, Event::Probe(i));
        }
    }

    // -- datagrams in

    fn on_carrier(&mut self, msg: &str) {
        let Some(i) = header(msg, "Call-ID", "i")
            .strip_prefix("xfer-")
            .and_then(|r| r.split('@').next()?.parse::<usize>().ok())
            .filter(|i| *i < self.calls.len())
        else {
            self.strays += 1;
            return;
        };
        let cseq = header(msg, "CSeq", "");
        if let Some(status) = msg.strip_prefix("SIP/2.0 ") {
            let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if cseq.ends_with("INVITE") {
                if code == 200 {
                    let me = self.addr(CARRIER);
                    let c = &mut self.calls[i];
                    c.carrier_to = header(msg, "To", "t").to_owned();
                    c.carrier_contact = uri_of(header(msg, "Contact", "m")).to_owned();
                    let ack = format!(
                        "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-xc{i}-2;rport\r\nMax-Forwards: 70\r\n\
                         From: <sip:+18005550199@{me}>;tag=c{i}\r\nTo: {}\r\nCall-ID: xfer-{i}@bench\r\n\
                         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        c.carrier_contact, c.carrier_to
                    );
                    let first = c.edge_a_port.is_none();
                    c.edge_a_port = sdp_port(msg);
                    let edge = self.edge;
                    self.send(CARRIER, edge, ack.as_bytes());
                    if first && !self.calls[i].bye_sent {
                        self.calls[i].rtp_on = true;
                        // Each call's packets at its own phase, spread over the interval: the trunk's 200 (a
                        // fixed time after the INVITE) must not fall at the same point of every call's stream.
                        let period_us = self.s.rtp_ms * 1000;
                        let phase = (i as u64 * 7919 % period_us) as i64 * 1000;
                        self.at(now_ns() + phase, Event::Rtp(i));
                    }
                } else if code >= 300 {
                    self.fail(i, format!("carrier INVITE answered {code}"));
                    self.calls[i].done = true;
                }
            } else if cseq.ends_with("BYE") {
                self.calls[i].done = true;
            }
            return;
        }
        // A request from the edge to the caller: BYE (the transfer failed with the agent gone, or a timeout).
        let method = msg.split(' ').next().unwrap_or("");
        let ok = response(msg, 200, "OK", "", "", None);
        let edge = self.edge;
        self.send(CARRIER, edge, ok.as_bytes());
        if method == "BYE" {
            let why = format!("the edge hung up the caller ({})", header(msg, "Reason", ""));
            self.fail(i, why);
            let c = &mut self.calls[i];
            c.rtp_on = false;
            c.bye_sent = true;
            c.done = true;
        }
    }

    fn on_agent(&mut self, msg: &str, at: i64) {
        let call_id = header(msg, "Call-ID", "i");
        let edge = self.edge;
        if let Some(status) = msg.strip_prefix("SIP/2.0 ") {
            let Some(&i) = self.by_agent_call_id.get(call_id) else {
                self.strays += 1;
                return;
            };
            let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if header(msg, "CSeq", "").ends_with("REFER") && code >= 200 && self.calls[i].refer_status.is_none() {
                self.calls[i].refer_status = Some(code);
                if code != 202 {
                    self.fail(i, format!("REFER answered {code}"));
                }
            }
            return;
        }
        let method = msg.split(' ').next().unwrap_or("").to_owned();
        if method == "INVITE" {
            let i = match self.by_agent_call_id.get(call_id) {
                Some(&i) => i,
                None => {
                    let Some(i) = header(msg, "X-Bench-Call", "")
                        .parse::<usize>()
                        .ok()
                        .filter(|i| *i < self.calls.len())
                    else {
                        self.strays += 1;
                        return;
                    };
                    self.by_agent_call_id.insert(call_id.to_owned(), i);
                    i
                }
            };
            let ok = match &self.calls[i].agent_leg {
                Some(leg) => leg.ok.clone(),
                None => {
                    let me = self.addr(AGENT);
                    let ok = response(
                        msg,
                        200,
                        "OK",
                        &format!("a{i}"),
                        &format!("Contact: <sip:agent@{me}>\r\n"),
                        Some(&sdp(self.s.ports[A_RTP], i)),
                    );
                    self.calls[i].agent_invite_at = Some(at);
                    self.calls[i].agent_leg = Some(AgentLeg {
                        invite: msg.to_owned(),
                        ok: ok.clone(),
                    });
                    ok
                }
            };
            self.send(AGENT, edge, ok.as_bytes());
            return;
        }
        let Some(&i) = self.by_agent_call_id.get(call_id) else {
            self.strays += 1;
            return;
        };
        match method.as_str() {
            "ACK" => {
                let c = &mut self.calls[i];
                if !c.agent_acked {
                    c.agent_acked = true;
                    if c.refer_due {
                        self.refer(i);
                    }
                }
            }
            "NOTIFY" => {
                let ok = response(msg, 200, "OK", "", "", None);
                self.send(AGENT, edge, ok.as_bytes());
                let frag = body(msg).lines().next().unwrap_or("").to_owned();
                let code: u16 = frag
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|s| s.get(..3)?.parse().ok())
                    .unwrap_or(0);
                let c = &mut self.calls[i];
                if !c.notified.contains(&frag) {
                    c.notified.push(frag.clone());
                }
                if code >= 300 {
                    // The transfer failed and the caller stayed with the agent: the caller hangs up.
                    self.fail(i, format!("NOTIFY {frag}"));
                    let bye = at + self.s.hold_ms as i64 * 1_000_000;
                    self.at(bye, Event::Bye(i));
                }
            }
            "BYE" => {
                let ok = response(msg, 200, "OK", "", "", None);
                self.send(AGENT, edge, ok.as_bytes());
                self.calls[i].agent_byed = true;
            }
            _ => {
                let ok = response(msg, 200, "OK", "", "", None);
                self.send(AGENT, edge, ok.as_bytes());
            }
        }
    }

    fn on_trunk(&mut self, msg: &str, at: i64) {
        if msg.starts_with("SIP/2.0 ") {
            self.strays += 1;
            return;
        }
        let method = msg.split(' ').next().unwrap_or("").to_owned();
        let edge = self.edge;
        if method == "INVITE" {
            let ruri = msg.split(' ').nth(1).unwrap_or("");
            let user = ruri.trim_start_matches("sip:").split('@').next().unwrap_or("");
            let Some(i) = user
                .strip_prefix("+1212555")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|i| *i < self.calls.len())
            else {
                self.strays += 1;
                let r = response(msg, 404, "Not Found", "x", "", None);
                self.send(TRUNK, edge, r.as_bytes());
                return;
            };
            if self.calls[i].trunk_invite_at.is_none() {
                self.calls[i].trunk_invite_at = Some(at);
            }
            let authed = ["Proxy-Authorization", "Authorization"]
                .iter()
                .any(|h| !header(msg, h, "").is_empty());
            if self.s.digest && !authed {
                let challenge = response(
                    msg,
                    407,
                    "Proxy Authentication Required",
                    &format!("t{i}x"),
                    &format!(
                        "Proxy-Authenticate: Digest realm=\"bench\", nonce=\"n{i}-{at}\", algorithm=MD5, qop=\"auth\"\r\n"
                    ),
                    None,
                );
                self.send(TRUNK, edge, challenge.as_bytes());
                return;
            }
            if self.calls[i].trunk_dialed_at.is_none() {
                self.calls[i].trunk_dialed_at = Some(at);
                self.calls[i].trunk_invite = msg.to_owned();
                let answer = at + self.s.answer_ms as i64 * 1_000_000;
                self.at(answer, Event::TrunkAnswer(i));
            }
            // 180 at once (and again for a retransmission, until the 200).
            if self.calls[i].trunk_answered.is_none() {
                let me = self.addr(TRUNK);
                let ring = response(
                    msg,
                    180,
                    "Ringing",
                    &format!("t{i}"),
                    &format!("Contact: <sip:trunk@{me}>\r\n"),
                    None,
                );
                self.send(TRUNK, edge, ring.as_bytes());
            } else {
                let ok = self.calls[i].trunk_ok.clone();
                self.send(TRUNK, edge, ok.as_bytes());
            }
            return;
        }
        if method != "ACK" {
            let ok = response(msg, 200, "OK", "", "", None);
            self.send(TRUNK, edge, ok.as_bytes());
        }
    }

    fn on_rtp(&mut self, sock: usize, p: &[u8], at: i64) {
        if p.len() < 32 || p[12..16] != MAGIC.to_be_bytes() {
            return;
        }
        let i = u32::from_be_bytes([p[16], p[17], p[18], p[19]]) as usize;
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&p[20..28]);
        let sent = i64::from_be_bytes(sent);
        let nth = u32::from_be_bytes([p[28], p[29], p[30], p[31]]);
        if i >= self.calls.len() {
            return;
        }
        if sock == A_RTP {
            self.x.relay_agent.push(at - sent);
            return;
        }
        self.x.relay_trunk.push(at - sent);
        let c = &mut self.calls[i];
        if c.trunk_media_at.is_none() {
            if let Some(ans) = c.trunk_answered {
                c.trunk_media_at = Some(at);
                c.failed = None;
                self.x.answer_to_media.push(at - ans);
                self.x.media_detail.push((at - ans, sent - ans, at - sent, nth));
                let bye = at + self.s.hold_ms as i64 * 1_000_000;
                self.at(bye, Event::Bye(i));
            }
        }
    }

    fn on_datagram(&mut self, sock: usize, data: &[u8], at: i64) {
        match sock {
            C_RTP => {}
            A_RTP | T_RTP => self.on_rtp(sock, data, at),
            PING_RX => {
                if data.len() >= 8 {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&data[..8]);
                    self.x.floor.push(at - i64::from_be_bytes(sent));
                }
            }
            PING_TX => {}
            _ => {
                let msg = String::from_utf8_lossy(data).into_owned();
                match sock {
                    CARRIER => self.on_carrier(&msg),
                    AGENT => self.on_agent(&msg, at),
                    _ => self.on_trunk(&msg, at),
                }
            }
        }
    }

    /// Runs until every call ended or the bound passed.
    fn run(&mut self) {
        let slack: libc::c_ulong = 1000;
        // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer: 1 us of slack for ppoll.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, slack) };
        let n = self.calls.len();
        let step = (1e9 / self.s.rate) as i64;
        let lead = 200_000_000;
        self.t0 = now_ns() + lead;
        for i in 0..n {
            let at = self.t0 + i as i64 * step;
            self.at(at, Event::Invite(i));
            self.at(at + self.s.refer_after_ms as i64 * 1_000_000, Event::Refer(i));
        }
        let last = self.t0 + n as i64 * step;
        let bound =
            last + (self.s.refer_after_ms + self.s.answer_ms + self.s.hold_ms) as i64 * 1_000_000 + 5_000_000_000;
        let mut fds: Vec<libc::pollfd> = self
            .socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = now_ns();
            while let Some(std::cmp::Reverse((when, e))) = self.timers.peek().copied() {
                if when > now {
                    break;
                }
                self.timers.pop();
                self.on_timer(now, e);
            }
            if now > bound || (now > last && self.calls.iter().all(|c| c.done)) {
                break;
            }
            let wait = self
                .timers
                .peek()
                .map_or(10_000_000, |std::cmp::Reverse((w, _))| (w - now).clamp(0, 10_000_000));
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: wait,
            };
            // SAFETY: `fds` is a live array of pollfd of the length given.
            unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
            for (k, fd) in fds.iter_mut().enumerate() {
                if fd.revents & libc::POLLIN == 0 {
                    continue;
                }
                fd.revents = 0;
                while let Some((len, at)) = recv_ts(&self.socks[k], &mut buf) {
                    let data = buf[..len].to_vec();
                    self.on_datagram(k, &data, at);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

fn quantile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Row {
    name: &'static str,
    n: usize,
    q: [i64; 4],
    /// Samples over the goal (5 ms).
    over: usize,
}

fn row(name: &'static str, v: &mut [i64]) -> Row {
    v.sort_unstable();
    Row {
        name,
        n: v.len(),
        q: [0.5, 0.9, 0.99, 1.0].map(|p| quantile(v, p)),
        over: v.iter().filter(|x| **x > 5_000_000).count(),
    }
}

fn ms(ns: i64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

struct Outcome {
    started: usize,
    accepted: usize,
    trunk_invited: usize,
    completed: usize,
    notified_ok: usize,
    agents_byed: usize,
    ended: usize,
    failures: Vec<(String, usize)>,
    refer_rate: f64,
    /// The three slowest (b) samples, broken down.
    worst_media: Vec<(i64, i64, i64, u32)>,
    cpu_s: f64,
    wall_s: f64,
    rows: Vec<Row>,
}

fn run(s: &Settings, dir: &Path) -> Result<Outcome, String> {
    let mut edge = start_edge(s, dir).map_err(|e| format!("starting {}: {e}", s.edge_bin.display()))?;
    let api = SocketAddr::from(([127, 0, 0, 1], s.api_port));
    if !edge.wait_up(api) {
        return Err(format!(
            "the edge did not come up (log: {})",
            dir.join("edge.log").display()
        ));
    }
    provision(s, &edge, api)?;
    let mut socks = Vec::new();
    for p in s.ports {
        socks.push(bind(p).map_err(|e| format!("binding 127.0.0.1:{p}: {e}"))?);
    }
    let socks: [UdpSocket; 8] = socks.try_into().map_err(|_| "sockets".to_owned())?;
    let mut b = Bench {
        s,
        edge: SocketAddr::from(([127, 0, 0, 1], s.sip_port)),
        socks,
        calls: (0..s.transfers).map(|_| Call::default()).collect(),
        by_agent_call_id: HashMap::new(),
        timers: BinaryHeap::new(),
        t0: 0,
        x: Samples::default(),
        send_errors: 0,
        strays: 0,
    };
    let pid = edge.child.id();
    let cpu0 = cpu_ticks(pid);
    let w0 = now_ns();
    b.run();
    let wall_s = (now_ns() - w0) as f64 / 1e9;
    let cpu_s = cpu_ticks(pid).saturating_sub(cpu0) as f64 / 100.0;
    drop(edge);

    let mut failures: HashMap<String, usize> = HashMap::new();
    for c in &b.calls {
        let why = if let Some(f) = &c.failed {
            Some(f.clone())
        } else if c.trunk_media_at.is_some() {
            None
        } else if c.trunk_answered.is_some() {
            Some("no RTP at the trunk after its 200".to_owned())
        } else if c.trunk_dialed_at.is_some() {
            Some("the trunk's INVITE came but no 200 went (bench bound)".to_owned())
        } else if c.trunk_invite_at.is_some() {
            Some("the trunk's 407 was not answered with credentials".to_owned())
        } else if c.refer_status == Some(202) {
            Some("REFER accepted, no INVITE at the trunk".to_owned())
        } else if c.refer_sent.is_some() {
            Some("REFER unanswered".to_owned())
        } else if c.agent_invite_at.is_some() {
            Some("the agent's call was never ACKed".to_owned())
        } else {
            Some("the carrier's call never reached the agent".to_owned())
        };
        if let Some(w) = why {
            *failures.entry(w).or_default() += 1;
        }
    }
    let mut failures: Vec<_> = failures.into_iter().collect();
    failures.sort();

    for c in &b.calls {
        if let (Some(r), Some(t)) = (c.refer_sent, c.trunk_invite_at) {
            b.x.refer_to_trunk.push(t - r);
        }
        if let (Some(r), Some(t), true) = (c.refer_sent, c.trunk_dialed_at, s.digest) {
            b.x.refer_to_dialed.push(t - r);
        }
        if let Some(a) = c.agent_invite_at {
            b.x.invite_to_agent.push(a - c.invite_sent);
        }
    }
    let refers: Vec<i64> = b.calls.iter().filter_map(|c| c.refer_sent).collect();
    let refer_rate = match (refers.iter().min(), refers.iter().max()) {
        (Some(a), Some(z)) if z > a => (refers.len() - 1) as f64 / ((z - a) as f64 / 1e9),
        _ => 0.0,
    };
    if b.send_errors > 0 || b.strays > 0 {
        println!("send errors {}, datagrams matching no call {}", b.send_errors, b.strays);
    }
    let x = &mut b.x;
    x.media_detail.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
    let worst_media = x.media_detail.iter().take(3).copied().collect();
    let mut rows = vec![
        row("(a) REFER sent -> INVITE at the trunk", &mut x.refer_to_trunk),
        row(
            "(a0) baseline: carrier INVITE sent -> INVITE at the agent",
            &mut x.invite_to_agent,
        ),
        row("(b) trunk 200 sent -> first RTP at the trunk", &mut x.answer_to_media),
        row("(b0) baseline: carrier RTP -> relayed to the agent", &mut x.relay_agent),
        row(
            "(b1) carrier RTP -> relayed to the trunk (after the switch)",
            &mut x.relay_trunk,
        ),
        row("floor: a datagram to itself on loopback (no edge)", &mut x.floor),
    ];
    if s.digest {
        rows.push(row(
            "(a2) REFER sent -> INVITE with credentials at the trunk (after its 407)",
            &mut x.refer_to_dialed,
        ));
    }
    let c = &b.calls;
    Ok(Outcome {
        started: c.iter().filter(|c| c.refer_sent.is_some()).count(),
        accepted: c.iter().filter(|c| c.refer_status == Some(202)).count(),
        trunk_invited: c.iter().filter(|c| c.trunk_invite_at.is_some()).count(),
        completed: c.iter().filter(|c| c.trunk_media_at.is_some()).count(),
        notified_ok: c
            .iter()
            .filter(|c| c.notified.last().is_some_and(|l| l.starts_with("SIP/2.0 200")))
            .count(),
        agents_byed: c.iter().filter(|c| c.agent_byed).count(),
        ended: c.iter().filter(|c| c.done).count(),
        failures,
        refer_rate,
        worst_media,
        cpu_s,
        wall_s,
        rows,
    })
}

fn report(s: &Settings, o: &Outcome) {
    println!(
        "\n{} transfers planned at {}/s; REFERs sent {} ({:.1}/s achieved), answered 202: {}, INVITEs at the trunk: {}, \
         media at the trunk (completed): {}, final NOTIFY 200: {}, agent legs hung up: {}, calls ended: {}",
        s.transfers,
        s.rate,
        o.started,
        o.refer_rate,
        o.accepted,
        o.trunk_invited,
        o.completed,
        o.notified_ok,
        o.agents_byed,
        o.ended
    );
    for (why, n) in &o.failures {
        println!("failed: {n} x {why}");
    }
    println!(
        "edge CPU: {:.2} s over {:.1} s ({:.0}% of one core)",
        o.cpu_s,
        o.wall_s,
        100.0 * o.cpu_s / o.wall_s.max(0.001)
    );
    println!("\n| measure (ms) | n | p50 | p90 | p99 | max | over 5 ms |\n|---|---:|---:|---:|---:|---:|---:|");
    for r in &o.rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.n,
            ms(r.q[0]),
            ms(r.q[1]),
            ms(r.q[2]),
            ms(r.q[3]),
            r.over
        );
    }
    for (total, sent, relay, n) in &o.worst_media {
        println!(
            "(b) worst: {} ms = {} ms until the carrier sent the packet that got through (its packet {n} since the \
             200) + {} ms from the carrier to the trunk",
            ms(*total),
            ms(*sent),
            ms(*relay)
        );
    }
    let q = |k: usize, p: usize| o.rows[k].q[p] as f64;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "\n(a) / (a0): p50 {:.2}x, p99 {:.2}x | (b) - (b0): p50 {} ms, p99 {} ms | (a) - floor p50: {} ms",
        ratio(q(0, 0), q(1, 0)),
        ratio(q(0, 2), q(1, 2)),
        ms(o.rows[2].q[0] - o.rows[3].q[0]),
        ms(o.rows[2].q[2] - o.rows[3].q[2]),
        ms(o.rows[0].q[0] - o.rows[5].q[0]),
    );
}

fn main() -> std::process::ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let s = if bench { Settings::from_env() } else { Settings::smoke() };
    let root = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("temp dir: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let keep = std::env::var_os("KEEP").is_some();
    println!(
        "transfer_setup: edge {} | {} transfers at {}/s | REFER {} ms after the INVITE, trunk answers after {} ms{}, \
         media held {} ms | carrier RTP every {} ms, probes every {} us after the trunk's 200 (0: none) | trunk cps {} \
         | log {} | files {}{}",
        s.edge_bin.display(),
        s.transfers,
        s.rate,
        s.refer_after_ms,
        s.answer_ms,
        if s.digest {
            " (each INVITE challenged first: 407 digest)"
        } else {
            ""
        },
        s.hold_ms,
        s.rtp_ms,
        s.probe_us,
        s.cps,
        s.log_level,
        root.path().display(),
        if keep { " (kept)" } else { "" }
    );
    let outcome = run(&s, root.path());
    if keep {
        let _ = root.keep();
    }
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    report(&s, &o);
    if !bench {
        let n = s.transfers;
        let ok = o.completed == n && o.notified_ok == n && o.agents_byed == n && o.ended == n;
        if !ok || o.rows.iter().take(5).any(|r| r.n == 0) {
            eprintln!(
                "smoke test failed: of {n} transfers, {} put the caller's media on the trunk, {} agents were \
                 NOTIFYed 200 and {} hung up, {} calls ended",
                o.completed, o.notified_ok, o.agents_byed, o.ended
            );
            return std::process::ExitCode::FAILURE;
        }
        println!("smoke test passed");
    }
    std::process::ExitCode::SUCCESS
}
