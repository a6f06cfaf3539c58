//! Header names and the typed header views (each borrowed from the message buffer).

pub mod auth;
pub mod cseq;
pub(crate) mod date;
pub(crate) mod lex;
pub mod name_addr;
pub mod params;
pub mod via;

pub use auth::{Challenge, Credentials};
pub use cseq::CSeq;
pub use name_addr::NameAddr;
pub use params::Params;
pub use via::{Transport, Via};

use std::hash::{Hash, Hasher};

/// A header field name. Known names are variants; anything else is `Other`, compared
/// case-insensitively. Compact forms map to their long form when parsed.
#[derive(Debug, Clone)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentEncoding,
    Route,
    RecordRoute,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Allow,
    Accept,
    WwwAuthenticate,
    ProxyAuthenticate,
    Authorization,
    ProxyAuthorization,
    Expires,
    Event,
    Subject,
    Warning,
    RetryAfter,
    UserAgent,
    Server,
    Date,
    Reason,
    SessionExpires,
    MinSE,
    Other(Box<str>),
}

/// Internal compact id of a known header (0 = not a known header).
pub(crate) type HeaderId = u8;

pub(crate) mod id {
    use super::HeaderId;
    pub const OTHER: HeaderId = 0;
    pub const VIA: HeaderId = 1;
    pub const FROM: HeaderId = 2;
    pub const TO: HeaderId = 3;
    pub const CALL_ID: HeaderId = 4;
    pub const CSEQ: HeaderId = 5;
    pub const CONTACT: HeaderId = 6;
    pub const MAX_FORWARDS: HeaderId = 7;
    pub const CONTENT_LENGTH: HeaderId = 8;
    pub const CONTENT_TYPE: HeaderId = 9;
    pub const CONTENT_ENCODING: HeaderId = 10;
    pub const ROUTE: HeaderId = 11;
    pub const RECORD_ROUTE: HeaderId = 12;
    pub const REQUIRE: HeaderId = 13;
    pub const PROXY_REQUIRE: HeaderId = 14;
    pub const SUPPORTED: HeaderId = 15;
    pub const UNSUPPORTED: HeaderId = 16;
    pub const ALLOW: HeaderId = 17;
    pub const ACCEPT: HeaderId = 18;
    pub const WWW_AUTHENTICATE: HeaderId = 19;
    pub const PROXY_AUTHENTICATE: HeaderId = 20;
    pub const AUTHORIZATION: HeaderId = 21;
    pub const PROXY_AUTHORIZATION: HeaderId = 22;
    pub const EXPIRES: HeaderId = 23;
    pub const EVENT: HeaderId = 24;
    pub const SUBJECT: HeaderId = 25;
    pub const WARNING: HeaderId = 26;
    pub const RETRY_AFTER: HeaderId = 27;
    pub const USER_AGENT: HeaderId = 28;
    pub const SERVER: HeaderId = 29;
    pub const DATE: HeaderId = 30;
    pub const REASON: HeaderId = 31;
    pub const SESSION_EXPIRES: HeaderId = 32;
    pub const MIN_SE: HeaderId = 33;
}

/// Canonical long names, indexed by id.
pub(crate) const NAMES: [&str; 34] = [
    "",
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Content-Encoding",
    "Route",
    "Record-Route",
    "Require",
    "Proxy-Require",
    "Supported",
    "Unsupported",
    "Allow",
    "Accept",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Authorization",
    "Proxy-Authorization",
    "Expires",
    "Event",
    "Subject",
    "Warning",
    "Retry-After",
    "User-Agent",
    "Server",
    "Date",
    "Reason",
    "Session-Expires",
    "Min-SE",
];

/// `NAMES` in lower case, for the case-insensitive compare in `known_id`.
const NAMES_LC: [&str; 34] = [
    "",
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "max-forwards",
    "content-length",
    "content-type",
    "content-encoding",
    "route",
    "record-route",
    "require",
    "proxy-require",
    "supported",
    "unsupported",
    "allow",
    "accept",
    "www-authenticate",
    "proxy-authenticate",
    "authorization",
    "proxy-authorization",
    "expires",
    "event",
    "subject",
    "warning",
    "retry-after",
    "user-agent",
    "server",
    "date",
    "reason",
    "session-expires",
    "min-se",
];

#[inline]
const fn words(b: &[u8; 24]) -> [u64; 3] {
    let mut out = [0u64; 3];
    let mut i = 0;
    while i < 24 {
        out[i / 8] |= (b[i] as u64) << ((i % 8) * 8);
        i += 1;
    }
    out
}

/// Lower-case canonical names and their letter masks, as words (see `known_id`).
static FOLDED: [([u64; 3], [u64; 3]); 34] = {
    let mut t = [([0u64; 3], [0u64; 3]); 34];
    let mut n = 0;
    while n < 34 {
        let name = NAMES_LC[n].as_bytes();
        let mut c = [0u8; 24];
        let mut m = [0u8; 24];
        let mut i = 0;
        while i < name.len() {
            c[i] = name[i];
            if name[i].is_ascii_lowercase() {
                m[i] = 0x20;
            }
            i += 1;
        }
        t[n] = (words(&c), words(&m));
        n += 1;
    }
    t
};

/// Known header id from raw name bytes: length switch, then a case-folding compare.
#[inline]
pub(crate) fn known_id(name: &[u8]) -> HeaderId {
    known_id_in(name, 0, name.len())
}

/// `known_id(&b[start..start + len])`. When `b` has 24 bytes from `start` on (the parser's
/// case: more header text follows a name), the words are loaded straight from `b` and the
/// bytes past the name masked off, instead of copying the name into a padded buffer.
#[inline]
pub(crate) fn known_id_in(b: &[u8], start: usize, len: usize) -> HeaderId {
    use id::*;
    let Some(name) = b.get(start..start.saturating_add(len)) else {
        return OTHER;
    };
    if name.len() == 1 {
        return match name[0] | 0x20 {
            b'i' => CALL_ID,
            b'm' => CONTACT,
            b'e' => CONTENT_ENCODING,
            b'l' => CONTENT_LENGTH,
            b'f' => FROM,
            b't' => TO,
            b'v' => VIA,
            b'k' => SUPPORTED,
            b'c' => CONTENT_TYPE,
            b's' => SUBJECT,
            b'o' => EVENT,
            b'x' => SESSION_EXPIRES,
            _ => OTHER,
        };
    }
    // Longest known name: Proxy-Authorization (19), so 24 bytes cover every candidate.
    if name.is_empty() || name.len() > 19 {
        return OTHER;
    }
    // Three little-endian words of the name, zero past its end.
    let keep = &KEEP[name.len()];
    let w = match b.get(start..start + 24).and_then(|c| <&[u8; 24]>::try_from(c).ok()) {
        Some(c) => [
            le_word(c, 0) & keep[0],
            le_word(c, 8) & keep[1],
            le_word(c, 16) & keep[2],
        ],
        None => {
            let mut p = [0u8; 24];
            for (d, &c) in p.iter_mut().zip(name) {
                *d = c;
            }
            [le_word(&p, 0), le_word(&p, 8), le_word(&p, 16)]
        }
    };
    // One candidate by a perfect hash of the case-folded first word and the length, then an
    // exact compare: `(name | mask) == lower-case canonical`, where the mask has 0x20 on
    // letter positions only, so letters fold case and '-' must match exactly.
    let c = BY_HASH[name_hash(w[0] | (FOLD & keep[0]), name.len())];
    let (canon, mask) = &FOLDED[c as usize];
    if (w[0] | mask[0]) == canon[0] && (w[1] | mask[1]) == canon[1] && (w[2] | mask[2]) == canon[2] {
        c
    } else {
        OTHER
    }
}

/// 0x20 in every byte: folds ASCII upper-case letters to lower case for `name_hash`.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// Multiplicative hash of a name's folded first word and length into 64 slots; the constant
/// was searched so that the 33 known names of two or more bytes land in distinct slots.
#[inline(always)]
const fn name_hash(folded_w0: u64, len: usize) -> usize {
    (folded_w0.wrapping_add(len as u64).wrapping_mul(0x759a_aeee_4311_62a5) >> 58) as usize
}

/// Known id per hash slot (`OTHER` for an empty slot). Built at compile time; a collision
/// between two known names fails the build.
static BY_HASH: [HeaderId; 64] = {
    let mut t = [id::OTHER; 64];
    let mut n = 1;
    while n < NAMES_LC.len() {
        let name = NAMES_LC[n].as_bytes();
        let mut w0 = 0u64;
        let mut i = 0;
        while i < name.len() && i < 8 {
            w0 |= ((name[i] | 0x20) as u64) << (i * 8);
            i += 1;
        }
        let h = name_hash(w0, name.len());
        assert!(t[h] == id::OTHER, "known header names collide in BY_HASH");
        t[h] = n as HeaderId;
        n += 1;
    }
    t
};

/// `KEEP[n]`: word masks keeping the first `n` bytes of a 24-byte little-endian window.
static KEEP: [[u64; 3]; 25] = {
    let mut t = [[0u64; 3]; 25];
    let mut n: usize = 0;
    while n <= 24 {
        let mut k: usize = 0;
        while k < 3 {
            let bytes = n.saturating_sub(8 * k);
            t[n][k] = if bytes >= 8 {
                u64::MAX
            } else {
                (1u64 << (bytes * 8)) - 1
            };
            k += 1;
        }
        n += 1;
    }
    t
};

#[inline(always)]
fn le_word(p: &[u8; 24], o: usize) -> u64 {
    u64::from_le_bytes([
        p[o],
        p[o + 1],
        p[o + 2],
        p[o + 3],
        p[o + 4],
        p[o + 5],
        p[o + 6],
        p[o + 7],
    ])
}

/// Long form of the compact names that have no variant of their own (RFC 3265, RFC 3515).
fn expand_other_compact(name: &str) -> &str {
    if name.len() == 1 {
        match name.as_bytes()[0] | 0x20 {
            b'u' => return "Allow-Events",
            b'r' => return "Refer-To",
            _ => {}
        }
    }
    name
}

/// Does the raw name of an `Other` header match `want`?
pub(crate) fn other_matches(want: &str, raw: &str) -> bool {
    expand_other_compact(raw).eq_ignore_ascii_case(expand_other_compact(want))
}

impl HeaderName {
    /// Parses a header name, resolving compact forms case-insensitively.
    pub fn parse(name: &[u8]) -> HeaderName {
        let id = known_id(name);
        if id != id::OTHER {
            return Self::from_id(id);
        }
        let s = String::from_utf8_lossy(name);
        HeaderName::Other(expand_other_compact(&s).into())
    }

    pub(crate) fn from_id(i: HeaderId) -> HeaderName {
        use id::*;
        match i {
            VIA => HeaderName::Via,
            FROM => HeaderName::From,
            TO => HeaderName::To,
            CALL_ID => HeaderName::CallId,
            CSEQ => HeaderName::CSeq,
            CONTACT => HeaderName::Contact,
            MAX_FORWARDS => HeaderName::MaxForwards,
            CONTENT_LENGTH => HeaderName::ContentLength,
            CONTENT_TYPE => HeaderName::ContentType,
            CONTENT_ENCODING => HeaderName::ContentEncoding,
            ROUTE => HeaderName::Route,
            RECORD_ROUTE => HeaderName::RecordRoute,
            REQUIRE => HeaderName::Require,
            PROXY_REQUIRE => HeaderName::ProxyRequire,
            SUPPORTED => HeaderName::Supported,
            UNSUPPORTED => HeaderName::Unsupported,
            ALLOW => HeaderName::Allow,
            ACCEPT => HeaderName::Accept,
            WWW_AUTHENTICATE => HeaderName::WwwAuthenticate,
            PROXY_AUTHENTICATE => HeaderName::ProxyAuthenticate,
            AUTHORIZATION => HeaderName::Authorization,
            PROXY_AUTHORIZATION => HeaderName::ProxyAuthorization,
            EXPIRES => HeaderName::Expires,
            EVENT => HeaderName::Event,
            SUBJECT => HeaderName::Subject,
            WARNING => HeaderName::Warning,
            RETRY_AFTER => HeaderName::RetryAfter,
            USER_AGENT => HeaderName::UserAgent,
            SERVER => HeaderName::Server,
            DATE => HeaderName::Date,
            REASON => HeaderName::Reason,
            SESSION_EXPIRES => HeaderName::SessionExpires,
            MIN_SE => HeaderName::MinSE,
            _ => HeaderName::Other("".into()),
        }
    }

    /// Internal id (0 for `Other`; an `Other` spelling a known name maps to that name).
    pub(crate) fn id(&self) -> HeaderId {
        use id::*;
        match self {
            HeaderName::Via => VIA,
            HeaderName::From => FROM,
            HeaderName::To => TO,
            HeaderName::CallId => CALL_ID,
            HeaderName::CSeq => CSEQ,
            HeaderName::Contact => CONTACT,
            HeaderName::MaxForwards => MAX_FORWARDS,
            HeaderName::ContentLength => CONTENT_LENGTH,
            HeaderName::ContentType => CONTENT_TYPE,
            HeaderName::ContentEncoding => CONTENT_ENCODING,
            HeaderName::Route => ROUTE,
            HeaderName::RecordRoute => RECORD_ROUTE,
            HeaderName::Require => REQUIRE,
            HeaderName::ProxyRequire => PROXY_REQUIRE,
            HeaderName::Supported => SUPPORTED,
            HeaderName::Unsupported => UNSUPPORTED,
            HeaderName::Allow => ALLOW,
            HeaderName::Accept => ACCEPT,
            HeaderName::WwwAuthenticate => WWW_AUTHENTICATE,
            HeaderName::ProxyAuthenticate => PROXY_AUTHENTICATE,
            HeaderName::Authorization => AUTHORIZATION,
            HeaderName::ProxyAuthorization => PROXY_AUTHORIZATION,
            HeaderName::Expires => EXPIRES,
            HeaderName::Event => EVENT,
            HeaderName::Subject => SUBJECT,
            HeaderName::Warning => WARNING,
            HeaderName::RetryAfter => RETRY_AFTER,
            HeaderName::UserAgent => USER_AGENT,
            HeaderName::Server => SERVER,
            HeaderName::Date => DATE,
            HeaderName::Reason => REASON,
            HeaderName::SessionExpires => SESSION_EXPIRES,
            HeaderName::MinSE => MIN_SE,
            HeaderName::Other(n) => known_id(n.as_bytes()),
        }
    }

    /// Canonical long form (`Call-ID`, `WWW-Authenticate`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Other(n) => n,
            known => NAMES[known.id() as usize],
        }
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s.as_bytes())
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.id(), other.id());
        if a != id::OTHER || b != id::OTHER {
            return a == b;
        }
        other_matches(self.as_str(), other.as_str())
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let i = self.id();
        i.hash(state);
        if i == id::OTHER {
            for b in expand_other_compact(self.as_str()).bytes() {
                state.write_u8(b.to_ascii_lowercase());
            }
        }
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        for (raw, want) in [
            ("i", HeaderName::CallId),
            ("M", HeaderName::Contact),
            ("e", HeaderName::ContentEncoding),
            ("L", HeaderName::ContentLength),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("V", HeaderName::Via),
            ("k", HeaderName::Supported),
            ("c", HeaderName::ContentType),
            ("s", HeaderName::Subject),
            ("o", HeaderName::Event),
            ("x", HeaderName::SessionExpires),
            ("cAlL-iD", HeaderName::CallId),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("MIN-se", HeaderName::MinSE),
        ] {
            assert_eq!(HeaderName::parse(raw.as_bytes()), want, "{raw}");
        }
        assert_eq!(HeaderName::parse(b"u").as_str(), "Allow-Events");
        assert_eq!(HeaderName::parse(b"r"), HeaderName::from("refer-to"));
        assert_eq!(HeaderName::from("X-Foo"), HeaderName::from("x-foo"));
        assert_ne!(HeaderName::from("X-Foo"), HeaderName::from("x-bar"));
        assert_eq!(HeaderName::Other("Via".into()), HeaderName::Via);
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    }

    #[test]
    fn folded_compare_is_exact() {
        for (i, n) in NAMES.iter().enumerate().skip(1) {
            assert_eq!(NAMES_LC[i], n.to_ascii_lowercase());
            assert_eq!(known_id(n.as_bytes()) as usize, i, "{n}");
            assert_eq!(known_id(n.to_ascii_uppercase().as_bytes()) as usize, i, "{n}");
        }
        assert_eq!(known_id(b"Call\rID"), id::OTHER);
        assert_eq!(known_id(b"Contact\0"), id::OTHER);
        assert_eq!(known_id(b"Vi@"), id::OTHER);
        assert_eq!(known_id(b"Content-Lengt"), id::OTHER);
        // In-buffer lookup: bytes after the name must not take part in the compare.
        for (i, n) in NAMES.iter().enumerate().skip(1) {
            let line = format!("{n}: value that is long enough");
            assert_eq!(known_id_in(line.as_bytes(), 0, n.len()) as usize, i, "{n}");
            assert_eq!(
                known_id_in(line.as_bytes(), 0, n.len() - 1),
                known_id(&n.as_bytes()[..n.len() - 1])
            );
        }
        assert_eq!(known_id_in(b"Viax: 1234567890123456789012345", 0, 3), id::VIA);
        assert_eq!(known_id_in(b"Via", 0, 4), id::OTHER);
    }
}
