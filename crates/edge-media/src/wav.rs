//! Minimal RIFF/WAVE support: 16-bit PCM only, which is all espeak-ng emits and
//! all voicemail stores. Parsing is bounds-checked and tolerant of the
//! "unknown length" data chunks streaming writers produce.

use std::io::{self, Write};
use std::path::Path;

/// WAV parsing errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    /// Not a RIFF/WAVE file.
    #[error("not a RIFF/WAVE file")]
    NotWave,
    /// Format other than 16-bit integer PCM.
    #[error("unsupported WAV format (need 16-bit PCM)")]
    Unsupported,
    /// Missing `fmt ` or `data` chunk.
    #[error("WAV file is missing the {0} chunk")]
    MissingChunk(&'static str),
}

/// Decoded mono PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    /// Samples per second.
    pub sample_rate: u32,
    /// Mono samples (first channel if the file had more).
    pub samples: Vec<i16>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a 16-bit PCM WAV held in memory.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWave);
    }
    let mut at = 12usize;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while let (Some(id), Some(len)) = (bytes.get(at..at + 4), u32_at(bytes, at + 4)) {
        let body = at + 8;
        // Streaming writers put 0xFFFFFFFF-ish sizes in the data chunk: clamp to what exists.
        let end = body.saturating_add(len as usize).min(bytes.len());
        match id {
            b"fmt " => {
                let fmt = (
                    u16_at(bytes, body).ok_or(WavError::Unsupported)?,
                    u16_at(bytes, body + 2).ok_or(WavError::Unsupported)?,
                    u32_at(bytes, body + 4).ok_or(WavError::Unsupported)?,
                    u16_at(bytes, body + 14).ok_or(WavError::Unsupported)?,
                );
                format = Some(fmt);
            }
            b"data" => {
                let (tag, channels, rate, bits) = format.ok_or(WavError::MissingChunk("fmt"))?;
                // 1 = PCM, 0xFFFE = WAVE_FORMAT_EXTENSIBLE (espeak never, but harmless).
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 || rate == 0 {
                    return Err(WavError::Unsupported);
                }
                let frame = 2 * usize::from(channels);
                let data = bytes.get(body..end).unwrap_or_default();
                let samples = data
                    .chunks_exact(frame)
                    .map(|f| i16::from_le_bytes([f[0], f[1]]))
                    .collect();
                return Ok(Pcm {
                    sample_rate: rate,
                    samples,
                });
            }
            _ => {}
        }
        // Chunks are word aligned.
        at = end + (len as usize & 1);
        if end >= bytes.len() {
            break;
        }
    }
    Err(WavError::MissingChunk("data"))
}

/// Serializes mono 16-bit PCM as a canonical 44-byte-header WAV.
pub fn encode_wav(sample_rate: u32, samples: &[i16]) -> Vec<u8> {
    // 2 bytes per sample; recordings are capped far below 2 GiB, saturate anyway.
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Writes a WAV atomically: temp file in the same directory, fsync, rename,
/// fsync the directory. A crash leaves either no file or a complete one.
pub fn write_wav_atomic(path: &Path, sample_rate: u32, samples: &[i16]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode_wav(sample_rate, samples))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself; best effort on platforms without dir fsync.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 65536 - 32768) as i16).collect();
        let bytes = encode_wav(8000, &samples);
        let pcm = parse_wav(&bytes).unwrap();
        assert_eq!(pcm.sample_rate, 8000);
        assert_eq!(pcm.samples, samples);
    }

    #[test]
    fn streaming_length_is_clamped() {
        let mut bytes = encode_wav(22050, &[1, 2, 3]);
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&bytes).unwrap().samples, vec![1, 2, 3]);
    }

    #[test]
    fn garbage_rejected() {
        assert_eq!(parse_wav(b"RIFF"), Err(WavError::NotWave));
        assert!(parse_wav(b"RIFF\0\0\0\0WAVEdata\xff\xff\xff\xff").is_err());
    }
}
