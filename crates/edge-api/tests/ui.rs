//! The call pages are static: served without a key, with a policy that lets the page talk only to this
//! origin. (What they draw is tested in a real browser in the binary's `tests/ui_ladder.rs`.)

mod common;

#[tokio::test]
async fn pages_are_served_without_a_key_and_fetch_nothing_from_elsewhere() {
    let s = common::sqlite().await;
    for (path, kind) in [
        ("/ui/calls", "text/html"),
        ("/ui/calls/call_0123456789abcdef", "text/html"),
        ("/ui/ladder.js", "text/javascript"),
        ("/ui/ladder.css", "text/css"),
    ] {
        let r = s.client.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}: {:?}",
            h["content-type"]
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        // The one absolute URL allowed is the SVG namespace, which names and fetches nothing.
        let body = r.text().await.unwrap().replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} names another origin"
        );
    }
}
