//! Lake tables as Delta Lake tables (delta-rs): the table's `_delta_log/`
//! says which Parquet files make up each version, so a set of files is
//! added, replaced or removed by one atomic commit, readers see one version
//! whole, and older versions stay readable (time travel) until vacuumed.
//!
//! learnlake writes the Parquet files itself (its own encoder and names, as
//! before) and commits them here; delta-rs keeps the log, checks concurrent
//! commits and serves the current snapshot to DataFusion. The Hive layout
//! stays: a partition's files live under `<column>=<YYYY-MM-DD>/`.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use chrono::{NaiveDate, Utc};
use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, MetadataExt, StructField, StructType, Transaction};
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::Store;
use crate::{Error, Result};

/// The folder of a table's transaction log, below the table's folder.
pub const LOG_FOLDER: &str = "_delta_log";

/// A Parquet file written below a table's folder, to be committed.
#[derive(Clone, Debug)]
pub struct DataFile {
    /// Path relative to the table's folder (`period_start=2026-03-02/part-0.parquet`).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
    /// The partition column's value, `YYYY-MM-DD`, for a partitioned table.
    pub partition: Option<NaiveDate>,
}

/// What a commit does to the table besides adding its files.
#[derive(Clone, Debug)]
pub enum Replace {
    /// Nothing: the files are appended.
    Nothing,
    /// Every current file of these partitions is removed in the same commit.
    Partitions(Vec<NaiveDate>),
    /// Every current file of the table is removed in the same commit.
    All,
    /// These files (relative to the table's folder) are removed in the same
    /// commit, each of which must still be in the table: a file another
    /// writer removed meanwhile (a compaction that merged it elsewhere)
    /// fails the commit instead of adding its rewrite next to the merge.
    Files(Vec<String>),
}

/// One commit's description.
#[derive(Clone, Debug)]
pub struct Commit {
    pub adds: Vec<DataFile>,
    pub replace: Replace,
    /// Idempotency keys: the commit carries each transaction `(app_id,
    /// version)`, and [`applied_version`] reads it back after a crash.
    pub app_transactions: Vec<(String, i64)>,
    /// Extra entries for the commit's `commitInfo` (who, why).
    pub info: Vec<(String, serde_json::Value)>,
    /// The columns of the added files (partition column included), when
    /// they may differ from the table's: new columns are added to the
    /// table's schema (older files read them as null), and columns the new
    /// files lack become nullable. A column whose type changed is an error.
    pub schema: Option<Schema>,
}

impl Commit {
    /// A commit that appends `adds`.
    pub fn append(adds: Vec<DataFile>) -> Self {
        Self {
            adds,
            replace: Replace::Nothing,
            app_transactions: Vec::new(),
            info: Vec::new(),
            schema: None,
        }
    }
}

/// The URL of a table folder, as delta-rs addresses it.
fn table_url(lake: &Store, folder: &str) -> Result<Url> {
    let text = lake.folder_url(folder);
    Url::parse(&text).map_err(|e| Error::InvalidUrl {
        url: text,
        reason: e.to_string(),
    })
}

/// delta-rs knows `file://` and `memory://` log stores by itself; remote
/// lakes commit through the object store's conditional put (no lock
/// service), with the store learnlake already configured.
fn register_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        struct PutIfAbsent;
        impl LogStoreFactory for PutIfAbsent {
            fn with_options(
                &self,
                prefixed_store: ObjectStoreRef,
                root_store: ObjectStoreRef,
                location: &Url,
                options: &StorageConfig,
            ) -> DeltaResult<Arc<dyn LogStore>> {
                Ok(default_logstore(
                    prefixed_store,
                    root_store,
                    location,
                    options,
                ))
            }
        }
        for scheme in ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://"] {
            if let Ok(url) = Url::parse(scheme) {
                logstore_factories().insert(url, Arc::new(PutIfAbsent));
            }
        }
    });
}

fn delta_error(table: &str, source: DeltaTableError) -> Error {
    Error::Delta {
        table: table.to_string(),
        source: Box::new(source),
    }
}

fn builder(lake: &Store, folder: &str) -> Result<DeltaTableBuilder> {
    register_log_stores();
    let url = table_url(lake, folder)?;
    Ok(DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| delta_error(folder, e))?
        .with_storage_backend(lake.inner.clone(), url))
}

/// Whether the folder holds a Delta table (a `_delta_log` with a commit).
pub async fn exists(lake: &Store, folder: &str) -> Result<bool> {
    lake.contains_file(&format!("{folder}/{LOG_FOLDER}"), ".json")
        .await
}

/// The table in `folder` at its newest version, `None` when there is none.
pub async fn open(lake: &Store, folder: &str) -> Result<Option<DeltaTable>> {
    if !exists(lake, folder).await? {
        return Ok(None);
    }
    let mut table = builder(lake, folder)?
        .build()
        .map_err(|e| delta_error(folder, e))?;
    table.load().await.map_err(|e| delta_error(folder, e))?;
    Ok(Some(table))
}

/// The table in `folder` as it was at `version` (time travel).
pub async fn open_version(lake: &Store, folder: &str, version: u64) -> Result<DeltaTable> {
    builder(lake, folder)?
        .with_version(version)
        .load()
        .await
        .map_err(|e| delta_error(folder, e))
}

/// The table in `folder`, created (empty, version 0) with `schema` when it
/// does not exist yet. `schema` holds every column, the partition column
/// (a `Date32`) included.
pub async fn open_or_create(
    lake: &Store,
    folder: &str,
    schema: &Schema,
    partition: Option<&str>,
) -> Result<DeltaTable> {
    if let Some(table) = open(lake, folder).await? {
        return Ok(table);
    }
    // One creator at a time in this process (the analysis's week workers
    // write a new table together); another process creating the same table
    // makes this create fail (no retry onto version 1), and the table it
    // created is opened instead.
    static CREATING: std::sync::LazyLock<tokio::sync::Mutex<()>> =
        std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));
    let _creating = CREATING.lock().await;
    if let Some(table) = open(lake, folder).await? {
        return Ok(table);
    }
    let columns = StructType::try_from_arrow(schema).map_err(|e| Error::WriteTable {
        table: folder.to_string(),
        source: Box::new(e),
    })?;
    let table = builder(lake, folder)?
        .build()
        .map_err(|e| delta_error(folder, e))?;
    let name = folder.rsplit('/').next().unwrap_or(folder).to_string();
    // Two writers creating the table at once: one wins, the other finds it.
    let created = table
        .create()
        .with_columns(columns.fields().cloned())
        .with_partition_columns(partition.map(str::to_string))
        .with_table_name(name)
        .with_save_mode(SaveMode::Ignore)
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .await;
    let mut table = match created {
        Ok(table) => table,
        Err(e) => match open(lake, folder).await? {
            Some(table) => return Ok(table),
            None => return Err(delta_error(folder, e)),
        },
    };
    adopt_existing_files(lake, folder, &mut table, partition).await?;
    Ok(table)
}

/// A folder written before the lake used Delta holds plain Parquet files:
/// the new table's first commit adds them as they are (Delta's "convert"),
/// so nothing a reader saw before disappears.
async fn adopt_existing_files(
    lake: &Store,
    folder: &str,
    table: &mut DeltaTable,
    partition: Option<&str>,
) -> Result<()> {
    let mut adds = Vec::new();
    for meta in lake.list(folder).await? {
        let rel = lake.relative(&meta.location);
        let Some(path) = rel.strip_prefix(&format!("{folder}/")) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if !name.ends_with(".parquet")
            || path
                .split('/')
                .any(|p| p.starts_with('_') || p.starts_with('.'))
            || name.contains('#')
        {
            continue;
        }
        let day = partition.and_then(|column| {
            path.split('/')
                .find_map(|p| p.strip_prefix(&format!("{column}=")))
                .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        });
        if partition.is_some() && day.is_none() {
            continue;
        }
        let data = lake.get(&rel).await?;
        let rows = datafusion::parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&data)
            .map(|m| m.file_metadata().num_rows() as u64)
            .map_err(|e| Error::ReadTable {
                table: rel.clone(),
                source: Box::new(e),
            })?;
        adds.push(DataFile {
            path: path.to_string(),
            size: meta.size,
            rows,
            partition: day,
        });
    }
    if adds.is_empty() {
        return Ok(());
    }
    let mut convert = Commit::append(adds);
    convert.info = vec![(
        "learnlake".to_string(),
        serde_json::json!({ "operation": "adopt files written before Delta" }),
    )];
    commit(table, folder, convert).await?;
    Ok(())
}

/// Commits `commit` to `table` (reloaded first when another writer moved
/// it; delta-rs retries on a concurrent commit and checks for conflicts);
/// returns the new version.
pub async fn commit(table: &mut DeltaTable, folder: &str, commit: Commit) -> Result<u64> {
    Ok(commit_removing(table, folder, commit).await?.0)
}

/// [`commit`], also returning the files (relative to the table's folder)
/// the commit removed from the table, for a caller that deletes them at
/// once (retention, erasure) instead of leaving them to `vacuum`.
pub async fn commit_removing(
    table: &mut DeltaTable,
    folder: &str,
    commit: Commit,
) -> Result<(u64, Vec<String>)> {
    // Commits of this process go one at a time, each from the newest
    // version: tasks of one run (the analysis's weeks) never race each
    // other; another process's commit is still checked by delta-rs.
    static COMMITTING: std::sync::LazyLock<tokio::sync::Mutex<()>> =
        std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));
    let _committing = COMMITTING.lock().await;
    table
        .update_state()
        .await
        .map_err(|e| delta_error(folder, e))?;
    let snapshot = table.snapshot().map_err(|e| delta_error(folder, e))?;
    let partition_columns = snapshot.metadata().partition_columns();
    let partition_column = partition_columns.first().cloned();
    let now = Utc::now().timestamp_millis();
    let mut actions = Vec::new();
    let (mode, predicate) = match &commit.replace {
        Replace::Nothing => (SaveMode::Append, None),
        Replace::All | Replace::Files(_) => (SaveMode::Overwrite, None),
        Replace::Partitions(days) => {
            let column = partition_column.clone().ok_or_else(|| {
                Error::Worker(format!("{folder} has no partition column to replace"))
            })?;
            let predicate = days
                .iter()
                .map(|d| format!("{column} = '{}'", d.format("%Y-%m-%d")))
                .collect::<Vec<_>>()
                .join(" OR ");
            (SaveMode::Overwrite, Some(predicate))
        }
    };
    if let Replace::Files(paths) = &commit.replace {
        let current: std::collections::HashSet<String> = snapshot
            .log_data()
            .into_iter()
            .map(|file| file.path().to_string())
            .collect();
        if let Some(gone) = paths.iter().find(|p| !current.contains(p.as_str())) {
            return Err(Error::WriteTable {
                table: folder.to_string(),
                source: format!(
                    "{gone} left the table while it was being rewritten (another writer \
                     compacted or replaced it); run the command again"
                )
                .into(),
            });
        }
    }
    let removing = |path: &str, values: &HashMap<String, Option<String>>| -> bool {
        match &commit.replace {
            Replace::Nothing => false,
            Replace::All => true,
            Replace::Files(paths) => paths.iter().any(|p| p == path),
            Replace::Partitions(days) => partition_column.as_ref().is_some_and(|column| {
                values
                    .get(column)
                    .and_then(|v| v.as_deref())
                    .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
                    .is_some_and(|d| days.contains(&d))
            }),
        }
    };
    // A file being added that is already in the table (the same content
    // under the same name) simply stays: neither removed nor added again.
    let mut adds = commit.adds.clone();
    let mut removed = Vec::new();
    if !matches!(commit.replace, Replace::Nothing) {
        for file in snapshot.log_data() {
            let path = file.path().to_string();
            if let Some(i) = adds.iter().position(|a| a.path == path) {
                adds.remove(i);
                continue;
            }
            let values: HashMap<String, Option<String>> = file
                .partition_values_map()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(|v| v.to_string())))
                .collect();
            if removing(&path, &values) {
                removed.push(path);
                actions.push(Action::Remove(file.remove_action(true)));
            }
        }
    }
    for file in &adds {
        let mut partition_values = HashMap::new();
        if let (Some(column), Some(day)) = (&partition_column, file.partition) {
            partition_values.insert(column.clone(), Some(day.format("%Y-%m-%d").to_string()));
        }
        actions.push(Action::Add(Add {
            path: file.path.clone(),
            partition_values,
            size: file.size as i64,
            modification_time: now,
            data_change: true,
            stats: Some(serde_json::json!({ "numRecords": file.rows }).to_string()),
            ..Default::default()
        }));
    }
    if let Some(schema) = &commit.schema
        && let Some(metadata) = evolved_metadata(snapshot, folder, schema)?
    {
        actions.insert(0, Action::Metadata(metadata));
    }
    if actions.is_empty() && commit.app_transactions.is_empty() {
        return Ok((table.version().unwrap_or(0), removed));
    }
    let mut properties = CommitProperties::default();
    for (app, version) in &commit.app_transactions {
        properties = properties.with_application_transaction(Transaction::new(app, *version));
    }
    if !commit.info.is_empty() {
        properties = properties.with_metadata(commit.info.clone());
    }
    let operation = DeltaOperation::Write {
        mode,
        partition_by: (!partition_columns.is_empty()).then(|| partition_columns.to_vec()),
        predicate,
    };
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(|e| delta_error(folder, e.into()))?;
    let version = finalized.version();
    table.state = Some(finalized.snapshot());
    Ok((version, removed))
}

/// The table's metadata with `schema`'s new columns added (and the columns
/// `schema` lacks made nullable), or `None` when `schema` fits the table.
fn evolved_metadata(
    snapshot: &deltalake_core::table::state::DeltaTableState,
    folder: &str,
    schema: &Schema,
) -> Result<Option<deltalake_core::kernel::Metadata>> {
    let current = snapshot.schema();
    let new = StructType::try_from_arrow(schema).map_err(|e| Error::WriteTable {
        table: folder.to_string(),
        source: Box::new(e),
    })?;
    let mut changed = false;
    let mut fields: Vec<StructField> = Vec::new();
    for field in current.fields() {
        match new.field(&field.name) {
            Some(added) if added.data_type != field.data_type => {
                return Err(Error::WriteTable {
                    table: folder.to_string(),
                    source: format!(
                        "column {} changed type from {} to {}; a table keeps its column types \
                         (delete the table's folder to start it again with the new ones)",
                        field.name, field.data_type, added.data_type
                    )
                    .into(),
                });
            }
            Some(_) => fields.push(field.clone()),
            None => {
                changed |= !field.nullable;
                let mut field = field.clone();
                field.nullable = true;
                fields.push(field);
            }
        }
    }
    for field in new.fields() {
        if current.field(&field.name).is_none() {
            changed = true;
            let mut field = field.clone();
            field.nullable = true;
            fields.push(field);
        }
    }
    if !changed {
        return Ok(None);
    }
    let columns = StructType::try_new(fields).map_err(|e| Error::WriteTable {
        table: folder.to_string(),
        source: Box::new(e),
    })?;
    let metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&columns)
        .map_err(|e| Error::WriteTable {
            table: folder.to_string(),
            source: Box::new(e),
        })?;
    Ok(Some(metadata))
}

/// The version of `app_id`'s last committed transaction, if any.
pub async fn applied_version(
    table: &DeltaTable,
    folder: &str,
    app_id: &str,
) -> Result<Option<i64>> {
    let snapshot = table.snapshot().map_err(|e| delta_error(folder, e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| delta_error(folder, e))
}

/// The files of the table's current version, relative to its folder, with
/// their partition value.
pub fn files(table: &DeltaTable, folder: &str) -> Result<Vec<(String, Option<NaiveDate>)>> {
    Ok(sized_files(table, folder)?
        .into_iter()
        .map(|(path, day, _)| (path, day))
        .collect())
}

/// Like [`files`], with each file's size in bytes.
pub fn sized_files(
    table: &DeltaTable,
    folder: &str,
) -> Result<Vec<(String, Option<NaiveDate>, u64)>> {
    let snapshot = table.snapshot().map_err(|e| delta_error(folder, e))?;
    Ok(snapshot
        .log_data()
        .into_iter()
        .map(|file| {
            let day = file.partition_values_map().into_iter().find_map(|(_, v)| {
                v.and_then(|v| NaiveDate::parse_from_str(&v.to_string(), "%Y-%m-%d").ok())
            });
            (file.path().to_string(), day, file.size().max(0) as u64)
        })
        .collect())
}

/// The data files a reader of the folder's table sees now, relative to the
/// lake root: the Delta table's current files, or for a folder written
/// before the lake used Delta, its Parquet files.
pub async fn current_files(lake: &Store, folder: &str) -> Result<Vec<String>> {
    if let Some(table) = open(lake, folder).await? {
        return Ok(files(&table, folder)?
            .into_iter()
            .map(|(path, _)| format!("{folder}/{path}"))
            .collect());
    }
    Ok(lake
        .list(folder)
        .await?
        .into_iter()
        .map(|meta| lake.relative(&meta.location))
        .filter(|rel| {
            rel.ends_with(".parquet")
                && !rel[folder.len()..]
                    .split('/')
                    .any(|p| p.starts_with('_') || p.starts_with('.') || p.contains('#'))
        })
        .collect())
}

/// The table's current version as a DataFusion table (partition pruning
/// and file statistics included), read with `ctx`'s Parquet settings (text
/// as `Utf8` unless the session forces view types).
pub async fn provider(
    table: &DeltaTable,
    ctx: &datafusion::prelude::SessionContext,
) -> Result<Arc<dyn TableProvider>> {
    Ok(table
        .table_provider()
        .with_session(Arc::new(ctx.state()))
        .await?)
}

/// What [`compact`] did to one table.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Compacted {
    pub files_removed: u64,
    pub files_added: u64,
    /// The table's version after the compaction (none when nothing changed).
    pub version: Option<u64>,
}

/// Merges each partition's small files into files of about `target_bytes`
/// in one commit (delta-rs's optimize: its commit changes no data, so
/// readers and concurrent ingest commits go on). With `before`, only the
/// partitions dated before it (the table's partition column).
pub async fn compact(
    lake: &Store,
    folder: &str,
    target_bytes: u64,
    before: Option<NaiveDate>,
) -> Result<Compacted> {
    let Some(table) = open(lake, folder).await? else {
        return Ok(Compacted::default());
    };
    let column = table
        .snapshot()
        .map_err(|e| delta_error(folder, e))?
        .metadata()
        .partition_columns()
        .first()
        .cloned();
    let value = before.map(|d| d.format("%Y-%m-%d").to_string());
    let filters: Vec<deltalake_core::FilterLiteral<'_>> = match (&column, &value) {
        (Some(column), Some(value)) => vec![(
            column.as_str(),
            deltalake_core::FilterOp::Lt,
            deltalake_core::FilterValue::Scalar(value.as_str()),
        )],
        _ => Vec::new(),
    };
    let before_version = table.version();
    let (table, metrics) = table
        .optimize()
        .with_filters(&filters)
        .with_target_size(std::num::NonZeroU64::new(target_bytes.max(1)).expect("at least 1"))
        .with_writer_properties(super::parquet_io::writer_properties())
        .await
        .map_err(|e| delta_error(folder, e))?;
    Ok(Compacted {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        version: (table.version() != before_version)
            .then(|| table.version())
            .flatten(),
    })
}

/// Deletes the table's data files that no version newer than `retention`
/// needs: files removed by a commit at least that long ago and, unless
/// `lite`, files no commit ever added (left by a run that died before its
/// commit) written at least that long ago. Returns the files deleted.
pub async fn vacuum(
    lake: &Store,
    folder: &str,
    retention: chrono::Duration,
    lite: bool,
) -> Result<Vec<String>> {
    let Some(table) = open(lake, folder).await? else {
        return Ok(Vec::new());
    };
    let mode = if lite {
        deltalake_core::operations::vacuum::VacuumMode::Lite
    } else {
        deltalake_core::operations::vacuum::VacuumMode::Full
    };
    // delta-rs counts every expired tombstone as deleted, also those whose
    // file is gone already (deleted at once by retention or forget): only
    // files that were there count.
    let present: std::collections::HashSet<String> = lake
        .list(folder)
        .await?
        .iter()
        .filter_map(|m| {
            lake.relative(&m.location)
                .strip_prefix(&format!("{folder}/"))
                .map(str::to_string)
        })
        .collect();
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(mode)
        .await
        .map_err(|e| delta_error(folder, e))?;
    Ok(metrics
        .files_deleted
        .into_iter()
        .filter(|path| present.contains(path))
        .collect())
}

/// Ends the table's history at its current version: writes a checkpoint
/// of it and deletes every log entry (commits and older checkpoints)
/// before it, so no earlier version can be read, nor any value the old
/// commits' file statistics held (erasure). Returns the log files deleted.
pub async fn truncate_history(lake: &Store, folder: &str) -> Result<usize> {
    let Some(table) = open(lake, folder).await? else {
        return Ok(0);
    };
    let version = table.version().unwrap_or(0);
    if version == 0 {
        return Ok(0);
    }
    deltalake_core::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(|e| delta_error(folder, e))?;
    // A minute ahead, so an object store whose clock runs ahead of ours
    // still counts every entry before the checkpoint as expired.
    let cutoff = Utc::now().timestamp_millis() + 60_000;
    deltalake_core::checkpoints::cleanup_expired_logs_for(
        version as _,
        table.log_store().as_ref(),
        cutoff,
        None,
    )
    .await
    .map_err(|e| delta_error(folder, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new("day", DataType::Date32, false),
        ])
    }

    #[tokio::test]
    async fn a_table_fits_the_schema_it_was_created_with_and_grows_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Store::open(dir.path().to_str().unwrap(), true).unwrap();
        let table = open_or_create(&lake, "t", &schema(), Some("day"))
            .await
            .unwrap();
        let snapshot = table.snapshot().unwrap();
        assert!(
            evolved_metadata(snapshot, "t", &schema())
                .unwrap()
                .is_none(),
            "the creating schema needs no change"
        );
        let mut wider: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        wider.push(Field::new("extra", DataType::Int64, true));
        assert!(
            evolved_metadata(snapshot, "t", &Schema::new(wider))
                .unwrap()
                .is_some()
        );
        let mut retyped: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        retyped[0] = Field::new("id", DataType::Int64, false);
        let err = evolved_metadata(snapshot, "t", &Schema::new(retyped)).unwrap_err();
        assert!(err.to_string().contains("column id changed type"), "{err}");
    }
}
