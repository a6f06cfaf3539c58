//! The call pages: `GET /ui/calls` (recent calls) and `GET /ui/calls/{id}` (one call's SIP ladder), a
//! static page built into the binary that reads the API with the user's own key. The pages carry no data
//! and need no key: the script asks for one (or takes it from the URL fragment, which browsers never send)
//! and calls `/v1/calls/...` like any API client, so the account rules are the API's. Nothing is fetched
//! from anywhere else, which the Content-Security-Policy enforces.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("ui/page.html");
const SCRIPT: &str = include_str!("ui/ladder.js");
const STYLE: &str = include_str!("ui/ladder.css");

/// Only this origin: no CDN, no inline script, no framing by other sites.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The `/ui` routes (no state: the page is the same for everyone).
pub fn routes() -> Router {
    Router::new()
        .route("/ui/calls", get(|| asset("text/html; charset=utf-8", PAGE)))
        .route("/ui/calls/{id}", get(|| asset("text/html; charset=utf-8", PAGE)))
        .route("/ui/ladder.js", get(|| asset("text/javascript; charset=utf-8", SCRIPT)))
        .route("/ui/ladder.css", get(|| asset("text/css; charset=utf-8", STYLE)))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
