//! The parser: one batch's NDJSON lines and CSV records into Arrow rows on
//! all threads, keeping input order; every line is either a row or a
//! [`Rejected`] with its reason. Pure: no I/O.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};

use super::IngestOptions;
use super::batches::{Batch, Unit, work_items};
use super::id_index::id_hash;
use super::quarantine::Rejected;
use super::records::lms::may_hold_attempt;
use super::records::{Kind, Rows, key_column};
use super::source::{self, Dialect};

/// The result of parsing one slice of a batch.
pub(super) struct Parsed {
    pub(super) rows: RecordBatch,
    /// Per row: its key (events: the `event_id` / `attempt_id` column).
    pub(super) keys: StringArray,
    /// Per row of an event kind: its key's `id_hash`, computed here on the
    /// parser threads (empty for reference kinds).
    pub(super) hashes: Vec<u64>,
    pub(super) dates: Vec<i32>,
    pub(super) rejected: Vec<Rejected>,
    /// Statements named by xAPI voiding statements, with where each was.
    pub(super) voids: Vec<Void>,
    /// Records of other systems that make no row of this table.
    pub(super) skipped: u64,
}

/// An xAPI voiding statement: the id it voids and where it was read.
pub(super) struct Void {
    pub(super) target: String,
    pub(super) source: usize,
    pub(super) line: u64,
    pub(super) raw: String,
}

pub(super) fn parse_item(
    batch: &Batch,
    item: (usize, u64, usize, usize),
    options: &IngestOptions,
) -> Parsed {
    let (u, first_line, start, end) = item;
    let mut rows = Rows::new(batch.kind, options.hash_key.as_deref())
        .in_zone(options.timezone)
        .with_mapping(options.mapping.clone());
    let mut rejected = Vec::new();
    let mut voids = Vec::new();
    let mut skipped = 0;
    match &batch.units[u] {
        Unit::Lines {
            source,
            records,
            dialect,
            ..
        } => {
            // The attempts pass over other systems' records: what is wrong
            // with a line was reported by the activity pass, and a slice
            // without a scored record holds no attempt at all.
            let second_pass = batch.kind == Kind::Attempts && *dialect != Dialect::Native;
            let slice = match &batch.buf[start..end] {
                slice if second_pass && !may_hold_attempt(*dialect, slice) => &[],
                slice => slice,
            };
            // One vectorised check of the whole slice; only a slice with a
            // NUL byte or invalid UTF-8 somewhere is checked line by line.
            let whole = match memchr::memchr(0, slice) {
                None => simdutf8::basic::from_utf8(slice).ok(),
                Some(_) => None,
            };
            rows.reserve(memchr::memchr_iter(b'\n', slice).count() + 1);
            let mut offset = 0;
            for (this, raw) in (first_line..).zip(lines(slice)) {
                let (at, mut lo, mut hi) = (offset, 0, raw.len());
                offset += raw.len() + 1;
                if this == 1 && raw.starts_with(b"\xEF\xBB\xBF") {
                    lo = 3;
                }
                if hi > lo && raw[hi - 1] == b'\r' {
                    hi -= 1;
                }
                let text = &raw[lo..hi];
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let line = match whole {
                    // Cut at ASCII bytes and a whole BOM: char boundaries.
                    Some(all) => &all[at + lo..at + hi],
                    None => match std::str::from_utf8(text) {
                        Ok(line) if !line.contains('\0') => line,
                        _ if second_pass => continue,
                        _ => {
                            rejected.push(Rejected {
                                source: *source,
                                line: Some(this),
                                raw: lossy(text),
                                reason: source::line_problem(text, false)
                                    .unwrap_or_else(|| "line is not UTF-8 text".into()),
                            });
                            continue;
                        }
                    },
                };
                if *dialect == Dialect::Native {
                    if let Err(reason) = rows.push_json(line) {
                        rejected.push(Rejected {
                            source: *source,
                            line: Some(this),
                            raw: lossy(text),
                            reason,
                        });
                    }
                    continue;
                }
                let pushed = rows.push_lms(*dialect, line);
                skipped += pushed.skipped;
                for target in pushed.voids {
                    voids.push(Void {
                        target,
                        source: *source,
                        line: this,
                        raw: lossy(text),
                    });
                }
                for reason in pushed.rejected {
                    rejected.push(Rejected {
                        source: *source,
                        line: Some(this),
                        raw: lossy(text),
                        reason: if *records {
                            format!("record {this} of the JSON document: {reason}")
                        } else {
                            reason
                        },
                    });
                }
            }
        }
        Unit::Csv {
            source,
            text,
            dialect,
        } => {
            let mut push = |rows: &mut Rows,
                            record: &csv::StringRecord,
                            headers: &csv::StringRecord|
             -> Vec<String> {
                if *dialect == Dialect::Native {
                    return rows.push_csv(record, headers).err().into_iter().collect();
                }
                let pushed = rows.push_lms_csv(record, headers);
                skipped += pushed.skipped;
                pushed.rejected
            };
            parse_csv(*source, text, &mut rows, &mut rejected, &mut push)
        }
    }
    let keys = std::mem::take(&mut rows.keys);
    let dates = std::mem::take(&mut rows.dates);
    let rows = rows.finish();
    let keys = match rows
        .column_by_name(key_column(batch.kind))
        .filter(|_| batch.kind.is_event())
    {
        Some(ids) => ids.as_string::<i32>().clone(),
        None => StringArray::from(keys),
    };
    let hashes = match batch.kind.is_event() {
        true => keys
            .iter()
            .map(|k| id_hash(k.unwrap_or_default()))
            .collect(),
        false => Vec::new(),
    };
    Parsed {
        rows,
        keys,
        hashes,
        dates,
        rejected,
        voids,
        skipped,
    }
}

/// Appends one CSV record to the rows; the reasons it was refused.
type PushCsv<'p> = dyn FnMut(&mut Rows, &csv::StringRecord, &csv::StringRecord) -> Vec<String> + 'p;

fn parse_csv(
    source: usize,
    text: &[u8],
    rows: &mut Rows,
    rejected: &mut Vec<Rejected>,
    push: &mut PushCsv,
) {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text);
    let headers = match reader.headers() {
        Ok(h) => h.iter().map(str::trim).collect::<csv::StringRecord>(),
        Err(e) => {
            rejected.push(Rejected {
                source,
                line: Some(1),
                raw: lossy(&text[..text.len().min(1024)]),
                reason: format!("unreadable CSV header: {e}"),
            });
            return;
        }
    };
    let mut record = csv::StringRecord::new();
    loop {
        let start = reader.position().byte() as usize;
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let end = (reader.position().byte() as usize).min(text.len());
                let raw = || lossy(text[start..end].trim_ascii_end());
                if record.iter().all(str::is_empty) {
                    continue;
                }
                if record.iter().any(|f| f.contains('\0')) {
                    rejected.push(Rejected {
                        source,
                        line: Some(line),
                        raw: raw(),
                        reason: "record holds a NUL byte: not text; fix or remove the line".into(),
                    });
                    continue;
                }
                if record.len() != headers.len() {
                    rejected.push(Rejected {
                        source,
                        line: Some(line),
                        raw: raw(),
                        reason: format!(
                            "has {} fields, the header has {}",
                            record.len(),
                            headers.len()
                        ),
                    });
                    continue;
                }
                for reason in push(rows, &record, &headers) {
                    rejected.push(Rejected {
                        source,
                        line: Some(line),
                        raw: raw(),
                        reason,
                    });
                }
            }
            Err(e) => {
                let end = (reader.position().byte() as usize).clamp(start, text.len());
                rejected.push(Rejected {
                    source,
                    line: Some(line),
                    raw: lossy(&text[start..end]),
                    reason: format!("unreadable CSV record: {e}"),
                });
                if !matches!(
                    e.kind(),
                    csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. }
                ) {
                    break;
                }
            }
        }
    }
}

/// The lines of `text` (split at `\n`, like `split`, with a vectorised
/// search: a byte-by-byte split was most of the parse loop's own time).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text)
        .chain(std::iter::once(text.len()))
        .map(move |end| {
            let line = &text[start..end];
            start = end + 1;
            line
        })
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    let cut = bytes.len().min(65_536);
    String::from_utf8_lossy(&bytes[..cut]).into_owned()
}

/// Parses `batch` on all threads, keeping the order of its input.
pub(super) fn parse_batch(batch: &Batch, options: &IngestOptions) -> Vec<Parsed> {
    let items = work_items(batch, options.threads.max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Parsed>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1).min(items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&item) = items.get(i) else { break };
                    let parsed = parse_item(batch, item, options);
                    results.lock().expect("no poisoned parse")[i] = Some(parsed);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no poisoned parse")
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    //! Properties of the input parser: whatever bytes or JSON arrive, nothing
    //! panics and every line is accounted for, as an accepted row or a
    //! quarantined one with a reason.

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::parse_batch;
    use crate::ingest::IngestOptions;
    use crate::ingest::batches::{Batch, Unit};
    use crate::ingest::records::Kind;
    use crate::ingest::source::Dialect;
    use datafusion::arrow::array::Array;

    /// Parses `lines` as one NDJSON unit of `kind`; returns (accepted, rejected,
    /// lines that should have been looked at).
    /// `lines` as one unit of `dialect` records of `kind`.
    fn batch_of(kind: Kind, dialect: Dialect, lines: &[Vec<u8>]) -> Batch {
        let mut buf = Vec::new();
        for line in lines {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let mut batch = Batch::new(kind);
        batch.units.push(Unit::Lines {
            source: 0,
            first_line: 1,
            start: 0,
            end: buf.len(),
            records: false,
            dialect,
        });
        batch.buf = buf;
        batch
    }

    fn options() -> IngestOptions {
        IngestOptions {
            threads: 2,
            hash_key: Some(b"k".to_vec()),
            ..IngestOptions::default()
        }
    }

    fn parse_lines(kind: Kind, lines: &[Vec<u8>]) -> (usize, usize, usize) {
        let batch = batch_of(kind, Dialect::Native, lines);
        let buf = &batch.buf;
        let expected = buf[..buf.len().saturating_sub(1)]
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(i, line)| {
                let mut text = *line;
                if *i == 0 && text.starts_with(b"\xEF\xBB\xBF") {
                    text = &text[3..];
                }
                if text.last() == Some(&b'\r') {
                    text = &text[..text.len() - 1];
                }
                !text.iter().all(u8::is_ascii_whitespace)
            })
            .count();
        let parsed = parse_batch(&batch, &options());
        let accepted: usize = parsed.iter().map(|p| p.keys.len()).sum();
        let rejected: usize = parsed.iter().map(|p| p.rejected.len()).sum();
        for p in &parsed {
            assert_eq!(p.rows.num_rows(), p.keys.len(), "one key per accepted row");
            assert_eq!(
                p.dates.len(),
                if kind.is_event() { p.keys.len() } else { 0 }
            );
            for r in &p.rejected {
                assert!(!r.reason.is_empty(), "every quarantined line has a reason");
            }
        }
        (accepted, rejected, expected)
    }

    /// JSON values of every type, nested a little.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z0-9:+T .-]{0,30}".prop_map(Value::String),
            Just(Value::String("2026-03-02T10:00:00Z".into())),
            Just(Value::String("2026-03-02".into())),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Objects with the contract's field names (and others) holding any JSON.
    fn json_record() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("event_id"),
            Just("attempt_id"),
            Just("student_id"),
            Just("course_id"),
            Just("assessment_id"),
            Just("timestamp"),
            Just("submitted_at"),
            Just("activity_type"),
            Just("duration_seconds"),
            Just("interaction_count"),
            Just("score"),
            Just("progress"),
            Just("device"),
            Just("details"),
            Just("answers"),
            Just("status"),
            Just("enrolled_at"),
            Just("due_at"),
            Just("start_date"),
            Just("timezone"),
            Just("other"),
        ];
        btree_map(field, json_value(), 0..10)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    /// Objects shaped like other systems' records, holding any JSON.
    fn lms_record() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("id"),
            Just("actor"),
            Just("verb"),
            Just("object"),
            Just("result"),
            Just("context"),
            Just("timestamp"),
            Just("statements"),
            Just("action"),
            Just("type"),
            Just("eventTime"),
            Just("generated"),
            Just("group"),
            Just("data"),
            Just("username"),
            Just("event_type"),
            Just("event_source"),
            Just("time"),
            Just("event"),
            Just("userid"),
            Just("eventname"),
            Just("timecreated"),
        ];
        btree_map(field, json_value(), 0..10)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    /// Parses `lines` as records of `dialect` for `kind`: (accepted,
    /// rejected, without a row, voids).
    fn parse_lms(dialect: Dialect, kind: Kind, lines: &[Vec<u8>]) -> (usize, usize, u64, usize) {
        let parsed = parse_batch(&batch_of(kind, dialect, lines), &options());
        (
            parsed.iter().map(|p| p.keys.len()).sum(),
            parsed.iter().map(|p| p.rejected.len()).sum(),
            parsed.iter().map(|p| p.skipped).sum(),
            parsed.iter().map(|p| p.voids.len()).sum(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn lines_are_what_split_gives(text in vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..200)) {
            let expected: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            prop_assert_eq!(super::lines(&text).collect::<Vec<_>>(), expected);
        }

        /// Whatever arrives as xAPI, Caliper, Open edX or Moodle, nothing
        /// panics, and in the activity pass every single-record line is a
        /// row, a quarantined line, a record without a row or a void.
        #[test]
        fn arbitrary_records_of_other_systems_are_accounted_for(
            records in vec(lms_record(), 0..30),
            bytes in vec(vec(any::<u8>(), 0..80), 0..10),
        ) {
            let mut lines: Vec<Vec<u8>> = records
                .iter()
                .filter(|r| r.get("statements").is_none() && r.get("data").is_none())
                .map(|r| serde_json::to_vec(r).unwrap())
                .collect();
            lines.extend(bytes.into_iter().filter(|b| {
                !b.contains(&b'\n')
                    && !b.iter().all(u8::is_ascii_whitespace)
                    && !String::from_utf8_lossy(b).trim_start().starts_with('[')
            }));
            for dialect in [Dialect::Xapi, Dialect::Caliper, Dialect::OpenEdx, Dialect::Moodle] {
                let (accepted, rejected, without, voids) = parse_lms(dialect, Kind::Activity, &lines);
                prop_assert_eq!(
                    accepted + rejected + without as usize + voids,
                    lines.len(),
                    "{:?}", dialect
                );
                // The attempts pass never reports more than the lines.
                let (attempts, rejected, _, _) = parse_lms(dialect, Kind::Attempts, &lines);
                prop_assert!(attempts + rejected <= lines.len());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_every_line_is_accounted_for(
            lines in vec(vec(any::<u8>(), 0..120), 0..40)
        ) {
            for kind in Kind::ALL {
                let (accepted, rejected, expected) = parse_lines(kind, &lines);
                prop_assert_eq!(accepted + rejected, expected, "{:?}", kind);
            }
        }

        #[test]
        fn arbitrary_json_never_panics_and_every_line_is_accounted_for(
            records in vec(json_record(), 0..30)
        ) {
            let lines: Vec<Vec<u8>> = records
                .iter()
                .map(|r| serde_json::to_vec(r).unwrap())
                .collect();
            for kind in Kind::ALL {
                let (accepted, rejected, expected) = parse_lines(kind, &lines);
                prop_assert_eq!(accepted + rejected, expected, "{:?}", kind);
            }
        }
    }
}
