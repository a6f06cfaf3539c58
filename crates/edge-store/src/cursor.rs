//! Opaque keyset-pagination cursors: base64url of `<created_at>:<id>` of the last item served.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Upper bound on an accepted cursor, so junk input is rejected before decoding.
const MAX_CURSOR_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) created_at: i64,
    pub(crate) id: String,
}

impl Cursor {
    pub(crate) fn encode(created_at: i64, id: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
    }

    /// The position just after the item (`created_at`, `id`), for `starting_after=<id>`.
    pub fn after(created_at: i64, id: &str) -> Cursor {
        Cursor {
            created_at,
            id: id.to_owned(),
        }
    }

    /// Parses a cursor previously returned as `next_cursor`; `None` if it is not one.
    pub fn decode(s: &str) -> Option<Cursor> {
        if s.is_empty() || s.len() > MAX_CURSOR_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (ts, id) = text.split_once(':')?;
        let ok_id = !id.is_empty() && id.len() <= 80 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok_id {
            return None;
        }
        Some(Cursor {
            created_at: ts.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_junk() {
        let s = Cursor::encode(42, "phn_abc");
        assert_eq!(
            Cursor::decode(&s),
            Some(Cursor {
                created_at: 42,
                id: "phn_abc".into()
            })
        );
        assert_eq!(Cursor::decode("!!"), None);
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("x:phn_a")), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("1:a'b")), None);
    }
}
