//! The SQL engine: a DataFusion session over the lake, with a bounded memory
//! pool that spills to disk, every lake table registered by name, and the
//! SQL functions learnlake adds ([`udf`]).
//!
//! Everything the engine is tuned by arrives in [`EngineOptions`]; nothing
//! here reads the environment (the binary collects `DATAFUSION_*` and
//! `LEARNLAKE_EXPLAIN_ANALYZE` at its edge).

pub mod cluster;
mod factors;
pub mod udf;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use tracing::debug;

use crate::config::Engine;
use crate::lake::{LakeTable, Store};
use crate::{Error, Result};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Memory before operators spill to disk.
    pub memory_limit_bytes: usize,
    /// DataFusion target_partitions.
    pub target_partitions: usize,
    /// DataFusion settings by their full key (`datafusion.execution.batch_size`
    /// = `"4096"`), applied after learnlake's own defaults, so they can
    /// override them (e.g. `datafusion.execution.parquet.pushdown_filters`).
    pub datafusion: Vec<(String, String)>,
    /// Run each analytics query once more under EXPLAIN ANALYZE and log its
    /// plan with metrics (for tuning; costs a second run of every query).
    pub explain_analyze: bool,
    /// Where the queries run: in this process, or on a Ballista cluster.
    pub engine: Engine,
    /// Executors a `ballista-standalone` engine starts in this process.
    pub standalone_executors: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 4 << 30,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            datafusion: Vec::new(),
            explain_analyze: false,
            engine: Engine::Local,
            standalone_executors: 2,
        }
    }
}

/// learnlake's switches that travel with a session (as a config extension),
/// so every query run on it, and on the sessions derived from it, sees them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tuning {
    /// See [`EngineOptions::explain_analyze`].
    pub explain_analyze: bool,
}

impl Tuning {
    /// The switches of `ctx` (defaults for a session not made by [`session`]).
    pub fn of(ctx: &SessionContext) -> Self {
        ctx.copied_config()
            .get_extension::<Tuning>()
            .map_or_else(Self::default, |t| *t)
    }
}

/// The engine's runtime over `lake`: its object store registered, a memory
/// pool of `memory_limit_bytes` that spills to the OS temp directory, and no
/// cache of listings (analysis replaces partitions and reads them back in the
/// same session, and a cached listing would hold stale sizes). The same for
/// a command's session and a cluster's scheduler and executors.
pub fn runtime(lake: &Store, memory_limit_bytes: usize) -> Result<Arc<RuntimeEnv>> {
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit_bytes)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        )
        .build_arc()?;
    runtime.register_object_store(&lake.base_url(), lake.inner.clone());
    Ok(runtime)
}

/// A session over `lake`, with every table that exists registered.
pub async fn session(lake: &Store, options: &EngineOptions) -> Result<SessionContext> {
    let runtime = runtime(lake, options.memory_limit_bytes)?;
    let mut config = SessionConfig::new()
        .with_target_partitions(options.target_partitions)
        .with_information_schema(true)
        .set_bool(
            "datafusion.execution.listing_table_ignore_subdirectory",
            false,
        )
        // Filters are evaluated while decoding Parquet (late materialization).
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        // Text reads as Utf8, the lake's type, from Delta and Parquet tables
        // alike, so query results (and the files and exports made of them)
        // keep the documented types.
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .with_extension(Arc::new(Tuning {
            explain_analyze: options.explain_analyze,
        }));
    for (key, value) in &options.datafusion {
        config
            .options_mut()
            .set(key, value)
            .map_err(|source| Error::EngineSetting {
                key: key.clone(),
                value: value.clone(),
                source,
            })?;
    }
    let ctx = match &options.engine {
        Engine::Local => SessionContext::new_with_config_rt(config, runtime),
        cluster => cluster::connect(cluster, config, runtime, options.standalone_executors).await?,
    };
    register_functions(&ctx);
    register_lake(&ctx, lake).await?;
    Ok(ctx)
}

/// Registers learnlake's SQL functions on `ctx`: `local_date(ts, zone)`,
/// `local_hour(ts, zone)` and `top_factors(n, below, name, value, …)`, for
/// the analytics SQL and for users.
pub fn register_functions(ctx: &SessionContext) {
    for udf in udf::functions() {
        ctx.register_udf(udf);
    }
}

/// Registers (or re-registers) every lake table that has files, plus the
/// quarantine of each kind as `quarantine_<kind>`.
pub async fn register_lake(ctx: &SessionContext, lake: &Store) -> Result<()> {
    for table in LakeTable::ALL {
        let partition = table.partition_column();
        register_folder(
            ctx,
            lake,
            table.name(),
            table.folder(),
            partition,
            table.file_schema(),
        )
        .await?;
    }
    for table in LakeTable::ALL {
        let Some(folder) = table.quarantine_folder() else {
            continue;
        };
        register_folder(
            ctx,
            lake,
            &format!("quarantine_{}", table.name()),
            &folder,
            Some(crate::lake::tables::QUARANTINE_PARTITION),
            Some(crate::lake::tables::quarantine_schema()),
        )
        .await?;
    }
    Ok(())
}

/// Registers one folder as a table, if it holds any data: a Delta table's
/// current version (pruned by partition values and file statistics), or the
/// Parquet files of a folder written before the lake used Delta.
pub async fn register_folder(
    ctx: &SessionContext,
    lake: &Store,
    name: &str,
    folder: &str,
    partition: Option<&str>,
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
) -> Result<bool> {
    if let Some(delta) = crate::lake::delta::open(lake, folder).await? {
        ctx.deregister_table(name)?;
        let provider = crate::lake::delta::provider(&delta, ctx).await?;
        if cluster::is_distributed(ctx) {
            // What a cluster's processes can read: the current version's
            // files, with their partition values.
            let files = crate::lake::delta::sized_files(&delta, folder)?
                .into_iter()
                .map(|(path, date, size)| cluster::SnapshotFile {
                    path: lake.path(&format!("{folder}/{path}")).to_string(),
                    size,
                    date: date.map(crate::lake::date32),
                })
                .collect();
            let table = cluster::SnapshotTable {
                store: lake.base_url().to_string(),
                partition: partition.map(str::to_string),
                files,
                schema: provider.schema(),
            };
            ctx.register_table(name, Arc::new(table))?;
        } else {
            ctx.register_table(name, provider)?;
        }
        return Ok(true);
    }
    let has_files = lake.contains_file(folder, ".parquet").await?;
    ctx.deregister_table(name)?;
    if !has_files {
        debug!(table = name, "no files yet; not registered");
        return Ok(false);
    }
    let url = ListingTableUrl::parse(lake.folder_url(folder))?;
    let mut options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if let Some(column) = partition {
        options = options.with_table_partition_cols(vec![(column.to_string(), DataType::Date32)]);
    }
    let config = ListingTableConfig::new(url).with_listing_options(options);
    let config = match schema {
        Some(schema) => config.with_schema(schema),
        None => config.infer_schema(&ctx.state()).await?,
    };
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(true)
}

/// Registers `table` as an empty table of its lake schema (partition column
/// included) unless it is registered already: analysis reads attempts and
/// assessments, which a lake may not have yet.
pub fn register_empty_if_missing(ctx: &SessionContext, table: LakeTable) -> Result<()> {
    if ctx.table_exist(table.name())? {
        return Ok(());
    }
    let Some(schema) = table.file_schema() else {
        return Ok(());
    };
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    if let Some(column) = table.partition_column() {
        fields.push(Arc::new(Field::new(column, DataType::Date32, false)));
    }
    let schema = Arc::new(Schema::new(fields));
    if cluster::is_distributed(ctx) {
        // An empty file list travels to a cluster; a MemTable does not.
        let empty = cluster::SnapshotTable {
            store: "file:///".to_string(),
            partition: table.partition_column().map(str::to_string),
            files: Vec::new(),
            schema,
        };
        ctx.register_table(table.name(), Arc::new(empty))?;
    } else {
        ctx.register_table(
            table.name(),
            Arc::new(MemTable::try_new(schema, vec![Vec::new()])?),
        )?;
    }
    debug!(table = table.name(), "no files yet; registered empty");
    Ok(())
}
