//! Media engine configuration.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::latch::RelatchRule;
use crate::MediaError;

/// Settings of a [`crate::MediaEngine`].
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address written into SDP (what carriers and agents send media to).
    pub public_ip: IpAddr,
    /// Local address the media sockets bind to (often 0.0.0.0 behind 1:1 NAT).
    pub bind_ip: IpAddr,
    /// Inclusive port range; RTP uses even ports, RTCP the next odd one.
    pub port_range: (u16, u16),
    /// Time a released port pair waits before reuse (stale-media protection).
    pub quarantine: Duration,
    /// Released port pairs kept bound for the next calls (two file descriptors each); 0 closes every
    /// socket when its call ends. Parked sockets wait out `quarantine` like closed ports, absorbing the
    /// old call's late packets, and are emptied before reuse.
    pub socket_cache_pairs: usize,
    /// Media sockets open at once at most (relays, voicemail and the cache together; four per anchored
    /// call), so that media cannot take the file descriptors the rest of the process needs. A call that
    /// would pass it gets a 503, as when ports run out. `usize::MAX`: the kernel's limit only.
    pub max_sockets: usize,
    /// Media worker processes that take relays once this process's `max_sockets` are in use (see
    /// [`crate::worker`]); 0: none, calls past the ceiling get a 503.
    pub workers: usize,
    /// How to start a worker: program, then arguments (the edge: its own binary and `media-worker`).
    pub worker_command: Vec<std::ffi::OsString>,
    /// Media sockets one worker holds at most (its own open-files limit less a margin).
    pub worker_max_sockets: usize,
    /// Idle time (no packet from either side) before [`crate::MediaEvent::Timeout`].
    pub media_timeout: Duration,
    /// Re-latching rule for NAT rebinding, see [`crate::latch`].
    pub relatch: RelatchRule,
    /// espeak-ng executable used for voicemail greetings.
    pub espeak_binary: PathBuf,
    /// Directory of cached synthesized greetings (8 kHz WAV, keyed by text hash).
    pub tts_cache_dir: PathBuf,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_range: (20000, 29999),
            quarantine: Duration::from_secs(5),
            socket_cache_pairs: 2048,
            max_sockets: usize::MAX,
            workers: 0,
            worker_command: Vec::new(),
            worker_max_sockets: usize::MAX,
            media_timeout: Duration::from_secs(30),
            relatch: RelatchRule::default(),
            espeak_binary: PathBuf::from("espeak-ng"),
            tts_cache_dir: std::env::temp_dir().join("oneinbox-edge-tts"),
        }
    }
}

impl MediaConfig {
    pub(crate) fn validate(&self) -> Result<(), MediaError> {
        let (lo, hi) = self.port_range;
        if lo == 0 || hi <= lo {
            return Err(MediaError::Config("port_range must be non-empty and exclude 0"));
        }
        if self.media_timeout.is_zero() {
            return Err(MediaError::Config("media_timeout must be > 0"));
        }
        if self.public_ip.is_unspecified() {
            return Err(MediaError::Config("public_ip must be a concrete address"));
        }
        if self.workers > 0 && self.worker_command.is_empty() {
            return Err(MediaError::Config("workers need a worker_command"));
        }
        Ok(())
    }
}
