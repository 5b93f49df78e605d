//! The analytics SQL on an Apache DataFusion Ballista cluster.
//!
//! A Ballista client ships each query's logical plan to a scheduler, which
//! plans it into stages and hands their tasks to executors in other
//! processes. Three things must reach those processes, and a stock
//! scheduler or executor knows none of them:
//!
//! - **The lake's tables.** delta-rs's own DataFusion codec cannot carry a
//!   Delta table to Ballista 55 executors (its scan node has no physical
//!   codec, and its logical codec leaves extension nodes unimplemented), so
//!   a Delta table travels as its current snapshot's file list: a
//!   [`SnapshotTable`], encoded by [`LakeCodec`], which the scheduler turns
//!   into a plain Parquet scan of exactly those files (partition values
//!   included) that every executor can decode.
//! - **learnlake's SQL functions** (`local_date`, `local_hour`).
//! - **The lake's object store** (`s3://…` with its endpoint and options).
//!
//! [`scheduler`] and [`executor`] run the two kinds of process with all
//! three; `ballista-standalone` starts both inside the client ([`connect`]).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use ballista::prelude::SessionContextExt;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::array::{Array, BooleanArray, Date32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue, TableReference};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{FunctionRegistry, SessionState, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    AggregateUDF, Expr, Extension, LogicalPlan, ScalarUDF, TableProviderFilterPushDown, WindowUDF,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::Engine;
use crate::lake::Store;
use crate::{Error, Result};

/// One data file of a [`SnapshotTable`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Its object-store path (below the store's root, no leading `/`).
    pub path: String,
    /// Bytes (the Parquet reader finds the footer from it).
    pub size: u64,
    /// The partition column's value, days since 1970-01-01.
    pub date: Option<i32>,
}

/// A table as a fixed list of Parquet files: a Delta table's current
/// version, or a result materialised into the lake's work folder. It
/// serialises to a few bytes per file, and scans as DataFusion's own
/// Parquet scan, so a Ballista scheduler and its executors can run it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotTable {
    /// The object store's URL (`file:///`, `s3://bucket/`).
    pub store: String,
    /// The partition column (a `DATE`, last in the schema), if any.
    pub partition: Option<String>,
    pub files: Vec<SnapshotFile>,
    /// The table's schema, partition column included (the plan carries it,
    /// so it is not serialised twice).
    #[serde(skip, default = "empty_schema")]
    pub schema: SchemaRef,
}

fn empty_schema() -> SchemaRef {
    Arc::new(Schema::empty())
}

impl SnapshotTable {
    /// The Parquet files' schema: the table's without its partition column.
    fn file_schema(&self) -> SchemaRef {
        match &self.partition {
            None => self.schema.clone(),
            Some(column) => Arc::new(Schema::new(
                self.schema
                    .fields()
                    .iter()
                    .filter(|f| f.name() != column)
                    .cloned()
                    .collect::<Vec<_>>(),
            )),
        }
    }

    /// The files whose partition value can satisfy the filters that name
    /// only the partition column.
    fn pruned(&self, state: &dyn Session, filters: &[Expr]) -> DfResult<Vec<&SnapshotFile>> {
        let Some(column) = &self.partition else {
            return Ok(self.files.iter().collect());
        };
        let on_partition: Vec<Expr> = filters
            .iter()
            .filter(|f| {
                let refs = f.column_refs();
                !refs.is_empty() && refs.iter().all(|c| &c.name == column)
            })
            .cloned()
            .collect();
        let Some(predicate) = conjunction(on_partition) else {
            return Ok(self.files.iter().collect());
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            column,
            DataType::Date32,
            true,
        )]));
        let physical =
            state.create_physical_expr(predicate, &DFSchema::try_from(schema.clone())?)?;
        let dates = Date32Array::from(self.files.iter().map(|f| f.date).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(schema, vec![Arc::new(dates)])?;
        let keep = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
        let keep = keep
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| DataFusionError::Internal("a partition filter is not boolean".into()))?;
        Ok(self
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
            .map(|(_, f)| f)
            .collect())
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Partition filters prune files here; every filter is still applied
        // above the scan (and pushed into the Parquet reader by the planner).
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let files = self.pruned(state, filters)?;
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Balanced groups, one per target partition: biggest file first
        // into the lightest group.
        let n = state.config().target_partitions().max(1).min(files.len());
        let mut sorted = files;
        sorted.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); n];
        for file in sorted {
            let (bytes, group) = groups
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("at least one group");
            let mut part = PartitionedFile::new(file.path.clone(), file.size);
            if self.partition.is_some() {
                part.partition_values = vec![ScalarValue::Date32(file.date)];
            }
            *bytes += file.size;
            group.push(part);
        }
        let partition_fields: Vec<datafusion::arrow::datatypes::FieldRef> = self
            .partition
            .iter()
            .map(|c| Arc::new(Field::new(c, DataType::Date32, false)))
            .collect();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(
            TableSchema::builder(self.file_schema())
                .with_table_partition_cols(partition_fields)
                .build(),
        );
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(&self.store)?, source)
            .with_file_groups(groups.into_iter().map(|(_, g)| FileGroup::new(g)).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

/// Ballista's logical codec, plus [`SnapshotTable`]s.
#[derive(Debug, Default)]
pub struct LakeCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LakeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        match buf.strip_prefix(SNAPSHOT_TAG) {
            Some(json) => {
                let mut table: SnapshotTable = serde_json::from_slice(json).map_err(|e| {
                    DataFusionError::Internal(format!("table {table_ref}'s file list: {e}"))
                })?;
                table.schema = schema;
                Ok(Arc::new(table))
            }
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        match node.downcast_ref::<SnapshotTable>() {
            Some(table) => {
                buf.extend_from_slice(SNAPSHOT_TAG);
                serde_json::to_writer(buf, table).map_err(|e| {
                    DataFusionError::Internal(format!("table {table_ref}'s file list: {e}"))
                })
            }
            None => Err(DataFusionError::NotImplemented(format!(
                "table {table_ref} cannot be sent to a Ballista cluster (not a lake table)"
            ))),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// Marks a serialised [`SnapshotTable`] (anything else goes to Ballista's codec).
const SNAPSHOT_TAG: &[u8] = b"learnlake-snapshot:";

/// Whether `ctx` sends its queries to a Ballista cluster.
pub fn is_distributed(ctx: &SessionContext) -> bool {
    ctx.copied_config()
        .options()
        .extensions
        .get::<ballista_core::config::BallistaConfig>()
        .is_some()
}

/// `config` with what every learnlake process on a cluster needs: Ballista's
/// settings, the codec for lake tables, file streams that stay with the
/// executor that opened them, and Ballista's static planner: its adaptive
/// planner (the default in 55) re-planned the student_day query without end
/// here, one single-task stage after another (89 000 in 15 minutes).
pub fn cluster_config(config: SessionConfig) -> SessionConfig {
    config
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false)
        .set_bool(
            "datafusion.execution.enable_file_stream_work_stealing",
            false,
        )
        .with_ballista_logical_extension_codec(Arc::new(LakeCodec::default()))
}

/// A session state with DataFusion's and learnlake's functions, for
/// `config` and `runtime`.
fn state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> DfResult<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .build();
    for udf in super::udf::functions() {
        state.register_udf(Arc::new(udf))?;
    }
    Ok(state)
}

/// A session whose queries run on the cluster `engine` names: a scheduler
/// at `ballista://host:port`, or, for `ballista-standalone`, a scheduler and
/// `executors` executors started in this process (each with a share of
/// `config`'s target partitions as its task slots).
pub async fn connect(
    engine: &Engine,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    executors: usize,
) -> Result<SessionContext> {
    let config = cluster_config(config);
    let slots = (config.target_partitions() / executors.max(1)).max(1);
    let state = state(config, runtime)?;
    match engine {
        Engine::Local => Err(Error::Cluster("the local engine is not a cluster".into())),
        Engine::Ballista(url) => {
            info!(scheduler = %url, "running queries on a Ballista cluster");
            Ok(SessionContext::remote_with_state(url, state).await?)
        }
        Engine::BallistaStandalone => {
            let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
                .await
                .map_err(|e| Error::Cluster(format!("starting the in-process scheduler: {e}")))?;
            let url = format!("http://localhost:{}", addr.port());
            let scheduler = loop {
                match SchedulerGrpcClient::connect(url.clone()).await {
                    Ok(client) => break client,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            };
            for _ in 0..executors.max(1) {
                ballista_executor::new_standalone_executor_from_state(
                    scheduler.clone(),
                    slots,
                    &state,
                )
                .await
                .map_err(|e| Error::Cluster(format!("starting an in-process executor: {e}")))?;
            }
            info!(executors, slots, "in-process Ballista cluster started");
            Ok(SessionContext::new_with_state(
                state.upgrade_for_ballista(url)?,
            ))
        }
    }
}

/// `learnlake scheduler`: a Ballista scheduler that decodes lake tables and
/// learnlake's functions, listening on `bind` until the process ends.
pub async fn scheduler(lake: &Store, bind: SocketAddr, external_host: &str) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;

    let runtime = super::runtime(lake, 1 << 30)?;
    let session_builder =
        Arc::new(move |config: SessionConfig| state(cluster_config(config), runtime.clone()));
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: external_host.to_string(),
        ..SchedulerConfig::default()
    }
    .with_override_session_builder(session_builder)
    .with_override_config_producer(Arc::new(|| cluster_config(SessionConfig::new())));
    let config = SchedulerConfig {
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        ..config
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
    info!(%bind, "Ballista scheduler (learnlake) listening");
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| Error::Cluster(format!("scheduler: {e}")))
}

/// Where and how `learnlake executor` runs.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// The scheduler's host and port.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Address to listen on (Arrow Flight, for shuffle reads) and the gRPC port.
    pub bind_host: String,
    pub port: u16,
    pub grpc_port: u16,
    /// The name other processes reach this executor by.
    pub external_host: Option<String>,
    /// Task slots (default: the machine's cores).
    pub slots: usize,
    /// Shuffle files' folder.
    pub work_dir: Option<String>,
    /// Memory before operators spill.
    pub memory_limit_bytes: usize,
}

/// `learnlake executor`: a Ballista executor with the lake's object store
/// and learnlake's functions, serving its scheduler until the process ends.
pub async fn executor(lake: &Store, options: ExecutorOptions) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

    let runtime = super::runtime(lake, options.memory_limit_bytes)?;
    // DataFusion's functions (nested ones included) and learnlake's.
    let functions = BallistaFunctionRegistry::from(&state(
        cluster_config(SessionConfig::new()),
        runtime.clone(),
    )?);
    let config = ExecutorProcessConfig {
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        bind_host: options.bind_host,
        port: options.port,
        grpc_port: options.grpc_port,
        external_host: options.external_host,
        vcores: options.slots.max(1),
        work_dir: options.work_dir,
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone()))),
        override_config_producer: Some(Arc::new(|| cluster_config(SessionConfig::new()))),
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Cluster(format!("executor: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn table() -> SnapshotTable {
        SnapshotTable {
            store: "s3://lake/".into(),
            partition: Some("period_start".into()),
            files: (0..3)
                .map(|i| SnapshotFile {
                    path: format!("lake/t/period_start=d{i}/part-{i}.parquet"),
                    size: 100 + i as u64,
                    date: Some(20_000 + 7 * i),
                })
                .collect(),
            schema: Arc::new(Schema::new(vec![
                Field::new("student_id", DataType::Utf8, false),
                Field::new("period_start", DataType::Date32, false),
            ])),
        }
    }

    #[test]
    fn a_snapshot_table_travels_through_the_codec_with_its_files() {
        let codec = LakeCodec::default();
        let table = table();
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&"t".into(), Arc::new(table.clone()), &mut buf)
            .unwrap();
        let ctx = SessionContext::new();
        let decoded = codec
            .try_decode_table_provider(&buf, &"t".into(), table.schema.clone(), &ctx.task_ctx())
            .unwrap();
        let decoded = decoded.downcast_ref::<SnapshotTable>().unwrap();
        assert_eq!(decoded.schema, table.schema);
        assert_eq!(decoded.partition, table.partition);
        let paths = |t: &SnapshotTable| -> Vec<(String, u64, Option<i32>)> {
            t.files
                .iter()
                .map(|f| (f.path.clone(), f.size, f.date))
                .collect()
        };
        assert_eq!(paths(decoded), paths(&table));
        // Anything else is refused with the table's name, not sent half-way.
        let mem =
            datafusion::datasource::MemTable::try_new(table.schema.clone(), vec![vec![]]).unwrap();
        let err = codec
            .try_encode_table_provider(&"scratch".into(), Arc::new(mem), &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("scratch"), "{err}");
    }

    #[test]
    fn partition_filters_prune_the_file_list_and_other_filters_do_not() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let table = table();
        let week = |i: i32| lit(ScalarValue::Date32(Some(20_000 + 7 * i)));
        let kept = |filters: &[Expr]| -> Vec<i32> {
            table
                .pruned(&state, filters)
                .unwrap()
                .iter()
                .map(|f| (f.date.unwrap() - 20_000) / 7)
                .collect()
        };
        assert_eq!(kept(&[col("period_start").gt_eq(week(1))]), vec![1, 2]);
        assert_eq!(
            kept(&[
                col("period_start").gt_eq(week(1)),
                col("period_start").lt(week(2))
            ]),
            vec![1]
        );
        assert_eq!(kept(&[col("student_id").eq(lit("s1"))]), vec![0, 1, 2]);
        assert_eq!(kept(&[]), vec![0, 1, 2]);
    }
}
