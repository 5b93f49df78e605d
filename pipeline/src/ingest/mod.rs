//! Landing → lake, exactly once.
//!
//! Every table is a Delta table (`lake::delta`). For each kind, the landing
//! files not yet in the ledger are cut into batches of at most `batch_bytes`
//! of text (at line boundaries, across files). A batch is parsed on all
//! cores, checked row by row (bad rows go to the quarantine with their
//! reason), deduplicated on its ids within itself, against the table and
//! against the rows the run holds; its accepted rows are held until they
//! reach `hold_bytes` or the input ends, and then committed:
//!
//! 1. the quarantine's rows, one file, one commit;
//! 2. one sorted Parquet file per touched partition, all in one commit that
//!    carries each member batch's transaction id;
//! 3. the ledger entry, so later runs skip the files without reading them.
//!
//! The batch id is a hash of what the batch reads (paths, content hashes,
//! line ranges), so a run killed anywhere and started again cuts the same
//! batches and skips those the ledger or the table's transactions already
//! have. Files of a commit that never happened are not in the table; the
//! restarted run writes them again under the same names, and `vacuum`
//! removes what is left.
//!
//! Reference kinds are keyed snapshots: all new files of a kind are merged
//! into the current snapshot (latest wins) and one commit replaces the
//! table's file.
//!
//! Along the data path: [`source`] finds and inspects landing files,
//! `batches` cuts them, `parse` turns them into [`records`] rows, `events`
//! and `reference` write the two families of tables ([`id_index`] dedups
//! events across the lake), `quarantine` keeps what was rejected and
//! `ledger` commits each batch. This file owns the options, the reports and
//! the driver.

pub mod id_index;
pub mod records;
pub mod source;

mod batches;
mod crash;
pub(crate) use crash::crash_point;
mod events;
mod ledger;
mod parse;
mod quarantine;
mod reference;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tracing::{info, info_span, warn};

use self::events::ingest_events;
use self::ledger::Ledger;
use self::quarantine::quarantine_whole_file;
use self::records::Kind;
use self::reference::ingest_reference;
use self::source::Source;
use crate::lake::Store;
use crate::{Error, Result};

pub use self::events::date_string;
pub use self::ledger::{LedgerEntry, LedgerSource};

/// How to ingest.
#[derive(Clone)]
pub struct IngestOptions {
    /// Text parsed at a time (a batch).
    pub batch_bytes: usize,
    /// Memory of accepted rows held before they are committed: a run writes
    /// one file per partition per commit, so one per run while its rows fit.
    pub hold_bytes: usize,
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
    /// How xAPI, Caliper, Open edX and Moodle records map to rows.
    pub mapping: Arc<records::lms::Mapping>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            batch_bytes: 256 << 20,
            hold_bytes: 1 << 30,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_key: None,
            progress: None,
            now: Utc::now(),
            timezone: chrono_tz::Tz::UTC,
            mapping: Arc::default(),
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
    /// Rows removed by xAPI voiding statements (PRODUCT §3).
    pub voided: u64,
    /// Records of other systems' formats that make no row of this table:
    /// voiding statements, Caliper grade events and envelope entities (in
    /// activity), anonymous Open edX visits, Moodle guest actions; scored
    /// events that name no course (in attempts).
    pub no_row: u64,
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
        self.voided += other.voided;
        self.no_row += other.no_row;
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

/// A source that passed inspection, with its content hash.
#[derive(Clone)]
struct Pending {
    source: Source,
    content_hash: String,
}

/// How long a killed run's spill folder must have been left untouched
/// before a later run removes it (see `events::remove_stale_spills`).
const STALE_SPILL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

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
    let stale = events::remove_stale_spills(&std::env::temp_dir(), STALE_SPILL);
    if stale > 0 {
        info!(
            folders = stale,
            "removed the spill folders of ingest runs that were killed"
        );
    }
    let objects = landing.list("").await?;
    let (sources, ignored) = source::classify(landing, &objects);
    for path in &ignored {
        info!(
            path,
            "landing file belongs to no kind; ignored (expected activity/, attempts/, students.*, courses.*, enrollments.*, assessments.*, or xapi/, caliper/, openedx/, moodle/)"
        );
    }
    let mut report = IngestReport {
        ignored,
        ..Default::default()
    };
    let ledger = Ledger::load(lake).await?;
    let inspections = inspect_new(landing, &sources, &ledger, options).await?;
    for kind in Kind::ALL {
        let of_kind: Vec<Source> = sources.iter().filter(|s| s.kind == kind).cloned().collect();
        let span = info_span!("ingest", kind = kind.name());
        let _enter = span.enter();
        let kind_report =
            ingest_kind(lake, landing, kind, of_kind, &ledger, &inspections, options).await?;
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

/// Inspects (hashes and checks, see [`source::inspect`]) every landing file
/// the ledger does not know by its version, each once, `threads` at a time:
/// one after the other they were a serial tenth of a large ingest.
async fn inspect_new(
    landing: &Store,
    sources: &[Source],
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<HashMap<String, source::Inspection>> {
    let mut seen = HashSet::new();
    let new: Vec<(Source, bool)> = sources
        .iter()
        .filter(|s| {
            !ledger.done_by_version.contains(&(
                s.kind.name().to_string(),
                s.path.clone(),
                s.size,
                s.version.clone(),
            ))
        })
        .filter(|s| seen.insert(s.path.clone()))
        .map(|s| (s.clone(), ledger.legacy.contains(&(s.path.clone(), s.size))))
        .collect();
    futures::stream::iter(new)
        .map(|(source, sha256)| {
            let landing = landing.clone();
            async move {
                let path = source.path.clone();
                let inspection =
                    blocking(move || source::inspect(&landing, &source, sha256)).await?;
                Ok::<_, Error>((path, inspection))
            }
        })
        .buffer_unordered(options.threads.max(1))
        .try_collect()
        .await
}

async fn ingest_kind(
    lake: &Store,
    landing: &Store,
    kind: Kind,
    sources: Vec<Source>,
    ledger: &Ledger,
    inspections: &HashMap<String, source::Inspection>,
    options: &IngestOptions,
) -> Result<KindReport> {
    let mut report = KindReport::default();
    let mut pending = Vec::new();
    for source in sources {
        let version_key = (
            kind.name().to_string(),
            source.path.clone(),
            source.size,
            source.version.clone(),
        );
        if ledger.done_by_version.contains(&version_key) {
            report.files_skipped += 1;
            progress(options, source.size);
            continue;
        }
        // Inspected once per run, before any kind (a file feeding two
        // kinds, xAPI's activity and attempts, is read and hashed once).
        let inspected = inspections
            .get(&source.path)
            .cloned()
            .expect("inspect_new inspects every source the ledger does not know by version");
        let hashes: Vec<&str> = std::iter::once(inspected.content_hash.as_str())
            .chain(inspected.sha256.as_deref())
            .collect();
        if ledger.done(kind.name(), &source.path, source.size, &hashes) {
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
                content_hash: inspected.content_hash,
            };
            if quarantine_whole_file(
                lake,
                kind,
                &pending,
                &inspected.head,
                &reason,
                ledger,
                options,
            )
            .await?
            {
                report.files_quarantined += 1;
            }
            progress(options, pending.source.size);
            continue;
        }
        pending.push(Pending {
            source,
            content_hash: inspected.content_hash,
        });
    }
    if pending.is_empty() {
        return Ok(report);
    }
    let batch_report = if kind.is_event() {
        // A run read again counts its files' bytes once: those the last
        // attempt counted are not counted again.
        let mut options = options.clone();
        loop {
            match ingest_events(lake, landing, kind, pending.clone(), ledger, &options).await {
                // Nothing of the run is committed when the reader finds a
                // corrupt file: the file is quarantined whole, as inspection
                // would have, and the run starts again without it.
                Err(Error::CorruptSource { path, reason }) => {
                    let at = pending
                        .iter()
                        .position(|p| p.source.path == path)
                        .expect("the reader reads only pending files");
                    let counted: u64 = pending[..at].iter().map(|p| p.source.size).sum();
                    let file = pending.remove(at);
                    warn!(
                        path,
                        reason, "file quarantined whole; reading the others again"
                    );
                    let head = &inspections[&path].head;
                    if quarantine_whole_file(lake, kind, &file, head, &reason, ledger, &options)
                        .await?
                    {
                        report.files_quarantined += 1;
                    }
                    progress(&options, file.source.size);
                    options.progress = options
                        .progress
                        .take()
                        .map(|inner| skipping_first(inner, counted));
                    if pending.is_empty() {
                        break KindReport::default();
                    }
                }
                other => break other?,
            }
        }
    } else {
        ingest_reference(lake, landing, kind, pending, ledger, options).await?
    };
    report.add(&batch_report);
    Ok(report)
}

/// `inner`, not told of the first `skip` bytes it is given.
fn skipping_first(
    inner: Arc<dyn Fn(u64) + Send + Sync>,
    skip: u64,
) -> Arc<dyn Fn(u64) + Send + Sync> {
    let left = std::sync::atomic::AtomicU64::new(skip);
    Arc::new(move |bytes| {
        let before = left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(bytes))
            })
            .expect("the update always returns Some");
        if bytes > before {
            inner(bytes - before);
        }
    })
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A file found corrupt while it is read sends the run back to the
    /// start without it; the progress still counts every landing byte once.
    #[tokio::test]
    async fn a_run_read_again_counts_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let activity = dir.path().join("landing/activity");
        std::fs::create_dir_all(&activity).unwrap();
        let line = |i: usize| {
            format!(
                r#"{{"event_id":"e-{i}","student_id":"s{}","timestamp":"2026-02-03T10:{:02}:00Z","activity_type":"login"}}"#,
                i % 7,
                i % 60
            )
        };
        let plain =
            |range: std::ops::Range<usize>| range.map(|i| line(i) + "\n").collect::<String>();
        std::fs::write(activity.join("a.jsonl"), plain(0..50)).unwrap();
        // Its first 64 KiB decompress (inspection passes it), its end not.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(plain(1000..4000).as_bytes()).unwrap();
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() * 9 / 10);
        bytes.extend_from_slice(b"\xde\xad\xbe\xef garbage");
        std::fs::write(activity.join("b.jsonl.gz"), bytes).unwrap();
        std::fs::write(activity.join("c.jsonl"), plain(50..80)).unwrap();
        let total: u64 = ["a.jsonl", "b.jsonl.gz", "c.jsonl"]
            .iter()
            .map(|f| std::fs::metadata(activity.join(f)).unwrap().len())
            .sum();

        let lake = Store::open(dir.path().join("lake").to_str().unwrap(), true).unwrap();
        let landing = Store::open(dir.path().join("landing").to_str().unwrap(), false).unwrap();
        let counted = Arc::new(AtomicU64::new(0));
        let options = IngestOptions {
            progress: Some({
                let counted = counted.clone();
                Arc::new(move |n| {
                    counted.fetch_add(n, Ordering::Relaxed);
                })
            }),
            ..Default::default()
        };
        let report = ingest(&lake, &landing, &options).await.unwrap();
        let activity = &report.kinds["activity"];
        assert_eq!(activity.files_quarantined, 1);
        assert_eq!(activity.rows_accepted, 80);
        assert_eq!(counted.load(Ordering::Relaxed), total);
    }
}
