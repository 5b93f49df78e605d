//! The quarantine (`_quarantine/<kind>`, a Delta table partitioned by
//! `ingest_date`): rejected lines with their source, line number and reason,
//! one file per commit, and files too broken to read, quarantined whole.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};

use super::batches::Batch;
use super::crash::crash_point;
use super::events::batch_transaction;
use super::ledger::{Ledger, LedgerEntry, LedgerSource, commit};
use super::parse::lossy;
use super::records::Kind;
use super::{IngestOptions, Pending};
use crate::Result;
use crate::lake::delta::{self, DataFile};
use crate::lake::tables::{QUARANTINE_PARTITION, quarantine_schema, with_partition};
use crate::lake::{Store, parquet_io, partition_folder};

/// Rejected input on its way to the quarantine.
pub(super) struct Rejected {
    pub(super) source: usize,
    pub(super) line: Option<u64>,
    pub(super) raw: String,
    pub(super) reason: String,
}

/// Commits `rejected` to the kind's quarantine table (`ingest_date` = today)
/// as one file, in one Delta commit carrying `transactions`; a commit whose
/// transactions the table already has (a run restarted after a crash) is
/// not repeated.
pub(super) async fn write_quarantine(
    lake: &Store,
    kind: Kind,
    id: &str,
    rejected: &[&Rejected],
    sources: &[&str],
    transactions: &[(String, i64)],
    options: &IngestOptions,
) -> Result<()> {
    if rejected.is_empty() {
        return Ok(());
    }
    let folder = kind
        .table()
        .quarantine_folder()
        .expect("ingest tables have a quarantine");
    let schema = quarantine_schema();
    let mut table = delta::open_or_create(
        lake,
        &folder,
        &with_partition(&schema, Some(QUARANTINE_PARTITION)),
        Some(QUARANTINE_PARTITION),
    )
    .await?;
    if let Some((app, _)) = transactions.first()
        && delta::applied_version(&table, &folder, app)
            .await?
            .is_some()
    {
        return Ok(());
    }
    let day = options.now.date_naive();
    let partition = partition_folder(QUARANTINE_PARTITION, &day.format("%Y-%m-%d").to_string())?;
    let path = format!("{partition}/part-{id}.parquet");
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
    let columns: Vec<ArrayRef> = vec![
        Arc::new(source_file.finish()),
        Arc::new(line_number.finish()),
        Arc::new(raw.finish()),
        Arc::new(reason.finish()),
        Arc::new(at.finish().with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let data = parquet_io::encode(&schema, &[batch])?;
    let size = data.len() as u64;
    lake.put(&format!("{folder}/{path}"), data).await?;
    crash_point();
    let mut commit = delta::Commit::append(vec![DataFile {
        path,
        size,
        rows: rejected.len() as u64,
        partition: Some(day),
    }]);
    commit.app_transactions = transactions.to_vec();
    commit.info = vec![(
        "learnlake".to_string(),
        serde_json::json!({ "operation": "quarantine", "kind": kind.name(), "commit": id }),
    )];
    delta::commit(&mut table, &folder, commit).await?;
    crash_point();
    Ok(())
}

pub(super) async fn quarantine_whole_file(
    lake: &Store,
    kind: Kind,
    pending: &Pending,
    head: &[u8],
    reason: &str,
    ledger: &Ledger,
    options: &IngestOptions,
) -> Result<bool> {
    let source = LedgerSource {
        path: pending.source.path.clone(),
        size: pending.source.size,
        content_hash: pending.content_hash.clone(),
        version: pending.source.version.clone(),
        first_line: 0,
        last_line: 0,
        complete: true,
    };
    let mut batch = Batch::new(kind);
    batch.sources.push(source.clone());
    let id = batch.id();
    if ledger.committed.contains(&id) {
        return Ok(false);
    }
    let rejected = Rejected {
        source: 0,
        line: None,
        raw: lossy(head),
        reason: reason.to_string(),
    };
    // A file of another system's format feeds activity and attempts: it is
    // quarantined once, with activity; attempts only records it as read.
    let once = kind == Kind::Attempts && pending.source.dialect != super::source::Dialect::Native;
    let quarantined: &[&Rejected] = if once { &[] } else { &[&rejected] };
    write_quarantine(
        lake,
        kind,
        &id,
        quarantined,
        &[pending.source.path.as_str()],
        &[(batch_transaction(&id), 0)],
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
            batches: Vec::new(),
            rows_accepted: 0,
            duplicates: 0,
            rows_quarantined: quarantined.len() as u64,
        },
    )
    .await?;
    Ok(!once)
}
