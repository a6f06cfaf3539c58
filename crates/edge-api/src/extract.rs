//! Extractors that turn every client mistake into the JSON error shape.

use crate::error::ApiError;
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Longest bearer token we bother hashing; real keys are 68 bytes.
const MAX_KEY_LEN: usize = 256;

/// The authenticated account (from `Authorization: Bearer <api_key>`).
#[derive(Debug, Clone)]
pub struct Account(pub String);

impl FromRequestParts<ApiState> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let (scheme, key) = header.trim().split_once(' ').ok_or_else(ApiError::unauthorized)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(ApiError::unauthorized());
        }
        match state.store.authenticate(key).await? {
            Some(account) => Ok(Account(account)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// JSON body extractor: size-limited (the router's `DefaultBodyLimit`), and a bad body is a
/// 400 naming the JSON path at fault instead of axum's plain-text rejection.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let mime = ct.split(';').next().unwrap_or("").trim();
            if mime != "application/json" && !mime.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "request body must be application/json",
                ));
            }
        }
        let read = tokio::time::timeout(state.config.body_read_timeout, Bytes::from_request(req, state));
        let bytes = read.await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body was not received in time",
            )
        })?;
        let bytes = bytes.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("request body exceeds {} bytes", state.config.max_body_bytes),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "could not read request body")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserialises `bytes`, reporting the failing JSON path in `field`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = public_message(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("malformed JSON: {message}"),
            );
        }
        let field = match missing_field(&message) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => String::new(),
            None => path,
        };
        let mut err = ApiError::field(field.clone(), message);
        err.code = "invalid_field";
        if field.is_empty() {
            err.field = None;
            err.code = "invalid_body";
        }
        err
    })?;
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// serde names the Rust type it expected (`expected struct PurchaseRequest`, `enum
/// ProviderName`); clients get JSON words instead.
pub fn public_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    const KINDS: &[(&str, &str)] = &[
        ("tuple struct ", "an array"),
        ("unit struct ", "null"),
        ("struct variant ", "an object"),
        ("struct ", "a JSON object"),
        ("enum ", "one of the documented values"),
    ];
    'outer: while !rest.is_empty() {
        for (kind, words) in KINDS {
            if let Some(after) = rest.strip_prefix(kind) {
                let name_len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(after.len());
                if name_len > 0 && after.starts_with(|c: char| c.is_ascii_uppercase()) {
                    out.push_str(words);
                    rest = &after[name_len..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.replace("variant identifier", "a string").replace("a a ", "a ")
}

/// serde reports a missing field at its parent's path; recover the field's own name.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Maps axum's query-string rejection to the JSON error shape, naming the parameter at fault.
pub fn query_error(rej: axum::extract::rejection::QueryRejection) -> ApiError {
    let text = rej.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    let message = public_message(text);
    let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message.clone());
    // The message may start with the parameter's path (`name: ...`).
    let after = |marker: &str| {
        message
            .find(marker)
            .and_then(|i| message[i + marker.len()..].split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = after("unknown field `") {
        err.code = "unknown_parameter";
        err.message = format!("unknown query parameter `{name}`");
        err.field = Some(name);
    } else if let Some(name) = after("duplicate field `") {
        err.message = format!("query parameter `{name}` given more than once");
        err.field = Some(name);
    } else if let Some((name, _)) = message.split_once(": ") {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            err.field = Some(name.to_owned());
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        a: String,
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        agent_id: String,
    }

    #[test]
    fn errors_name_the_path() {
        let e = parse_json::<Outer>(br#"{"a":"x","inner":{}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.agent_id"));
        let e = parse_json::<Outer>(br#"{"inner":null}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a"));
        let e = parse_json::<Outer>(br#"{"a":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a"));
        let e = parse_json::<Outer>(br#"{"a":"x""#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse_json::<Outer>(br#"{"a":"x"} trailing"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(parse_json::<Outer>(br#"{"a":"x"}"#).is_ok());
    }

    #[test]
    fn messages_name_no_rust_types() {
        let e = parse_json::<Outer>(br#""text""#).unwrap_err();
        assert!(!e.message.contains("Outer"), "{}", e.message);
        assert!(e.message.contains("a JSON object"), "{}", e.message);
        let e = parse_json::<Outer>(br#"{"a":"x","inner":5}"#).unwrap_err();
        assert!(!e.message.contains("Inner"), "{}", e.message);
        assert_eq!(
            public_message("expected enum ProviderName"),
            "expected one of the documented values"
        );
        assert_eq!(public_message("unknown field `struct`"), "unknown field `struct`");
    }
}
