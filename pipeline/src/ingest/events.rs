//! Event kinds (activity, attempts): each batch is parsed, deduplicated on
//! its ids within itself and against the whole lake (the id index), written
//! as one Parquet file per touched date partition, then quarantined and
//! committed. Attempts naming an unknown assessment are kept and counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use tracing::{info, info_span, warn};

use super::batches::{Batch, cut_batches};
use super::crash::crash_point;
use super::id_index::IdIndex;
use super::ledger::{Ledger, LedgerEntry, commit};
use super::parse::{Parsed, parse_batch};
use super::quarantine::{Rejected, write_quarantine};
use super::records::Kind;
use super::reference::snapshot_ids;
use super::{IngestOptions, KindReport, Pending, blocking};
use crate::lake::tables::{LakeTable, QUARANTINE};
use crate::lake::{Store, parquet_io, partition_folder};
use crate::{Error, Result};

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
            "rows quarantined; see {QUARANTINE}/{}",
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

/// `YYYY-MM-DD` of days since 1970-01-01.
pub fn date_string(days: i32) -> String {
    (chrono::NaiveDate::default() + chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%d")
        .to_string()
}
