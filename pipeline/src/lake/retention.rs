//! Retention (PRODUCT §10): raw partitions older than the configured age
//! leave the lake. The raw event tables (activity by `event_date`, attempts
//! by `submitted_date`) and every quarantine (by `ingest_date`) drop their
//! partitions dated before the cutoff, one Delta commit per table, and the
//! files those commits removed are deleted at once: the data is gone, not
//! only hidden from the current version (time travel to a version that
//! still listed them then fails for those files, as it should).
//!
//! Crash safety: a run killed between a commit and its deletions leaves
//! files no version needs; the next `learnlake vacuum` deletes them. The
//! derived weeks (student_week, course_week, risk_flags) and reference
//! snapshots are not raw partitions and stay.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::delta::{self, Commit, Replace};
use super::{LakeTable, Store};
use crate::Result;

/// What retention dropped (or, in a dry run, would drop) from one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The table's name (`activity`, `quarantine_activity`, …).
    pub table: String,
    pub partitions: Vec<NaiveDate>,
    pub files: usize,
    pub bytes: u64,
}

/// The raw tables retention applies to: (name, folder).
fn raw_tables() -> Vec<(String, String)> {
    let mut tables = Vec::new();
    for table in [LakeTable::Activity, LakeTable::Attempts] {
        tables.push((table.name().to_string(), table.folder().to_string()));
    }
    for table in LakeTable::ALL {
        if let Some(folder) = table.quarantine_folder() {
            tables.push((format!("quarantine_{}", table.name()), folder));
        }
    }
    tables
}

/// Drops every raw partition dated before `cutoff` (`dry_run`: only
/// reports them). Tables with nothing to drop are left out of the result.
pub async fn drop_raw_before(
    lake: &Store,
    cutoff: NaiveDate,
    dry_run: bool,
) -> Result<Vec<Dropped>> {
    let mut report = Vec::new();
    for (name, folder) in raw_tables() {
        let Some(mut table) = delta::open(lake, &folder).await? else {
            continue;
        };
        let old: Vec<(String, NaiveDate)> = delta::files(&table, &folder)?
            .into_iter()
            .filter_map(|(path, day)| day.filter(|d| *d < cutoff).map(|d| (path, d)))
            .collect();
        if old.is_empty() {
            continue;
        }
        let days: BTreeSet<NaiveDate> = old.iter().map(|(_, d)| *d).collect();
        let paths: BTreeSet<&str> = old.iter().map(|(p, _)| p.as_str()).collect();
        let bytes = lake
            .list(&folder)
            .await?
            .iter()
            .filter(|m| {
                lake.relative(&m.location)
                    .strip_prefix(&format!("{folder}/"))
                    .is_some_and(|rel| paths.contains(rel))
            })
            .map(|m| m.size)
            .sum();
        let mut dropped = Dropped {
            table: name.clone(),
            partitions: days.iter().copied().collect(),
            files: old.len(),
            bytes,
        };
        if !dry_run {
            let mut commit = Commit::append(Vec::new());
            commit.replace = Replace::Partitions(dropped.partitions.clone());
            commit.info = vec![(
                "learnlake".to_string(),
                serde_json::json!({
                    "operation": "retention",
                    "before": cutoff.to_string(),
                    "partitions": dropped.partitions.len(),
                }),
            )];
            let (_, removed) = delta::commit_removing(&mut table, &folder, commit).await?;
            // Files a concurrent commit added to those partitions were
            // removed too: they are deleted like the rest.
            dropped.files = removed.len();
            for path in removed {
                lake.delete(&format!("{folder}/{path}")).await?;
            }
        }
        report.push(dropped);
    }
    Ok(report)
}
