//! Batches: landing text cut into runs of at most `batch_bytes` (at line
//! boundaries, across files), each named by a hash of exactly what it reads,
//! and split into work items for the parser threads. Only reads landing
//! files; never writes.

use std::io::{BufRead, BufReader};

use sha2::{Digest, Sha256};

use super::ledger::LedgerSource;
use super::records::Kind;
use super::source::{self, Compression, Dialect, Format};
use super::{IngestOptions, Pending, progress};
use crate::lake::Store;
use crate::{Error, Result};

/// A run of input inside a batch.
pub(super) enum Unit {
    /// NDJSON lines `buf[start..end]` of source `source`, the first being
    /// `first_line`. With `records`, each line is one record of a JSON
    /// document (an array's element, a pretty-printed object) put on a line
    /// of its own, and numbers count records, not the file's lines.
    Lines {
        source: usize,
        first_line: u64,
        start: usize,
        end: usize,
        records: bool,
        dialect: Dialect,
    },
    /// A whole CSV file's text.
    Csv {
        source: usize,
        text: Vec<u8>,
        dialect: Dialect,
    },
}

pub(super) struct Batch {
    pub(super) kind: Kind,
    pub(super) buf: Vec<u8>,
    pub(super) units: Vec<Unit>,
    pub(super) sources: Vec<LedgerSource>,
}

impl Batch {
    pub(super) fn new(kind: Kind) -> Self {
        Self {
            kind,
            buf: Vec::new(),
            units: Vec::new(),
            sources: Vec::new(),
        }
    }

    fn text_len(&self) -> usize {
        self.buf.len()
            + self
                .units
                .iter()
                .map(|u| match u {
                    Unit::Csv { text, .. } => text.len(),
                    Unit::Lines { .. } => 0,
                })
                .sum::<usize>()
    }

    /// The batch id: a hash of exactly what it reads.
    pub(super) fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kind.name());
        for s in &self.sources {
            h.update([0]);
            h.update(&s.path);
            h.update([0]);
            h.update(&s.content_hash);
            h.update(format!(":{}:{}:{}", s.first_line, s.last_line, s.complete));
        }
        hex::encode(&h.finalize()[..10])
    }
}

/// Text buffers of parsed batches, for the reader to fill again.
#[derive(Clone, Default)]
pub(super) struct Buffers(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    /// A buffer given back (empty, with its capacity), or a new one.
    fn take(&self) -> Vec<u8> {
        self.0.lock().expect("no poison").pop().unwrap_or_default()
    }

    /// Gives a batch's buffer back; at most two are kept (the reader fills
    /// one while the next batches are parsed), the rest freed.
    pub(super) fn give(&self, mut buf: Vec<u8>) {
        let mut pool = self.0.lock().expect("no poison");
        if pool.len() < 2 {
            buf.clear();
            pool.push(buf);
        }
    }
}

/// Reads the pending sources in order and sends batches of about
/// `batch_bytes` of text, cut at line boundaries.
pub(super) fn cut_batches(
    landing: &Store,
    kind: Kind,
    pending: &[Pending],
    options: &IngestOptions,
    tx: &tokio::sync::mpsc::Sender<Batch>,
    buffers: &Buffers,
) -> Result<()> {
    // A batch's text is read into one buffer of its final size: growing it
    // by doubling copied every batch twice. Buffers of parsed batches come
    // back and are used again (fresh memory costs a page fault per 4 KiB).
    let new_batch = || {
        let mut batch = Batch::new(kind);
        batch.buf = buffers.take();
        batch
            .buf
            .reserve(options.batch_bytes.saturating_add(1 << 20));
        batch
    };
    let mut batch = new_batch();
    let send = |batch: Batch| -> Result<()> {
        tx.blocking_send(batch)
            .map_err(|_| Error::Worker("ingest stopped before the reader finished".into()))
    };
    for (index, p) in pending.iter().enumerate() {
        let source = &p.source;
        let ledger_source = |first_line: u64, last_line: u64, complete: bool| LedgerSource {
            path: source.path.clone(),
            size: source.size,
            content_hash: p.content_hash.clone(),
            version: source.version.clone(),
            first_line,
            last_line,
            complete,
        };
        // Inspection decompressed only the file's head: corruption further
        // on is found here, and the run starts again without the file.
        let (raw, raw_failed) = source::Watched::new(source::open_raw(landing, source)?);
        let raw: Box<dyn std::io::Read + Send> = Box::new(raw);
        let read_err = |e: std::io::Error| {
            if source.compression != Compression::None
                && !raw_failed.load(std::sync::atomic::Ordering::Relaxed)
            {
                return Error::CorruptSource {
                    path: source.path.clone(),
                    reason: source::corrupt_reason(source.compression, &e),
                };
            }
            Error::ReadFile {
                path: source.path.clone().into(),
                source: e,
            }
        };
        let mut reader = BufReader::with_capacity(
            1 << 20,
            source::decompress(raw, source.compression).map_err(read_err)?,
        );
        if source.format == Some(Format::Csv) {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut text).map_err(read_err)?;
            let lines = memchr::memchr_iter(b'\n', &text).count() as u64 + 1;
            batch.units.push(Unit::Csv {
                source: index,
                text,
                dialect: source.dialect,
            });
            batch.sources.push(ledger_source(1, lines, true));
            progress(options, source.size);
            if batch.text_len() >= options.batch_bytes {
                send(std::mem::replace(&mut batch, new_batch()))?;
            }
            continue;
        }
        // Other systems' JSON comes as NDJSON, or as arrays and
        // pretty-printed documents (an LRS export, a spec's example): those
        // are cut into records, each put on a line of its own.
        let mut records = (source.dialect != Dialect::Native)
            .then(|| JsonRecords::sniff(&mut reader))
            .transpose()
            .map_err(read_err)?
            .flatten();
        let numbered_by_record = records.is_some();
        let mut line_no = 0u64;
        let mut first_line = 1u64;
        let mut start = batch.buf.len();
        loop {
            let before = batch.buf.len();
            let lines = match &mut records {
                Some(r) => u64::from(r.next(&mut reader, &mut batch.buf).map_err(read_err)? > 0),
                None => read_lines(&mut reader, &mut batch.buf, options.batch_bytes)
                    .map_err(read_err)?,
            };
            if lines == 0 {
                break;
            }
            line_no += lines;
            if batch.buf[before..].last() != Some(&b'\n') {
                batch.buf.push(b'\n');
            }
            if batch.buf.len() >= options.batch_bytes {
                batch.units.push(Unit::Lines {
                    source: index,
                    first_line,
                    start,
                    end: batch.buf.len(),
                    records: numbered_by_record,
                    dialect: source.dialect,
                });
                // Whether the file ends here decides `complete`: peek.
                let at_end = match &mut records {
                    Some(r) => !r.skip_between(&mut reader).map_err(read_err)?,
                    None => reader.fill_buf().map_err(read_err)?.is_empty(),
                };
                batch
                    .sources
                    .push(ledger_source(first_line, line_no, at_end));
                send(std::mem::replace(&mut batch, new_batch()))?;
                first_line = line_no + 1;
                start = 0;
                if at_end {
                    break;
                }
            }
        }
        // Unless the file ended exactly at a cut, its tail is in this batch.
        if first_line <= line_no || line_no == 0 {
            batch.units.push(Unit::Lines {
                source: index,
                first_line,
                start,
                end: batch.buf.len(),
                records: numbered_by_record,
                dialect: source.dialect,
            });
            batch.sources.push(ledger_source(first_line, line_no, true));
        }
        progress(options, source.size);
    }
    if !batch.sources.is_empty() {
        send(batch)?;
    }
    Ok(())
}

/// Appends whole lines of `reader` to `buf` and returns how many (0 at the
/// end of the input): every complete line the reader has buffered at once,
/// up to and including the first that brings `buf` to `limit` bytes, so a
/// batch is cut after the same line whatever the reads returned (batch ids
/// must not depend on them); a line the buffer does not hold whole, alone.
/// Line by line, `read_until` was 6 % of an ingest.
fn read_lines(reader: &mut impl BufRead, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<u64> {
    let chunk = reader.fill_buf()?;
    let need = limit.saturating_sub(buf.len()).max(1);
    // The end of the last line to take: the first to reach the limit, or
    // the last complete one.
    let end = chunk
        .get(need - 1..)
        .and_then(|tail| memchr::memchr(b'\n', tail))
        .map(|i| need + i)
        .or_else(|| memchr::memrchr(b'\n', chunk).map(|i| i + 1));
    match end {
        Some(end) => {
            let lines = memchr::memchr_iter(b'\n', &chunk[..end]).count() as u64;
            buf.extend_from_slice(&chunk[..end]);
            reader.consume(end);
            Ok(lines)
        }
        None => Ok(u64::from(reader.read_until(b'\n', buf)? > 0)),
    }
}

/// Whether a JSON text's bytes, fed one by one, are outside its strings
/// (a string's opening quote counts as outside, the rest of it as inside).
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    fn outside(&mut self, b: u8) -> bool {
        if self.inside {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.inside = false,
                _ => {}
            }
            return false;
        }
        self.inside = b == b'"';
        true
    }
}

/// Records of a JSON document that is not NDJSON: the elements of top-level
/// arrays and every other top-level value, each appended to the batch as one
/// line (line breaks between tokens become spaces; a JSON string cannot hold
/// a raw one). Streams: memory holds one record, whatever the file's size.
pub(super) struct JsonRecords {
    in_array: bool,
}

impl JsonRecords {
    /// `None` when the input is NDJSON (its first record ends on its first
    /// line): lines are cut faster than records.
    fn sniff(reader: &mut impl BufRead) -> std::io::Result<Option<Self>> {
        let head = reader.fill_buf()?;
        let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        let Some(at) = head.iter().position(|b| !b.is_ascii_whitespace()) else {
            return Ok(None);
        };
        let text = &head[at..];
        if text[0] == b'[' {
            return Ok(Some(Self { in_array: false }));
        }
        let line = &text[..memchr::memchr(b'\n', text).unwrap_or(text.len())];
        let mut depth = 0i64;
        let mut closed = false;
        let mut strings = Strings::default();
        for &b in line {
            if !strings.outside(b) {
                continue;
            }
            match b {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    closed |= depth == 0;
                }
                _ => {}
            }
        }
        Ok((!closed || depth != 0).then_some(Self { in_array: false }))
    }

    /// Skips white space, commas and brackets of arrays up to the next
    /// record; false when the input ends first.
    fn skip_between(&mut self, reader: &mut impl BufRead) -> std::io::Result<bool> {
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let mut i = 0;
            if buf.starts_with(b"\xEF\xBB\xBF") {
                i = 3;
            }
            while i < buf.len() {
                match buf[i] {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b',' if self.in_array => {}
                    b']' if self.in_array => self.in_array = false,
                    b'[' if !self.in_array => self.in_array = true,
                    _ => break,
                }
                i += 1;
            }
            let found = i < buf.len();
            reader.consume(i);
            if found {
                return Ok(true);
            }
        }
    }

    /// Appends the next record and a line break to `out`; returns the bytes
    /// appended, 0 at the end of the input.
    fn next(&mut self, reader: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
        if !self.skip_between(reader)? {
            return Ok(0);
        }
        let start = out.len();
        let mut depth = 0i64;
        let mut strings = Strings::default();
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break; // cut short: the parser says why
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if !strings.outside(b) {
                    continue;
                }
                match b {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 1 => depth -= 1,
                    b'}' | b']' if depth == 1 => {
                        end = Some(i + 1);
                        break;
                    }
                    // A scalar or a stray closer at the top ends here (a
                    // stray closer alone is a record, so it is reported).
                    b'}' | b']' | b',' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {
                        end = Some(if i == 0 && out.len() == start { 1 } else { i });
                        break;
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(buf.len());
            out.extend(
                buf[..take]
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
            );
            reader.consume(take);
            if end.is_some() {
                break;
            }
        }
        out.push(b'\n');
        Ok(out.len() - start)
    }
}

/// Splits a batch's units into work items of roughly equal size.
pub(super) fn work_items(batch: &Batch, threads: usize) -> Vec<(usize, u64, usize, usize)> {
    // (unit index, first line, start, end) — CSV units are one item each.
    let target = (batch.buf.len() / (threads * 4)).max(1 << 20);
    let mut items = Vec::new();
    for (u, unit) in batch.units.iter().enumerate() {
        match *unit {
            Unit::Csv { .. } => items.push((u, 1, 0, 0)),
            Unit::Lines {
                first_line,
                start,
                end,
                ..
            } => {
                let mut pos = start;
                let mut line = first_line;
                while pos < end {
                    let mut cut = (pos + target).min(end);
                    if cut < end {
                        cut = match memchr::memchr(b'\n', &batch.buf[cut..end]) {
                            Some(i) => cut + i + 1,
                            None => end,
                        };
                    }
                    items.push((u, line, pos, cut));
                    line += memchr::memchr_iter(b'\n', &batch.buf[pos..cut]).count() as u64;
                    pos = cut;
                }
            }
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::{JsonRecords, read_lines};

    /// Where batches of `limit` bytes end (line counts) when `text` is read
    /// through a buffer of `capacity` bytes, and the text they hold.
    fn cuts(text: &str, capacity: usize, limit: usize) -> (Vec<u64>, Vec<u8>) {
        let mut reader = std::io::BufReader::with_capacity(capacity, text.as_bytes());
        let (mut buf, mut all, mut cuts, mut lines) = (Vec::new(), Vec::new(), Vec::new(), 0);
        loop {
            let n = read_lines(&mut reader, &mut buf, limit).unwrap();
            lines += n;
            if n == 0 || buf.len() >= limit {
                cuts.push(lines);
                all.append(&mut buf);
            }
            if n == 0 {
                return (cuts, all);
            }
        }
    }

    #[test]
    fn batches_end_after_the_same_line_whatever_the_reads_return() {
        let text = "a\nbb\nccc\n\ndddd\neeeee\nff\ng\nhhhhhhhhhhhhhhhhhhhhhhhh\nlast";
        let expected = cuts(text, 1, 6);
        assert_eq!(expected.0, [3, 5, 6, 9, 10]);
        for capacity in [2, 3, 5, 7, 8, 64, 4096] {
            assert_eq!(
                cuts(text, capacity, 6),
                expected,
                "buffer of {capacity} bytes"
            );
        }
        assert_eq!(expected.1, text.as_bytes(), "every byte once, in order");
    }

    /// The records `text` is cut into (None when it is NDJSON).
    fn records(text: &str) -> Option<Vec<String>> {
        let mut reader = std::io::BufReader::with_capacity(7, text.as_bytes());
        let mut cut = JsonRecords::sniff(&mut reader).unwrap()?;
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            if cut.next(&mut reader, &mut buf).unwrap() == 0 {
                return Some(out);
            }
            assert_eq!(buf.pop(), Some(b'\n'));
            assert!(!buf.contains(&b'\n'), "one line per record");
            out.push(String::from_utf8(buf).unwrap());
        }
    }

    #[test]
    fn arrays_and_pretty_documents_are_cut_into_records() {
        assert_eq!(records("{\"a\":1}\n{\"a\":2}\n"), None, "NDJSON");
        assert_eq!(
            records(" [ {\"a\": \"x,]}\\\"\"},\n {\"b\": [1, {}]} ]\n").unwrap(),
            [r#"{"a": "x,]}\""}"#, r#"{"b": [1, {}]}"#]
        );
        assert_eq!(
            records("{\n  \"a\": 1\n}\n{\n  \"b\": 2\n}").unwrap(),
            [r#"{   "a": 1 }"#, r#"{   "b": 2 }"#]
        );
        assert_eq!(
            records("\u{feff}[{\"a\":1}][{\"b\":2}]").unwrap(),
            [r#"{"a":1}"#, r#"{"b":2}"#],
            "a BOM, then arrays one after another"
        );
        // Cut short or stray: each piece is a record, for the parser to refuse.
        assert_eq!(
            records("[{\"a\":1},{\"b\":").unwrap(),
            [r#"{"a":1}"#, r#"{"b":"#]
        );
        assert_eq!(records("[1, \"x\", }]").unwrap(), ["1", r#""x""#, "}"]);
    }
}
