//! Event kinds (activity, attempts): each batch is parsed, deduplicated on
//! its ids within itself, against the whole table (the id index) and against
//! the rows the run holds, and its accepted rows are held by partition date.
//! Held rows beyond `hold_bytes` of memory are spilled to a temporary folder
//! (Arrow IPC files, one per partition and spill). At the end of the input
//! they are committed: one file per partition, sorted by (course_id,
//! student_id, timestamp), added to the Delta table in one commit that
//! carries the batches' transaction ids; then the quarantine's commit and
//! the ledger entry. Attempts naming an unknown assessment are kept and
//! counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, BooleanArray, Capacities, MutableArrayData, RecordBatch,
    StringArray, UInt32Array, make_array, new_null_array,
};
use datafusion::arrow::compute::{interleave, take_record_batch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Int32Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use sha2::{Digest, Sha256};
use tracing::{debug, info, info_span, warn};

use super::batches::{Batch, Buffers, cut_batches};
use super::crash::crash_point;
use super::id_index::{HashedId, IdIndex, Keys};
use super::ledger::{Ledger, LedgerEntry, LedgerSource, commit as commit_ledger};
use super::parse::{Parsed, Void, parse_batch};
use super::quarantine::{Rejected, write_quarantine};
use super::records::{Kind, key_column};
use super::reference::snapshot_ids;
use super::{IngestOptions, KindReport, Pending, blocking};
use crate::lake::delta::{self, DataFile};
use crate::lake::erase::rewrite_without;
use crate::lake::tables::{LakeTable, QUARANTINE};
use crate::lake::{Store, parquet_io, partition_folder};
use crate::{Error, Result};

/// The Delta transaction id that marks a batch as committed to a table:
/// a run restarted after a crash skips the batches a table already has.
pub(super) fn batch_transaction(batch_id: &str) -> String {
    format!("learnlake-ingest-{batch_id}")
}

/// Streams the pending files' text into batches and ingests each one.
pub(super) async fn ingest_events(
    lake: &Store,
    landing: &Store,
    kind: Kind,
    pending: Vec<Pending>,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<KindReport> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
    let buffers = Buffers::default();
    let reader = {
        let (landing, options) = (landing.clone(), options.clone());
        let (pending, buffers) = (pending.clone(), buffers.clone());
        tokio::task::spawn_blocking(move || {
            cut_batches(&landing, kind, &pending, &options, &tx, &buffers)
        })
    };
    let table = kind.table();
    let mut data = delta::open_or_create(
        lake,
        table.folder(),
        &table.table_schema().expect("event tables have a schema"),
        table.partition_column(),
    )
    .await?;
    let data_files: Vec<(String, i32)> = delta::files(&data, table.folder())?
        .into_iter()
        .filter_map(|(path, day)| Some((format!("{}/{path}", table.folder()), days(day?))))
        .collect();
    let mut index = IdIndex::open(
        lake,
        kind,
        &data_files,
        options.batch_bytes.saturating_mul(2),
    )
    .await?;
    // Attempts of an assessment the lake does not know are kept and reported.
    let assessments = match kind {
        Kind::Attempts => Some(snapshot_ids(lake, LakeTable::Assessments, "assessment_id").await?),
        _ => None,
    };
    let mut report = KindReport::default();
    let mut held = Held::default();
    let sources: Vec<&str> = pending.iter().map(|p| p.source.path.as_str()).collect();
    // The next batch is parsed (on all threads) while this one is checked
    // against the index and held, so parsing never waits for the dedup.
    let mut parsing: std::collections::VecDeque<(String, Vec<LedgerSource>, Parsing)> =
        std::collections::VecDeque::new();
    loop {
        let batch = rx.recv().await;
        let input_done = batch.is_none();
        if let Some(batch) = batch {
            let id = batch.id();
            if ledger.committed.contains(&id) {
                report.batches_resumed += 1;
                info!(
                    batch = id,
                    "batch already committed by an earlier run; skipped"
                );
                continue;
            }
            if delta::applied_version(&data, table.folder(), &batch_transaction(&id))
                .await?
                .is_some()
            {
                // Committed to the table by a run that died before its ledger
                // entry: record it now, read nothing again.
                report.batches_resumed += 1;
                info!(
                    batch = id,
                    "batch committed by an interrupted run; its ledger entry written now"
                );
                let entry = LedgerEntry {
                    batch_id: id.clone(),
                    kind: kind.name().to_string(),
                    committed_at: options.now,
                    sources: batch.sources.clone(),
                    batches: vec![id],
                    rows_accepted: 0,
                    duplicates: 0,
                    rows_quarantined: 0,
                };
                commit_ledger(lake, &entry).await?;
                continue;
            }
            let batch_sources = batch.sources.clone();
            let options = options.clone();
            let buffers = buffers.clone();
            let task = tokio::task::spawn_blocking(move || {
                let parsed = parse_batch(&batch, &options);
                buffers.give(batch.buf);
                parsed
            });
            parsing.push_back((id, batch_sources, task));
        }
        if parsing.len() < 2 && !input_done {
            continue;
        }
        let Some((id, batch_sources, task)) = parsing.pop_front() else {
            break;
        };
        let waited = std::time::Instant::now();
        let parsed = task
            .await
            .map_err(|e| Error::Worker(format!("a parser thread failed: {e}")))?;
        let waited = waited.elapsed();
        // Spill only when more rows come: the rows of the last batch go
        // straight to the commit, not through the disk.
        if held.bytes >= options.hold_bytes {
            held.finish_spill().await?;
            held.start_spill()?;
        }
        let started = std::time::Instant::now();
        let span = info_span!("batch", batch = id, sources = batch_sources.len());
        let accepted = hold_batch(
            lake,
            &mut index,
            assessments.as_ref(),
            kind,
            parsed,
            batch_sources,
            &id,
            &mut held,
        )
        .await;
        drop(span);
        accepted?;
        debug!(
            batch = id,
            waited_for_parse_ms = waited.as_millis(),
            hold_ms = started.elapsed().as_millis(),
            held_bytes = held.bytes,
            "batch held"
        );
    }
    reader
        .await
        .map_err(|e| Error::Worker(format!("the reader thread failed: {e}")))??;
    // No more text: the buffers kept for it are freed before the commit.
    drop(buffers);
    report.add(
        &commit_held(
            lake, &mut data, &mut index, kind, &mut held, &sources, options,
        )
        .await?,
    );
    index.compact(lake, options.threads).await?;
    Ok(report)
}

/// Accepted rows held for the next commit, with what they came from.
#[derive(Default)]
struct Held {
    /// The member batches: id and the parts of landing files each read.
    batches: Vec<(String, Vec<LedgerSource>)>,
    /// Accepted rows by partition date, in memory: slices of the parsed
    /// parts, gathered (sorted) only when they are written.
    rows: BTreeMap<i32, Vec<Slice>>,
    /// Accepted rows by partition date, spilled to `spill_dir`.
    spilled: BTreeMap<i32, Vec<std::path::PathBuf>>,
    spill_dir: Option<tempfile::TempDir>,
    /// Rows being spilled on a blocking thread while batches go on being
    /// held: still readable here until their files are written.
    spilling: Option<Spilling>,
    /// Spills started, which name their files.
    spills: usize,
    /// The ids held per date, built when an index hit needs confirming.
    ids: HashMap<i32, HashSet<String>>,
    rejected: Vec<Rejected>,
    /// Ids voided by xAPI voiding statements, with the partition date of
    /// the row (held or committed) each removes.
    voids: Vec<(String, i32)>,
    /// Records that make no row of this table.
    skipped: u64,
    bytes: usize,
    accepted: u64,
    duplicates: u64,
    unknown_references: u64,
}

impl Held {
    /// Starts writing the rows held in memory to one Arrow IPC file per
    /// partition date (and run of parts with the same columns) in the spill
    /// folder, on a blocking thread: the next batches are held meanwhile
    /// (awaiting each spill left a core idle for most of a second). The
    /// rows stay readable in `spilling` until [`Held::finish_spill`].
    fn start_spill(&mut self) -> Result<()> {
        debug_assert!(self.spilling.is_none(), "one spill at a time");
        if self.spill_dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{SPILL_PREFIX}{}-", std::process::id()))
                .tempdir()
                .map_err(|source| Error::WriteFile {
                    path: std::env::temp_dir(),
                    source,
                })?;
            self.spill_dir = Some(dir);
        }
        let dir = self
            .spill_dir
            .as_ref()
            .expect("just made")
            .path()
            .to_path_buf();
        let rows = std::sync::Arc::new(std::mem::take(&mut self.rows));
        let (spill, bytes) = (self.spills, self.bytes);
        self.spills += 1;
        self.bytes = 0;
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        let task = {
            let (rows, cancel) = (rows.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let written = write_spill(&dir, spill, &rows, &cancel);
                debug!(
                    bytes,
                    ms = started.elapsed().as_millis(),
                    cancelled = cancel.load(Ordering::Relaxed),
                    "held rows spilled"
                );
                written
            })
        };
        self.spilling = Some(Spilling { rows, cancel, task });
        Ok(())
    }

    /// Stops the spill under way, if any, and holds its rows in memory
    /// again, before the rows held since: at the end of the input, the
    /// commit reads them from memory instead of waiting for their files
    /// (a second on a rich ingest) and reading them back. Memory stays
    /// what it was while the spill ran.
    async fn cancel_spill(&mut self) -> Result<()> {
        let Some(spilling) = self.spilling.take() else {
            return Ok(());
        };
        spilling.cancel.store(true, Ordering::Relaxed);
        // Its files, complete or not, are left to the spill folder: the
        // rows are taken from memory.
        let _files = spilling
            .task
            .await
            .map_err(|e| Error::Worker(format!("a spill thread failed: {e}")))?;
        let mut rows = std::sync::Arc::unwrap_or_clone(spilling.rows);
        for (date, parts) in std::mem::take(&mut self.rows) {
            rows.entry(date).or_default().extend(parts);
        }
        self.rows = rows;
        Ok(())
    }

    /// Waits for the spill under way, if any, and records its files.
    async fn finish_spill(&mut self) -> Result<()> {
        let Some(spilling) = self.spilling.take() else {
            return Ok(());
        };
        let files = spilling
            .task
            .await
            .map_err(|e| Error::Worker(format!("a spill thread failed: {e}")))??;
        for (date, paths) in files {
            self.spilled.entry(date).or_default().extend(paths);
        }
        Ok(())
    }

    /// The partition dates held.
    fn dates(&self) -> Vec<i32> {
        let spilling = self.spilling.as_ref().map(|s| s.rows.keys());
        let mut dates: Vec<i32> = self
            .rows
            .keys()
            .chain(self.spilled.keys())
            .chain(spilling.into_iter().flatten())
            .copied()
            .collect();
        dates.sort_unstable();
        dates.dedup();
        dates
    }
}

/// How a spill folder's name starts: then the process id, a dash and
/// tempfile's random letters.
const SPILL_PREFIX: &str = "learnlake-ingest-";

/// A run killed before its commit (kill -9, the OOM killer) leaves its
/// spill folder, gigabytes on a large run, in the temporary folder `dir`.
/// Removes those whose process is gone and that nothing wrote to for
/// `idle` (a live run in another PID namespace sharing the folder keeps
/// writing while it holds batches); returns how many. Only where
/// processes can be looked up (/proc): elsewhere, none.
pub(super) fn remove_stale_spills(dir: &std::path::Path, idle: Duration) -> usize {
    if !std::path::Path::new("/proc/self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SPILL_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive =
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists();
        let quiet = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age >= idle));
        if alive || !quiet {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => warn!(
                path = %entry.path().display(),
                error = %e,
                "could not remove the spill folder of an ingest run that did not finish"
            ),
        }
    }
    removed
}

/// Held rows being written to spill files.
struct Spilling {
    rows: std::sync::Arc<BTreeMap<i32, Vec<Slice>>>,
    /// Set to stop writing at the next partition (see [`Held::cancel_spill`]).
    cancel: std::sync::Arc<AtomicBool>,
    /// The files written, by partition date.
    task: tokio::task::JoinHandle<Result<BTreeMap<i32, Vec<std::path::PathBuf>>>>,
}

/// Writes `rows` to Arrow IPC files in `dir`, one per partition date and
/// run of parts with the same columns (parts leave out their all-null
/// columns, see `without_null_columns`), named by the spill's number; only
/// some of them once `cancel` is set.
fn write_spill(
    dir: &std::path::Path,
    spill: usize,
    rows: &BTreeMap<i32, Vec<Slice>>,
    cancel: &AtomicBool,
) -> Result<BTreeMap<i32, Vec<std::path::PathBuf>>> {
    let mut files: BTreeMap<i32, Vec<std::path::PathBuf>> = BTreeMap::new();
    for (date, parts) in rows {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        for (i, run) in parts
            .chunk_by(|a, b| a.batch.schema() == b.batch.schema())
            .enumerate()
        {
            let path = dir.join(format!("{spill}-{date}-{i}.arrow"));
            let io = |source| Error::WriteFile {
                path: path.clone(),
                source,
            };
            let file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
            let mut writer =
                datafusion::arrow::ipc::writer::FileWriter::try_new(file, &run[0].batch.schema())?;
            for part in run {
                writer.write(&part.taken()?)?;
            }
            writer.finish()?;
            files.entry(*date).or_default().push(path);
        }
    }
    Ok(files)
}

/// Rows of one parsed part held for one partition: the part (without its
/// all-null columns) and which of its rows, all when `rows` is `None`.
/// Parts are shared by the partitions their rows go to, and copied once,
/// when a partition is written (or spilled): a copy per partition as rows
/// were held, and a second when written, was 7 % of an ingest.
#[derive(Clone)]
struct Slice {
    batch: RecordBatch,
    rows: Option<std::sync::Arc<[u32]>>,
}

impl Slice {
    fn whole(batch: RecordBatch) -> Self {
        Self { batch, rows: None }
    }

    fn len(&self) -> usize {
        self.rows
            .as_ref()
            .map_or(self.batch.num_rows(), |r| r.len())
    }

    /// The part's row of the slice's `i`-th.
    fn row(&self, i: usize) -> usize {
        self.rows.as_ref().map_or(i, |r| r[i] as usize)
    }

    /// The slice's rows as a batch of their own.
    fn taken(&self) -> Result<RecordBatch> {
        Ok(match &self.rows {
            None => self.batch.clone(),
            Some(rows) => take_record_batch(&self.batch, &UInt32Array::from(rows.to_vec()))?,
        })
    }

    /// The slice's values of a string column (none when the part has it
    /// all null or not at all).
    fn strings<'a>(&'a self, column: &str) -> impl Iterator<Item = Option<&'a str>> + 'a {
        let values = self
            .batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        (0..self.len()).map(move |i| {
            values.and_then(|v| v.is_valid(self.row(i)).then(|| v.value(self.row(i))))
        })
    }

    /// The slice without the rows whose `column` is one of `ids`, and how
    /// many it lost.
    fn without_ids(self, column: &str, ids: &HashSet<String>) -> (Slice, u64) {
        let kept: Vec<u32> = self
            .strings(column)
            .enumerate()
            .filter(|(_, v)| !v.is_some_and(|v| ids.contains(v)))
            .map(|(i, _)| self.row(i) as u32)
            .collect();
        let removed = (self.len() - kept.len()) as u64;
        if removed == 0 {
            return (self, 0);
        }
        let batch = self.batch;
        (
            Slice {
                batch,
                rows: Some(kept.into()),
            },
            removed,
        )
    }
}

fn read_spill(path: &std::path::Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let reader =
        datafusion::arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// A fast hasher with a fixed seed for the in-batch id set: SipHash showed
/// up in ingest profiles.
type FastState = foldhash::fast::FixedState;

/// A batch being parsed on the blocking threads.
type Parsing = tokio::task::JoinHandle<Vec<Parsed>>;

#[allow(clippy::too_many_arguments)]
async fn hold_batch(
    lake: &Store,
    index: &mut IdIndex,
    assessments: Option<&HashSet<String>>,
    kind: Kind,
    parsed: Vec<Parsed>,
    batch_sources: Vec<LedgerSource>,
    id: &str,
    held: &mut Held,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    // Dedup inside the batch, first occurrence wins. Ids come with their
    // hashes, computed on the parser threads; sorted by (hash, position),
    // copies are neighbours, the first copy first. The unique ids stay in
    // hash order, which the index lookup walks its buckets in.
    let rows: usize = parsed.iter().map(|p| p.keys.len()).sum();
    let mut order: Vec<(u64, u64)> = Vec::with_capacity(rows);
    for (p, part) in parsed.iter().enumerate() {
        order.extend(
            part.hashes
                .iter()
                .enumerate()
                .map(|(row, &hash)| (hash, position(p, row))),
        );
    }
    let order = sorted_by_hash(order);
    let key_at = |at: u64| {
        let (p, row) = part_row(at);
        HashedId {
            hash: parsed[p].hashes[row],
            id: parsed[p].keys.value(row),
        }
    };
    let unique = first_copies(&order, |position| key_at(position).id);
    drop(order);
    let mut duplicates = (rows - unique.len()) as u64;
    let keys = Positions {
        pairs: &unique,
        parsed: &parsed,
    };

    // Dedup against the table (any partition) and the rows held.
    let key_column = key_column(kind);
    let mut pending = |date: i32, key: &str| -> bool {
        let spilling = held.spilling.as_ref().map(|s| &*s.rows);
        if !held.rows.contains_key(&date)
            && !held.spilled.contains_key(&date)
            && !spilling.is_some_and(|rows| rows.contains_key(&date))
        {
            return false;
        }
        let (rows, spilled) = (&held.rows, &held.spilled);
        held.ids
            .entry(date)
            .or_insert_with(|| {
                let mut slices: Vec<Slice> = rows.get(&date).cloned().unwrap_or_default();
                slices.extend(
                    spilling
                        .and_then(|r| r.get(&date))
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                for path in spilled.get(&date).map_or(&[][..], Vec::as_slice) {
                    // A spill file this run wrote a moment ago; unreadable
                    // only if the disk failed, and then the commit fails too.
                    slices.extend(
                        read_spill(path)
                            .unwrap_or_default()
                            .into_iter()
                            .map(Slice::whole),
                    );
                }
                slices
                    .iter()
                    .flat_map(|s| s.strings(key_column).flatten().map(str::to_string))
                    .collect()
            })
            .contains(key)
    };
    let t1 = t0.elapsed();
    let in_lake = index.contains(lake, &keys, &mut pending).await?;
    // The batch's new rows, by part, in row order.
    let mut new: Vec<Vec<bool>> = parsed.iter().map(|p| vec![false; p.keys.len()]).collect();
    for (&(_, at), dup) in unique.iter().zip(in_lake) {
        if dup {
            duplicates += 1;
        } else {
            let (p, row) = part_row(at);
            new[p][row] = true;
        }
    }
    drop(unique);
    let t2 = t0.elapsed();
    // xAPI voiding statements: where each target is, in the table or held.
    let voids: Vec<&Void> = parsed.iter().flat_map(|p| &p.voids).collect();
    let targets: Vec<HashedId> = voids.iter().map(|v| HashedId::new(&v.target)).collect();
    let void_dates = if targets.is_empty() {
        Vec::new()
    } else {
        index.find(lake, &targets[..], &mut pending).await?
    };
    // Accepted rows by date: the rows of one date, per part. Consecutive
    // rows mostly share a date (a student's day), so the last date's slot
    // is tried before the map.
    let mut slots: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut slot_of: HashMap<i32, usize> = HashMap::new();
    let mut last: Option<(i32, usize)> = None;
    let mut accepted_keys: Vec<(HashedId, i32)> = Vec::with_capacity(rows);
    let accepted_rows = new.iter().enumerate().flat_map(|(p, rows)| {
        rows.iter()
            .enumerate()
            .filter(|(_, new)| **new)
            .map(move |(r, _)| (p, r as u32))
    });
    for (p, r) in accepted_rows {
        let key = key_at(position(p, r as usize));
        let date = parsed[p].dates[r as usize];
        let slot = match last {
            Some((d, slot)) if d == date => slot,
            _ => {
                let slot = *slot_of.entry(date).or_insert_with(|| {
                    slots.push(vec![Vec::new(); parsed.len()]);
                    slots.len() - 1
                });
                last = Some((date, slot));
                slot
            }
        };
        slots[slot][p].push(r);
        accepted_keys.push((key, date));
    }
    let mut by_date: Vec<(i32, Vec<Vec<u32>>)> = slot_of
        .into_iter()
        .map(|(date, slot)| (date, std::mem::take(&mut slots[slot])))
        .collect();
    by_date.sort_unstable_by_key(|(date, _)| *date);
    // A target found nowhere else may be in this very batch.
    let voids_before = held.voids.len();
    if !voids.is_empty() {
        let here: HashMap<&str, i32> = accepted_keys.iter().map(|(k, d)| (k.id, *d)).collect();
        for (void, date) in voids.into_iter().zip(void_dates) {
            match date.or_else(|| here.get(void.target.as_str()).copied()) {
                Some(date) => held.voids.push((void.target.clone(), date)),
                // Reported once, by the activity pass (an unscored
                // statement has no attempt to void).
                None if kind == Kind::Activity => held.rejected.push(Rejected {
                    source: void.source,
                    line: Some(void.line),
                    raw: void.raw.clone(),
                    reason: format!(
                        "voids statement {:?}, which the lake does not hold (not ingested yet, or voided already); land this statement again after the one it voids",
                        void.target
                    ),
                }),
                None => {}
            }
        }
        if kind == Kind::Activity {
            held.skipped += (held.voids.len() - voids_before) as u64;
        }
    }
    held.skipped += parsed.iter().map(|p| p.skipped).sum::<u64>();
    let t3 = t0.elapsed();
    // The index covers the rows before they are committed (see id_index).
    let entries: Vec<(u64, i32)> = accepted_keys.iter().map(|(k, d)| (k.hash, *d)).collect();
    index.add(lake, id, &entries).await?;
    let t4 = t0.elapsed();
    held.accepted += accepted_keys.len() as u64;
    held.duplicates += duplicates;
    drop(accepted_keys);

    // Narrow exports leave most columns empty: held and spilled rows carry
    // only the columns a part has values in.
    let compact: Vec<RecordBatch> = parsed
        .iter()
        .map(|p| without_null_columns(&p.rows))
        .collect::<Result<_>>()?;
    let mut held_parts = vec![false; compact.len()];
    for (date, slots) in by_date {
        if let Some(known) = assessments {
            held.unknown_references += unknown_assessments(&parsed, &slots, known);
        }
        let mut parts = Vec::new();
        for (p, rows) in slots.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            held_parts[p] = true;
            held.bytes += rows.len() * 4;
            parts.push(Slice {
                rows: (rows.len() < compact[p].num_rows()).then(|| rows.into()),
                batch: compact[p].clone(),
            });
        }
        held.ids.remove(&date);
        held.rows.entry(date).or_default().extend(parts);
    }
    held.bytes += compact
        .iter()
        .zip(held_parts)
        .filter(|(_, held)| *held)
        .map(|(part, _)| part.get_array_memory_size())
        .sum::<usize>();
    held.rejected
        .extend(parsed.into_iter().flat_map(|p| p.rejected));
    debug!(
        dedup_ms = t1.as_millis(),
        index_ms = (t2 - t1).as_millis(),
        group_ms = (t3 - t2).as_millis(),
        add_ms = (t4 - t3).as_millis(),
        "hold steps"
    );
    held.batches.push((id.to_string(), batch_sources));
    Ok(())
}

/// Commits the held rows: the quarantine's rows, one sorted file per
/// partition in one Delta commit, then the ledger entry. Empties `held`.
async fn commit_held(
    lake: &Store,
    data: &mut deltalake_core::DeltaTable,
    index: &mut IdIndex,
    kind: Kind,
    held: &mut Held,
    sources: &[&str],
    options: &IngestOptions,
) -> Result<KindReport> {
    let mut held = std::mem::take(held);
    if held.batches.is_empty() {
        return Ok(KindReport::default());
    }
    held.cancel_spill().await?;
    let table = kind.table();
    let column = table
        .partition_column()
        .expect("event tables are partitioned");
    // Named by what it holds: a run restarted after a crash writes the same
    // files under the same names.
    let mut hash = Sha256::new();
    for (id, _) in &held.batches {
        hash.update(id.as_bytes());
        hash.update([0]);
    }
    let commit_id = if held.batches.len() == 1 {
        held.batches[0].0.clone()
    } else {
        hex::encode(&hash.finalize()[..10])
    };
    let transactions: Vec<(String, i64)> = held
        .batches
        .iter()
        .map(|(id, _)| (batch_transaction(id), 0))
        .collect();
    let span = info_span!("commit", commit = commit_id, batches = held.batches.len());
    let _enter = span.enter();

    let rejected: Vec<&Rejected> = held.rejected.iter().collect();
    write_quarantine(
        lake,
        kind,
        &commit_id,
        &rejected,
        sources,
        &transactions,
        options,
    )
    .await?;

    // Encode partitions on all threads, publishing each file as it is ready.
    let schema = table.file_schema().expect("event tables have a schema");
    let file = format!("part-{commit_id}.parquet");
    let mut writes: Vec<(i32, String)> = Vec::new();
    for date in held.dates() {
        let folder = partition_folder(column, &super::date_string(date))?;
        writes.push((date, format!("{folder}/{file}")));
    }
    let rows = Mutex::new(std::mem::take(&mut held.rows));
    let spilled = std::mem::take(&mut held.spilled);
    // Voided ids leave the held rows here and the committed files below,
    // all in this one commit.
    let mut voided: HashMap<i32, HashSet<String>> = HashMap::new();
    for (target, date) in &held.voids {
        voided.entry(*date).or_default().insert(target.clone());
    }
    let voided = std::sync::Arc::new(voided);
    let voided_held = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (voided_in, removed_in) = (voided.clone(), voided_held.clone());
    let started = std::time::Instant::now();
    let written = encode_and_put(
        lake,
        table,
        &schema,
        writes,
        move |date| {
            let mut out = Vec::new();
            for path in spilled.get(&date).map_or(&[][..], Vec::as_slice) {
                out.extend(read_spill(path)?.into_iter().map(Slice::whole));
            }
            out.extend(
                rows.lock()
                    .expect("no poison")
                    .remove(&date)
                    .unwrap_or_default(),
            );
            if let Some(ids) = voided_in.get(&date) {
                let mut kept = Vec::with_capacity(out.len());
                for part in out {
                    let (part, removed) = part.without_ids(key_column(kind), ids);
                    removed_in.fetch_add(removed, Ordering::Relaxed);
                    kept.push(part);
                }
                out = kept;
            }
            Ok(out)
        },
        options,
    )
    .await?;
    debug!(
        files = written.len(),
        ms = started.elapsed().as_millis(),
        "partitions sorted, encoded and put"
    );
    drop(held.spill_dir.take());
    let voided_held = voided_held.load(Ordering::Relaxed);
    let mut adds: Vec<DataFile> = written
        .iter()
        .filter(|w| w.rows > 0)
        .map(|w| DataFile {
            path: w.path.clone(),
            size: w.size,
            rows: w.rows,
            partition: Some(day(w.date)),
        })
        .collect();
    let rewritten = void_committed(lake, table, index, &voided).await?;
    let voided_committed: u64 = rewritten.iter().map(|r| r.removed).sum();
    adds.extend(rewritten.iter().filter_map(|r| r.add.clone()));
    let mut commit = delta::Commit::append(adds);
    if !rewritten.is_empty() {
        commit.replace = delta::Replace::Files(
            rewritten
                .iter()
                .map(|r| r.path[table.folder().len() + 1..].to_string())
                .collect(),
        );
    }
    commit.app_transactions = transactions;
    commit.info = vec![(
        "learnlake".to_string(),
        serde_json::json!({
            "operation": "ingest",
            "kind": kind.name(),
            "batches": held.batches.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        }),
    )];
    delta::commit(data, table.folder(), commit).await?;
    crash_point();
    for r in &rewritten {
        index.replaced(r.date, std::slice::from_ref(&r.path));
    }
    index.committed(
        &written
            .iter()
            .filter(|w| w.rows > 0)
            .map(|w| (format!("{}/{}", table.folder(), w.path), w.date))
            .chain(rewritten.iter().filter_map(|r| {
                r.add
                    .as_ref()
                    .map(|a| (format!("{}/{}", table.folder(), a.path), r.date))
            }))
            .collect::<Vec<_>>(),
    );
    let accepted = held.accepted - voided_held;
    let voided = voided_held + voided_committed;
    if voided > 0 {
        info!(rows = voided, "rows voided by xAPI voiding statements");
    }

    let entry = LedgerEntry {
        batch_id: commit_id,
        kind: kind.name().to_string(),
        committed_at: options.now,
        sources: held
            .batches
            .iter()
            .flat_map(|(_, s)| s.iter().cloned())
            .collect(),
        batches: held.batches.iter().map(|(id, _)| id.clone()).collect(),
        rows_accepted: accepted,
        duplicates: held.duplicates,
        rows_quarantined: held.rejected.len() as u64,
    };
    commit_ledger(lake, &entry).await?;
    if !held.rejected.is_empty() {
        warn!(
            rows = held.rejected.len(),
            "rows quarantined; see {QUARANTINE}/{}",
            kind.name()
        );
    }
    if kind == Kind::Attempts && held.skipped > 0 {
        warn!(
            records = held.skipped,
            "scored records of other systems name no course, so they are events only (their score is in activity.score); if their course is elsewhere in them, set [inputs] xapi_course (docs/INPUTS.md)"
        );
    }
    if held.unknown_references > 0 {
        warn!(
            attempts = held.unknown_references,
            "attempts of assessments missing from assessments; see `learnlake sql \"SELECT * FROM unknown_references\"`"
        );
    }
    info!(files = written.len(), rows = accepted, "committed");
    Ok(KindReport {
        rows_accepted: accepted,
        duplicates: held.duplicates,
        rows_quarantined: held.rejected.len() as u64,
        unknown_references: held.unknown_references,
        voided,
        no_row: held.skipped,
        ..Default::default()
    })
}

/// Which rows of `batch` have their `column` in `ids`.
fn with_ids(batch: &RecordBatch, column: &str, ids: &HashSet<String>) -> BooleanArray {
    let values = batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    (0..batch.num_rows())
        .map(|i| Some(values.is_some_and(|v| v.is_valid(i) && ids.contains(v.value(i)))))
        .collect()
}

/// A committed file rewritten without voided rows.
struct Rewritten {
    date: i32,
    /// The file replaced (relative to the lake root).
    path: String,
    removed: u64,
    /// The file without them, `None` when nothing else was in it.
    add: Option<DataFile>,
}

/// Rewrites the committed files of the partitions `voided` names without
/// the voided ids (`erase::rewrite_without`, as erasure does); puts the new
/// files for the caller to commit in place of the old.
async fn void_committed(
    lake: &Store,
    table: LakeTable,
    index: &IdIndex,
    voided: &HashMap<i32, HashSet<String>>,
) -> Result<Vec<Rewritten>> {
    let column = key_column(if table == LakeTable::Activity {
        Kind::Activity
    } else {
        Kind::Attempts
    });
    let mut out = Vec::new();
    for (&date, ids) in voided {
        for path in index.committed_files(date) {
            let data = lake.get(path).await?;
            let in_table = &path[table.folder().len() + 1..];
            let (removed, add) =
                rewrite_without(data, in_table, Some(day(date)), "voided", |batch| {
                    Ok(with_ids(batch, column, ids))
                })?;
            if removed == 0 {
                continue;
            }
            let add = match add {
                Some((file, bytes)) => {
                    lake.put(&format!("{}/{}", table.folder(), file.path), bytes)
                        .await?;
                    Some(file)
                }
                None => None,
            };
            out.push(Rewritten {
                date,
                path: path.clone(),
                removed,
                add,
            });
        }
    }
    Ok(out)
}

/// A data file put below the table's folder.
struct Written {
    date: i32,
    path: String,
    size: u64,
    rows: u64,
}

/// Sorts each partition's rows by (course_id, student_id, timestamp) —
/// row-group statistics then prune by course and student, and the columns
/// compress better — encodes them and puts the files, on all threads.
async fn encode_and_put(
    lake: &Store,
    table: LakeTable,
    schema: &SchemaRef,
    writes: Vec<(i32, String)>,
    rows_of: impl Fn(i32) -> Result<Vec<Slice>> + Send + Sync + 'static,
    options: &IngestOptions,
) -> Result<Vec<Written>> {
    let handle = tokio::runtime::Handle::current();
    let (lake, schema) = (lake.clone(), schema.clone());
    let threads = options.threads.max(1);
    blocking(move || {
        let next = AtomicUsize::new(0);
        // Thread time per step, summed over the threads: the debug line's.
        let [read_us, sort_us, encode_us] = [(); 3].map(|()| AtomicU64::new(0));
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let written: Mutex<Vec<Written>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.min(writes.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((date, path)) = writes.get(i) else {
                            break;
                        };
                        let result = (|| -> Result<Written> {
                            let started = std::time::Instant::now();
                            let parts = rows_of(*date)?;
                            let read = started.elapsed();
                            let one = sorted(&schema, &parts)?;
                            drop(parts);
                            let sort = started.elapsed();
                            let rows = one.num_rows() as u64;
                            let data = parquet_io::encode(&schema, &[one])?;
                            let encode = started.elapsed();
                            for (total, (from, to)) in [&read_us, &sort_us, &encode_us]
                                .into_iter()
                                .zip([(Duration::ZERO, read), (read, sort), (sort, encode)])
                            {
                                total.fetch_add((to - from).as_micros() as u64, Ordering::Relaxed);
                            }
                            let size = data.len() as u64;
                            handle
                                .block_on(lake.put(&format!("{}/{path}", table.folder()), data))?;
                            crash_point();
                            Ok(Written {
                                date: *date,
                                path: path.clone(),
                                size,
                                rows,
                            })
                        })();
                        match result {
                            Ok(w) => written.lock().expect("no poison").push(w),
                            Err(e) => {
                                failure.lock().expect("no poison").get_or_insert(e);
                                break;
                            }
                        }
                    }
                });
            }
        });
        debug!(
            read_ms = read_us.into_inner() / 1000,
            sort_ms = sort_us.into_inner() / 1000,
            encode_ms = encode_us.into_inner() / 1000,
            "thread time of the partitions"
        );
        match failure.into_inner().expect("no poison") {
            Some(e) => Err(e),
            None => {
                let mut written = written.into_inner().expect("no poison");
                written.sort_by_key(|w| w.date);
                Ok(written)
            }
        }
    })
    .await
}

/// The columns a partition's rows are sorted by, where the table has them.
const SORT_COLUMNS: [&str; 4] = ["course_id", "student_id", "timestamp", "submitted_at"];

/// `parts` as one batch sorted by (course_id, student_id, timestamp)
/// (attempts: submitted_at), nulls first, ties in input order, with every
/// column of `schema` (a part may lack its all-null ones). Each sort column
/// becomes one integer key per row (a string's rank among the column's
/// distinct values, a timestamp's distance above the smallest), the keys
/// are sorted as one packed integer per row (as tuples when they do not fit
/// in one) and the rows gathered in one copy: comparing strings through
/// Arrow's dynamic comparators was a tenth of an ingest.
fn sorted(schema: &SchemaRef, parts: &[Slice]) -> Result<RecordBatch> {
    sorted_packing(schema, parts, PACKED_BITS)
}

/// The keys' bits a row's packed sort key holds, above its 32-bit ordinal.
const PACKED_BITS: u32 = 96;

/// [`sorted`], packing the keys into one integer when they fit in `packed`
/// bits (tests take the other path with 0).
fn sorted_packing(schema: &SchemaRef, parts: &[Slice], packed: u32) -> Result<RecordBatch> {
    let parts: Vec<&Slice> = parts.iter().filter(|p| p.len() > 0).collect();
    if parts.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let mut keys: Vec<(Vec<Vec<u64>>, u64)> = Vec::new();
    for name in SORT_COLUMNS {
        let Ok(field) = schema.field_with_name(name) else {
            continue;
        };
        keys.push(order_keys(field.data_type(), name, &parts)?);
    }
    let rows: usize = parts.iter().map(|p| p.len()).sum();
    let widths: Vec<u32> = keys
        .iter()
        .map(|(_, max)| u64::BITS - max.leading_zeros())
        .collect();
    let indices: Vec<(usize, usize)> =
        if widths.iter().sum::<u32>() <= packed && rows <= u32::MAX as usize {
            // The keys packed into one integer above the row's ordinal (ties
            // keep input order): one comparison per pair, half the bytes moved.
            let mut order: Vec<u128> = Vec::with_capacity(rows);
            let mut at: Vec<(usize, usize)> = Vec::with_capacity(rows);
            for (p, part) in parts.iter().enumerate() {
                for i in 0..part.len() {
                    let mut key = 0u128;
                    for ((column, _), width) in keys.iter().zip(&widths) {
                        key = (key << width) | u128::from(column[p][i]);
                    }
                    order.push((key << 32) | at.len() as u128);
                    at.push((p, part.row(i)));
                }
            }
            order.sort_unstable();
            order.into_iter().map(|k| at[k as u32 as usize]).collect()
        } else {
            let mut order: Vec<([u64; 3], u32, u32)> = Vec::with_capacity(rows);
            for (p, part) in parts.iter().enumerate() {
                for i in 0..part.len() {
                    let mut key = [0u64; 3];
                    for (slot, (column, _)) in key.iter_mut().zip(&keys) {
                        *slot = column[p][i];
                    }
                    order.push((key, p as u32, part.row(i) as u32));
                }
            }
            order.sort_unstable();
            order
                .into_iter()
                .map(|(_, p, row)| (p as usize, row as usize))
                .collect()
        };
    gather(schema, &parts, &indices)
}

/// The rows `indices` (part, row) of `parts` as one batch of `schema`: a
/// column a part lacks is null in its rows. Sorted rows mostly come in runs
/// of one part's consecutive rows (a student's events of a day), which are
/// copied a run at a time; when runs are shorter than two rows on average,
/// row by row (`interleave`): a copy call per value was a twentieth of a
/// narrow ingest.
fn gather(schema: &SchemaRef, parts: &[&Slice], indices: &[(usize, usize)]) -> Result<RecordBatch> {
    let runs = runs(indices);
    let by_runs = runs.len() * 2 <= indices.len();
    gather_by(schema, parts, indices, &runs, by_runs)
}

/// [`gather`], a run at a time or row by row as `by_runs` says.
fn gather_by(
    schema: &SchemaRef,
    parts: &[&Slice],
    indices: &[(usize, usize)],
    runs: &[(usize, usize, usize)],
    by_runs: bool,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let found: Vec<Option<&ArrayRef>> = parts
            .iter()
            .map(|p| p.batch.column_by_name(field.name()))
            .collect();
        if found.iter().all(Option::is_none) {
            columns.push(new_null_array(field.data_type(), indices.len()));
        } else if by_runs {
            columns.push(gather_runs(&found, runs, indices.len())?);
        } else if let Some(arrays) = found
            .iter()
            .map(|a| a.map(|a| a.as_ref()))
            .collect::<Option<Vec<&dyn Array>>>()
        {
            columns.push(interleave(&arrays, indices)?);
        } else {
            // Parts without the column take their rows' nulls from a
            // one-row null array.
            let null = new_null_array(field.data_type(), 1);
            let mut arrays: Vec<&dyn Array> = Vec::with_capacity(parts.len() + 1);
            let slots: Vec<Option<usize>> = found
                .iter()
                .map(|a| {
                    a.map(|a| {
                        arrays.push(a.as_ref());
                        arrays.len() - 1
                    })
                })
                .collect();
            arrays.push(null.as_ref());
            let null_slot = arrays.len() - 1;
            let remapped: Vec<(usize, usize)> = indices
                .iter()
                .map(|&(p, row)| slots[p].map_or((null_slot, 0), |s| (s, row)))
                .collect();
            columns.push(interleave(&arrays, &remapped)?);
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `indices` as runs of consecutive rows of one part: (part, first row,
/// rows).
fn runs(indices: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for &(p, row) in indices {
        match out.last_mut() {
            Some((part, first, rows)) if *part == p && *first + *rows == row => *rows += 1,
            _ => out.push((p, row, 1)),
        }
    }
    out
}

/// One column of the rows `runs` picks, each run copied at once; null in
/// the rows of parts without the column (`None` in `found`).
fn gather_runs(
    found: &[Option<&ArrayRef>],
    runs: &[(usize, usize, usize)],
    rows: usize,
) -> Result<ArrayRef> {
    let data: Vec<Option<ArrayData>> = found.iter().map(|a| a.map(|a| a.to_data())).collect();
    let mut arrays: Vec<&ArrayData> = Vec::with_capacity(data.len());
    let slots: Vec<Option<usize>> = data
        .iter()
        .map(|d| {
            d.as_ref().map(|d| {
                arrays.push(d);
                arrays.len() - 1
            })
        })
        .collect();
    let use_nulls = data
        .iter()
        .any(|d| d.as_ref().is_none_or(|d| d.null_count() > 0));
    let capacities = match arrays[0].data_type() {
        DataType::Utf8 => {
            let mut bytes = 0;
            for &(p, first, n) in runs {
                if let Some(array) = found[p] {
                    let offsets = array.as_string::<i32>().value_offsets();
                    bytes += (offsets[first + n] - offsets[first]) as usize;
                }
            }
            Capacities::Binary(rows, Some(bytes))
        }
        _ => Capacities::Array(rows),
    };
    let mut out = MutableArrayData::with_capacities(arrays, use_nulls, capacities);
    for &(p, first, n) in runs {
        match slots[p] {
            Some(slot) => out.try_extend(slot, first, first + n)?,
            None => out.try_extend_nulls(n)?,
        }
    }
    Ok(make_array(out.freeze()))
}

/// Of (hash, position) pairs sorted by hash then position, the first of
/// each id: ids are compared only where hashes are equal.
fn first_copies<'a>(sorted: &[(u64, u64)], id: impl Fn(u64) -> &'a str) -> Vec<(u64, u64)> {
    let mut unique = Vec::with_capacity(sorted.len());
    for run in sorted.chunk_by(|a, b| a.0 == b.0) {
        if let [one] = run {
            unique.push(*one);
            continue;
        }
        let first = unique.len();
        for &(hash, position) in run {
            let this = id(position);
            if !unique[first..]
                .iter()
                .any(|&(_, kept): &(u64, u64)| id(kept) == this)
            {
                unique.push((hash, position));
            }
        }
    }
    unique
}

/// A batch's unique ids for the index lookup: (hash, [`position`]) pairs.
struct Positions<'a> {
    pairs: &'a [(u64, u64)],
    parsed: &'a [Parsed],
}

impl Keys for Positions<'_> {
    fn len(&self) -> usize {
        self.pairs.len()
    }
    fn hash(&self, i: usize) -> u64 {
        self.pairs[i].0
    }
    fn id(&self, i: usize) -> &str {
        let (p, row) = part_row(self.pairs[i].1);
        self.parsed[p].keys.value(row)
    }
}

/// A row's position in a batch: its part's index above its row's.
fn position(part: usize, row: usize) -> u64 {
    ((part as u64) << 32) | row as u64
}

/// The part and row of a [`position`].
fn part_row(position: u64) -> (usize, usize) {
    ((position >> 32) as usize, position as u32 as usize)
}

/// `pairs` sorted (by hash, then position): a counting pass on the hash's
/// top bits, then each bucket's few pairs on their own. A hash set of a
/// batch's ids missed the cache on every insert (a tenth of a narrow
/// ingest's hold).
fn sorted_by_hash(mut pairs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    if pairs.len() < 1 << 12 {
        pairs.sort_unstable();
        return pairs;
    }
    // About eight pairs per bucket, at most 2^16 buckets.
    let bits = (pairs.len().ilog2() - 3).min(16);
    let bucket = |hash: u64| (hash >> (64 - bits)) as usize;
    let mut starts = vec![0usize; (1 << bits) + 1];
    for &(hash, _) in &pairs {
        starts[bucket(hash) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut next = starts.clone();
    let mut out = vec![(0, 0); pairs.len()];
    for pair in pairs {
        let b = bucket(pair.0);
        out[next[b]] = pair;
        next[b] += 1;
    }
    for b in 0..1 << bits {
        out[starts[b]..starts[b + 1]].sort_unstable();
    }
    out
}

/// `batch` without the columns that hold only nulls (a narrow export's rows
/// leave most of the table's columns empty: their offsets alone were half
/// the memory held).
fn without_null_columns(batch: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&c| batch.num_rows() == 0 || batch.column(c).null_count() < batch.num_rows())
        .collect();
    if keep.len() == batch.num_columns() {
        return Ok(batch.clone());
    }
    Ok(batch.project(&keep)?)
}

/// Per part and row of its slice, a key whose integer order is the order
/// of the values of column `name` (of type `data_type`), nulls first (0):
/// strings by their rank among the distinct values, integers and timestamps
/// by their distance above the smallest, plus one; and the largest key. A
/// part without the column holds only nulls there. The event tables sort on
/// no other type.
fn order_keys(data_type: &DataType, name: &str, parts: &[&Slice]) -> Result<(Vec<Vec<u64>>, u64)> {
    let columns: Vec<Option<&ArrayRef>> =
        parts.iter().map(|p| p.batch.column_by_name(name)).collect();
    match data_type {
        DataType::Utf8 => {
            let mut ids: HashMap<&str, u32, FastState> = HashMap::default();
            let mut provisional: Vec<Vec<u32>> = Vec::with_capacity(parts.len());
            for part in parts {
                // Sorted rows come in runs of one course and student: the
                // last value's id is tried before the map.
                let mut last: Option<(&str, u32)> = None;
                provisional.push(
                    part.strings(name)
                        .map(|value| match value {
                            None => u32::MAX,
                            Some(value) => match last {
                                Some((text, id)) if text == value => id,
                                _ => {
                                    let next = ids.len() as u32;
                                    let id = *ids.entry(value).or_insert(next);
                                    last = Some((value, id));
                                    id
                                }
                            },
                        })
                        .collect(),
                );
            }
            let mut distinct: Vec<(&str, u32)> = ids.into_iter().collect();
            distinct.sort_unstable();
            let mut rank = vec![0u64; distinct.len()];
            for (r, (_, id)) in distinct.iter().enumerate() {
                rank[*id as usize] = r as u64 + 1;
            }
            Ok((
                provisional
                    .into_iter()
                    .map(|ids| {
                        ids.into_iter()
                            .map(|id| if id == u32::MAX { 0 } else { rank[id as usize] })
                            .collect()
                    })
                    .collect(),
                distinct.len() as u64,
            ))
        }
        DataType::Int64 | DataType::Timestamp(_, _) | DataType::Date32 | DataType::Int32 => {
            let mut values: Vec<Vec<Option<i64>>> = Vec::with_capacity(parts.len());
            for (part, column) in parts.iter().zip(columns) {
                let Some(column) = column else {
                    values.push(vec![None; part.len()]);
                    continue;
                };
                // Only the part's own integer type is read: a cast of the
                // whole part per partition would cost more than the sort.
                let value: Box<dyn Fn(usize) -> i64> = match column.data_type() {
                    DataType::Int64 => {
                        let v = column.as_primitive::<Int64Type>();
                        Box::new(move |i| v.value(i))
                    }
                    DataType::Timestamp(TimeUnit::Microsecond, _) => {
                        let v = column.as_primitive::<TimestampMicrosecondType>();
                        Box::new(move |i| v.value(i))
                    }
                    DataType::Date32 => {
                        let v = column.as_primitive::<Date32Type>();
                        Box::new(move |i| i64::from(v.value(i)))
                    }
                    DataType::Int32 => {
                        let v = column.as_primitive::<Int32Type>();
                        Box::new(move |i| i64::from(v.value(i)))
                    }
                    other => {
                        return Err(datafusion::arrow::error::ArrowError::InvalidArgumentError(
                            format!("cannot sort a partition by a {other} column"),
                        )
                        .into());
                    }
                };
                values.push(
                    (0..part.len())
                        .map(|i| {
                            let row = part.row(i);
                            (!column.is_null(row)).then(|| value(row))
                        })
                        .collect(),
                );
            }
            let all = || values.iter().flatten().flatten().copied();
            let (Some(min), Some(max)) = (all().min(), all().max()) else {
                return Ok((values.iter().map(|v| vec![0; v.len()]).collect(), 0));
            };
            let above = |v: i64| (i128::from(v) - i128::from(min)) as u64;
            // Saturates only when the values span all of i64: i64::MAX then
            // ties with i64::MAX - 1, neither a lake value.
            let key = |v: i64| above(v).saturating_add(1);
            Ok((
                values
                    .iter()
                    .map(|v| v.iter().map(|v| v.map_or(0, key)).collect())
                    .collect(),
                key(max),
            ))
        }
        other => Err(
            datafusion::arrow::error::ArrowError::InvalidArgumentError(format!(
                "cannot sort a partition by a {other} column"
            ))
            .into(),
        ),
    }
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

// Partition dates as ingest keeps them: days since 1970-01-01.
use crate::lake::{date32 as days, from_date32 as day};

/// `YYYY-MM-DD` of days since 1970-01-01.
pub fn date_string(days: i32) -> String {
    day(days).format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use proptest::prelude::*;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("course_id", DataType::Utf8, true),
            Field::new("student_id", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, false),
        ]))
    }

    type Row = (Option<u8>, u8, Option<i64>);

    fn part(rows: &[Row], first: i64) -> RecordBatch {
        let course: StringArray = rows.iter().map(|r| r.0.map(|c| format!("c{c}"))).collect();
        let student: StringArray = rows.iter().map(|r| Some(format!("s{}", r.1))).collect();
        let ts = TimestampMicrosecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .with_timezone("UTC");
        let n = Int64Array::from_iter_values(first..first + rows.len() as i64);
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(course),
                Arc::new(student),
                Arc::new(ts),
                Arc::new(n),
            ],
        )
        .unwrap()
    }

    fn keys(batch: &RecordBatch) -> Vec<(Option<String>, String, Option<i64>, i64)> {
        let c = batch.column(0).as_string::<i32>();
        let s = batch.column(1).as_string::<i32>();
        let t = batch
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let n = batch.column(3).as_primitive::<Int64Type>();
        (0..batch.num_rows())
            .map(|i| {
                (
                    c.is_valid(i).then(|| c.value(i).to_string()),
                    s.value(i).to_string(),
                    t.is_valid(i).then(|| t.value(i)),
                    n.value(i),
                )
            })
            .collect()
    }

    proptest! {
        /// The counting sort orders pairs as a comparison sort does, with
        /// equal hashes (and hashes equal in their top bits) among them.
        #[test]
        fn pairs_sorted_by_hash_as_by_comparison(
            pairs in proptest::collection::vec(
                (prop_oneof![
                    any::<u64>(),
                    (0u64..4).prop_map(|h| h << 60),
                    (0u64..4).prop_map(|h| (h << 60) | 7),
                ], any::<u64>()),
                0..20_000,
            ),
        ) {
            let mut expected = pairs.clone();
            expected.sort_unstable();
            prop_assert_eq!(sorted_by_hash(pairs), expected);
        }
    }

    /// The first copy of an id is kept, later ones dropped; two ids with
    /// one hash (forged) are both kept.
    #[test]
    fn first_copies_are_kept_and_collisions_are_two_ids() {
        let ids = ["a", "b", "a", "c", "b", "a"];
        // Positions 0..6; "a" and "b" forged to one hash.
        let hash = |id: &str| if id == "c" { 9 } else { 4 };
        let mut pairs: Vec<(u64, u64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (hash(id), i as u64))
            .collect();
        pairs.sort_unstable();
        let kept = first_copies(&pairs, |position| ids[position as usize]);
        assert_eq!(kept, vec![(4, 0), (4, 1), (9, 3)]);
    }

    /// Only the spill folders of gone processes, quiet for long enough,
    /// are removed.
    #[test]
    fn stale_spill_folders_of_gone_runs_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // No process has this id (above Linux's pid_max).
        let gone = tmp.path().join(format!("{SPILL_PREFIX}4294967294-abc123"));
        let mine = tmp
            .path()
            .join(format!("{SPILL_PREFIX}{}-def456", std::process::id()));
        let other = tmp.path().join("learnlake-ingest-xyz");
        for dir in [&gone, &mine, &other] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("0-20000-0.arrow"), b"rows").unwrap();
        }
        // Recently written: kept.
        assert_eq!(remove_stale_spills(tmp.path(), Duration::from_secs(600)), 0);
        assert!(gone.exists());
        assert_eq!(remove_stale_spills(tmp.path(), Duration::ZERO), 1);
        assert!(!gone.exists() && mine.exists() && other.exists());
    }

    /// Timestamps near each other, and at both ends of i64.
    fn time() -> impl Strategy<Value = i64> {
        prop_oneof![8 => -3i64..3, 1 => Just(i64::MAX), 1 => Just(i64::MIN + 1)]
    }

    proptest! {
        /// Rows copied a run at a time are the rows copied one by one, with
        /// the nulls of a part that lacks a column.
        #[test]
        fn runs_gather_what_rows_gather(
            a in proptest::collection::vec((proptest::option::of(0u8..4), 0u8..12, proptest::option::of(time())), 1..40),
            b in proptest::collection::vec((Just(None), 0u8..12, proptest::option::of(time())), 1..40),
            picks in proptest::collection::vec((any::<bool>(), 0usize..40, 1usize..6), 0..30),
        ) {
            let (first, second) = (part(&a, 0), part(&b, 1000));
            let second = without_null_columns(&second).unwrap();
            prop_assert!(second.column_by_name("course_id").is_none());
            let parts = [Slice::whole(first), Slice::whole(second)];
            let parts: Vec<&Slice> = parts.iter().collect();
            let mut indices = Vec::new();
            for (which, start, n) in picks {
                let p = usize::from(which);
                let len = parts[p].len();
                indices.extend((start..start + n).map(|row| (p, row % len)));
            }
            let runs = runs(&indices);
            prop_assert_eq!(runs.iter().map(|r| r.2).sum::<usize>(), indices.len());
            let by_runs = gather_by(&schema(), &parts, &indices, &runs, true).unwrap();
            let by_rows = gather_by(&schema(), &parts, &indices, &runs, false).unwrap();
            prop_assert_eq!(keys(&by_runs), keys(&by_rows));
            prop_assert_eq!(by_runs, by_rows);
        }
    }

    /// Parts held without their all-null columns come back whole.
    #[test]
    fn all_null_columns_are_left_out_and_restored() {
        let full = part(&[(None, 2, Some(5)), (None, 1, None)], 0);
        let narrow = without_null_columns(&full).unwrap();
        assert_eq!(narrow.num_columns(), 3, "course_id is all null");
        assert!(narrow.column_by_name("course_id").is_none());
        let other = part(&[(Some(1), 0, Some(1))], 10);
        let got = sorted(&schema(), &[Slice::whole(narrow), Slice::whole(other)]).unwrap();
        assert_eq!(got.schema(), schema());
        assert_eq!(
            keys(&got),
            [
                (None, "s1".to_string(), None, 1),
                (None, "s2".to_string(), Some(5), 0),
                (Some("c1".to_string()), "s0".to_string(), Some(1), 10),
            ]
        );
    }

    proptest! {
        /// The integer-key sort gives the order of sorting the values
        /// themselves (nulls first, negative timestamps included), ties in
        /// input order, every row once.
        #[test]
        fn integer_keys_sort_like_the_values(
            a in proptest::collection::vec((proptest::option::of(0u8..4), 0u8..12, proptest::option::of(time())), 0..60),
            b in proptest::collection::vec((proptest::option::of(0u8..4), 0u8..12, proptest::option::of(time())), 0..60),
            pick in proptest::collection::vec(any::<bool>(), 60),
        ) {
            // The first part whole, of the second the rows `pick` selects,
            // without its all-null columns.
            let (first, second) = (part(&a, 0), part(&b, 1000));
            let rows: Vec<u32> = (0..b.len() as u32).filter(|&r| pick[r as usize]).collect();
            let selected = take_record_batch(&second, &UInt32Array::from(rows.clone())).unwrap();
            let parts = [
                Slice::whole(first.clone()),
                Slice { batch: without_null_columns(&second).unwrap(), rows: Some(rows.into()) },
            ];
            let got = keys(&sorted(&schema(), &parts).unwrap());
            let mut expected: Vec<_> = keys(&first).into_iter().chain(keys(&selected)).collect();
            expected.sort();
            prop_assert_eq!(&got, &expected);
            let unpacked = keys(&sorted_packing(&schema(), &parts, 0).unwrap());
            prop_assert_eq!(unpacked, expected);
        }
    }
}
