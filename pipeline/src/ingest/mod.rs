//! Landing → lake, exactly once.
//!
//! For each kind, the landing files not yet in the ledger are cut into
//! batches of at most `batch_bytes` of text (at line boundaries, across
//! files). A batch is parsed on all cores, checked row by row (bad rows go to
//! the quarantine with their reason), deduplicated on its ids within itself
//! and against the lake, and published:
//!
//! 1. one Parquet file per touched partition, `part-<batch>.parquet`;
//! 2. the batch's quarantine file;
//! 3. the batch's ledger entry — the commit point.
//!
//! The batch id is a hash of what the batch reads (paths, content hashes,
//! line ranges), so a run killed anywhere and started again cuts the same
//! batches, skips the committed ones, and rewrites the files of the
//! interrupted one under the same names. Deduplication against the lake
//! ignores the batch's own files, so a rewrite never loses its rows. Every
//! file is a single atomic put: readers see whole files or none.
//!
//! Reference kinds are keyed snapshots: all new files of a kind are merged
//! into the current snapshot (latest wins) and the one snapshot file is
//! replaced atomically.

pub mod id_index;
pub mod records;
pub mod source;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, info_span, warn};

use self::id_index::IdIndex;
use self::records::{Kind, Rows};
use self::source::{Format, Source};
use crate::lake::tables::{LakeTable, quarantine_schema};
use crate::lake::{Store, parquet_io, partition_folder};
use crate::{Error, Result};

/// How to ingest.
#[derive(Clone)]
pub struct IngestOptions {
    /// Text per batch; bounds memory to a small multiple of it.
    pub batch_bytes: usize,
    /// Parser threads.
    pub threads: usize,
    /// Key of the ip_address hash; without one, addresses are dropped.
    pub hash_key: Option<Vec<u8>>,
    /// Called with the number of landing bytes just processed.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// The time written to `ingested_at` (injectable for tests).
    pub now: DateTime<Utc>,
    /// The institution zone: a date-only `due_at`, `enrolled_at` or
    /// `withdrawn_at` names a day in it (PRODUCT §3).
    pub timezone: chrono_tz::Tz,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            batch_bytes: 256 << 20,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_key: None,
            progress: None,
            now: Utc::now(),
            timezone: chrono_tz::Tz::UTC,
        }
    }
}

/// What one kind's ingest did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct KindReport {
    /// Landing files read this run.
    pub files: usize,
    /// Landing files skipped because the ledger already has them.
    pub files_skipped: usize,
    /// Bytes of the files read.
    pub bytes: u64,
    /// Rows written to the lake.
    pub rows_accepted: u64,
    /// Rows dropped because their id was already seen (in the batch or the lake).
    pub duplicates: u64,
    /// Rows sent to the quarantine.
    pub rows_quarantined: u64,
    /// Whole files sent to the quarantine.
    pub files_quarantined: usize,
    /// Batches already committed by an earlier, interrupted run.
    pub batches_resumed: usize,
    /// Enrollments: rows with status withdrawn and no withdrawn_at, dated
    /// by this ingest (PRODUCT §3).
    pub withdrawals_inferred: u64,
    /// Rows naming a reference the lake does not have: enrollments of an
    /// unknown course, attempts of an unknown assessment. Kept, and listed
    /// by the `unknown_references` view.
    pub unknown_references: u64,
}

impl KindReport {
    fn add(&mut self, other: &KindReport) {
        self.files += other.files;
        self.files_skipped += other.files_skipped;
        self.bytes += other.bytes;
        self.rows_accepted += other.rows_accepted;
        self.duplicates += other.duplicates;
        self.rows_quarantined += other.rows_quarantined;
        self.files_quarantined += other.files_quarantined;
        self.batches_resumed += other.batches_resumed;
        self.withdrawals_inferred += other.withdrawals_inferred;
        self.unknown_references += other.unknown_references;
    }
}

/// What an ingest run did, by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub kinds: BTreeMap<String, KindReport>,
    /// Landing files that belong to no kind.
    pub ignored: Vec<String>,
    pub seconds: f64,
}

impl IngestReport {
    /// The sum over kinds.
    pub fn total(&self) -> KindReport {
        let mut total = KindReport::default();
        for k in self.kinds.values() {
            total.add(k);
        }
        total
    }
}

/// One entry of the ingest ledger (`_meta/ingest_ledger/<kind>-<batch>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub batch_id: String,
    pub kind: String,
    pub committed_at: DateTime<Utc>,
    pub sources: Vec<LedgerSource>,
    pub rows_accepted: u64,
    pub duplicates: u64,
    pub rows_quarantined: u64,
}

/// The part of one landing file a batch read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerSource {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub version: String,
    /// First and last line read (1-based); 0, 0 for a whole-file quarantine.
    pub first_line: u64,
    pub last_line: u64,
    /// This batch read the file to its end.
    pub complete: bool,
}

const LEDGER: &str = "_meta/ingest_ledger";

struct Ledger {
    committed: HashSet<String>,
    /// (path, size, version) → sha256 of files read to their end.
    done_by_version: HashMap<(String, u64, String), String>,
    /// (path, size, sha256) of files read to their end.
    done: HashSet<(String, u64, String)>,
}

impl Ledger {
    async fn load(lake: &Store) -> Result<Self> {
        let mut ledger = Ledger {
            committed: HashSet::new(),
            done_by_version: HashMap::new(),
            done: HashSet::new(),
        };
        for meta in lake.list(LEDGER).await? {
            let rel = lake.relative(&meta.location);
            if !rel.ends_with(".json") {
                continue;
            }
            let bytes = lake.get(&rel).await?;
            let entry: LedgerEntry =
                serde_json::from_slice(&bytes).map_err(|e| Error::ReadTable {
                    table: format!("{rel} (ingest ledger)"),
                    source: Box::new(e),
                })?;
            for s in entry.sources.iter().filter(|s| s.complete) {
                ledger.done_by_version.insert(
                    (s.path.clone(), s.size, s.version.clone()),
                    s.sha256.clone(),
                );
                ledger
                    .done
                    .insert((s.path.clone(), s.size, s.sha256.clone()));
            }
            ledger.committed.insert(entry.batch_id);
        }
        Ok(ledger)
    }
}

/// A source that passed inspection, with its content hash.
#[derive(Clone)]
struct Pending {
    source: Source,
    sha256: String,
}

/// Rejected input on its way to the quarantine.
struct Rejected {
    source: usize,
    line: Option<u64>,
    raw: String,
    reason: String,
}

/// Ingests every new landing file into the lake.
pub async fn ingest(
    lake: &Store,
    landing: &Store,
    options: &IngestOptions,
) -> Result<IngestReport> {
    let started = Instant::now();
    let stale = lake.remove_stale_uploads()?;
    if stale > 0 {
        info!(files = stale, "removed staging files of an interrupted run");
    }
    let objects = landing.list("").await?;
    let (sources, ignored) = source::classify(landing, &objects);
    for path in &ignored {
        info!(
            path,
            "landing file belongs to no kind; ignored (expected activity/, attempts/, students.*, courses.*, enrollments.*, assessments.*)"
        );
    }
    let mut report = IngestReport {
        ignored,
        ..Default::default()
    };
    let ledger = Ledger::load(lake).await?;
    for kind in Kind::ALL {
        let of_kind: Vec<Source> = sources.iter().filter(|s| s.kind == kind).cloned().collect();
        let span = info_span!("ingest", kind = kind.name());
        let _enter = span.enter();
        let kind_report = ingest_kind(lake, landing, kind, of_kind, &ledger, options).await?;
        info!(
            files = kind_report.files,
            skipped = kind_report.files_skipped,
            accepted = kind_report.rows_accepted,
            duplicates = kind_report.duplicates,
            quarantined = kind_report.rows_quarantined,
            files_quarantined = kind_report.files_quarantined,
            "ingested"
        );
        report.kinds.insert(kind.name().to_string(), kind_report);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn ingest_kind(
    lake: &Store,
    landing: &Store,
    kind: Kind,
    sources: Vec<Source>,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<KindReport> {
    let mut report = KindReport::default();
    let mut pending = Vec::new();
    for source in sources {
        let version_key = (source.path.clone(), source.size, source.version.clone());
        if ledger.done_by_version.contains_key(&version_key) {
            report.files_skipped += 1;
            progress(options, source.size);
            continue;
        }
        let inspected = {
            let (landing, source) = (landing.clone(), source.clone());
            blocking(move || source::inspect(&landing, &source)).await?
        };
        if ledger
            .done
            .contains(&(source.path.clone(), source.size, inspected.sha256.clone()))
        {
            report.files_skipped += 1;
            progress(options, source.size);
            continue;
        }
        report.files += 1;
        report.bytes += source.size;
        if let Some(reason) = inspected.unreadable {
            warn!(path = source.path, reason, "file quarantined whole");
            let pending = Pending {
                source,
                sha256: inspected.sha256,
            };
            quarantine_whole_file(
                lake,
                kind,
                &pending,
                &inspected.head,
                &reason,
                ledger,
                options,
            )
            .await?;
            report.files_quarantined += 1;
            progress(options, pending.source.size);
            continue;
        }
        pending.push(Pending {
            source,
            sha256: inspected.sha256,
        });
    }
    if pending.is_empty() {
        return Ok(report);
    }
    let batch_report = if kind.is_event() {
        ingest_events(lake, landing, kind, pending, ledger, options).await?
    } else {
        ingest_reference(lake, landing, kind, pending, ledger, options).await?
    };
    report.add(&batch_report);
    Ok(report)
}

fn progress(options: &IngestOptions, bytes: u64) {
    if let Some(p) = &options.progress {
        p(bytes);
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Worker(format!("a worker thread failed: {e}")))?
}

// ---------------------------------------------------------------------------
// Batches

/// A run of input inside a batch.
enum Unit {
    /// NDJSON lines `buf[start..end]` of source `source`, the first being `first_line`.
    Lines {
        source: usize,
        first_line: u64,
        start: usize,
        end: usize,
    },
    /// A whole CSV file's text.
    Csv { source: usize, text: Vec<u8> },
}

struct Batch {
    kind: Kind,
    buf: Vec<u8>,
    units: Vec<Unit>,
    sources: Vec<LedgerSource>,
}

impl Batch {
    fn new(kind: Kind) -> Self {
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
    fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kind.name());
        for s in &self.sources {
            h.update([0]);
            h.update(&s.path);
            h.update([0]);
            h.update(&s.sha256);
            h.update(format!(":{}:{}:{}", s.first_line, s.last_line, s.complete));
        }
        hex::encode(&h.finalize()[..10])
    }
}

/// Streams the pending files' text into batches and ingests each one.
async fn ingest_events(
    lake: &Store,
    landing: &Store,
    kind: Kind,
    pending: Vec<Pending>,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<KindReport> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
    let reader = {
        let (landing, options) = (landing.clone(), options.clone());
        let pending = pending.clone();
        tokio::task::spawn_blocking(move || cut_batches(&landing, kind, &pending, &options, &tx))
    };
    let mut report = KindReport::default();
    let mut index = IdIndex::open(lake, kind, options.batch_bytes.saturating_mul(2)).await?;
    // Attempts of an assessment the lake does not know are kept and reported.
    let assessments = match kind {
        Kind::Attempts => Some(snapshot_ids(lake, LakeTable::Assessments, "assessment_id").await?),
        _ => None,
    };
    while let Some(batch) = rx.recv().await {
        let id = batch.id();
        if ledger.committed.contains(&id) {
            report.batches_resumed += 1;
            info!(
                batch = id,
                "batch already committed by an earlier run; skipped"
            );
            continue;
        }
        let r = ingest_event_batch(
            lake,
            &mut index,
            assessments.as_ref(),
            batch,
            &id,
            &pending,
            options,
        )
        .await?;
        report.add(&r);
    }
    reader
        .await
        .map_err(|e| Error::Worker(format!("the reader thread failed: {e}")))??;
    index.compact(lake).await?;
    Ok(report)
}

/// Reads the pending sources in order and sends batches of about
/// `batch_bytes` of text, cut at line boundaries.
fn cut_batches(
    landing: &Store,
    kind: Kind,
    pending: &[Pending],
    options: &IngestOptions,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> Result<()> {
    let mut batch = Batch::new(kind);
    let send = |batch: Batch| -> Result<()> {
        tx.blocking_send(batch)
            .map_err(|_| Error::Worker("ingest stopped before the reader finished".into()))
    };
    for (index, p) in pending.iter().enumerate() {
        let source = &p.source;
        let ledger_source = |first_line: u64, last_line: u64, complete: bool| LedgerSource {
            path: source.path.clone(),
            size: source.size,
            sha256: p.sha256.clone(),
            version: source.version.clone(),
            first_line,
            last_line,
            complete,
        };
        let read_err = |e: std::io::Error| Error::ReadFile {
            path: source.path.clone().into(),
            source: e,
        };
        let raw = source::open_raw(landing, source)?;
        let mut reader = BufReader::with_capacity(
            1 << 20,
            source::decompress(raw, source.compression).map_err(read_err)?,
        );
        if source.format == Some(Format::Csv) {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut text).map_err(read_err)?;
            let lines = text.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            batch.units.push(Unit::Csv {
                source: index,
                text,
            });
            batch.sources.push(ledger_source(1, lines, true));
            progress(options, source.size);
            if batch.text_len() >= options.batch_bytes {
                send(std::mem::replace(&mut batch, Batch::new(kind)))?;
            }
            continue;
        }
        let mut line_no = 0u64;
        let mut first_line = 1u64;
        let mut start = batch.buf.len();
        loop {
            let before = batch.buf.len();
            let n = reader.read_until(b'\n', &mut batch.buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if batch.buf[before..].last() != Some(&b'\n') {
                batch.buf.push(b'\n');
            }
            if batch.buf.len() >= options.batch_bytes {
                batch.units.push(Unit::Lines {
                    source: index,
                    first_line,
                    start,
                    end: batch.buf.len(),
                });
                // Whether the file ends here decides `complete`: peek.
                let at_end = reader.fill_buf().map_err(read_err)?.is_empty();
                batch
                    .sources
                    .push(ledger_source(first_line, line_no, at_end));
                send(std::mem::replace(&mut batch, Batch::new(kind)))?;
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

/// The result of parsing one slice of a batch.
struct Parsed {
    rows: RecordBatch,
    keys: Vec<String>,
    dates: Vec<i32>,
    rejected: Vec<Rejected>,
}

/// Splits a batch's units into work items of roughly equal size.
fn work_items(batch: &Batch, threads: usize) -> Vec<(usize, u64, usize, usize)> {
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
                        cut = match batch.buf[cut..end].iter().position(|&b| b == b'\n') {
                            Some(i) => cut + i + 1,
                            None => end,
                        };
                    }
                    items.push((u, line, pos, cut));
                    line += batch.buf[pos..cut].iter().filter(|&&b| b == b'\n').count() as u64;
                    pos = cut;
                }
            }
        }
    }
    items
}

fn parse_item(batch: &Batch, item: (usize, u64, usize, usize), options: &IngestOptions) -> Parsed {
    let (u, first_line, start, end) = item;
    let mut rows = Rows::new(batch.kind, options.hash_key.as_deref()).in_zone(options.timezone);
    let mut rejected = Vec::new();
    match &batch.units[u] {
        Unit::Lines { source, .. } => {
            let mut line = first_line;
            for raw in batch.buf[start..end].split(|&b| b == b'\n') {
                let this = line;
                line += 1;
                let mut text = raw;
                if this == 1 && text.starts_with(b"\xEF\xBB\xBF") {
                    text = &text[3..];
                }
                if text.last() == Some(&b'\r') {
                    text = &text[..text.len() - 1];
                }
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(reason) = source::line_problem(text, false) {
                    rejected.push(Rejected {
                        source: *source,
                        line: Some(this),
                        raw: lossy(text),
                        reason,
                    });
                    continue;
                }
                if let Err(reason) = rows.push_json(text) {
                    rejected.push(Rejected {
                        source: *source,
                        line: Some(this),
                        raw: lossy(text),
                        reason,
                    });
                }
            }
        }
        Unit::Csv { source, text } => parse_csv(*source, text, &mut rows, &mut rejected),
    }
    let keys = std::mem::take(&mut rows.keys);
    let dates = std::mem::take(&mut rows.dates);
    Parsed {
        rows: rows.finish(),
        keys,
        dates,
        rejected,
    }
}

fn parse_csv(source: usize, text: &[u8], rows: &mut Rows, rejected: &mut Vec<Rejected>) {
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
                if let Err(reason) = rows.push_csv(&record, &headers) {
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

fn lossy(bytes: &[u8]) -> String {
    let cut = bytes.len().min(65_536);
    String::from_utf8_lossy(&bytes[..cut]).into_owned()
}

/// Parses `batch` on all threads, keeping the order of its input.
fn parse_batch(batch: &Batch, options: &IngestOptions) -> Vec<Parsed> {
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

/// A fast hasher with a fixed seed for the in-batch id set: SipHash showed
/// up in ingest profiles.
type FastState = foldhash::fast::FixedState;

async fn ingest_event_batch(
    lake: &Store,
    index: &mut IdIndex,
    assessments: Option<&HashSet<String>>,
    batch: Batch,
    id: &str,
    pending: &[Pending],
    options: &IngestOptions,
) -> Result<KindReport> {
    let kind = batch.kind;
    let table = kind.table();
    let column = table
        .partition_column()
        .expect("event tables are partitioned");
    let span = info_span!("batch", batch = id, sources = batch.sources.len());
    let _enter = span.enter();

    let batch = Arc::new(batch);
    let parsed = {
        let (batch, options) = (batch.clone(), options.clone());
        blocking(move || Ok(parse_batch(&batch, &options))).await?
    };

    // Dedup inside the batch, first occurrence wins.
    let mut seen: HashSet<&str, FastState> = HashSet::default();
    let mut by_date: BTreeMap<i32, Vec<Vec<u32>>> = BTreeMap::new();
    let mut duplicates = 0u64;
    for (p, part) in parsed.iter().enumerate() {
        for (row, key) in part.keys.iter().enumerate() {
            if !seen.insert(key.as_str()) {
                duplicates += 1;
                continue;
            }
            let slots = by_date
                .entry(part.dates[row])
                .or_insert_with(|| vec![Vec::new(); parsed.len()]);
            slots[p].push(row as u32);
        }
    }
    drop(seen);

    // Dedup against the whole lake (any partition), ignoring this batch's
    // own files (a rewrite after a crash).
    let own_file = format!("part-{id}.parquet");
    let mut candidates: Vec<(usize, u32)> = Vec::new();
    let mut candidate_keys: Vec<&str> = Vec::new();
    for slots in by_date.values() {
        for (p, rows) in slots.iter().enumerate() {
            for &r in rows {
                candidates.push((p, r));
                candidate_keys.push(parsed[p].keys[r as usize].as_str());
            }
        }
    }
    let in_lake = index.contains(lake, &candidate_keys, &own_file).await?;
    let mut in_lake = in_lake.into_iter();
    let mut writes = Vec::new();
    let mut accepted_keys: Vec<(&str, i32)> = Vec::new();
    for (&date, slots) in by_date.iter_mut() {
        for (p, rows) in slots.iter_mut().enumerate() {
            let before = rows.len();
            rows.retain(|_| !in_lake.next().expect("one answer per key"));
            duplicates += (before - rows.len()) as u64;
            accepted_keys.extend(
                rows.iter()
                    .map(|&r| (parsed[p].keys[r as usize].as_str(), date)),
            );
        }
    }
    let accepted = accepted_keys.len() as u64;
    // The index covers the data before the data exists (see id_index).
    index.add(lake, id, &accepted_keys, &own_file).await?;
    drop(accepted_keys);
    drop(candidate_keys);
    drop(candidates);
    let mut unknown_references = 0u64;
    for (date, slots) in by_date {
        if slots.iter().all(Vec::is_empty) {
            continue;
        }
        if let Some(known) = assessments {
            unknown_references += unknown_assessments(&parsed, &slots, known);
        }
        let folder = partition_folder(table.name(), column, &date_string(date))?;
        writes.push((format!("{folder}/{own_file}"), slots));
    }

    // Encode partitions on all threads, publishing each file as it is ready.
    let rows: Vec<RecordBatch> = parsed.iter().map(|p| p.rows.clone()).collect();
    let schema = table.file_schema().expect("event tables have a schema");
    let handle = tokio::runtime::Handle::current();
    {
        let (lake, rows, schema) = (lake.clone(), Arc::new(rows), schema.clone());
        let threads = options.threads.max(1);
        blocking(move || {
            let next = AtomicUsize::new(0);
            let failure: Mutex<Option<Error>> = Mutex::new(None);
            std::thread::scope(|scope| {
                for _ in 0..threads.min(writes.len().max(1)) {
                    scope.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((path, slots)) = writes.get(i) else {
                                break;
                            };
                            let result = (|| -> Result<()> {
                                let mut parts = Vec::new();
                                for (p, indices) in slots.iter().enumerate() {
                                    if !indices.is_empty() {
                                        let idx = UInt32Array::from(indices.clone());
                                        parts.push(take_record_batch(&rows[p], &idx)?);
                                    }
                                }
                                let one = concat_batches(&schema, &parts)?;
                                let data = parquet_io::encode(&schema, &[one])?;
                                handle.block_on(lake.put(path, data))?;
                                crash_point();
                                Ok(())
                            })();
                            if let Err(e) = result {
                                failure.lock().expect("no poison").get_or_insert(e);
                                break;
                            }
                        }
                    });
                }
            });
            match failure.into_inner().expect("no poison") {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await?;
    }

    let rejected: Vec<&Rejected> = parsed.iter().flat_map(|p| p.rejected.iter()).collect();
    let sources: Vec<&str> = pending.iter().map(|p| p.source.path.as_str()).collect();
    write_quarantine(lake, kind, id, &rejected, &sources, options).await?;
    let entry = LedgerEntry {
        batch_id: id.to_string(),
        kind: kind.name().to_string(),
        committed_at: options.now,
        sources: batch.sources.clone(),
        rows_accepted: accepted,
        duplicates,
        rows_quarantined: rejected.len() as u64,
    };
    commit(lake, &entry).await?;
    if !rejected.is_empty() {
        warn!(
            rows = rejected.len(),
            "rows quarantined; see _quarantine/{}",
            kind.name()
        );
    }
    if unknown_references > 0 {
        warn!(
            attempts = unknown_references,
            "attempts of assessments missing from assessments; see `learnlake sql \"SELECT * FROM unknown_references\"`"
        );
    }
    Ok(KindReport {
        rows_accepted: accepted,
        duplicates,
        rows_quarantined: rejected.len() as u64,
        unknown_references,
        ..Default::default()
    })
}

/// How many of the rows `slots` picks from `parsed` name an assessment not in `known`.
fn unknown_assessments(parsed: &[Parsed], slots: &[Vec<u32>], known: &HashSet<String>) -> u64 {
    let mut n = 0;
    for (p, rows) in slots.iter().enumerate() {
        let Some(ids) = parsed[p]
            .rows
            .column_by_name("assessment_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            continue;
        };
        n += rows
            .iter()
            .filter(|&&r| !known.contains(ids.value(r as usize)))
            .count() as u64;
    }
    n
}

fn key_column(kind: Kind) -> &'static str {
    match kind {
        Kind::Activity => "event_id",
        Kind::Attempts => "attempt_id",
        Kind::Students => "student_id",
        Kind::Courses => "course_id",
        Kind::Enrollments => "student_id",
        Kind::Assessments => "assessment_id",
    }
}

/// `YYYY-MM-DD` of days since 1970-01-01.
pub fn date_string(days: i32) -> String {
    (chrono::NaiveDate::default() + chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%d")
        .to_string()
}

async fn commit(lake: &Store, entry: &LedgerEntry) -> Result<()> {
    let json = serde_json::to_vec_pretty(entry).map_err(|e| Error::WriteTable {
        table: LEDGER.into(),
        source: Box::new(e),
    })?;
    lake.put(
        &format!("{LEDGER}/{}-{}.json", entry.kind, entry.batch_id),
        Bytes::from(json),
    )
    .await?;
    crash_point();
    Ok(())
}

async fn write_quarantine(
    lake: &Store,
    kind: Kind,
    id: &str,
    rejected: &[&Rejected],
    sources: &[&str],
    options: &IngestOptions,
) -> Result<()> {
    if rejected.is_empty() {
        return Ok(());
    }
    let folder = format!("_quarantine/{}", kind.name());
    let file = format!("part-{id}.parquet");
    // A rewrite after a crash goes where the first attempt put it.
    let existing = lake
        .list(&folder)
        .await?
        .into_iter()
        .map(|m| lake.relative(&m.location))
        .find(|rel| rel.ends_with(&format!("/{file}")));
    let path = match existing {
        Some(path) => path,
        None => format!(
            "{}/{file}",
            partition_folder(
                &folder,
                "ingest_date",
                &options.now.format("%Y-%m-%d").to_string()
            )?
        ),
    };
    let mut source_file = StringBuilder::new();
    let mut line_number = Int64Builder::new();
    let mut raw = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut at = TimestampMicrosecondBuilder::new();
    for r in rejected {
        source_file.append_value(sources[r.source]);
        line_number.append_option(r.line.map(|l| l as i64));
        raw.append_value(&r.raw);
        reason.append_value(&r.reason);
        at.append_value(options.now.timestamp_micros());
    }
    let schema = quarantine_schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(source_file.finish()),
        Arc::new(line_number.finish()),
        Arc::new(raw.finish()),
        Arc::new(reason.finish()),
        Arc::new(at.finish().with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    lake.put(&path, parquet_io::encode(&schema, &[batch])?)
        .await?;
    crash_point();
    Ok(())
}

async fn quarantine_whole_file(
    lake: &Store,
    kind: Kind,
    pending: &Pending,
    head: &[u8],
    reason: &str,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<()> {
    let source = LedgerSource {
        path: pending.source.path.clone(),
        size: pending.source.size,
        sha256: pending.sha256.clone(),
        version: pending.source.version.clone(),
        first_line: 0,
        last_line: 0,
        complete: true,
    };
    let mut batch = Batch::new(kind);
    batch.sources.push(source.clone());
    let id = batch.id();
    if ledger.committed.contains(&id) {
        return Ok(());
    }
    let rejected = Rejected {
        source: 0,
        line: None,
        raw: lossy(head),
        reason: reason.to_string(),
    };
    write_quarantine(
        lake,
        kind,
        &id,
        &[&rejected],
        &[pending.source.path.as_str()],
        options,
    )
    .await?;
    commit(
        lake,
        &LedgerEntry {
            batch_id: id,
            kind: kind.name().to_string(),
            committed_at: options.now,
            sources: vec![source],
            rows_accepted: 0,
            duplicates: 0,
            rows_quarantined: 1,
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// Reference snapshots

async fn ingest_reference(
    lake: &Store,
    landing: &Store,
    kind: Kind,
    pending: Vec<Pending>,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<KindReport> {
    let table = kind.table();
    let snapshot_path = table
        .snapshot_file()
        .expect("reference tables are snapshots");
    let mut batch = Batch::new(kind);
    for (index, p) in pending.iter().enumerate() {
        let text = {
            let (landing, source) = (landing.clone(), p.source.clone());
            blocking(move || {
                let raw = source::open_raw(&landing, &source)?;
                let mut text = Vec::new();
                std::io::Read::read_to_end(
                    &mut source::decompress(raw, source.compression).map_err(|e| {
                        Error::ReadFile {
                            path: source.path.clone().into(),
                            source: e,
                        }
                    })?,
                    &mut text,
                )
                .map_err(|e| Error::ReadFile {
                    path: source.path.clone().into(),
                    source: e,
                })?;
                Ok(text)
            })
            .await?
        };
        let lines = text.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        match p.source.format {
            Some(Format::Csv) => batch.units.push(Unit::Csv {
                source: index,
                text,
            }),
            _ => {
                let start = batch.buf.len();
                batch.buf.extend_from_slice(&text);
                if !text.ends_with(b"\n") {
                    batch.buf.push(b'\n');
                }
                batch.units.push(Unit::Lines {
                    source: index,
                    first_line: 1,
                    start,
                    end: batch.buf.len(),
                });
            }
        }
        batch.sources.push(LedgerSource {
            path: p.source.path.clone(),
            size: p.source.size,
            sha256: p.sha256.clone(),
            version: p.source.version.clone(),
            first_line: 1,
            last_line: lines,
            complete: true,
        });
        progress(options, p.source.size);
    }
    let id = batch.id();
    if ledger.committed.contains(&id) {
        return Ok(KindReport {
            batches_resumed: 1,
            ..Default::default()
        });
    }
    let parsed: Vec<Parsed> = (0..batch.units.len())
        .map(|u| {
            let item = match batch.units[u] {
                Unit::Lines {
                    first_line,
                    start,
                    end,
                    ..
                } => (u, first_line, start, end),
                Unit::Csv { .. } => (u, 1, 0, 0),
            };
            parse_item(&batch, item, options)
        })
        .collect();

    // Current snapshot first, then the new rows in order: the last one of a key wins.
    let schema = table.file_schema().expect("reference tables have a schema");
    let mut inputs: Vec<RecordBatch> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    if let Some(data) = lake.get_opt(&snapshot_path).await? {
        for b in parquet_io::decode(data, None)? {
            keys.extend(reference_keys(kind, &b)?);
            inputs.push(b);
        }
    }
    let old_rows = keys.len();
    let mut new_rows = 0u64;
    for p in &parsed {
        keys.extend(p.keys.iter().cloned());
        new_rows += p.keys.len() as u64;
        inputs.push(p.rows.clone());
    }
    let all = concat_batches(&schema, &inputs)?;
    let mut winner: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        winner.insert(key.as_str(), i as u32);
    }
    let indices = UInt32Array::from(winner.values().copied().collect::<Vec<_>>());
    let mut snapshot = take_record_batch(&all, &indices)?;
    let mut withdrawals_inferred = 0;
    if kind == Kind::Enrollments {
        (snapshot, withdrawals_inferred) =
            infer_withdrawals(&all, &keys[..old_rows], snapshot, winner.values(), options)?;
    }
    let unknown_references = if kind == Kind::Enrollments {
        unknown_courses(lake, &snapshot).await?
    } else {
        0
    };
    lake.put(&snapshot_path, parquet_io::encode(&schema, &[snapshot])?)
        .await?;
    crash_point();
    if withdrawals_inferred > 0 {
        warn!(
            enrollments = withdrawals_inferred,
            "enrollments with status withdrawn and no withdrawn_at: withdrawn as of this ingest ({})",
            options.now.to_rfc3339()
        );
    }
    if unknown_references > 0 {
        warn!(
            enrollments = unknown_references,
            "enrollments of courses missing from courses; see `learnlake sql \"SELECT * FROM unknown_references\"`"
        );
    }

    let rejected: Vec<&Rejected> = parsed.iter().flat_map(|p| p.rejected.iter()).collect();
    let sources: Vec<&str> = pending.iter().map(|p| p.source.path.as_str()).collect();
    write_quarantine(lake, kind, &id, &rejected, &sources, options).await?;
    commit(
        lake,
        &LedgerEntry {
            batch_id: id,
            kind: kind.name().to_string(),
            committed_at: options.now,
            sources: batch.sources.clone(),
            rows_accepted: new_rows,
            duplicates: 0,
            rows_quarantined: rejected.len() as u64,
        },
    )
    .await?;
    Ok(KindReport {
        rows_accepted: new_rows,
        rows_quarantined: rejected.len() as u64,
        withdrawals_inferred,
        unknown_references,
        ..Default::default()
    })
}

/// PRODUCT §3: an enrollment whose status is `withdrawn` and that has no
/// `withdrawn_at` is withdrawn as of the ingest of the snapshot that first
/// said so. A re-sent row keeps the withdrawal time the lake already has, so
/// re-ingesting never moves a withdrawal later. Returns the snapshot and how
/// many withdrawals this ingest dated.
fn infer_withdrawals<'a>(
    all: &RecordBatch,
    old_keys: &[String],
    snapshot: RecordBatch,
    winners: impl Iterator<Item = &'a u32>,
    options: &IngestOptions,
) -> Result<(RecordBatch, u64)> {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    let column = |batch: &RecordBatch, name: &str| -> Result<ArrayRef> {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::ReadTable {
                table: "enrollments".into(),
                source: format!("snapshot has no column {name}").into(),
            })
    };
    let status = column(all, "status")?;
    let status = status.as_any().downcast_ref::<StringArray>();
    let withdrawn_at = column(all, "withdrawn_at")?;
    let withdrawn_at = withdrawn_at
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>();
    let (Some(status), Some(withdrawn_at)) = (status, withdrawn_at) else {
        return Err(Error::ReadTable {
            table: "enrollments".into(),
            source: "status or withdrawn_at has an unexpected type".into(),
        });
    };
    let withdrawn = |i: usize| status.is_valid(i) && status.value(i) == "withdrawn";
    // The withdrawal time the current snapshot already has, per key.
    let known: HashMap<&str, i64> = (0..old_keys.len())
        .filter(|&i| withdrawn(i) && withdrawn_at.is_valid(i))
        .map(|i| (old_keys[i].as_str(), withdrawn_at.value(i)))
        .collect();
    let mut inferred = 0u64;
    let mut out = Vec::with_capacity(snapshot.num_rows());
    let now = options.now.timestamp_micros();
    for &i in winners {
        let i = i as usize;
        if !withdrawn(i) || withdrawn_at.is_valid(i) {
            out.push(withdrawn_at.is_valid(i).then(|| withdrawn_at.value(i)));
            continue;
        }
        match snapshot_key(all, i).and_then(|k| known.get(k.as_str()).copied()) {
            Some(t) => out.push(Some(t)),
            None => {
                inferred += 1;
                out.push(Some(now));
            }
        }
    }
    let position = snapshot
        .schema()
        .index_of("withdrawn_at")
        .map_err(|e| Error::ReadTable {
            table: "enrollments".into(),
            source: Box::new(e),
        })?;
    let mut columns = snapshot.columns().to_vec();
    columns[position] = Arc::new(TimestampMicrosecondArray::from(out).with_timezone("UTC"));
    Ok((RecordBatch::try_new(snapshot.schema(), columns)?, inferred))
}

/// The enrollment key (student and course) of row `i`.
fn snapshot_key(batch: &RecordBatch, i: usize) -> Option<String> {
    let string = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
    };
    let (student, course) = (string("student_id")?, string("course_id")?);
    Some(format!("{}\u{1f}{}", student.value(i), course.value(i)))
}

/// The keys of a reference snapshot (course_id of courses, assessment_id of
/// assessments).
async fn snapshot_ids(lake: &Store, table: LakeTable, column: &str) -> Result<HashSet<String>> {
    let path = table
        .snapshot_file()
        .expect("reference tables are snapshots");
    let mut known = HashSet::new();
    if let Some(data) = lake.get_opt(&path).await? {
        for b in parquet_io::decode(data, Some(&[column]))? {
            if let Some(ids) = b.column(0).as_any().downcast_ref::<StringArray>() {
                known.extend(ids.iter().flatten().map(str::to_string));
            }
        }
    }
    Ok(known)
}

/// How many enrollments of `snapshot` name a course the courses snapshot lacks.
async fn unknown_courses(lake: &Store, snapshot: &RecordBatch) -> Result<u64> {
    let known = snapshot_ids(lake, LakeTable::Courses, "course_id").await?;
    let Some(course) = snapshot
        .column_by_name("course_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    else {
        return Ok(0);
    };
    Ok(course
        .iter()
        .flatten()
        .filter(|c| !known.contains(*c))
        .count() as u64)
}

fn reference_keys(kind: Kind, batch: &RecordBatch) -> Result<Vec<String>> {
    let string = |name: &str| -> Result<&StringArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::ReadTable {
                table: kind.name().into(),
                source: format!("snapshot has no string column {name}").into(),
            })
    };
    let first = string(key_column(kind))?;
    if kind == Kind::Enrollments {
        let course = string("course_id")?;
        Ok((0..batch.num_rows())
            .map(|i| format!("{}\u{1f}{}", first.value(i), course.value(i)))
            .collect())
    } else {
        Ok((0..first.len())
            .map(|i| first.value(i).to_string())
            .collect())
    }
}

// ---------------------------------------------------------------------------
// Crash testing

static WRITES: AtomicUsize = AtomicUsize::new(0);

/// Kills the process (as `kill -9` would) after the number of lake writes in
/// `LEARNLAKE_TEST_CRASH_AFTER_WRITES`, so tests can interrupt ingest at
/// chosen points.
fn crash_point() {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("LEARNLAKE_TEST_CRASH_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(limit) = limit {
        let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= *limit {
            eprintln!("LEARNLAKE_TEST_CRASH_AFTER_WRITES: aborting after {n} writes");
            std::process::abort();
        }
    }
}
