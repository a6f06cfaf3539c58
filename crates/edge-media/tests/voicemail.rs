//! Voicemail sessions against a caller peer on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_media::resample::{rms, tone, tone_ratio};
use edge_media::{
    g711, wav, EndedBy, MediaConfig, MediaEngine, MediaEvent, MediaEvents, VoicemailConfig, VoicemailOutcome,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn engine(first_port: u16, tts_cache: &Path, espeak: &str) -> (MediaEngine, MediaEvents) {
    MediaEngine::new(MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (first_port, first_port + 7),
        espeak_binary: espeak.into(),
        tts_cache_dir: tts_cache.to_path_buf(),
        ..MediaConfig::default()
    })
    .unwrap()
}

fn offer(port: u16, fmt: &str) -> String {
    format!(
        "v=0\r\no=root 1 1 IN IP4 127.0.0.1\r\ns=caller\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {fmt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
    )
}

struct Caller {
    sock: UdpSocket,
    edge: SocketAddr,
    seq: u16,
    ts: u32,
}

impl Caller {
    async fn send(&mut self, pt: u8, payload: &[u8], ts: u32) {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.sock.send_to(&p, self.edge).await.unwrap();
    }

    /// Sends PCMU audio in real time (20 ms packets).
    async fn talk(&mut self, pcm: &[i16]) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in pcm.chunks(160) {
            tick.tick().await;
            let payload: Vec<u8> = frame.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
            let ts = self.ts;
            self.send(0, &payload, ts).await;
            self.ts = self.ts.wrapping_add(160);
        }
    }

    /// `#` as RFC 4733: a few progress packets then the end packet three times.
    async fn press_hash(&mut self) {
        let ts = self.ts;
        for d in [160u16, 320, 480] {
            self.send(101, &[11, 10, (d >> 8) as u8, d as u8], ts).await;
        }
        for _ in 0..3 {
            self.send(101, &[11, 0x80 | 10, 0x03, 0x20], ts).await;
        }
        self.ts = self.ts.wrapping_add(800);
    }
}

struct Heard {
    /// Packets before the beep.
    greeting_packets: usize,
    beep_packets: usize,
}

/// Receives the prompt, checks RTP continuity, returns when the beep is over.
async fn listen_to_prompt(sock: &UdpSocket) -> Heard {
    let mut buf = [0u8; 2048];
    let (mut greeting, mut beep) = (0, 0);
    let mut last: Option<(u16, u32, u32)> = None;
    let mut first = true;
    loop {
        let (n, _) = timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let p = &buf[..n];
        assert_eq!(n, 12 + 160, "20 ms G.711 packets");
        let marker = p[1] & 0x80 != 0;
        assert_eq!(marker, first, "marker bit exactly on the first packet");
        first = false;
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if let Some((s, t, c)) = last {
            assert_eq!(seq, s.wrapping_add(1));
            assert_eq!(ts, t.wrapping_add(160));
            assert_eq!(ssrc, c);
        }
        last = Some((seq, ts, ssrc));
        let pcm: Vec<i16> = p[12..].iter().map(|&b| g711::ulaw_to_linear(b)).collect();
        let is_beep = rms(&pcm) > 1000.0 && tone_ratio(&pcm, 1000.0, 8000) > 0.8;
        match (is_beep, beep) {
            (true, _) => beep += 1,
            (false, 0) => greeting += 1,
            (false, _) => break,
        }
    }
    Heard {
        greeting_packets: greeting,
        beep_packets: beep,
    }
}

async fn outcome(events: &mut MediaEvents, within: Duration) -> VoicemailOutcome {
    let event = timeout(within, events.recv()).await.unwrap().unwrap();
    match event {
        MediaEvent::VoicemailEnded { outcome, .. } => outcome.unwrap(),
        other => panic!("unexpected event {other:?}"),
    }
}

fn read_wav(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[20..24], &[1, 0, 1, 0], "PCM, mono");
    assert_eq!(&bytes[34..36], &[16, 0], "16-bit");
    let pcm = wav::parse_wav(&bytes).unwrap();
    assert_eq!(pcm.sample_rate, 8000);
    pcm.samples
}

/// Length (samples) and frequency of the loud part of a recording.
fn loud_segment(samples: &[i16]) -> (usize, f64) {
    let frames: Vec<bool> = samples.chunks(80).map(|f| rms(f) > 1000.0).collect();
    let first = frames.iter().position(|&l| l).unwrap();
    let last = frames.iter().rposition(|&l| l).unwrap();
    let seg = &samples[first * 80..((last + 1) * 80).min(samples.len())];
    let crossings = seg.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let hz = crossings as f64 / 2.0 / (seg.len() as f64 / 8000.0);
    (seg.len(), hz)
}

#[tokio::test]
async fn greeting_beep_then_tone_recorded_until_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events) = engine(31200, &dir.path().join("tts"), "espeak-ng");
    assert!(engine.tts().detect().await, "espeak-ng must be installed for this test");
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let offer = offer(sock.local_addr().unwrap().port(), "0 8 101");
    let config = Arc::new(VoicemailConfig {
        greeting_text: "Hello, please leave your message after the tone. Thank you.".into(),
        recordings_dir: dir.path().join("vm"),
        ..VoicemailConfig::default()
    });
    let (answer, session) = engine
        .start_voicemail("vm-call-1@host", offer.as_bytes(), config)
        .unwrap();
    let answer = String::from_utf8(answer.to_vec()).unwrap();
    assert!(answer.contains("m=audio"));
    assert!(answer.contains("a=rtpmap:0 PCMU/8000"));
    assert!(answer.contains("a=rtpmap:101 telephone-event/8000"));

    let heard = listen_to_prompt(&sock).await;
    let secs = heard.greeting_packets as f64 * 0.02;
    eprintln!("greeting {secs:.2} s, beep {} packets", heard.beep_packets);
    assert!((2.0..6.0).contains(&secs), "10-word greeting lasted {secs} s");
    assert!(
        (18..=21).contains(&heard.beep_packets),
        "beep of 400 ms, got {} packets",
        heard.beep_packets
    );

    let mut caller = Caller {
        sock,
        edge: SocketAddr::new(LO, session.local_port()),
        seq: 7,
        ts: 40_000,
    };
    caller.talk(&tone(1000.0, 3000, 8000, 0.5)).await;
    caller.press_hash().await;
    let out = outcome(&mut events, Duration::from_secs(5)).await;
    assert_eq!(out.ended_by, EndedBy::DtmfHash);
    let samples = read_wav(&out.path);
    assert_eq!(out.duration_ms, samples.len() as u64 / 8);
    let (len, hz) = loud_segment(&samples);
    let ms = len as f64 / 8.0;
    eprintln!("recorded {} ms, tone {ms} ms at {hz:.1} Hz", out.duration_ms);
    assert!((ms - 3000.0).abs() <= 60.0, "tone length {ms} ms");
    assert!((hz - 1000.0).abs() < 20.0, "tone frequency {hz} Hz");
    assert!(out.path.starts_with(dir.path().join("vm")));
    assert!(!out.path.file_name().unwrap().to_string_lossy().contains('@'));
    drop(session);
}

#[tokio::test]
async fn silence_limit_ends_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events) = engine(31210, &dir.path().join("tts"), "espeak-ng");
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let config = Arc::new(VoicemailConfig {
        greeting_text: String::new(),
        recordings_dir: dir.path().to_path_buf(),
        silence_limit: Duration::from_millis(800),
        ..VoicemailConfig::default()
    });
    let offer = offer(sock.local_addr().unwrap().port(), "8 0");
    let (_answer, session) = engine.start_voicemail("silent", offer.as_bytes(), config).unwrap();
    assert_eq!(
        session.media().law,
        edge_media::G711Law::Alaw,
        "first offered G.711 wins"
    );
    let heard = listen_to_prompt_alaw(&sock).await;
    assert!(heard < 25, "beep only, got {heard} packets");
    let started = Instant::now();
    let mut caller = Caller {
        sock,
        edge: SocketAddr::new(LO, session.local_port()),
        seq: 1,
        ts: 0,
    };
    // Speech for 0.5 s, then the caller keeps sending near-silence.
    let mut audio = tone(440.0, 500, 8000, 0.4);
    audio.extend(std::iter::repeat_n(3i16, 8000 * 3));
    let talk = tokio::spawn(async move { caller.talk_alaw(&audio).await });
    let out = outcome(&mut events, Duration::from_secs(5)).await;
    talk.abort();
    assert_eq!(out.ended_by, EndedBy::Silence);
    let took = started.elapsed().as_millis();
    assert!((1200..3000).contains(&took), "ended after {took} ms");
    assert!(
        (1100..3000).contains(&out.duration_ms),
        "recorded {} ms",
        out.duration_ms
    );
}

impl Caller {
    async fn talk_alaw(&mut self, pcm: &[i16]) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in pcm.chunks(160) {
            tick.tick().await;
            let payload: Vec<u8> = frame.iter().map(|&s| g711::linear_to_alaw(s)).collect();
            let ts = self.ts;
            self.send(8, &payload, ts).await;
            self.ts = self.ts.wrapping_add(160);
        }
    }
}

async fn listen_to_prompt_alaw(sock: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut packets = 0;
    let mut beeped = false;
    loop {
        let (n, _) = timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf[1] & 0x7f, 8, "PCMA payload type");
        let pcm: Vec<i16> = buf[12..n].iter().map(|&b| g711::alaw_to_linear(b)).collect();
        let loud = rms(&pcm) > 1000.0;
        if beeped && !loud {
            return packets;
        }
        beeped |= loud;
        packets += 1;
    }
}

#[tokio::test]
async fn hangup_and_shutdown_keep_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events) = engine(31220, &dir.path().join("tts"), "espeak-ng");
    let config = Arc::new(VoicemailConfig {
        greeting_text: String::new(),
        recordings_dir: dir.path().to_path_buf(),
        ..VoicemailConfig::default()
    });
    for (i, hangup) in [true, false].into_iter().enumerate() {
        let sock = UdpSocket::bind((LO, 0)).await.unwrap();
        let offer = offer(sock.local_addr().unwrap().port(), "0 101");
        let (_a, mut session) = engine
            .start_voicemail(&format!("c{i}"), offer.as_bytes(), config.clone())
            .unwrap();
        listen_to_prompt(&sock).await;
        let mut caller = Caller {
            sock,
            edge: SocketAddr::new(LO, session.local_port()),
            seq: 1,
            ts: 0,
        };
        caller.talk(&tone(1000.0, 600, 8000, 0.5)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = if hangup {
            session.stop();
            session.wait().await.unwrap()
        } else {
            assert!(engine.shutdown(Duration::from_secs(5)).await, "all sessions finished");
            session.wait().await.unwrap()
        };
        assert_eq!(out.ended_by, if hangup { EndedBy::Hangup } else { EndedBy::Shutdown });
        let (len, _) = loud_segment(&read_wav(&out.path));
        assert!(
            (len as i64 - 4800).abs() <= 480,
            "600 ms of tone kept, got {len} samples"
        );
        let event = outcome(&mut events, Duration::from_secs(1)).await;
        assert_eq!(event, out);
    }
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let offer = offer(sock.local_addr().unwrap().port(), "0");
    assert!(
        engine.start_voicemail("late", offer.as_bytes(), config).is_err(),
        "refused after shutdown"
    );
}

#[tokio::test]
async fn missing_espeak_means_beep_only() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events) = engine(31230, &dir.path().join("tts"), "/nonexistent/espeak-ng");
    assert!(!engine.tts().detect().await);
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let offer = offer(sock.local_addr().unwrap().port(), "0");
    let config = Arc::new(VoicemailConfig {
        recordings_dir: dir.path().to_path_buf(),
        max_length: Duration::from_millis(300),
        ..VoicemailConfig::default()
    });
    let (_a, _session) = engine.start_voicemail("no-tts", offer.as_bytes(), config).unwrap();
    let heard = listen_to_prompt(&sock).await;
    assert_eq!(heard.greeting_packets, 0);
    assert!((18..=21).contains(&heard.beep_packets));
    let out = outcome(&mut events, Duration::from_secs(3)).await;
    assert_eq!(out.ended_by, EndedBy::MaxLength);
}
