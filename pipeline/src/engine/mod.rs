//! The SQL engine: a DataFusion session over the lake, with a bounded memory
//! pool that spills to disk, and every lake table registered by name.

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
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tracing::debug;

use crate::Result;
use crate::lake::{LakeTable, Store};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Memory before operators spill to disk.
    pub memory_limit_bytes: usize,
    /// DataFusion target_partitions.
    pub target_partitions: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 4 << 30,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A session over `lake`, with every table that exists registered.
pub async fn session(lake: &Store, options: &EngineOptions) -> Result<SessionContext> {
    // Listings are not cached: analysis replaces partitions and reads them
    // back in the same session, and a cached listing would hold stale sizes.
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit_bytes)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        )
        .build_arc()?;
    // DATAFUSION_* variables tune the engine (e.g.
    // DATAFUSION_EXECUTION_BATCH_SIZE); the settings below always apply.
    let mut config = SessionConfig::from_env()?
        .with_target_partitions(options.target_partitions)
        .with_information_schema(true)
        .set_bool(
            "datafusion.execution.listing_table_ignore_subdirectory",
            false,
        );
    // Filters are evaluated while decoding Parquet (late materialization),
    // unless DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS says otherwise.
    if std::env::var_os("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS").is_none() {
        config = config.set_bool("datafusion.execution.parquet.pushdown_filters", true);
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    // local_date(ts, zone) and local_hour(ts, zone), for the analytics SQL and for users.
    for udf in crate::analytics::udf::functions() {
        ctx.register_udf(udf);
    }
    ctx.register_object_store(&lake.base_url(), lake.inner.clone());
    register_lake(&ctx, lake).await?;
    Ok(ctx)
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
            table.name(),
            partition,
            table.file_schema(),
        )
        .await?;
    }
    for kind in [
        "activity",
        "attempts",
        "students",
        "courses",
        "enrollments",
        "assessments",
    ] {
        let folder = format!("_quarantine/{kind}");
        register_folder(
            ctx,
            lake,
            &format!("quarantine_{kind}"),
            &folder,
            Some("ingest_date"),
            Some(crate::lake::tables::quarantine_schema()),
        )
        .await?;
    }
    Ok(())
}

/// Registers one folder of Parquet files as a table, if it holds any.
pub async fn register_folder(
    ctx: &SessionContext,
    lake: &Store,
    name: &str,
    folder: &str,
    partition: Option<&str>,
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
) -> Result<bool> {
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
    ctx.register_table(
        table.name(),
        Arc::new(MemTable::try_new(schema, vec![Vec::new()])?),
    )?;
    debug!(table = table.name(), "no files yet; registered empty");
    Ok(())
}
