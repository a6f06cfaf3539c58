//! Places received G.711 audio by RTP timestamp into a bounded PCM buffer.
//!
//! Loss becomes silence of the right length, reordering lands in the right
//! place, and the buffer can never exceed `max_samples` whatever the
//! timestamps say. A new SSRC or a timestamp jump of more than 2 s either way (re-INVITE,
//! carrier failover) rebases the clock so the new stream continues at the end.

/// Forward timestamp jump tolerated before rebasing (2 s at 8 kHz).
const MAX_JUMP: i64 = 16_000;

#[derive(Debug)]
pub(crate) struct Recorder {
    samples: Vec<i16>,
    max_samples: usize,
    base: Option<(u32, u32)>,
}

impl Recorder {
    pub(crate) fn new(max_samples: usize) -> Self {
        Recorder {
            samples: Vec::new(),
            max_samples,
            base: None,
        }
    }

    /// Stores `pcm` that starts at RTP timestamp `ts` of stream `ssrc`.
    pub(crate) fn push(&mut self, ssrc: u32, ts: u32, pcm: &[i16]) {
        let end = self.samples.len();
        let rebase = |ts: u32| ts.wrapping_sub(end as u32);
        let base = match self.base {
            Some((s, base)) if s == ssrc => base,
            _ => rebase(ts),
        };
        let mut offset = i64::from(ts.wrapping_sub(base) as i32);
        let base = if offset - end as i64 > MAX_JUMP || offset < -MAX_JUMP {
            offset = end as i64;
            rebase(ts)
        } else {
            base
        };
        self.base = Some((ssrc, base));
        if offset < 0 {
            return; // from before the recording started
        }
        let start = offset as usize;
        if start >= self.max_samples {
            return;
        }
        let n = pcm.len().min(self.max_samples - start);
        if self.samples.len() < start + n {
            self.samples.resize(start + n, 0);
        }
        self.samples[start..start + n].copy_from_slice(&pcm[..n]);
    }

    pub(crate) fn into_samples(self) -> Vec<i16> {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_reordering_and_bounds() {
        let mut r = Recorder::new(1000);
        r.push(1, 100, &[1; 160]);
        r.push(1, 420, &[3; 160]); // packet at 260 lost, arrives late below
        r.push(1, 260, &[2; 160]);
        r.push(1, 50, &[9; 160]); // before start: dropped
        let s = r.into_samples();
        assert_eq!(s.len(), 480);
        assert!(s[..160].iter().all(|&x| x == 1));
        assert!(s[160..320].iter().all(|&x| x == 2));
        assert!(s[320..].iter().all(|&x| x == 3));
    }

    #[test]
    fn hostile_timestamps_stay_bounded() {
        let mut r = Recorder::new(1000);
        r.push(1, 0, &[1; 160]);
        r.push(1, 3_000_000_000, &[2; 160]); // jump: rebased to continue
        r.push(2, 77, &[3; 160]); // new SSRC continues at the end
        r.push(2, 77 + 640, &[4; 160]); // truncated at max
        let s = r.into_samples();
        assert_eq!(s.len(), 1000);
        assert!(s[160..320].iter().all(|&x| x == 2));
        assert!(s[320..480].iter().all(|&x| x == 3));
    }
}
