//! The HTTP plumbing shared by the carrier clients: one pooled client with hard timeouts,
//! no redirects, and response bodies capped so a hostile or broken upstream cannot make
//! us buffer without bound.

use std::time::Duration;

use reqwest::{RequestBuilder, Url};

use crate::ProviderError;

/// TCP + TLS connect budget.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole request budget, body included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response body read; a search page is a few KiB.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Attempts per request while the provider answers 429 Too Many Requests.
const RATE_LIMIT_ATTEMPTS: u32 = 3;
/// Longest pause between 429 retries, whatever `Retry-After` says: the API client is waiting.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A response read in full (within [`MAX_BODY_BYTES`]).
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Builds the client shared by one provider instance.
pub(crate) fn client() -> Result<reqwest::Client, ProviderError> {
    // reqwest is built without a bundled crypto provider (aws-lc needs cmake); select ring.
    // An `Err` only means a process-wide provider is already installed, which reqwest uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        // A redirect would be an upstream misconfiguration; never replay credentials to it.
        .redirect(reqwest::redirect::Policy::none())
        // Carrier APIs are called directly; environment proxies must not see credentials.
        .no_proxy()
        .user_agent(concat!("oneinbox-edge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::Transport(format!("cannot build HTTP client: {e}")))
}

/// Parses an operator-supplied base URL (`https://api.twilio.com`); only http(s), no
/// credentials, query or fragment, so joined paths cannot be redirected elsewhere.
pub(crate) fn parse_base_url(field: &str, raw: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(raw).map_err(|e| ProviderError::invalid(field, e.to_string()))?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if ok {
        Ok(url)
    } else {
        Err(ProviderError::invalid(
            field,
            "must be an http(s) URL without credentials, query or fragment",
        ))
    }
}

/// `base` + path segments, each percent-encoded (a segment can never add a `/` or `?`).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, ProviderError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::invalid("base_url", "cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Sends the request and reads the body up to [`MAX_BODY_BYTES`]. A 429 is retried with
/// back-off (honouring a short `Retry-After`); if it persists the answer is
/// [`ProviderError::RateLimited`] so the API can tell its client when to come back.
pub(crate) async fn send(req: RequestBuilder) -> Result<Response, ProviderError> {
    let mut attempt: u32 = 0;
    let mut req = req;
    loop {
        attempt += 1;
        // Bodies here are bytes, so cloning works; without a clone there is no retry.
        let spare = if attempt < RATE_LIMIT_ATTEMPTS {
            req.try_clone()
        } else {
            None
        };
        let (resp, retry_after) = send_once(req).await?;
        if resp.status != 429 {
            return Ok(resp);
        }
        let Some(next) = spare else {
            return Err(ProviderError::RateLimited {
                retry_after_secs: retry_after.unwrap_or(1).clamp(1, 3600),
            });
        };
        let backoff = retry_after
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_millis(250u64 << attempt))
            .min(MAX_BACKOFF);
        tracing::debug!(attempt, ?backoff, "provider answered 429; retrying");
        tokio::time::sleep(backoff).await;
        req = next;
    }
}

/// One request; also returns `Retry-After` in seconds when the provider sent one.
async fn send_once(req: RequestBuilder) -> Result<(Response, Option<u64>), ProviderError> {
    let mut resp = req
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if resp.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Response { status, body }, retry_after))
}

fn too_large() -> ProviderError {
    ProviderError::Transport(format!("response body larger than {MAX_BODY_BYTES} bytes"))
}

/// reqwest errors carry the URL (account id, not secrets); drop it anyway and keep the kind.
fn transport(e: reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else {
        "request failed"
    };
    let detail = e.without_url().to_string();
    ProviderError::Transport(format!("{kind}: {detail}"))
}

/// Parses a JSON success body into `T`, naming the operation on failure.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, resp: &Response) -> Result<T, ProviderError> {
    serde_json::from_slice(&resp.body).map_err(|e| ProviderError::Transport(format!("unexpected {what} response: {e}")))
}
