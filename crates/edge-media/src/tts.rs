//! Greeting synthesis through an `espeak-ng` subprocess, cached on disk by
//! text hash as ready-to-play 8 kHz PCM WAV.
//!
//! The text goes in on stdin (never argv, so a greeting starting with `-`
//! cannot become an option); the process is killed after [`SYNTH_TIMEOUT`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::resample::resample;
use crate::wav::{parse_wav, write_wav_atomic, WavError};

/// Longest accepted greeting text (bytes).
pub const MAX_TEXT_LEN: usize = 2000;
/// Upper bound for one espeak-ng run.
pub const SYNTH_TIMEOUT: Duration = Duration::from_secs(20);
/// In-memory cache entries kept (greetings are few; disk keeps the rest).
const MEMORY_ENTRIES: usize = 32;
/// Bump when synthesis parameters change so stale cache files are ignored.
const CACHE_VERSION: &str = "espeak-ng/8k/v1";

/// Output rate of everything this module returns.
pub const RATE: u32 = 8000;

/// Speech synthesis failures.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// espeak-ng is not installed / not runnable.
    #[error("espeak-ng is not available")]
    Unavailable,
    /// Greeting text longer than 2000 bytes.
    #[error("greeting text too long")]
    TextTooLong,
    /// espeak-ng ran longer than 20 s.
    #[error("espeak-ng timed out")]
    Timeout,
    /// espeak-ng exited unsuccessfully.
    #[error("espeak-ng failed: {0}")]
    Failed(std::process::ExitStatus),
    /// File system or process error.
    #[error("tts i/o: {0}")]
    Io(#[from] std::io::Error),
    /// espeak-ng produced something that is not 16-bit PCM WAV.
    #[error("tts output: {0}")]
    Wav(#[from] WavError),
}

/// Text-to-speech front end (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct Tts {
    binary: PathBuf,
    cache_dir: PathBuf,
    available: OnceCell<bool>,
    memory: Mutex<HashMap<u64, Arc<[i16]>>>,
}

/// Stable 64-bit FNV-1a (std's hasher is not stable across releases; cache
/// file names must be).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Tts {
    /// A synthesizer using `binary`, caching into `cache_dir` (created on demand).
    pub fn new(binary: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Tts {
            binary: binary.into(),
            cache_dir: cache_dir.into(),
            available: OnceCell::new(),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// Whether espeak-ng runs. Probed once; a missing binary logs one warning
    /// and greetings degrade to the beep alone.
    pub async fn detect(&self) -> bool {
        *self
            .available
            .get_or_init(|| async {
                let probe = Command::new(&self.binary)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status();
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(5), probe).await,
                    Ok(Ok(status)) if status.success()
                );
                if !ok {
                    tracing::warn!(
                        binary = %self.binary.display(),
                        "espeak-ng not available: voicemail greetings will be a beep only"
                    );
                }
                ok
            })
            .await
    }

    fn cache_path(&self, key: u64) -> PathBuf {
        self.cache_dir.join(format!("{key:016x}.wav"))
    }

    /// Speech for `text` as 8 kHz mono PCM, from memory, disk cache or espeak-ng.
    pub async fn speak(&self, text: &str) -> Result<Arc<[i16]>, TtsError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(TtsError::TextTooLong);
        }
        let key = fnv1a(&[CACHE_VERSION.as_bytes(), text.as_bytes()]);
        if let Some(hit) = self.memory_get(key) {
            return Ok(hit);
        }
        let path = self.cache_path(key);
        if let Ok(bytes) = tokio::fs::read(&path).await {
            match parse_wav(&bytes) {
                Ok(pcm) if pcm.sample_rate == RATE => {
                    return Ok(self.memory_put(key, pcm.samples.into()));
                }
                _ => tracing::warn!(path = %path.display(), "ignoring bad TTS cache file"),
            }
        }
        if !self.detect().await {
            return Err(TtsError::Unavailable);
        }
        let samples = self.synthesize(text, key).await?;
        let cache_write = {
            let (path, samples) = (path.clone(), samples.clone());
            tokio::task::spawn_blocking(move || write_wav_atomic(&path, RATE, &samples)).await
        };
        if !matches!(cache_write, Ok(Ok(()))) {
            tracing::warn!(path = %path.display(), "could not write TTS cache");
        }
        Ok(self.memory_put(key, samples.into()))
    }

    async fn synthesize(&self, text: &str, key: u64) -> Result<Vec<i16>, TtsError> {
        tokio::fs::create_dir_all(&self.cache_dir).await?;
        let nonce = fnv1a(&[
            format!("{:?}", std::time::SystemTime::now()).as_bytes(),
            &std::process::id().to_le_bytes(),
        ]);
        let tmp = self.cache_dir.join(format!(".{key:016x}.{nonce:016x}.raw.wav"));
        let result = self.run_espeak(text, &tmp).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        let pcm = parse_wav(&result?)?;
        Ok(resample(&pcm.samples, pcm.sample_rate, RATE))
    }

    async fn run_espeak(&self, text: &str, out: &Path) -> Result<Vec<u8>, TtsError> {
        let mut child = Command::new(&self.binary)
            .arg("-w")
            .arg(out)
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(text.as_bytes()).await?;
                stdin.write_all(b"\n").await?;
            }
            child.wait().await
        };
        let status = tokio::time::timeout(SYNTH_TIMEOUT, run)
            .await
            .map_err(|_| TtsError::Timeout)??;
        if !status.success() {
            return Err(TtsError::Failed(status));
        }
        Ok(tokio::fs::read(out).await?)
    }

    fn memory_get(&self, key: u64) -> Option<Arc<[i16]>> {
        let map = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key).cloned()
    }

    fn memory_put(&self, key: u64, samples: Arc<[i16]>) -> Arc<[i16]> {
        let mut map = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MEMORY_ENTRIES {
            map.clear();
        }
        map.insert(key, samples.clone());
        samples
    }
}
