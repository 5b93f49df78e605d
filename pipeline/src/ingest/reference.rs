//! Reference kinds (students, courses, enrollments, assessments): keyed
//! snapshots. All new files of a kind are merged into the current snapshot
//! (the last row of a key wins) and the one snapshot file is replaced
//! atomically; withdrawals without a date are dated and enrollments of
//! unknown courses counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use tracing::warn;

use super::batches::{Batch, Unit};
use super::crash::crash_point;
use super::events::batch_transaction;
use super::ledger::{Ledger, LedgerEntry, LedgerSource, commit};
use super::parse::{Parsed, parse_item};
use super::quarantine::{Rejected, write_quarantine};
use super::records::{Kind, key_column};
use super::source::{self, Dialect, Format};
use super::{IngestOptions, KindReport, Pending, blocking, progress};
use crate::lake::delta::{self, DataFile};
use crate::lake::tables::LakeTable;
use crate::lake::{Store, parquet_io};
use crate::{Error, Result};

pub(super) async fn ingest_reference(
    lake: &Store,
    landing: &Store,
    kind: Kind,
    pending: Vec<Pending>,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<KindReport> {
    let table = kind.table();
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
                dialect: Dialect::Native,
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
                    records: false,
                    dialect: Dialect::Native,
                });
            }
        }
        batch.sources.push(LedgerSource {
            path: p.source.path.clone(),
            size: p.source.size,
            content_hash: p.content_hash.clone(),
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
    for file in delta::current_files(lake, table.folder()).await? {
        for b in parquet_io::decode(lake.get(&file).await?, None)? {
            keys.extend(reference_keys(kind, &b)?);
            inputs.push(b);
        }
    }
    let old_rows = keys.len();
    let mut new_rows = 0u64;
    for p in &parsed {
        keys.extend(p.keys.iter().flatten().map(str::to_string));
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
    // The new snapshot replaces the table's files in one commit, which
    // carries the batch's transaction id: after a crash the next run sees it
    // committed and does not commit it again.
    let transactions = vec![(batch_transaction(&id), 0)];
    let mut delta_table = delta::open_or_create(lake, table.folder(), &schema, None).await?;
    if delta::applied_version(&delta_table, table.folder(), &transactions[0].0)
        .await?
        .is_none()
    {
        let rows = snapshot.num_rows() as u64;
        let data = parquet_io::encode(&schema, &[snapshot])?;
        let path = format!("part-{id}.parquet");
        let size = data.len() as u64;
        lake.put(&format!("{}/{path}", table.folder()), data)
            .await?;
        crash_point();
        let mut commit = delta::Commit::append(vec![DataFile {
            path,
            size,
            rows,
            partition: None,
        }]);
        commit.replace = delta::Replace::All;
        commit.app_transactions = transactions.clone();
        commit.info = vec![(
            "learnlake".to_string(),
            serde_json::json!({ "operation": "ingest", "kind": kind.name(), "batch": id }),
        )];
        delta::commit(&mut delta_table, table.folder(), commit).await?;
        crash_point();
    }
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
    write_quarantine(lake, kind, &id, &rejected, &sources, &transactions, options).await?;
    commit(
        lake,
        &LedgerEntry {
            batch_id: id.clone(),
            kind: kind.name().to_string(),
            committed_at: options.now,
            sources: batch.sources.clone(),
            batches: vec![id],
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
                table: LakeTable::Enrollments.name().into(),
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
            table: LakeTable::Enrollments.name().into(),
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
            table: LakeTable::Enrollments.name().into(),
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
pub(super) async fn snapshot_ids(
    lake: &Store,
    table: LakeTable,
    column: &str,
) -> Result<HashSet<String>> {
    let mut known = HashSet::new();
    for file in delta::current_files(lake, table.folder()).await? {
        for b in parquet_io::decode(lake.get(&file).await?, Some(&[column]))? {
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
