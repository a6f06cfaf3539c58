//! ITU-T G.711 µ-law and A-law companding (arithmetic encoders, table decoders).
//!
//! Encoding follows the reference algorithm (Sun `g711.c`), so values match what
//! carriers and SIPp send; decoding uses 256-entry tables built at compile time.

/// Which G.711 law a stream uses (static RTP payload type 0 or 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// µ-law, RTP payload type 0 (PCMU), North America / Japan.
    Ulaw,
    /// A-law, RTP payload type 8 (PCMA), rest of the world.
    Alaw,
}

impl G711Law {
    /// Static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            G711Law::Ulaw => 0,
            G711Law::Alaw => 8,
        }
    }

    /// SDP encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            G711Law::Ulaw => "PCMU",
            G711Law::Alaw => "PCMA",
        }
    }

    /// Encodes one linear 16-bit sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711Law::Ulaw => linear_to_ulaw(sample),
            G711Law::Alaw => linear_to_alaw(sample),
        }
    }

    /// Decodes one companded byte.
    pub fn decode(self, byte: u8) -> i16 {
        match self {
            G711Law::Ulaw => ulaw_to_linear(byte),
            G711Law::Alaw => alaw_to_linear(byte),
        }
    }

    /// Encodes `pcm` into `out` (appends; no per-sample allocation).
    pub fn encode_into(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| self.encode(s)));
    }

    /// Decodes `data` into `out` (appends).
    pub fn decode_into(self, data: &[u8], out: &mut Vec<i16>) {
        out.extend(data.iter().map(|&b| self.decode(b)));
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Index of the segment (exponent) for a biased magnitude.
fn segment(mut value: i32) -> i32 {
    let mut seg = 0;
    value >>= 8;
    while value > 0 && seg < 8 {
        value >>= 1;
        seg += 1;
    }
    seg
}

/// µ-law encode of one 16-bit linear sample.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let mask: i32 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    let seg = segment(pcm).min(7);
    let mantissa = (pcm >> (seg + 3)) & 0x0F;
    // Truncation to u8 is the companded byte by construction (7 significant bits + sign).
    ((seg << 4 | mantissa) ^ mask) as u8
}

/// A-law encode of one 16-bit linear sample.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // Work on the 13-bit magnitude like the reference encoder.
    let mut pcm = i32::from(sample) >> 3;
    let mask: i32 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg_end = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = seg_end.iter().position(|&end| pcm <= end);
    let byte = match seg {
        None => 0x7F,
        Some(seg) => {
            let seg = seg as i32;
            let shift = if seg < 2 { 1 } else { seg };
            (seg << 4) | ((pcm >> shift) & 0x0F)
        }
    };
    (byte ^ mask) as u8
}

const fn ulaw_decode_const(byte: u8) -> i16 {
    let u = !byte;
    let t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    let t = t << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

const fn alaw_decode_const(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_table(ulaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if ulaw {
            ulaw_decode_const(i as u8)
        } else {
            alaw_decode_const(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_TABLE: [i16; 256] = build_table(true);
static ALAW_TABLE: [i16; 256] = build_table(false);

/// µ-law decode of one byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    ULAW_TABLE[usize::from(byte)]
}

/// A-law decode of one byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    ALAW_TABLE[usize::from(byte)]
}
