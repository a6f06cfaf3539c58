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
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
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
        let message = inner.to_string();
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

/// serde reports a missing field at its parent's path; recover the field's own name.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Maps axum's query-string rejection to the JSON error shape.
pub fn query_error(rej: axum::extract::rejection::QueryRejection) -> ApiError {
    let text = rej.body_text();
    // serde_urlencoded names the parameter in its message; pass it through.
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", text)
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
}
