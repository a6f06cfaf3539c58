//! Voicemail: the edge answers, plays greeting + beep, records the caller.
//!
//! One task per session: a 20 ms ticker paces outgoing RTP (greeting, beep,
//! then comfort silence that keeps NAT bindings open) and enforces the limits;
//! incoming RTP is latched like the relay, decoded and placed by timestamp.
//! Every ending path writes the WAV (temp file, fsync, rename).

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::dtmf::{DtmfDetector, EVENT_HASH};
use crate::engine::{MediaEndpoint, MediaEngine};
use crate::event::MediaEvent;
use crate::g711::G711Law;
use crate::latch::{Latch, LatchVerdict, RelatchRule};
use crate::recorder::Recorder;
use crate::resample::{rms, tone};
use crate::sdp::{voicemail_answer, SdpError, VoicemailMedia};
use crate::srtp::{LegCrypto, MAX_OVERHEAD};
use crate::tts::{Tts, RATE};
use crate::wav::write_wav_atomic;
use crate::MediaError;

/// Samples per 20 ms packet at 8 kHz.
pub const FRAME: usize = 160;
const PTIME: Duration = Duration::from_millis(20);
const MAX_DATAGRAM: usize = 2048;

/// Per-session voicemail settings (per DID if desired).
#[derive(Debug, Clone)]
pub struct VoicemailConfig {
    /// Greeting spoken by espeak-ng; empty = beep only.
    pub greeting_text: String,
    /// Where WAV recordings are stored (created if missing).
    pub recordings_dir: PathBuf,
    /// Longest recording.
    pub max_length: Duration,
    /// Recording ends after this much low-energy audio (or no audio at all).
    pub silence_limit: Duration,
    /// RMS level (0..32768) above which a 20 ms frame counts as speech.
    pub speech_rms: f64,
    /// Beep frequency.
    pub beep_hz: f64,
    /// Beep length.
    pub beep: Duration,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        VoicemailConfig {
            greeting_text: "The person you are calling is not available. Please leave a message after the tone.".into(),
            recordings_dir: std::env::temp_dir().join("oneinbox-edge-voicemail"),
            max_length: Duration::from_secs(120),
            silence_limit: Duration::from_secs(10),
            speech_rms: 300.0,
            beep_hz: 1000.0,
            beep: Duration::from_millis(400),
        }
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndedBy {
    /// Caller hung up ([`VoicemailSession::stop`] or session dropped).
    Hangup,
    /// [`VoicemailConfig::max_length`] reached.
    MaxLength,
    /// [`VoicemailConfig::silence_limit`] of silence.
    Silence,
    /// Caller pressed `#` (RFC 4733 event 11).
    DtmfHash,
    /// Engine shutdown ([`MediaEngine::shutdown`]).
    Shutdown,
}

/// A stored voicemail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailOutcome {
    /// 8 kHz 16-bit mono WAV.
    pub path: PathBuf,
    /// Recorded length.
    pub duration_ms: u64,
    /// Why recording stopped.
    pub ended_by: EndedBy,
}

/// Failure to store a recording.
#[derive(Debug, thiserror::Error)]
pub enum VoicemailError {
    /// Writing the WAV failed.
    #[error("storing voicemail: {0}")]
    Io(#[from] std::io::Error),
    /// The session task panicked or was cancelled by runtime shutdown.
    #[error("voicemail task did not complete")]
    Task,
    /// [`VoicemailSession::wait`] was already called.
    #[error("voicemail result already taken")]
    AlreadyTaken,
}

/// Why a voicemail session could not start.
#[derive(Debug, thiserror::Error)]
pub enum VoicemailStartError {
    /// No ports / shutting down (SIP: 503).
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Offer unusable (SIP: [`SdpError::sip_status`]).
    #[error(transparent)]
    Sdp(#[from] SdpError),
}

type SessionResult = Result<VoicemailOutcome, Arc<VoicemailError>>;

/// A running voicemail session. Dropping it counts as a hang-up; the recording
/// is still written in the background and reported as [`MediaEvent::VoicemailEnded`].
#[derive(Debug)]
pub struct VoicemailSession {
    call_id: Arc<str>,
    port: u16,
    media: VoicemailMedia,
    stop: watch::Sender<Option<EndedBy>>,
    task: Option<JoinHandle<SessionResult>>,
}

impl VoicemailSession {
    /// Call-ID of the session.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Local RTP port used in the answer.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Negotiated codec and the caller's declared address.
    pub fn media(&self) -> &VoicemailMedia {
        &self.media
    }

    /// The caller hung up (BYE): finish and store the recording.
    pub fn stop(&self) {
        self.stop.send_if_modified(|v| {
            let first = v.is_none();
            v.get_or_insert(EndedBy::Hangup);
            first
        });
    }

    /// Waits for the session to end (by itself or after [`Self::stop`]) and
    /// the WAV to be on disk.
    pub async fn wait(&mut self) -> Result<VoicemailOutcome, Arc<VoicemailError>> {
        let task = self.task.take().ok_or(Arc::new(VoicemailError::AlreadyTaken))?;
        task.await.map_err(|_| Arc::new(VoicemailError::Task))?
    }
}

impl MediaEngine {
    /// Answers a call with voicemail: allocates a port pair, builds the SDP
    /// answer (send it in the 200 OK) and starts the session. The session
    /// starts playing immediately; it keeps the recording on every ending.
    pub fn start_voicemail(
        &self,
        call_id: &str,
        offer: &[u8],
        config: Arc<VoicemailConfig>,
    ) -> Result<(Bytes, VoicemailSession), VoicemailStartError> {
        let token = self.session_token()?;
        let endpoint = self.allocate_endpoint()?;
        let (answer, media, crypto) = voicemail_answer(self.config().public_ip, endpoint.port(), offer, true)?;
        let call_id: Arc<str> = Arc::from(call_id);
        let (stop, stop_rx) = watch::channel(None);
        let port = endpoint.port();
        let ctx = Context {
            call_id: call_id.clone(),
            media: media.clone(),
            config,
            tts: self.tts().clone(),
            relatch: self.config().relatch,
            stop: stop_rx,
            shutdown: self.shutdown_signal(),
            crypto: crypto.unwrap_or_default(),
        };
        let events = self.events();
        let event_call_id = call_id.clone();
        let task = tokio::spawn(async move {
            let result = run(endpoint, ctx).await.map_err(Arc::new);
            let _ = events.send(MediaEvent::VoicemailEnded {
                call_id: event_call_id,
                outcome: result.clone(),
            });
            // Liveness token for `MediaEngine::shutdown`: released only after the WAV is stored.
            drop(token);
            result
        });
        Ok((
            answer,
            VoicemailSession {
                call_id,
                port,
                media,
                stop,
                task: Some(task),
            },
        ))
    }
}

struct Context {
    call_id: Arc<str>,
    media: VoicemailMedia,
    config: Arc<VoicemailConfig>,
    tts: Arc<Tts>,
    relatch: RelatchRule,
    stop: watch::Receiver<Option<EndedBy>>,
    shutdown: watch::Receiver<bool>,
    /// SRTP toward and from the caller (plain when its offer was).
    crypto: LegCrypto,
}

/// Resolves when the session is told to end (hang-up, drop or shutdown).
async fn stopped(stop: &mut watch::Receiver<Option<EndedBy>>, shutdown: &mut watch::Receiver<bool>) -> EndedBy {
    loop {
        if *shutdown.borrow_and_update() {
            return EndedBy::Shutdown;
        }
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return EndedBy::Hangup; // session handle dropped
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return EndedBy::Shutdown; // engine dropped
                }
            }
        }
    }
}

/// Outgoing RTP stream state (RFC 3550 §5.1: random initial seq/timestamp/SSRC).
struct Outbound {
    law: G711Law,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
}

impl Outbound {
    fn new(media: &VoicemailMedia, seed: &str) -> Self {
        let r = random(seed);
        Outbound {
            law: media.law,
            payload_type: media.payload_type,
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            timestamp: (r >> 48) as u32 * 7919,
            marker: true,
        }
    }

    /// Builds the next 20 ms packet into `out`, returns its length.
    fn next(&mut self, pcm: &[i16; FRAME], out: &mut [u8]) -> usize {
        let mut payload = [0u8; FRAME];
        for (b, &s) in payload.iter_mut().zip(pcm) {
            *b = self.law.encode(s);
        }
        let len = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.seq))
            .timestamp(self.timestamp)
            .marked(self.marker)
            .payload(&payload)
            .build_into(out)
            // `out` is MAX_DATAGRAM bytes, far above 12 + 160.
            .unwrap_or(0);
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        len
    }
}

/// Per-process random bits without a dependency: std's `RandomState` is
/// seeded from the OS.
fn random(seed: &str) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(seed.as_bytes());
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// `recordings_dir/<safe call id>-<unix ms>-<random>.wav`; the Call-ID is hostile input.
fn recording_path(dir: &std::path::Path, call_id: &str) -> PathBuf {
    let safe: String = call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    dir.join(format!("{safe}-{ms}-{:08x}.wav", random(call_id) as u32))
}

enum Phase {
    Prompt { pos: usize },
    Recording { started: Instant, last_speech: Instant },
}

async fn run(endpoint: MediaEndpoint, mut ctx: Context) -> Result<VoicemailOutcome, VoicemailError> {
    let max_samples = (ctx.config.max_length.as_millis() as usize).saturating_mul(RATE as usize / 1000);
    let mut recorder = Recorder::new(max_samples);
    let ended_by = session(&endpoint, &mut ctx, &mut recorder).await;
    drop(endpoint); // ports back to the pool before the (slow) disk write
    let samples = recorder.into_samples();
    let duration_ms = samples.len() as u64 * 1000 / u64::from(RATE);
    let dir = ctx.config.recordings_dir.clone();
    let path = recording_path(&dir, &ctx.call_id);
    let write_path = path.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        write_wav_atomic(&write_path, RATE, &samples)
    })
    .await
    .map_err(|_| VoicemailError::Task)??;
    tracing::info!(call_id = %ctx.call_id, path = %path.display(), duration_ms, ?ended_by, "voicemail stored");
    Ok(VoicemailOutcome {
        path,
        duration_ms,
        ended_by,
    })
}

async fn greeting(ctx: &Context) -> Vec<i16> {
    let text = ctx.config.greeting_text.trim();
    let mut prompt = Vec::new();
    if !text.is_empty() {
        match ctx.tts.speak(text).await {
            Ok(speech) => {
                prompt.extend_from_slice(&speech);
                // Short pause so the beep is distinct from the last word.
                prompt.resize(prompt.len() + RATE as usize / 5, 0);
            }
            Err(e) => {
                // Once per process at WARN (the cause is the host, not the call), then per call at DEBUG.
                static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::debug!(error = %e, "greeting unavailable, beep only");
                } else {
                    tracing::warn!(error = %e, "greeting unavailable, beep only (logged once)");
                }
            }
        }
    }
    let beep_ms = u32::try_from(ctx.config.beep.as_millis()).unwrap_or(400).min(5000);
    prompt.extend(tone(ctx.config.beep_hz, beep_ms, RATE, 0.3));
    prompt
}

async fn session(endpoint: &MediaEndpoint, ctx: &mut Context, recorder: &mut Recorder) -> EndedBy {
    let mut stop = ctx.stop.clone();
    let mut shutdown = ctx.shutdown.clone();
    let prompt = tokio::select! {
        p = greeting(ctx) => p,
        reason = stopped(&mut stop, &mut shutdown) => return reason,
    };
    let declared = (!ctx.media.remote.addr.is_unspecified() && ctx.media.remote.rtp_port != 0)
        .then(|| SocketAddr::new(ctx.media.remote.addr, ctx.media.remote.rtp_port));
    let mut out = Outbound::new(&ctx.media, &ctx.call_id);
    let mut latch = Latch::default();
    let mut dtmf = DtmfDetector::default();
    let mut phase = Phase::Prompt { pos: 0 };
    let mut ticker = tokio::time::interval(PTIME);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut rx = [0u8; MAX_DATAGRAM];
    let mut tx = [0u8; MAX_DATAGRAM];
    let mut work: Vec<u8> = Vec::with_capacity(MAX_DATAGRAM + MAX_OVERHEAD);
    let mut pcm = [0i16; MAX_DATAGRAM];
    loop {
        tokio::select! {
            biased;
            reason = stopped(&mut stop, &mut shutdown) => return reason,
            _ = ticker.tick() => {
                let now = Instant::now();
                let mut frame = [0i16; FRAME];
                match &mut phase {
                    Phase::Prompt { pos } => {
                        let end = (*pos + FRAME).min(prompt.len());
                        frame[..end - *pos].copy_from_slice(&prompt[*pos..end]);
                        *pos = end;
                        if *pos >= prompt.len() {
                            phase = Phase::Recording { started: now, last_speech: now };
                        }
                    }
                    Phase::Recording { started, last_speech } => {
                        if now.duration_since(*started) >= ctx.config.max_length {
                            return EndedBy::MaxLength;
                        }
                        if now.duration_since(*last_speech) >= ctx.config.silence_limit {
                            return EndedBy::Silence;
                        }
                    }
                }
                if let Some(dest) = latch.latched().or(declared) {
                    let len = out.next(&frame, &mut tx);
                    work.clear();
                    work.extend_from_slice(&tx[..len]);
                    if ctx.crypto.protect(&mut work, false).is_err() {
                        continue;
                    }
                    if let Err(e) = endpoint.rtp.send_to(&work, dest).await {
                        tracing::debug!(error = %e, "voicemail send failed");
                    }
                }
            }
            received = endpoint.rtp.recv_from(&mut rx) => {
                let Ok((len, from)) = received else { continue };
                let now = Instant::now();
                work.clear();
                work.extend_from_slice(&rx[..len]);
                // RTCP multiplexed here (RFC 5761) is not wanted: only RTP is unprotected.
                if work.get(1).is_some_and(|pt| (192..=223).contains(pt)) {
                    continue;
                }
                if ctx.crypto.unprotect(&mut work, false).is_err() {
                    continue;
                }
                if latch.offer(from, now, ctx.relatch) == LatchVerdict::Drop {
                    continue;
                }
                let Ok(packet) = RtpReader::new(&work) else { continue };
                let recording = matches!(phase, Phase::Recording { .. });
                if Some(packet.payload_type()) == ctx.media.telephone_event_pt {
                    let ended = dtmf.on_packet(packet.timestamp(), packet.payload());
                    if recording && ended == Some(EVENT_HASH) {
                        return EndedBy::DtmfHash;
                    }
                    continue;
                }
                let Phase::Recording { last_speech, .. } = &mut phase else { continue };
                if packet.payload_type() != ctx.media.payload_type {
                    continue;
                }
                let payload = packet.payload();
                let n = payload.len().min(pcm.len());
                for (s, &b) in pcm.iter_mut().zip(&payload[..n]) {
                    *s = ctx.media.law.decode(b);
                }
                recorder.push(packet.ssrc(), packet.timestamp(), &pcm[..n]);
                if rms(&pcm[..n]) > ctx.config.speech_rms {
                    *last_speech = now;
                }
            }
        }
    }
}
