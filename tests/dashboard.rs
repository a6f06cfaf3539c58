//! The Grafana dashboard in `deploy/grafana/` is valid JSON and every metric it queries is one the edge
//! exports (a name in `src/` as a string literal): a renamed metric breaks this test, not a panel in
//! production.

use std::path::Path;

fn sources(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
}

#[test]
fn every_queried_metric_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/grafana/oneinbox-edge.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(dash["panels"].as_array().unwrap().len() > 10);
    let mut src = String::new();
    sources(&root.join("src"), &mut src);
    let mut names: Vec<&str> = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("edge_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        names.push(name.strip_suffix("_bucket").unwrap_or(name));
        rest = &tail[end..];
    }
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 15, "{names:?}");
    for n in &names {
        assert!(
            src.contains(&format!("\"{n}\"")),
            "{n} is not a metric the edge exports"
        );
    }
    for must in [
        "edge_calls_total",
        "edge_call_setup_seconds",
        "edge_failovers_total",
        "edge_media_port_pairs",
        "edge_admission_dropped_total",
        "edge_webhook_backlog",
    ] {
        assert!(names.contains(&must), "the dashboard shows {must}");
    }
}
