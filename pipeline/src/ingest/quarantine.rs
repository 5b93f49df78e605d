//! The quarantine (`_quarantine/<kind>/ingest_date=D/part-<batch>.parquet`):
//! rejected lines with their source, line number and reason, one file per
//! batch, and files too broken to read, quarantined whole and committed.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};

use super::batches::Batch;
use super::crash::crash_point;
use super::ledger::{Ledger, LedgerEntry, LedgerSource, commit};
use super::parse::lossy;
use super::records::Kind;
use super::{IngestOptions, Pending};
use crate::Result;
use crate::lake::tables::{QUARANTINE_PARTITION, quarantine_schema};
use crate::lake::{Store, parquet_io, partition_folder};

/// Rejected input on its way to the quarantine.
pub(super) struct Rejected {
    pub(super) source: usize,
    pub(super) line: Option<u64>,
    pub(super) raw: String,
    pub(super) reason: String,
}

pub(super) async fn write_quarantine(
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
    let folder = kind
        .table()
        .quarantine_folder()
        .expect("ingest tables have a quarantine");
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
                QUARANTINE_PARTITION,
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

pub(super) async fn quarantine_whole_file(
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
