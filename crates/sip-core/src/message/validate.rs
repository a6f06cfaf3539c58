//! The checks a server runs before accepting a message (RFC 3261 8.2, 16.3, 18.3),
//! beyond what `Message::parse` already guarantees (start line, header syntax, body length).

use super::{Message, ParseError};
use crate::headers::date::is_valid_rfc1123;
use crate::headers::id;
use crate::headers::lex::{is_token, trim_lws};
use crate::uri::Uri;

/// Runs `validate_request` or `validate_response` as appropriate.
pub fn validate(msg: &Message) -> Result<(), ParseError> {
    if msg.is_request() {
        validate_request(msg)
    } else {
        validate_response(msg)
    }
}

/// Every check a server does before accepting a request; the first failure is returned
/// (answer it with 400 and `ParseError::warning_text`). Not errors here: an unknown
/// Request-URI scheme (416 decision), unknown Require tags (420), Max-Forwards 0 (483).
pub fn validate_request(msg: &Message) -> Result<(), ParseError> {
    let method = msg.method().ok_or(ParseError::NotARequest)?;
    // Request-URI: syntax, and no embedded headers (RFC 3261 19.1.1 table: not allowed).
    if let Uri::Sip(u) = msg.request_uri()? {
        if u.headers.is_some() {
            return Err(ParseError::InvalidRequestUri(
                "headers are not allowed in a Request-URI",
            ));
        }
    }
    common(msg)?;
    if msg.cseq()?.method != *method {
        return Err(ParseError::CSeqMethodMismatch);
    }
    single(msg, id::MAX_FORWARDS, "Max-Forwards")?;
    msg.max_forwards()?;
    msg.contacts()?;
    msg.routes()?;
    msg.record_routes()?;
    msg.expires()?;
    msg.authorization()?;
    msg.proxy_authorization()?;
    if let Some(d) = msg.values(id::DATE).next() {
        if !is_valid_rfc1123(d) {
            return Err(ParseError::header("Date", "not an RFC 1123 date in GMT"));
        }
    }
    Ok(())
}

/// The checks a UAC/proxy runs on a response before matching it to a transaction.
pub fn validate_response(msg: &Message) -> Result<(), ParseError> {
    if msg.is_request() {
        return Err(ParseError::NotAResponse);
    }
    common(msg)?;
    msg.cseq()?;
    msg.contacts()?;
    msg.record_routes()?;
    msg.www_authenticate()?;
    msg.proxy_authenticate()?;
    if let Some(r) = msg.values(id::RETRY_AFTER).next() {
        let secs = r.split([';', '(', ' ', '\t']).next().unwrap_or("");
        if crate::headers::lex::parse_u64(secs)
            .and_then(|n| u32::try_from(n).ok())
            .is_none()
        {
            return Err(ParseError::header("Retry-After", "not a 32-bit number"));
        }
    }
    for w in msg.values(id::WARNING) {
        for item in crate::headers::lex::ListIter::new(w) {
            let code = item.split([' ', '\t']).next().unwrap_or("");
            if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
                return Err(ParseError::header("Warning", "warn-code must be 3 digits"));
            }
        }
    }
    Ok(())
}

/// Checks shared by requests and responses: the dialog/transaction identifiers.
fn common(msg: &Message) -> Result<(), ParseError> {
    for (h, name) in [
        (id::TO, "To"),
        (id::FROM, "From"),
        (id::CALL_ID, "Call-ID"),
        (id::CSEQ, "CSeq"),
    ] {
        match msg.count(h) {
            0 => return Err(ParseError::MissingHeader(name)),
            1 => {}
            _ => return Err(ParseError::DuplicateHeader(name)),
        }
    }
    msg.vias()?;
    msg.from()?;
    msg.to()?;
    msg.call_id()?;
    msg.cseq()?;
    msg.content_length()?;
    single(msg, id::CONTENT_TYPE, "Content-Type")?;
    if let Some(ct) = msg.content_type() {
        check_media_type(ct)?;
    }
    Ok(())
}

fn single(msg: &Message, h: crate::headers::HeaderId, name: &'static str) -> Result<(), ParseError> {
    if msg.count(h) > 1 {
        return Err(ParseError::DuplicateHeader(name));
    }
    Ok(())
}

/// `m-type "/" m-subtype *(SEMI m-parameter)`.
fn check_media_type(ct: &str) -> Result<(), ParseError> {
    let bad = ParseError::header("Content-Type", "malformed media type");
    let semi = ct.find(';').unwrap_or(ct.len());
    let (t, s) = ct[..semi].split_once('/').ok_or(bad.clone())?;
    if !is_token(trim_lws(t)) || !is_token(trim_lws(s)) {
        return Err(bad);
    }
    crate::headers::params::Params::parse(&ct[semi..], crate::headers::params::ParamKind::Header)
        .map_err(|r| ParseError::header("Content-Type", r))?;
    Ok(())
}
