//! Lexical helpers shared by the typed header views (RFC 3261 section 25.1).
//!
//! Header values are kept raw (folded lines included), so every helper here treats CR and LF
//! as ordinary linear white space: the parser already guaranteed a CRLF inside a value is a fold.

use std::borrow::Cow;

/// SP, HT, CR or LF: LWS inside a stored header value.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims LWS (including folds) from both ends.
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    // Nearly always nothing to trim: every LWS byte is <= SP.
    if b.first().is_some_and(|&c| c > b' ') && b.last().is_some_and(|&c| c > b' ') {
        return s;
    }
    let mut st = 0;
    let mut en = b.len();
    while st < en && is_ws(b[st]) {
        st += 1;
    }
    while en > st && is_ws(b[en - 1]) {
        en -= 1;
    }
    // st and en sit next to ASCII whitespace (or at the ends), so both are char boundaries.
    &s[st..en]
}

/// Builds a 256-entry membership table: ASCII alphanumerics plus `extra`.
pub(crate) const fn char_table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = char_table(b"-.!%*_+`'~");

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// `n` equals the lower-case letters `lower`, case-insensitively. For a letter target,
/// `c | 0x20 == target` holds exactly for its two cases, so this is one OR, XOR per byte and
/// no branch; targets must be letters only.
#[inline(always)]
pub(crate) fn eq_letters<const N: usize>(n: &[u8], lower: &[u8; N]) -> bool {
    match <&[u8; N]>::try_from(n) {
        Ok(a) => {
            let mut d = 0u8;
            for i in 0..N {
                d |= (a[i] | 0x20) ^ lower[i];
            }
            d == 0
        }
        Err(_) => false,
    }
}

/// A non-empty RFC 3261 `token`.
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Position of `c` in a short slice. Header values are short, where a plain loop beats
/// memchr's dispatch overhead.
#[inline]
pub(crate) fn find(b: &[u8], c: u8) -> Option<usize> {
    b.iter().position(|&x| x == c)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// SWAR: high bit set in each byte of `w` equal to the byte broadcast in `pat`. Borrows only
/// carry upwards, so the lowest flagged byte is always a true match (higher ones may not be).
#[inline(always)]
fn eq_mask(w: u64, pat: u64) -> u64 {
    let x = w ^ pat;
    x.wrapping_sub(LO) & !x & HI
}

#[inline(always)]
fn word(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(c);
    u64::from_le_bytes(a)
}

/// Position of the first byte of `b` equal to any of `N` bytes, eight bytes per step (SWAR):
/// about one instruction per byte and no call, for the 20-200-byte lines and values of SIP.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(b: &[u8], set: [u8; N]) -> Option<usize> {
    let pats = set.map(|c| LO * u64::from(c));
    let mut chunks = b.chunks_exact(8);
    let mut base = 0;
    for c in chunks.by_ref() {
        let w = word(c);
        let mut m = 0;
        for p in pats {
            m |= eq_mask(w, p);
        }
        if m != 0 {
            // Lowest flagged byte of each pattern is exact, so the lowest of their union is the
            // first byte matching any of them.
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|x| set.contains(x))
        .map(|p| base + p)
}

/// Index of the first non-LWS byte at or after `i`.
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Given `b[0] == b'"'`, returns the index just past the closing quote.
/// Enforces `qdtext`/`quoted-pair`: raw control characters other than LWS are refused.
pub(crate) fn quoted_end(b: &[u8]) -> Result<usize, &'static str> {
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok(i + 1),
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                match b.get(i + 1) {
                    Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => i += 2,
                    _ => return Err("invalid escape in quoted string"),
                }
            }
            c if c < 0x20 && !is_ws(c) || c == 0x7f => return Err("control character in quoted string"),
            _ => i += 1,
        }
    }
    Err("unterminated quoted string")
}

/// Removes the quotes of a quoted string (if quoted), resolving escapes and folds.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => return Cow::Borrowed(s),
    };
    if !inner.bytes().any(|b| b == b'\\' || b == b'\r' || b == b'\n') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\r' | '\n' => {
                // A fold is equivalent to a single SP (RFC 3261 7.3.1).
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

static LIST_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'"' as usize] = true;
    t[b'<' as usize] = true;
    t
};

/// Splits a comma-separated header value, ignoring commas inside quoted strings and `<...>`.
/// Elements are LWS-trimmed and may be empty (callers decide whether that is an error).
pub(crate) struct ListIter<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> ListIter<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        ListIter { s, pos: 0, done: false }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos.min(b.len());
        if start == 0 && memchr::memchr(b',', b).is_none() {
            // Common case (one Via, one Contact): no comma at all, nothing to split.
            self.done = true;
            return Some(trim_lws(self.s));
        }
        let mut i = start;
        while let Some(off) = b[i..].iter().position(|&c| LIST_SPECIAL[c as usize]) {
            let at = i + off;
            match b[at] {
                b',' => {
                    self.pos = at + 1;
                    return Some(trim_lws(&self.s[start..at]));
                }
                b'"' => {
                    // Skip the quoted string; an unterminated one runs to the end.
                    let mut k = at + 1;
                    while k < b.len() && b[k] != b'"' {
                        k += if b[k] == b'\\' { 2 } else { 1 };
                    }
                    i = (k + 1).min(b.len());
                }
                _ => {
                    i = find(&b[at..], b'>').map_or(b.len(), |g| at + g + 1);
                }
            }
        }
        self.done = true;
        Some(trim_lws(&self.s[start..]))
    }
}

/// True when `b` (starting at `b[0] == b'%'`) is a valid `escaped` triple.
#[inline]
pub(crate) fn is_escape(b: &[u8]) -> bool {
    b.len() >= 3 && b[1].is_ascii_hexdigit() && b[2].is_ascii_hexdigit()
}

/// Parses a run of ASCII digits as a u64, refusing empty input, signs and overflow.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Percent-decodes `s`; invalid UTF-8 after decoding is replaced lossily.
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && is_escape(&b[i..]) {
            out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[inline]
fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

static HOST: [bool; 256] = char_table(b"-._");

/// Host characters for hostnames and IPv4 (RFC 3261 `hostname` / `IPv4address`), or an
/// IPv6 reference in brackets. Returns the length of the host at the start of `b`.
pub(crate) fn host_len(b: &[u8]) -> Result<usize, &'static str> {
    if b.first() == Some(&b'[') {
        let close = find(b, b']').ok_or("unterminated IPv6 reference")?;
        let inner = &b[1..close];
        if inner.is_empty()
            || !inner.iter().all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            || !inner.contains(&b':')
        {
            return Err("invalid IPv6 reference");
        }
        return Ok(close + 1);
    }
    let n = b.iter().position(|&c| !HOST[c as usize]).unwrap_or(b.len());
    if n == 0 {
        return Err("missing host");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_split_respects_quotes_and_angles() {
        let v: Vec<_> = ListIter::new(r#""a, b" <sip:x@y;p=1,2>, <sip:z@w> , "q\"," <sip:k@l>"#).collect();
        assert_eq!(v, vec![r#""a, b" <sip:x@y;p=1,2>"#, "<sip:z@w>", r#""q\"," <sip:k@l>"#]);
    }

    #[test]
    fn unquote_resolves_escapes() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("\"plain\""), "plain");
    }

    #[test]
    fn u64_parse_rejects_overflow_and_signs() {
        assert_eq!(parse_u64("0068"), Some(68));
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64("36893488147419103232"), None);
        assert_eq!(parse_u64(""), None);
    }
}
