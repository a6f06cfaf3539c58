//! The HTTP/1 server under the API: hyper driven directly (not `axum::serve`) so that the
//! answers hyper writes on its own (400/414/431 for requests it cannot parse) and the header
//! read time-out also carry the JSON error shape, and so header/body read time-outs are bounded.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Longest request target the API answers; longer ones get a JSON 414.
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Longest `X-Request-Id` echoed back; longer or odd ones are replaced by a generated id.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// A client has this long to send a complete request head; then 408 and the connection closes.
    pub header_read_timeout: Duration,
    /// Hyper's read buffer: request heads larger than this get 431.
    pub max_head_bytes: usize,
    /// How long open requests may finish after shutdown is asked for.
    pub graceful_shutdown_wait: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            graceful_shutdown_wait: Duration::from_secs(10),
        }
    }
}

/// Adds the edge-wide layers to a finished router (fallbacks and merged routes included):
/// every error answer in the JSON shape, `X-Request-Id` on every answer, one access-log line
/// per request, and a JSON 414 for over-long targets.
pub fn finish(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(edge_layer))
}

/// Serves `app` (already [`finish`]ed or not: this adds the layers) until `shutdown` resolves,
/// then lets open requests finish for up to `graceful_shutdown_wait`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = finish(app);
    // Connection tasks hold a sender each: when all are gone, every connection has finished.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_head_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let alive = alive_tx.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let mut io = GuardedIo::new(stream);
            let result = {
                let conn = builder.serve_connection(TokioIo::new(&mut io), svc);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                }
            };
            if let Err(e) = result {
                if e.is_timeout() && io.mid_request() {
                    // Half a request head: say why we hang up instead of just closing.
                    let err = ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request head was not received in time",
                    );
                    let out = raw_response(&err);
                    let _ = tokio::time::timeout(Duration::from_secs(1), io.inner.write_all(&out)).await;
                    let _ = tokio::time::timeout(Duration::from_secs(1), io.inner.shutdown()).await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = tokio::time::timeout(cfg.graceful_shutdown_wait, alive_rx.recv()).await;
    Ok(())
}

/// A whole HTTP/1.1 response carrying `err`, for answers written below hyper.
fn raw_response(err: &ApiError) -> Vec<u8> {
    let body = serde_json::json!({
        "error": {"code": err.code, "message": err.message, "field": err.field}
    })
    .to_string();
    let id = new_request_id();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n{body}",
        err.status.as_u16(),
        err.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// The stream under hyper. It notices whether a request is partly read (for the 408) and
/// replaces the empty-bodied 400/414/431 hyper writes for unparsable requests with JSON ones.
struct GuardedIo {
    inner: TcpStream,
    /// Bytes read since the last response was written.
    read_since_write: usize,
    /// A replacement response still to be written.
    pending: Vec<u8>,
}

impl GuardedIo {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            read_since_write: 0,
            pending: Vec::new(),
        }
    }

    fn mid_request(&self) -> bool {
        self.read_since_write > 0
    }

    fn drain_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's own answer to a request it could not parse: `HTTP/1.1 4xx`, no body, no type.
fn hyper_parse_error(buf: &[u8]) -> Option<ApiError> {
    let status = match buf.get(..13)? {
        b"HTTP/1.1 400 " => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414 " => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.contains("\r\ncontent-length: 0") || head.contains("content-type") {
        return None;
    }
    Some(match status {
        StatusCode::URI_TOO_LONG => uri_too_long(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(
            status,
            "headers_too_large",
            "the request headers are too large or too many",
        ),
        _ => ApiError::new(status, "bad_request", "the request is not valid HTTP/1.1"),
    })
}

fn uri_too_long() -> ApiError {
    ApiError::new(
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
        format!("the request target exceeds {MAX_URI_LEN} bytes"),
    )
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read_since_write += n;
        r
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain_pending(cx))?;
        self.read_since_write = 0;
        if let Some(err) = hyper_parse_error(buf) {
            // hyper closes the connection after this answer; write ours in its place.
            self.pending = raw_response(&err);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A fresh request id: `req_` and 24 hex digits from the clock and a counter (unique per
/// process, not a secret).
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("req_{:016x}{:08x}", t, (n as u32) ^ std::process::id())
}

/// An incoming id worth echoing: short, visible ASCII without separators that would break a
/// log line.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_REQUEST_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    ok.then(|| s.to_owned())
}

/// Percent-decodes `path` and reports whether the bytes are UTF-8 (ids and routes are).
fn path_is_utf8(path: &str) -> bool {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    std::str::from_utf8(&out).is_ok()
}

async fn edge_layer(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(sane_request_id)
        .unwrap_or_else(new_request_id);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let uri_len = req.uri().to_string().len();
    let mut resp = if uri_len > MAX_URI_LEN {
        uri_too_long().into_response()
    } else if !path_is_utf8(&path) {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "the path is not valid UTF-8 once percent-decoded",
        )
        .into_response()
    } else {
        json_error(next.run(req).await).await
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let logged_path: String = path.chars().take(200).collect();
    tracing::info!(
        target: "access",
        request_id = %id,
        method = %method,
        path = %logged_path,
        status = resp.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// Error answers that did not come from [`ApiError`] (axum's own rejections: path, query,
/// body, 413, and anything else plain-text) are replaced by the JSON shape, with a message that
/// names no internal type.
async fn json_error(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    let allow = resp.headers().get(header::ALLOW).cloned();
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        StatusCode::NOT_FOUND => ("not_found", "resource not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed on this path"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "request body must be application/json"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request was not received in time"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "the request body is not valid"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("error", "the request failed"),
    };
    drop(resp);
    let mut out = ApiError::new(status, code, message).into_response();
    if let Some(v) = retry_after {
        out.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if let Some(v) = allow {
        out.headers_mut().insert(header::ALLOW, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hypers_bodyless_answers() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_parse_error(hyper).map(|e| e.code), Some("uri_too_long"));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n";
        assert!(hyper_parse_error(ours).is_none());
        assert!(hyper_parse_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    #[test]
    fn utf8_paths() {
        assert!(path_is_utf8("/v1/agents/agt_1"));
        assert!(path_is_utf8("/v1/agents/%41%C3%A9"));
        assert!(!path_is_utf8("/v1/agents/%FF"));
        assert!(path_is_utf8("/v1/agents/%"));
        assert!(path_is_utf8("/v1/agents/%4"));
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            sane_request_id(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert!(sane_request_id(&HeaderValue::from_static("a b")).is_none());
        assert!(new_request_id().starts_with("req_"));
    }
}
