//! A query planned once and run for many weeks.
//!
//! Planning `student_week.sql` took about as long as running it on a week's
//! rows: on the 10 M-event benchmark lake ~230 ms of ~560 ms per week went to
//! parsing, the logical optimizer (some twenty CTEs with a hundred columns
//! each) and the physical optimizer, and the risk model's columns were more
//! than half of that (a plan without them took ~110 ms). A [`Prepared`]
//! query is planned once, down to its physical plan, and each run only
//! swaps in the run's values:
//!
//! - every `$parameter` becomes a call of a function that returns the
//!   parameter's current value (typed as the value, so that type coercion
//!   plans what it would for the bound value);
//! - the one table that changes between runs (`week_enrollments`) is a
//!   [`LiveTable`], read when the plan executes, not when it is planned;
//! - the plan's operators are reset before each run, so that no state (a
//!   hash join's build side) carries over, and the week sessions run
//!   without dynamic filters (state shared between operators).
//!
//! Results are the same as planning the query with the values bound: the
//! e2e suite runs every analysis through this path, and the e2e test
//! `one_plan_for_all_weeks_gives_what_planning_each_week_gives` compares
//! the two directly.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, expr::Placeholder,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::common::compute_record_batch_statistics;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, reset_plan_states};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::prelude::SessionContext;

use super::{Queries, param_values};
use crate::{Error, Result};

/// One query file planned down to its physical plan, its parameters and
/// live table read at each run.
pub(crate) struct Prepared {
    name: String,
    /// The result's schema as the query declares it (before optimization,
    /// which may narrow nullability): what a partition is written with.
    schema: SchemaRef,
    /// Optimized, with the parameters as calls.
    logical: LogicalPlan,
    plan: Arc<dyn ExecutionPlan>,
    types: BTreeMap<String, DataType>,
    values: Arc<RwLock<BTreeMap<String, ScalarValue>>>,
    input: Arc<LiveTable>,
    /// The rows of `input` when planned.
    planned_rows: usize,
}

impl Prepared {
    /// Plans `queries/<name>.sql` over the session's tables, `input` being
    /// one of them, typing each `$parameter` as its value in `params`.
    pub async fn new(
        ctx: &SessionContext,
        queries: &Queries,
        name: &str,
        params: &[(&str, ScalarValue)],
        input: Arc<LiveTable>,
    ) -> Result<Self> {
        let wrap = wrapper(name);
        let started = std::time::Instant::now();
        let text = queries.load(name)?;
        let state = ctx.state();
        let planned_rows = input
            .rows
            .lock()
            .expect("not poisoned")
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        let types: BTreeMap<String, DataType> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.data_type()))
            .collect();
        let plan = state.create_logical_plan(&text).await.map_err(wrap)?;
        // The result's schema as when the values are bound (a literal is
        // known non-null; a function call is not).
        let schema: SchemaRef = Arc::new(
            plan.clone()
                .with_param_values(param_values(params))
                .map_err(wrap)?
                .schema()
                .as_arrow()
                .clone(),
        );
        // Each placeholder becomes a call that returns the run's value,
        // typed as the value. Volatile: the optimizer neither folds it nor
        // factors it out as a common subexpression (which turned a
        // constant into a column of the scanned rows).
        let values = Arc::new(RwLock::new(BTreeMap::new()));
        let functions: BTreeMap<String, Arc<ScalarUDF>> = types
            .iter()
            .map(|(id, data_type)| {
                let f = Parameter {
                    name: format!("${id}"),
                    id: id.clone(),
                    data_type: data_type.clone(),
                    values: values.clone(),
                    signature: Signature::nullary(Volatility::Volatile),
                };
                (id.clone(), Arc::new(ScalarUDF::new_from_impl(f)))
            })
            .collect();
        let plan = rewrite_placeholders(plan, |id| match functions.get(id) {
            Some(f) => f.call(vec![]),
            None => Expr::Placeholder(Placeholder::new_with_field(format!("${id}"), None)),
        })
        .map_err(wrap)?;
        let sql_ms = started.elapsed().as_millis() as u64;
        let logical = state.optimize(&plan).map_err(wrap)?;
        let optimized_ms = started.elapsed().as_millis() as u64;
        let plan = physical(ctx, &logical).await.map_err(wrap)?;
        tracing::debug!(
            query = name,
            sql_ms,
            optimized_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "query prepared"
        );
        Ok(Self {
            name: name.to_string(),
            schema,
            logical,
            plan,
            types,
            values,
            input,
            planned_rows,
        })
    }

    /// Whether a run with input of `input_schema` and `params` can use
    /// this plan: the same input columns and the same parameter types.
    pub fn fits(&self, input_schema: &SchemaRef, params: &[(&str, ScalarValue)]) -> bool {
        self.input.schema == *input_schema
            && params.len() == self.types.len()
            && params
                .iter()
                .all(|(k, v)| self.types.get(*k) == Some(&v.data_type()))
    }

    /// Runs the query over `input` (the live table's rows for this run)
    /// with `params` bound.
    ///
    /// With more than twice the input rows the physical plan was made for,
    /// it is made again (from the same optimized logical plan): the first
    /// weeks of a history are small, and a join order chosen for a handful
    /// of enrollments builds its hash tables on the wrong sides for
    /// thousands.
    pub async fn run(
        &mut self,
        ctx: &SessionContext,
        input: Vec<RecordBatch>,
        params: &[(&str, ScalarValue)],
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let wrap = wrapper(&self.name);
        let started = std::time::Instant::now();
        let rows: usize = input.iter().map(RecordBatch::num_rows).sum();
        self.input.set(input);
        if rows > 2 * self.planned_rows {
            self.plan = physical(ctx, &self.logical).await.map_err(wrap)?;
            tracing::debug!(
                query = self.name,
                rows,
                planned_rows = self.planned_rows,
                physical_plan_ms = started.elapsed().as_millis() as u64,
                "planned again for more input rows"
            );
            self.planned_rows = rows;
        }
        *self.values.write().expect("not poisoned") = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let plan = reset_plan_states(self.plan.clone()).map_err(wrap)?;
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .map_err(wrap)?;
        // The rows are in the result; the live table lets go of its input.
        self.input.set(Vec::new());
        tracing::debug!(
            query = self.name,
            total_ms = started.elapsed().as_millis() as u64,
            "prepared query ran"
        );
        Ok((self.schema.clone(), batches))
    }
}

/// The physical plan of an optimized logical plan over the session's
/// tables as they are now.
async fn physical(
    ctx: &SessionContext,
    plan: &LogicalPlan,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let state = ctx.state();
    state
        .query_planner()
        .create_physical_plan(plan, &state)
        .await
}

/// Replaces every placeholder `$id` of `plan` with `with(id)`, keeping the
/// expressions' names (later nodes refer to columns by them).
fn rewrite_placeholders(
    plan: LogicalPlan,
    with: impl Fn(&str) -> Expr,
) -> datafusion::common::Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let name = names.save(&e);
            let rewritten = e.transform_up(|e| match e {
                Expr::Placeholder(Placeholder { id, .. }) => {
                    Ok(Transformed::yes(with(id.trim_start_matches('$'))))
                }
                other => Ok(Transformed::no(other)),
            })?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })?
        .map_data(LogicalPlan::recompute_schema)
    })
    .map(|t| t.data)
}

fn wrapper(name: &str) -> impl Fn(DataFusionError) -> Error + Copy + '_ {
    move |source| Error::Query {
        name: name.to_string(),
        source,
    }
}

/// A query parameter as a function of no arguments: the value of the run
/// in progress.
#[derive(Debug)]
struct Parameter {
    name: String,
    id: String,
    data_type: DataType,
    values: Arc<RwLock<BTreeMap<String, ScalarValue>>>,
    signature: Signature,
}

impl PartialEq for Parameter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.values, &other.values) && self.id == other.id
    }
}

impl Eq for Parameter {}

impl std::hash::Hash for Parameter {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl ScalarUDFImpl for Parameter {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(self.data_type.clone())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let values = self.values.read().expect("not poisoned");
        match values.get(&self.id) {
            Some(v) => Ok(ColumnarValue::Scalar(v.clone())),
            None => Err(DataFusionError::Execution(format!(
                "no value for the query parameter ${}",
                self.id
            ))),
        }
    }
}

/// A table whose rows are set before each run of a prepared plan that
/// reads it, and read when that plan executes.
#[derive(Debug)]
pub(crate) struct LiveTable {
    schema: SchemaRef,
    rows: Arc<Mutex<Arc<Vec<RecordBatch>>>>,
}

impl LiveTable {
    /// A table of `rows` until the next run sets others (its plans'
    /// join order is chosen on these).
    pub fn new(schema: SchemaRef, rows: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            rows: Arc::new(Mutex::new(Arc::new(rows))),
        }
    }

    fn set(&self, batches: Vec<RecordBatch>) {
        *self.rows.lock().expect("not poisoned") = Arc::new(batches);
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _: &dyn Session,
        projection: Option<&Vec<usize>>,
        _: &[Expr],
        _: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        // The join order is chosen on the sizes of the rows at planning
        // time, as for a MemTable; only as estimates, since later runs read
        // other rows (an exact count could be answered from them alone).
        let rows = self.rows.lock().expect("not poisoned").clone();
        let statistics = compute_record_batch_statistics(
            std::slice::from_ref(rows.as_ref()),
            &self.schema,
            projection.cloned(),
        )
        .to_inexact();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(LiveExec {
            rows: self.rows.clone(),
            projection: projection.cloned(),
            schema,
            statistics: Arc::new(statistics),
            properties: Arc::new(properties),
        }))
    }
}

/// The scan of a [`LiveTable`]: the rows set when it executes.
#[derive(Debug)]
struct LiveExec {
    rows: Arc<Mutex<Arc<Vec<RecordBatch>>>>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    statistics: Arc<Statistics>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for LiveExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiveExec: projection={:?}", self.projection)
    }
}

impl ExecutionPlan for LiveExec {
    fn name(&self) -> &str {
        "LiveExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _: usize,
        _: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        let rows = self.rows.lock().expect("not poisoned").clone();
        let batches = rows
            .iter()
            .map(|b| match &self.projection {
                Some(p) => b.project(p),
                None => Ok(b.clone()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            self.schema.clone(),
            None,
        )?))
    }

    fn partition_statistics(
        &self,
        _: Option<usize>,
    ) -> datafusion::common::Result<Arc<Statistics>> {
        Ok(self.statistics.clone())
    }
}
