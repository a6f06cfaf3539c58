//! Log output: human lines on a terminal, JSON lines elsewhere (or as configured).
//!
//! JSON lines are written by [`JsonLine`] rather than tracing-subscriber's own JSON format, which
//! emits a second `"message"` key when an event has a field of that name (many log pipelines keep
//! only one of the two, at random). Here every key appears once: the event's text is `message`, and a
//! field that would collide is renamed `<name>_field`.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over the configured level so an operator can raise
/// verbosity for one run without editing the file. The level can be changed later by [`set_level`] (a
/// config reload).
pub fn init(format: LogFormat, level: &str) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let (installed, setter): (bool, LevelSetter) = if json {
        let b = builder.event_format(JsonLine).with_filter_reloading();
        let handle = b.reload_handle();
        (
            b.try_init().is_ok(),
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        )
    } else {
        let b = builder.with_filter_reloading();
        let handle = b.reload_handle();
        (
            b.try_init().is_ok(),
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        )
    };
    if installed && !env_set {
        let _ = LEVEL.set(setter);
    }
}

/// Swaps the filter of the installed subscriber.
type LevelSetter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Set by [`init`] when the level is the config's (not `RUST_LOG`'s) and so may be reloaded.
static LEVEL: std::sync::OnceLock<LevelSetter> = std::sync::OnceLock::new();

/// Applies a new `log.level` (a config reload). `Ok(false)`: not applied because `RUST_LOG` set the
/// level, or no subscriber of ours is installed (tests).
pub fn set_level(level: &str) -> Result<bool, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level `{level}`: {e}"))?;
    match LEVEL.get() {
        Some(set) => set(filter).map(|()| true),
        None => Ok(false),
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's fields, and
/// `span` (the innermost span's name) with `spans` (outermost first) when inside spans.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        map.insert(
            "timestamp".into(),
            Value::String(edge_store::time::rfc3339(edge_store::time::now_millis())),
        );
        map.insert("level".into(), Value::String(meta.level().to_string()));
        map.insert("target".into(), Value::String(meta.target().to_owned()));
        let mut fields = Fields { map };
        event.record(&mut fields);
        let mut map = fields.map;
        if let Some(scope) = ctx.event_scope() {
            let names: Vec<Value> = scope.from_root().map(|s| Value::String(s.name().to_owned())).collect();
            if let Some(Value::String(last)) = names.last() {
                insert_unique(&mut map, "span", Value::String(last.clone()));
            }
            insert_unique(&mut map, "spans", Value::Array(names));
        }
        writeln!(writer, "{}", Value::Object(map))
    }
}

fn insert_unique(map: &mut Map<String, Value>, name: &str, v: Value) {
    if !map.contains_key(name) {
        map.insert(name.to_owned(), v);
        return;
    }
    let mut key = format!("{name}_field");
    let mut n = 2;
    while map.contains_key(&key) {
        key = format!("{name}_field{n}");
        n += 1;
    }
    map.insert(key, v);
}

struct Fields {
    map: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        insert_unique(&mut self.map, field.name(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        insert_unique(&mut self.map, field.name(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        insert_unique(&mut self.map, field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        insert_unique(&mut self.map, field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        insert_unique(&mut self.map, field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        insert_unique(&mut self.map, field.name(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_message_key_per_line() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("request", id = 7);
            let _g = span.enter();
            let message = "provider said no";
            tracing::warn!(status = 429u64, %message, "provider rejected request");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().next().unwrap();
        assert_eq!(line.matches("\"message\"").count(), 1, "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message"], "provider rejected request");
        assert_eq!(v["message_field"], "provider said no");
        assert_eq!(v["status"], 429);
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["span"], "request");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
