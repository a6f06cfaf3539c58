//! sip-blast: a cheap SIP load generator for a B2BUA on loopback (benches/sipp/run.sh `PROFILE=blast`).
//!
//! Plays the carrier and the agent of benches/sipp's happy path with the same messages per call as the
//! SIPp scenarios (carrier: INVITE with SDP, ACK, BYE; agent: 180, 200 with SDP, 200 to BYE), but on
//! plain blocking UDP sockets with no scenario engine, so the load generator costs the box far less CPU
//! than SIPp's three processes and the server under test gets what is left of the cores.
//!
//! Threads: a pacer sends INVITEs (in 1 ms ticks), a carrier receiver answers 200s with ACK and BYE and
//! counts the BYEs' 200s, an agent answers INVITEs and BYEs. No retransmissions: a datagram lost on
//! loopback (a full socket queue) leaves its call unfinished, which counts as failed.
//!
//! Prints one JSON line: calls sent, completed, failed (final answer >= 300, or unfinished at the end),
//! the achieved rate (completed calls over the time from the first INVITE to the last INVITE's
//! completion), setup (INVITE -> 200) p50/p99, and the CPU of the server (`--server-pid`: the process,
//! all its threads, and each thread by name) and of this process over the same window.
//!
//!     sip-blast --target 127.0.0.1:9060 --uac 127.0.0.1:9061 --agent 127.0.0.1:9070 \
//!       --dids dids.csv --rate 3000 --calls 15000 [--server-pid PID] [--drain-s 5]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NONE: u8 = 0;
const INVITED: u8 = 1;
const ANSWERED: u8 = 2;
const DONE: u8 = 3;
const FAILED: u8 = 4;

struct Args {
    target: SocketAddr,
    uac: SocketAddr,
    agent: SocketAddr,
    dids: Vec<String>,
    rate: f64,
    calls: usize,
    server_pid: Option<u32>,
    drain: Duration,
    label: String,
}

fn parse_args() -> Args {
    let mut m: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        m.insert(k.trim_start_matches("--").to_string(), v);
    }
    let get = |k: &str, d: &str| m.get(k).cloned().unwrap_or_else(|| d.to_string());
    let dids_path = get("dids", "");
    let dids: Vec<String> = if dids_path.is_empty() {
        (0..1000).map(|i| format!("+1415555{i:04}")).collect()
    } else {
        std::fs::read_to_string(&dids_path)
            .expect("dids file")
            .lines()
            .filter_map(|l| l.split(';').next())
            .map(str::trim)
            .filter(|l| l.starts_with('+'))
            .map(String::from)
            .collect()
    };
    assert!(!dids.is_empty(), "no DIDs");
    Args {
        target: get("target", "127.0.0.1:9060").parse().expect("target"),
        uac: get("uac", "127.0.0.1:9061").parse().expect("uac"),
        agent: get("agent", "127.0.0.1:9070").parse().expect("agent"),
        dids,
        rate: get("rate", "1000").parse().expect("rate"),
        calls: get("calls", "10000").parse().expect("calls"),
        server_pid: m.get("server-pid").map(|p| p.parse().expect("server-pid")),
        drain: Duration::from_secs_f64(get("drain-s", "5").parse().expect("drain-s")),
        label: get("label", "blast"),
    }
}

/// The value of the first header named `name` (or its compact form), trimmed.
fn header<'a>(msg: &'a str, name: &'static str, compact: &'static str) -> Option<&'a str> {
    headers(msg, name, compact).next()
}

fn headers<'a>(msg: &'a str, name: &'a str, compact: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n").skip(1).filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        let k = k.trim();
        (k.eq_ignore_ascii_case(name) || (!compact.is_empty() && k.eq_ignore_ascii_case(compact))).then(|| v.trim())
    })
}

fn call_index(call_id: &str) -> Option<usize> {
    // blast-<run>-<i>@127.0.0.1
    let s = call_id.strip_prefix("blast-")?;
    let s = s.split('@').next()?;
    s.rsplit('-').next()?.parse().ok()
}

fn uri_of(contact: &str) -> &str {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if b > a => &contact[a + 1..b],
        _ => contact.split(';').next().unwrap_or(contact),
    }
}

struct Calls {
    state: Vec<AtomicU8>,
    sent_ns: Vec<AtomicU64>,
    setup_ns: Vec<AtomicU64>,
    done_ns: Vec<AtomicU64>,
}

fn cpu_ticks(path: &str) -> Option<(u64, String)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    Some((f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?, comm))
}

/// (busy, total) jiffies of the whole box, from /proc/stat's first line (idle and iowait are not busy).
fn box_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn threads(pid: u32) -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let tid = e.file_name().to_string_lossy().to_string();
            if let Some((t, comm)) = cpu_ticks(&format!("/proc/{pid}/task/{tid}/stat")) {
                out.insert(tid, (comm, t));
            }
        }
    }
    out
}

fn agent(sock: UdpSocket) {
    let mut buf = vec![0u8; 65536];
    let local = sock.local_addr().unwrap();
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = std::str::from_utf8(&buf[..n]) else {
            continue;
        };
        let first = msg.split("\r\n").next().unwrap_or("");
        if first.starts_with("SIP/2.0") {
            continue;
        }
        let method = first.split(' ').next().unwrap_or("");
        if method == "ACK" {
            continue;
        }
        if method == "BLAST-STOP" {
            return;
        }
        let mut common = String::with_capacity(512);
        for v in headers(msg, "Via", "v") {
            common.push_str("Via: ");
            common.push_str(v);
            common.push_str("\r\n");
        }
        let from_h = header(msg, "From", "f").unwrap_or("");
        let to_h = header(msg, "To", "t").unwrap_or("");
        let call_id = header(msg, "Call-ID", "i").unwrap_or("");
        let cseq = header(msg, "CSeq", "").unwrap_or("");
        let to = if to_h.contains(";tag=") {
            to_h.to_string()
        } else {
            // a tag per Call-ID, the same for a retransmitted INVITE
            let h = call_id
                .bytes()
                .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
            format!("{to_h};tag=agt{h:016x}")
        };
        common.push_str(&format!(
            "From: {from_h}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:agent@{local}>\r\n"
        ));
        if method == "INVITE" {
            let ringing = format!("SIP/2.0 180 Ringing\r\n{common}Content-Length: 0\r\n\r\n");
            let _ = sock.send_to(ringing.as_bytes(), from);
            let sdp = format!(
                "v=0\r\no=agent 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 9700 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
                ip = local.ip()
            );
            let ok = format!(
                "SIP/2.0 200 OK\r\n{common}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            let _ = sock.send_to(ok.as_bytes(), from);
        } else {
            let ok = format!("SIP/2.0 200 OK\r\n{common}Content-Length: 0\r\n\r\n");
            let _ = sock.send_to(ok.as_bytes(), from);
        }
    }
}

fn main() {
    let a = parse_args();
    let run = std::process::id();
    let uac = UdpSocket::bind(a.uac).expect("bind uac");
    let agent_sock = UdpSocket::bind(a.agent).expect("bind agent");
    for s in [&uac, &agent_sock] {
        // 4 MiB receive buffers, as the SIPp runs ask for (-buff_size 4194304)
        set_rcvbuf(s, 4 << 20);
    }
    let agent_addr = agent_sock.local_addr().unwrap();
    let agent_t = std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || agent(agent_sock))
        .unwrap();

    let calls = Arc::new(Calls {
        state: (0..a.calls).map(|_| AtomicU8::new(NONE)).collect(),
        sent_ns: (0..a.calls).map(|_| AtomicU64::new(0)).collect(),
        setup_ns: (0..a.calls).map(|_| AtomicU64::new(0)).collect(),
        done_ns: (0..a.calls).map(|_| AtomicU64::new(0)).collect(),
    });
    let t0 = Instant::now();
    let local = uac.local_addr().unwrap();
    let from = move |i: usize| format!("\"Carrier\" <sip:+12125550000@{local}>;tag=blast{run}t{i}");

    // carrier receiver: 200 to INVITE -> ACK + BYE; >= 300 -> ACK (same branch); 200 to BYE -> done
    let rx = uac.try_clone().unwrap();
    let rcalls = calls.clone();
    let target = a.target;
    let dids = a.dids.clone();
    let receiver = std::thread::Builder::new()
        .name("carrier-rx".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            rx.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            let mut datagrams = 0u64;
            loop {
                let n = match rx.recv_from(&mut buf) {
                    Ok((n, _)) => n,
                    Err(_) => continue,
                };
                datagrams += 1;
                let Ok(msg) = std::str::from_utf8(&buf[..n]) else { continue };
                if msg.starts_with("BLAST-STOP") {
                    return datagrams;
                }
                let first = msg.split("\r\n").next().unwrap_or("");
                let Some(code) = first.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse::<u16>().ok())
                else {
                    continue; // a request from the server (none expected on the happy path)
                };
                let Some(i) = header(msg, "Call-ID", "i").and_then(call_index) else { continue };
                if i >= rcalls.state.len() {
                    continue;
                }
                let cseq = header(msg, "CSeq", "").unwrap_or("");
                let now = t0.elapsed().as_nanos() as u64;
                let to = header(msg, "To", "t").unwrap_or("");
                let did = &dids[i % dids.len()];
                if cseq.ends_with("INVITE") {
                    if code < 200 {
                        continue;
                    }
                    let st = &rcalls.state[i];
                    if code >= 300 {
                        // ACK for a non-2xx final answer: the INVITE's branch, hop by hop
                        let ack = format!(
                            "ACK sip:{did}@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-blast{run}i{i}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: blast-{run}-{i}@127.0.0.1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                            from(i)
                        );
                        let _ = rx.send_to(ack.as_bytes(), target);
                        st.store(FAILED, Ordering::Relaxed);
                        continue;
                    }
                    let contact = header(msg, "Contact", "m").map(uri_of).unwrap_or("");
                    let ruri = if contact.is_empty() { format!("sip:{did}@{target}") } else { contact.to_string() };
                    let ack = format!(
                        "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-blast{run}a{i}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: blast-{run}-{i}@127.0.0.1\r\nCSeq: 1 ACK\r\nContact: <sip:+12125550000@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                        from(i)
                    );
                    let _ = rx.send_to(ack.as_bytes(), target);
                    if st.compare_exchange(INVITED, ANSWERED, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                        rcalls.setup_ns[i].store(now - rcalls.sent_ns[i].load(Ordering::Relaxed), Ordering::Relaxed);
                        let bye = format!(
                            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-blast{run}b{i}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: blast-{run}-{i}@127.0.0.1\r\nCSeq: 2 BYE\r\nContact: <sip:+12125550000@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                            from(i)
                        );
                        let _ = rx.send_to(bye.as_bytes(), target);
                    }
                } else if cseq.ends_with("BYE") && code >= 200 {
                    let st = &rcalls.state[i];
                    if code < 300 {
                        if st.compare_exchange(ANSWERED, DONE, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                            rcalls.done_ns[i].store(now, Ordering::Relaxed);
                        }
                    } else {
                        st.store(FAILED, Ordering::Relaxed);
                    }
                }
            }
        })
        .unwrap();

    // CPU before
    let pid = a.server_pid;
    let srv0 = pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat"))).map(|x| x.0);
    let thr0 = pid.map(threads).unwrap_or_default();
    let self0 = cpu_ticks("/proc/self/stat").map(|x| x.0).unwrap_or(0);
    let box0 = box_ticks();
    let w0 = Instant::now();

    // pacer: INVITEs due by now, every 1 ms
    let start = Instant::now();
    let mut next = 0usize;
    while next < a.calls {
        let due = ((start.elapsed().as_secs_f64() * a.rate) as usize + 1).min(a.calls);
        while next < due {
            let i = next;
            let did = &a.dids[i % a.dids.len()];
            let sdp = format!(
                "v=0\r\no=carrier 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 9600 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
                ip = local.ip()
            );
            let inv = format!(
                "INVITE sip:{did}@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-blast{run}i{i}\r\nFrom: {}\r\nTo: <sip:{did}@{target}>\r\nCall-ID: blast-{run}-{i}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550000@{local}>\r\nMax-Forwards: 70\r\nUser-Agent: bench-carrier\r\nX-Bench-Call-ID: blast-{run}-{i}@127.0.0.1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                from(i),
                sdp.len()
            );
            calls.sent_ns[i].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            calls.state[i].store(INVITED, Ordering::Relaxed);
            let _ = uac.send_to(inv.as_bytes(), target);
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent_for = start.elapsed();

    // drain: until every call has ended or drain time after the last INVITE
    let end_by = Instant::now() + a.drain;
    loop {
        let open = calls
            .state
            .iter()
            .filter(|s| matches!(s.load(Ordering::Relaxed), INVITED | ANSWERED))
            .count();
        if open == 0 || Instant::now() >= end_by {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let window = w0.elapsed();
    let srv1 = pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat"))).map(|x| x.0);
    let thr1 = pid.map(threads).unwrap_or_default();
    let self1 = cpu_ticks("/proc/self/stat").map(|x| x.0).unwrap_or(0);
    let box1 = box_ticks();

    // stop the threads
    let stopper = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = stopper.send_to(b"BLAST-STOP x SIP/2.0\r\n\r\n", agent_addr);
    let _ = stopper.send_to(b"BLAST-STOP x SIP/2.0\r\n\r\n", local);
    let rx_datagrams = receiver.join().unwrap();
    agent_t.join().unwrap();

    let hz = 100.0; // CLK_TCK on Linux
    let secs = window.as_secs_f64();
    let mut done = 0usize;
    let mut failed_final = 0usize;
    let mut unfinished = 0usize;
    let mut last_done = 0u64;
    let mut setups: Vec<u64> = Vec::with_capacity(a.calls);
    for i in 0..a.calls {
        match calls.state[i].load(Ordering::Relaxed) {
            DONE => {
                done += 1;
                last_done = last_done.max(calls.done_ns[i].load(Ordering::Relaxed));
                setups.push(calls.setup_ns[i].load(Ordering::Relaxed));
            }
            FAILED => failed_final += 1,
            _ => unfinished += 1,
        }
    }
    setups.sort_unstable();
    let pct = |p: f64| {
        setups
            .get(((setups.len() as f64 - 1.0) * p) as usize)
            .map(|v| *v as f64 / 1e6)
            .unwrap_or(f64::NAN)
    };
    let first_sent = calls.sent_ns[0].load(Ordering::Relaxed);
    let active_s = (last_done.saturating_sub(first_sent)) as f64 / 1e9;
    let achieved = if active_s > 0.0 { done as f64 / active_s } else { 0.0 };
    let failed = failed_final + unfinished;
    let fail_pct = 100.0 * failed as f64 / a.calls as f64;
    let srv_cpu = match (srv0, srv1) {
        (Some(x), Some(y)) => 100.0 * (y - x) as f64 / hz / secs,
        _ => f64::NAN,
    };
    let mut thr: Vec<(String, f64)> = thr1
        .iter()
        .map(|(tid, (comm, t))| {
            let before = thr0.get(tid).map(|x| x.1).unwrap_or(0);
            (format!("{comm}/{tid}"), 100.0 * (t - before) as f64 / hz / secs)
        })
        .filter(|(_, c)| *c >= 0.5)
        .collect();
    thr.sort_by(|x, y| y.1.partial_cmp(&x.1).unwrap());
    let thr_json: Vec<String> = thr.iter().map(|(n, c)| format!("\"{n}\": {c:.1}")).collect();
    let self_cpu = 100.0 * (self1 - self0) as f64 / hz / secs;
    // the whole box's busy time over the window, in % of one core; "other" = what neither the server
    // nor sip-blast used (other processes, and interrupts/softirq not charged to either)
    let box_busy = 100.0 * (box1.0 - box0.0) as f64 / hz / secs;
    let other = box_busy - self_cpu - if srv_cpu.is_nan() { 0.0 } else { srv_cpu };
    println!(
        "{{\"label\": \"{}\", \"rate_target\": {}, \"calls\": {}, \"sent_s\": {:.3}, \"window_s\": {:.3}, \"done\": {done}, \"failed_final\": {failed_final}, \"unfinished\": {unfinished}, \"fail_pct\": {fail_pct:.3}, \"cps_achieved\": {achieved:.1}, \"setup_ms_p50\": {:.3}, \"setup_ms_p99\": {:.3}, \"setup_ms_max\": {:.3}, \"cpu_server\": {srv_cpu:.1}, \"cpu_server_per_kcps\": {:.1}, \"cpu_blast\": {self_cpu:.1}, \"cpu_box\": {box_busy:.1}, \"cpu_other\": {other:.1}, \"carrier_rx_datagrams\": {rx_datagrams}, \"server_threads\": {{{}}}}}",
        a.label,
        a.rate,
        a.calls,
        sent_for.as_secs_f64(),
        secs,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        if achieved > 0.0 { srv_cpu / (achieved / 1000.0) } else { f64::NAN },
        thr_json.join(", ")
    );
}

fn set_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket this process owns, with a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}
