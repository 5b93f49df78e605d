//! Erasure of one student (PRODUCT §10, `learnlake forget --student ID`):
//! their rows leave every Delta table of the lake, and so does every older
//! copy of them.
//!
//! Per table: the current files that hold the student's rows are rewritten
//! without them (row-group statistics skip the files that cannot hold the
//! id), and one commit swaps each for its rewrite (or drops it when nothing
//! else was in it). Then, because earlier versions and their files still
//! hold the rows (a week analyzed twice, a compaction's inputs), the files
//! no current version needs are deleted at once and the log before the
//! current version is cut (a checkpoint, then the older commits deleted:
//! the statistics of older commits name ids too). Time travel therefore
//! starts at the erasure, in every table; that is the point.
//!
//! Crash safety: each table's rows go in one commit. A run killed before a
//! commit leaves rewritten files no version references (deleted by the
//! re-run's cleanup or `vacuum`); killed after it, the student's rows are
//! gone from that table and the re-run finds nothing there, then finishes
//! the cleanup. Running it again is always safe and does nothing new once
//! it has finished.
//!
//! Which rows are the student's: in tables with a `student_id` column, the
//! rows with that id; in the quarantine, the rejected lines whose text (or
//! source file name) mentions the id as a whole word, one of the student's
//! e-mail addresses (any case) or their full name (five characters or
//! more, so a short name does not take others' lines with it).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::statistics::Statistics;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::delta::{self, Commit, DataFile, Replace};
use super::{LakeTable, Store, parquet_io};
use crate::{Error, Result};

/// The student being forgotten, and what identifies them in free text.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub student_id: String,
    /// Their e-mail addresses (from the students table), lower-cased.
    pub emails: Vec<String>,
    /// Their names as the students table has them.
    pub names: Vec<String>,
}

/// The shortest name matched in free text.
const MIN_NAME_CHARS: usize = 5;

impl Subject {
    pub fn new(student_id: &str) -> Self {
        Self {
            student_id: student_id.to_string(),
            ..Self::default()
        }
    }

    /// Whether `text` mentions the student: the id as a whole word (not
    /// inside a longer id), an e-mail address in any case, or a full name.
    pub fn mentioned_in(&self, text: &str) -> bool {
        if contains_word(text, &self.student_id) {
            return true;
        }
        if !self.emails.is_empty() {
            let lower = text.to_lowercase();
            if self.emails.iter().any(|e| lower.contains(e.as_str())) {
                return true;
            }
        }
        self.names
            .iter()
            .any(|n| n.chars().count() >= MIN_NAME_CHARS && text.contains(n.as_str()))
    }
}

/// Whether `word` occurs in `text` with no letter, digit or `_` right
/// before or after it.
pub fn contains_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let inside = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(word).any(|(at, _)| {
        !inside(text[..at].chars().next_back()) && !inside(text[at + word.len()..].chars().next())
    })
}

/// Which rows of a table are the student's.
#[derive(Clone, Copy, Debug)]
enum Rows {
    /// Rows whose `student_id` is the student's.
    StudentId,
    /// Rows whose text columns mention the student ([`Subject::mentioned_in`]).
    Mentioning(&'static [&'static str]),
}

/// The quarantine's columns that hold text of the rejected input.
const QUARANTINE_TEXT: &[&str] = &["raw", "source_file", "reason"];

/// The tables that hold students' rows, in the order they are erased: the
/// students table last, so an interrupted run can still find the
/// student's e-mail and name when it is run again.
fn tables_with_students() -> Vec<(String, String, Rows)> {
    let mut tables = Vec::new();
    for table in [
        LakeTable::Activity,
        LakeTable::Attempts,
        LakeTable::Enrollments,
        LakeTable::StudentWeek,
        LakeTable::RiskFlags,
    ] {
        tables.push((
            table.name().to_string(),
            table.folder().to_string(),
            Rows::StudentId,
        ));
    }
    for table in LakeTable::ALL {
        if let Some(folder) = table.quarantine_folder() {
            tables.push((
                format!("quarantine_{}", table.name()),
                folder,
                Rows::Mentioning(QUARANTINE_TEXT),
            ));
        }
    }
    tables.push((
        LakeTable::Students.name().to_string(),
        LakeTable::Students.folder().to_string(),
        Rows::StudentId,
    ));
    tables
}

/// What the erasure did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub table: String,
    /// The student's rows removed.
    pub rows: u64,
    /// Current files rewritten (or dropped) to remove them.
    pub files_rewritten: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Files of earlier versions deleted (they held the rows too).
    pub old_files_deleted: u64,
    /// Log entries before the current version deleted.
    pub log_entries_deleted: u64,
}

/// Looks the student up in the students table: their e-mail addresses and
/// names (empty when the table does not list them).
pub async fn subject(lake: &Store, student_id: &str) -> Result<Subject> {
    let mut subject = Subject::new(student_id);
    let folder = LakeTable::Students.folder();
    for path in delta::current_files(lake, folder).await? {
        let data = lake.get(&path).await?;
        for batch in parquet_io::decode(data, Some(&["student_id", "name", "email"]))? {
            let ids = text_column(&batch, "student_id")?;
            let names = text_column(&batch, "name")?;
            let emails = text_column(&batch, "email")?;
            for i in 0..batch.num_rows() {
                if ids.as_ref().is_some_and(|c| c.value(i) == Some(student_id)) {
                    if let Some(name) = names.as_ref().and_then(|c| c.value(i)) {
                        subject.names.push(name.to_string());
                    }
                    if let Some(email) = emails.as_ref().and_then(|c| c.value(i)) {
                        subject.emails.push(email.trim().to_lowercase());
                    }
                }
            }
        }
    }
    for list in [&mut subject.names, &mut subject.emails] {
        list.retain(|v| !v.trim().is_empty());
        list.sort();
        list.dedup();
    }
    Ok(subject)
}

/// The flag ids (`risk_flags.flag_id`, PRODUCT §8) the student's weeks had
/// or would have: from their risk_flags rows and, for flags whose row a
/// later analysis replaced, computed from their student_week rows.
pub async fn flag_ids(lake: &Store, student_id: &str) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for path in delta::current_files(lake, LakeTable::RiskFlags.folder()).await? {
        let data = lake.get(&path).await?;
        for batch in parquet_io::decode(data, Some(&["flag_id", "student_id"]))? {
            let (Some(flag), Some(student)) = (
                text_column(&batch, "flag_id")?,
                text_column(&batch, "student_id")?,
            ) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if student.value(i) == Some(student_id)
                    && let Some(flag) = flag.value(i)
                {
                    ids.insert(flag.to_string());
                }
            }
        }
    }
    let folder = LakeTable::StudentWeek.folder();
    let Some(table) = delta::open(lake, folder).await? else {
        return Ok(ids);
    };
    for (path, period_start) in delta::files(&table, folder)? {
        let Some(period_start) = period_start else {
            continue;
        };
        let as_of = period_start + chrono::Duration::days(6);
        let data = lake.get(&format!("{folder}/{path}")).await?;
        for batch in parquet_io::decode(data, Some(&["student_id", "course_id"]))? {
            let (Some(student), Some(course)) = (
                text_column(&batch, "student_id")?,
                text_column(&batch, "course_id")?,
            ) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if student.value(i) == Some(student_id)
                    && let Some(course) = course.value(i)
                {
                    ids.insert(flag_id(student_id, course, as_of));
                }
            }
        }
    }
    Ok(ids)
}

/// `flag_id` as queries/risk_flags.sql computes it: the first 32 hex digits
/// of SHA-256 over student_id, course_id and as_of_date, 0x1f between.
pub fn flag_id(student_id: &str, course_id: &str, as_of: chrono::NaiveDate) -> String {
    let mut h = Sha256::new();
    h.update(student_id.as_bytes());
    h.update([0x1f]);
    h.update(course_id.as_bytes());
    h.update([0x1f]);
    h.update(as_of.format("%Y-%m-%d").to_string().as_bytes());
    hex::encode(h.finalize())[..32].to_string()
}

/// A text column of a batch as `Utf8` (whatever string type the file
/// has), `None` when the batch lacks it.
struct Text(Arc<dyn Array>);

impl Text {
    fn value(&self, i: usize) -> Option<&str> {
        let strings = self.0.as_string::<i32>();
        strings.is_valid(i).then(|| strings.value(i))
    }
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<Option<Text>> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    Ok(Some(Text(cast(column, &DataType::Utf8)?)))
}

/// Which rows of `batch` are the student's.
fn matching(batch: &RecordBatch, rows: Rows, subject: &Subject) -> Result<BooleanArray> {
    let mut hits = vec![false; batch.num_rows()];
    let columns: &[&str] = match rows {
        Rows::StudentId => &["student_id"],
        Rows::Mentioning(columns) => columns,
    };
    for name in columns {
        let Some(column) = text_column(batch, name)? else {
            continue;
        };
        for (i, hit) in hits.iter_mut().enumerate() {
            if *hit {
                continue;
            }
            *hit = match (rows, column.value(i)) {
                (_, None) => false,
                (Rows::StudentId, Some(v)) => v == subject.student_id,
                (Rows::Mentioning(_), Some(v)) => subject.mentioned_in(v),
            };
        }
    }
    Ok(BooleanArray::from(hits))
}

/// Whether the file's row-group statistics allow `student_id` = the id.
fn may_hold(builder: &ParquetRecordBatchReaderBuilder<Bytes>, student_id: &str) -> bool {
    let metadata = builder.metadata();
    let Some(column) = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "student_id")
    else {
        return false;
    };
    let id = student_id.as_bytes();
    metadata.row_groups().iter().any(|rg| {
        match rg.column(column).statistics() {
            Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                // Exact bounds only: a truncated max may be below the id.
                (Some(min), Some(max)) if s.max_is_exact() => min.data() <= id && id <= max.data(),
                (Some(min), _) => min.data() <= id,
                _ => true,
            },
            _ => true,
        }
    })
}

/// A file's rewrite without the student's rows.
struct Rewrite {
    path: String,
    rows: u64,
    bytes_read: u64,
    /// The file without them, `None` when nothing else was in it.
    add: Option<(DataFile, Bytes)>,
}

/// Rewrites one file without the student's rows; `None` when it has none.
fn rewrite(
    data: Bytes,
    path: &str,
    partition: Option<chrono::NaiveDate>,
    rows: Rows,
    subject: &Subject,
    dry_run: bool,
) -> Result<Option<Rewrite>> {
    let bytes_read = data.len() as u64;
    let builder = ParquetRecordBatchReaderBuilder::try_new(data.clone())?;
    if matches!(rows, Rows::StudentId) && !may_hold(&builder, &subject.student_id) {
        return Ok(None);
    }
    // First only the matched columns: most files the statistics let
    // through hold none of the student's rows.
    let columns: &[&str] = match rows {
        Rows::StudentId => &["student_id"],
        Rows::Mentioning(columns) => columns,
    };
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let mut found = 0u64;
    for batch in builder.with_projection(mask).build()? {
        found += matching(&batch?, rows, subject)?.true_count() as u64;
    }
    if found == 0 {
        return Ok(None);
    }
    if dry_run {
        return Ok(Some(Rewrite {
            path: path.to_string(),
            rows: found,
            bytes_read,
            add: None,
        }));
    }
    let (removed, add) = rewrite_without(data, path, partition, "rewritten", |batch| {
        matching(batch, rows, subject)
    })?;
    Ok(Some(Rewrite {
        path: path.to_string(),
        rows: removed,
        bytes_read,
        add,
    }))
}

/// A table's file (`path` relative to the table's folder) rewritten without
/// the rows `drop` picks, streamed batch by batch: how many it removed, and
/// the new file with its bytes (`None` when no row is left), named
/// `part-<label>-<hash>.parquet` beside `path` after what it replaces and
/// holds, so a re-run writes the same name. Erasure and xAPI voiding both
/// rewrite committed files this way.
pub(crate) fn rewrite_without(
    data: Bytes,
    path: &str,
    partition: Option<chrono::NaiveDate>,
    label: &str,
    drop: impl Fn(&RecordBatch) -> Result<BooleanArray>,
) -> Result<(u64, Option<(DataFile, Bytes)>)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)?
        .with_batch_size(64 * 1024)
        .build()?;
    let schema = reader.schema();
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        schema.clone(),
        Some(parquet_io::writer_properties()),
    )?;
    let (mut kept, mut removed) = (0u64, 0u64);
    for batch in reader {
        let batch = batch?;
        let hits = drop(&batch)?;
        removed += hits.true_count() as u64;
        let keep = datafusion::arrow::compute::not(&hits)?;
        let batch = filter_record_batch(&batch, &keep)?;
        kept += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    let data = Bytes::from(writer.into_inner()?);
    let add = (kept > 0).then(|| {
        let dir = path.rsplit_once('/').map(|(d, _)| format!("{d}/"));
        let mut h = Sha256::new();
        h.update(path.as_bytes());
        h.update(&data);
        let name = format!(
            "{}part-{label}-{}.parquet",
            dir.unwrap_or_default(),
            &hex::encode(h.finalize())[..24]
        );
        (
            DataFile {
                path: name,
                size: data.len() as u64,
                rows: kept,
                partition,
            },
            data,
        )
    });
    Ok((removed, add))
}

/// Removes the student's rows from one table in one commit (with
/// `dry_run`, only counts them).
async fn erase_table(
    lake: &Store,
    name: &str,
    folder: &str,
    rows: Rows,
    subject: &Subject,
    dry_run: bool,
) -> Result<Erased> {
    let mut erased = Erased {
        table: name.to_string(),
        ..Erased::default()
    };
    let Some(mut table) = delta::open(lake, folder).await? else {
        return Ok(erased);
    };
    let files = delta::files(&table, folder)?;
    let rewrites: Vec<Rewrite> = futures::stream::iter(files)
        .map(|(path, partition)| {
            let subject = subject.clone();
            async move {
                let data = lake.get(&format!("{folder}/{path}")).await?;
                tokio::task::spawn_blocking(move || {
                    rewrite(data, &path, partition, rows, &subject, dry_run)
                })
                .await
                .map_err(|e| Error::Worker(e.to_string()))?
            }
        })
        .buffer_unordered(2)
        .try_filter_map(|r| async move { Ok(r) })
        .try_collect()
        .await?;
    erased.rows = rewrites.iter().map(|r| r.rows).sum();
    erased.files_rewritten = rewrites.len() as u64;
    erased.bytes_read = rewrites.iter().map(|r| r.bytes_read).sum();
    if dry_run || rewrites.is_empty() {
        return Ok(erased);
    }
    let mut adds = Vec::new();
    for rewrite in &rewrites {
        if let Some((file, data)) = &rewrite.add {
            erased.bytes_written += file.size;
            lake.put(&format!("{folder}/{}", file.path), data.clone())
                .await?;
            adds.push(file.clone());
        }
    }
    let mut commit = Commit::append(adds);
    commit.replace = Replace::Files(rewrites.iter().map(|r| r.path.clone()).collect());
    // Counts only: the log keeps no trace of whom it was about.
    commit.info = vec![(
        "learnlake".to_string(),
        serde_json::json!({ "operation": "forget", "rows": erased.rows }),
    )];
    let (_, removed) = delta::commit_removing(&mut table, folder, commit).await?;
    crate::ingest::crash_point();
    for path in removed {
        lake.delete(&format!("{folder}/{path}")).await?;
        erased.old_files_deleted += 1;
    }
    Ok(erased)
}

/// Deletes every file of the table no current version needs (files of
/// earlier versions at once; files no commit ever added once they are an
/// hour old, as a younger one may belong to a run about to commit it) and
/// cuts its log at the current version; returns (files, log entries)
/// deleted.
async fn end_history(lake: &Store, folder: &str) -> Result<(u64, u64)> {
    let mut files = delta::vacuum(lake, folder, chrono::Duration::zero(), true).await?;
    files.extend(delta::vacuum(lake, folder, chrono::Duration::hours(1), false).await?);
    let log = delta::truncate_history(lake, folder).await?;
    Ok((files.len() as u64, log as u64))
}

/// Erases the student from every table of the lake (`dry_run`: counts
/// their rows and changes nothing), calling `done` after each table.
pub async fn forget(
    lake: &Store,
    subject: &Subject,
    dry_run: bool,
    mut done: impl FnMut(&Erased),
) -> Result<Vec<Erased>> {
    let mut report = Vec::new();
    let with_students = tables_with_students();
    for (name, folder, rows) in &with_students {
        let mut erased = erase_table(lake, name, folder, *rows, subject, dry_run).await?;
        if !dry_run {
            let (files, log) = end_history(lake, folder).await?;
            erased.old_files_deleted += files;
            erased.log_entries_deleted = log;
        }
        done(&erased);
        report.push(erased);
    }
    // The other tables (course_week, job_runs, reference tables without
    // students) hold no rows of theirs, but their history ends too, so the
    // whole lake's time travel starts at the same erasure.
    for (name, folder) in super::tables::folders() {
        if dry_run || with_students.iter().any(|(n, _, _)| *n == name) {
            continue;
        }
        let (files, log) = end_history(lake, &folder).await?;
        let erased = Erased {
            table: name,
            old_files_deleted: files,
            log_entries_deleted: log,
            ..Erased::default()
        };
        done(&erased);
        report.push(erased);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_matched_as_a_whole_word_only() {
        assert!(contains_word("guardian_report:S12", "S12"));
        assert!(contains_word("S12,Ann", "S12"));
        assert!(contains_word("{\"student_id\":\"S12\"}", "S12"));
        assert!(!contains_word("S123", "S12"));
        assert!(!contains_word("xS12", "S12"));
        assert!(!contains_word("S12_b", "S12"));
        assert!(contains_word("a S12 b S123", "S12"));
        assert!(!contains_word("anything", ""));
    }

    #[test]
    fn mentions_are_ids_emails_in_any_case_and_long_enough_names() {
        let subject = Subject {
            student_id: "s-7".into(),
            emails: vec!["ann.lee@example.edu".into()],
            names: vec!["Ann Lee".into(), "Al".into()],
        };
        assert!(subject.mentioned_in("to ANN.LEE@Example.EDU"));
        assert!(subject.mentioned_in("Dear Ann Lee,"));
        assert!(
            !subject.mentioned_in("Al was here"),
            "short names are not matched"
        );
        assert!(subject.mentioned_in("line for s-7"));
        assert!(!subject.mentioned_in("line for s-70"));
    }
}
