//! `;name[=value]` parameter lists, kept as one raw slice and searched on demand so a
//! typed view costs no allocation.

use super::lex::{char_table, is_escape, is_token_char, quoted_end, skip_ws, trim_lws};

/// Which grammar the parameters follow: header params allow quoted strings, URI params
/// allow `escaped` and a few URI-only characters but never quotes or whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamKind {
    Header,
    Uri,
}

/// One parameter found while validating, as positions in the list's text: the name is read as
/// bytes and the value sliced only when a caller keeps it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param<'a> {
    raw: &'a str,
    name: (usize, usize),
    value: Option<(usize, usize)>,
}

impl<'a> Param<'a> {
    /// The name's bytes (token or paramchar characters: ASCII, except in escapes).
    #[inline]
    pub(crate) fn name(&self) -> &'a [u8] {
        self.raw.as_bytes().get(self.name.0..self.name.1).unwrap_or(&[])
    }

    /// The value as written (`None` for a flag).
    #[inline]
    pub(crate) fn value(&self) -> Option<&'a str> {
        // Both ends sit next to ASCII delimiters (or the ends), so they are char boundaries.
        self.value.map(|(s, e)| self.raw.get(s..e).unwrap_or(""))
    }

    fn name_str(&self) -> &'a str {
        self.raw.get(self.name.0..self.name.1).unwrap_or("")
    }
}

/// A parameter list such as `;branch=z9hG4bK1;rport`. Names compare case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
    kind_uri: bool,
}

impl<'a> Params<'a> {
    /// Validates `raw` (empty, or starting with `;` after optional LWS) in one pass.
    #[inline(always)]
    pub(crate) fn parse(raw: &'a str, kind: ParamKind) -> Result<Params<'a>, &'static str> {
        // `parse_with` with nothing to collect, minus the slicing of names and values.
        let raw = trim_lws(raw);
        let uri = kind == ParamKind::Uri;
        let mut i = fast_prefix(raw.as_bytes(), uri, |_, _, _, _| {});
        if i < raw.len() {
            while let Some((_, next)) = step(raw, uri, i)? {
                i = next;
            }
        }
        Ok(Params { raw, kind_uri: uri })
    }

    /// Like `parse`, calling `f` for every parameter so callers can pick out the ones they
    /// index (Via branch, tag) without a second scan.
    #[inline(always)]
    pub(crate) fn parse_with(
        raw: &'a str,
        kind: ParamKind,
        mut f: impl FnMut(Param<'a>),
    ) -> Result<Params<'a>, &'static str> {
        let raw = trim_lws(raw);
        let uri = kind == ParamKind::Uri;
        // The fast scan consumes the plain `;name[=value]` prefix; `step` (the full grammar)
        // takes over at the first parameter the fast scan does not handle, or errors.
        let mut i = fast_prefix(raw.as_bytes(), uri, |ns, ne, vs, ve| {
            f(Param {
                raw,
                name: (ns, ne),
                value: (vs != ve).then_some((vs, ve)),
            })
        });
        if i < raw.len() {
            while let Some((p, next)) = step(raw, uri, i)? {
                f(p);
                i = next;
            }
        }
        Ok(Params { raw, kind_uri: uri })
    }

    /// The raw text, starting with `;` (or empty).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Iterates `(name, value)`; `value` is `None` for a flag parameter such as `;lr`.
    /// Values are returned raw (quotes kept, escapes not decoded).
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            raw: self.raw,
            uri: self.kind_uri,
            pos: 0,
        }
    }

    /// Value of parameter `name`: `Some("")` for a flag parameter, `None` when absent.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.unwrap_or(""))
    }

    /// True when parameter `name` is present (with or without value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Iterator over validated parameters.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    raw: &'a str,
    uri: bool,
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);
    fn next(&mut self) -> Option<Self::Item> {
        match step(self.raw, self.uri, self.pos) {
            Ok(Some((p, next))) => {
                self.pos = next;
                Some((p.name_str(), p.value()))
            }
            _ => {
                self.pos = self.raw.len();
                None
            }
        }
    }
}

static HVALUE: [bool; 256] = char_table(b"-.!%*_+`'~:[]");
static PARAMCHAR: [bool; 256] = char_table(b"[]/:&+$-_.!~*'()");

/// Scans parameters of the common shape: `;` then a name (token, or plain paramchars for
/// URI params) then optionally `=` and a non-empty plain value. No LWS, quotes or escapes:
/// those stop the scan. Calls `f(name_start, name_end, value_start, value_end)` (equal value
/// bounds for a flag) for each, and returns the index of the first parameter not consumed,
/// where `step` would parse exactly the same `(name, value)` for every consumed one.
#[inline(always)]
fn fast_prefix(b: &[u8], uri: bool, mut f: impl FnMut(usize, usize, usize, usize)) -> usize {
    let (name_t, value_t) = if uri {
        (&PARAMCHAR, &PARAMCHAR)
    } else {
        (&TOKEN_T, &HVALUE)
    };
    let mut i = 0;
    while i < b.len() && b[i] == b';' {
        let ns = i + 1;
        let mut j = ns;
        while j < b.len() && name_t[b[j] as usize] {
            j += 1;
        }
        if j == ns {
            return i;
        }
        match b.get(j) {
            None | Some(&b';') => {
                f(ns, j, j, j);
                i = j;
            }
            Some(&b'=') => {
                let vs = j + 1;
                let mut k = vs;
                while k < b.len() && value_t[b[k] as usize] {
                    k += 1;
                }
                // A value ending anywhere but at `;` or the end (an escape, LWS) is left to
                // `step`, which may read further.
                if k == vs || (k < b.len() && b[k] != b';') {
                    return i;
                }
                f(ns, j, vs, k);
                i = k;
            }
            Some(_) => return i,
        }
    }
    i
}

static TOKEN_T: [bool; 256] = char_table(b"-.!%*_+`'~");

/// Parses the parameter starting at `i` (at a `;`, possibly after LWS for header params).
/// Returns `(parameter, index after it)`, `None` at the end.
fn step(raw: &str, uri: bool, i: usize) -> Result<Option<(Param<'_>, usize)>, &'static str> {
    let b = raw.as_bytes();
    let mut i = if uri { i } else { skip_ws(b, i) };
    if i >= b.len() {
        return Ok(None);
    }
    if b[i] != b';' {
        return Err("unexpected characters in parameters");
    }
    i += 1;
    if uri {
        let ns = i;
        i = paramchars(b, i)?;
        if i == ns {
            return Err("empty parameter");
        }
        let name = (ns, i);
        if b.get(i) == Some(&b'=') {
            let vs = i + 1;
            i = paramchars(b, vs)?;
            if i == vs {
                return Err("empty URI parameter value");
            }
            let value = Some((vs, i));
            return Ok(Some((Param { raw, name, value }, i)));
        }
        return Ok(Some((Param { raw, name, value: None }, i)));
    }
    i = skip_ws(b, i);
    let ns = i;
    while i < b.len() && is_token_char(b[i]) {
        i += 1;
    }
    if i == ns {
        return Err("empty parameter");
    }
    let name = (ns, i);
    let j = skip_ws(b, i);
    if b.get(j) != Some(&b'=') {
        return Ok(Some((Param { raw, name, value: None }, j)));
    }
    i = skip_ws(b, j + 1);
    let vs = i;
    if b.get(i) == Some(&b'"') {
        i += quoted_end(&b[i..])?;
    } else {
        while i < b.len() && HVALUE[b[i] as usize] {
            i += 1;
        }
    }
    if i == vs {
        return Err("empty parameter value");
    }
    let value = Some((vs, i));
    Ok(Some((Param { raw, name, value }, i)))
}

/// `paramchar = param-unreserved / unreserved / escaped` (RFC 3261 19.1.1); returns the
/// index of the first byte that is not one.
fn paramchars(b: &[u8], mut i: usize) -> Result<usize, &'static str> {
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !is_escape(&b[i..]) {
                return Err("invalid escape in URI parameter");
            }
            i += 3;
        } else if PARAMCHAR[c as usize] {
            i += 1;
        } else {
            break;
        }
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_is_case_insensitive_and_flags_are_empty() {
        let p = Params::parse(";Branch=z9hG4bK1 ; rport ;x=\"a;b\"", ParamKind::Header).unwrap();
        assert_eq!(p.get("branch"), Some("z9hG4bK1"));
        assert_eq!(p.get("rport"), Some(""));
        assert_eq!(p.get("x"), Some("\"a;b\""));
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn fast_scan_hands_over_to_the_full_grammar() {
        // A plain prefix followed by forms only `step` reads (escapes, LWS, quotes).
        let p = Params::parse(";lr;a=%41b;x=1", ParamKind::Uri).unwrap();
        assert_eq!(p.get("a"), Some("%41b"));
        assert_eq!(p.get("x"), Some("1"));
        let p = Params::parse(";tag=1 ; q = \"x;y\";z", ParamKind::Header).unwrap();
        assert_eq!(p.get("q"), Some("\"x;y\""));
        assert_eq!(p.get("z"), Some(""));
        assert!(Params::parse(";a=1;b=%4", ParamKind::Uri).is_err());
        assert!(Params::parse(";a=1;;", ParamKind::Header).is_err());
        assert!(Params::parse(";a=1;b=\"x", ParamKind::Header).is_err());
    }

    #[test]
    fn empty_params_are_errors() {
        assert!(Params::parse(";;", ParamKind::Header).is_err());
        assert!(Params::parse(";a=1;", ParamKind::Header).is_err());
        assert!(Params::parse(";a=", ParamKind::Header).is_err());
        assert!(Params::parse("x;a", ParamKind::Header).is_err());
        assert!(Params::parse(";a=%4", ParamKind::Uri).is_err());
        assert!(Params::parse(";a=%41", ParamKind::Uri).is_ok());
    }
}
