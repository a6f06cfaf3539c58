//! Segment files for SQLite-backed traces: one append-only file per hour under `<data_dir>/traces/`,
//! named by the hour's number since the Unix epoch (`493017.trace`), each trace's text one slice of it.
//!
//! Why: a failover call's trace is about 10 KB of text. Through SQLite it was copied into bound values,
//! overflow pages, the WAL (with checksums) and again at checkpoint, which cost more than everything else
//! tracing does. Appended here it is one `write` per batch of traces, and the row keeps only where it is.
//!
//! Crash safety: the bytes are written before the rows that point at them are committed, so a row never
//! points past what was written (short of the machine losing its page cache, which loses the trace: the
//! API then says it is not there). Retention removes a segment once every row it can hold is past the
//! retention (rows are stored no earlier than their segment's hour begins).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One hour per segment: retention (days) removes whole files, and a file stays small enough to copy.
const SEGMENT_MS: i64 = 3_600_000;
/// A stored length past this is a corrupt row, not a trace (`trace_max_bytes` is far below it).
const MAX_TRACE_BYTES: u64 = 64 << 20;

/// Where one trace's text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: i64,
    pub offset: i64,
    pub length: i64,
}

/// The trace segment directory of one SQLite database.
#[derive(Debug)]
pub(crate) struct TraceFiles {
    dir: PathBuf,
    /// The segment appended to now, with its length (the next trace's offset).
    open: Mutex<Option<(i64, File, u64)>>,
}

impl TraceFiles {
    pub(crate) fn new(dir: PathBuf) -> TraceFiles {
        TraceFiles {
            dir,
            open: Mutex::new(None),
        }
    }

    fn path(&self, segment: i64) -> PathBuf {
        self.dir.join(format!("{segment}.trace"))
    }

    /// Appends `bodies` to the segment of `now_ms` in one write; where each landed, in order.
    pub(crate) fn append(&self, now_ms: i64, bodies: &[&str]) -> std::io::Result<Vec<Location>> {
        let segment = now_ms.div_euclid(SEGMENT_MS);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.as_ref().is_none_or(|(s, _, _)| *s != segment) {
            std::fs::create_dir_all(&self.dir)?;
            let file = OpenOptions::new().create(true).append(true).open(self.path(segment))?;
            let len = file.metadata()?.len();
            *open = Some((segment, file, len));
        }
        let Some((_, file, len)) = open.as_mut() else {
            return Err(std::io::Error::other("trace segment not open"));
        };
        let total: usize = bodies.iter().map(|b| b.len()).sum();
        let mut buf = Vec::with_capacity(total);
        let mut at = *len;
        let mut out = Vec::with_capacity(bodies.len());
        for b in bodies {
            buf.extend_from_slice(b.as_bytes());
            out.push(Location {
                segment,
                offset: i64::try_from(at).unwrap_or(i64::MAX),
                length: i64::try_from(b.len()).unwrap_or(i64::MAX),
            });
            at += b.len() as u64;
        }
        if let Err(e) = file.write_all(&buf) {
            // A short write leaves bytes no row points at; the next append starts after them.
            *open = None;
            return Err(e);
        }
        *len = at;
        Ok(out)
    }

    /// The text at `at`; `None` when the segment or the bytes are gone (removed, a lost page cache).
    pub(crate) fn read(&self, at: Location) -> std::io::Result<Option<String>> {
        let (Ok(offset), Ok(length)) = (u64::try_from(at.offset), u64::try_from(at.length)) else {
            return Ok(None);
        };
        if length > MAX_TRACE_BYTES {
            return Ok(None);
        }
        let file = match File::open(self.path(at.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() < offset.saturating_add(length) {
            return Ok(None);
        }
        let mut buf = vec![0u8; usize::try_from(length).unwrap_or(0)];
        file.read_exact_at(&mut buf, offset)?;
        // The writer stores text; bytes that are not (a damaged file) are shown, not refused.
        Ok(Some(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }))
    }

    /// Removes the segments whose every trace was stored before `before_ms`; how many.
    pub(crate) fn purge(&self, before_ms: i64) -> std::io::Result<u64> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(segment) = segment_of(Path::new(&name)) else {
                continue;
            };
            if (segment + 1).saturating_mul(SEGMENT_MS) <= before_ms {
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                if open.as_ref().is_some_and(|(s, _, _)| *s == segment) {
                    *open = None;
                }
                drop(open);
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The segment a file name is, if it is one of ours (`<digits>.trace`).
fn segment_of(name: &Path) -> Option<i64> {
    if name.extension()? != "trace" {
        return None;
    }
    let stem = name.file_stem()?.to_str()?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_traces_read_back_and_old_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let files = TraceFiles::new(dir.path().join("traces"));
        let hour = 493_017 * SEGMENT_MS;
        let first = files.append(hour + 5, &["alpha", "βeta"]).unwrap();
        let second = files.append(hour + 9, &["gamma"]).unwrap();
        assert_eq!(first[1].offset, 5);
        assert_eq!(second[0].offset, 5 + "βeta".len() as i64);
        assert_eq!(files.read(first[1]).unwrap().as_deref(), Some("βeta"));
        assert_eq!(files.read(second[0]).unwrap().as_deref(), Some("gamma"));
        let next_hour = files.append(hour + SEGMENT_MS, &["delta"]).unwrap();
        assert_eq!((next_hour[0].segment, next_hour[0].offset), (493_018, 0));
        // Past what was written, or a length no trace has: not there, not a panic nor a huge buffer.
        let beyond = Location {
            length: 1_000,
            ..second[0]
        };
        assert_eq!(files.read(beyond).unwrap(), None);
        let huge = Location {
            length: i64::MAX,
            ..second[0]
        };
        assert_eq!(files.read(huge).unwrap(), None);
        let negative = Location {
            offset: -1,
            ..second[0]
        };
        assert_eq!(files.read(negative).unwrap(), None);
        // Retention: the first hour goes once the cut-off is past its end, the second stays.
        std::fs::write(dir.path().join("traces").join("notes.txt"), "kept").unwrap();
        assert_eq!(files.purge(hour + SEGMENT_MS - 1).unwrap(), 0);
        assert_eq!(files.purge(hour + SEGMENT_MS).unwrap(), 1);
        assert_eq!(files.read(first[0]).unwrap(), None);
        assert_eq!(files.read(next_hour[0]).unwrap().as_deref(), Some("delta"));
        assert!(
            dir.path().join("traces").join("notes.txt").exists(),
            "only segments are removed"
        );
        // Appending after the open segment was removed reopens it.
        let again = files.append(hour + 10, &["epsilon"]).unwrap();
        assert_eq!(files.read(again[0]).unwrap().as_deref(), Some("epsilon"));
    }

    #[test]
    fn only_our_names_are_segments() {
        assert_eq!(segment_of(Path::new("493017.trace")), Some(493_017));
        for bad in [
            "x.trace",
            "-1.trace",
            "493017.txt",
            ".trace",
            "1e3.trace",
            "1.trace.bak",
        ] {
            assert_eq!(segment_of(Path::new(bad)), None, "{bad}");
        }
    }
}
