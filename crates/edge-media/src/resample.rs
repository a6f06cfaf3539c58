//! Windowed-sinc sample-rate conversion (espeak's 22050 Hz down to 8 kHz).
//!
//! Plain linear interpolation would fold everything above 4 kHz back into the
//! telephone band, so a Hann-windowed sinc low-pass at 90 % of the output
//! Nyquist is applied while resampling. Offline, greeting-sized inputs only.

use std::f64::consts::PI;

/// Half the filter length in input samples at unity ratio.
const HALF_TAPS: f64 = 16.0;

/// Resamples mono 16-bit PCM from `from_hz` to `to_hz`.
pub fn resample(input: &[i16], from_hz: u32, to_hz: u32) -> Vec<i16> {
    if from_hz == to_hz || input.is_empty() || from_hz == 0 || to_hz == 0 {
        return input.to_vec();
    }
    let ratio = f64::from(to_hz) / f64::from(from_hz);
    // Cut-off relative to the input rate; only low-pass when downsampling.
    let cutoff = 0.9 * ratio.min(1.0);
    let half = (HALF_TAPS / cutoff).ceil();
    let out_len = (input.len() as f64 * ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let t = n as f64 / ratio;
        let first = (t - half).ceil().max(0.0) as usize;
        let last = ((t + half).floor() as usize).min(input.len() - 1);
        let mut acc = 0.0;
        for (k, &x) in input.iter().enumerate().take(last + 1).skip(first) {
            let d = t - k as f64;
            let window = 0.5 + 0.5 * (PI * d / half).cos();
            acc += f64::from(x) * cutoff * sinc(cutoff * d) * window;
        }
        out.push(acc.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-9 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// Generates a sine tone with 5 ms raised-cosine ramps (no clicks).
pub fn tone(freq_hz: f64, duration_ms: u32, rate: u32, amplitude: f64) -> Vec<i16> {
    let n = (u64::from(duration_ms) * u64::from(rate) / 1000) as usize;
    let ramp = (rate as usize / 200).max(1).min(n / 2 + 1);
    (0..n)
        .map(|i| {
            let env = if i < ramp {
                0.5 - 0.5 * (PI * i as f64 / ramp as f64).cos()
            } else if n - i <= ramp {
                0.5 - 0.5 * (PI * (n - i) as f64 / ramp as f64).cos()
            } else {
                1.0
            };
            let v = amplitude * env * (2.0 * PI * freq_hz * i as f64 / f64::from(rate)).sin();
            (v * f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// Root-mean-square level of a frame, 0..=32768.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Goertzel power of `freq_hz` normalised by frame energy (≈1 for a pure tone).
pub fn tone_ratio(samples: &[i16], freq_hz: f64, rate: u32) -> f64 {
    let n = samples.len() as f64;
    if samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * PI * freq_hz / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy == 0.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power / (n * energy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_in_band_tone_and_length() {
        let input = tone(1000.0, 1000, 22050, 0.5);
        let out = resample(&input, 22050, 8000);
        assert!((out.len() as i64 - 8000).abs() <= 1);
        let mid = &out[2000..6000];
        assert!(tone_ratio(mid, 1000.0, 8000) > 0.9);
        assert!((rms(mid) - 0.5 * 32767.0 / 2f64.sqrt()).abs() < 800.0);
    }

    #[test]
    fn rejects_out_of_band_tone() {
        // 6 kHz cannot exist at 8 kHz; without filtering it would alias to 2 kHz.
        let input = tone(6000.0, 500, 22050, 0.5);
        let out = resample(&input, 22050, 8000);
        assert!(rms(&out[500..3500]) < 300.0, "rms {}", rms(&out[500..3500]));
    }
}
