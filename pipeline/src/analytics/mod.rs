//! Weekly analytics: `student_week` and `course_week`, one partition per
//! week, computed by the SQL in `queries/` (see docs/ANALYTICS.md).
//!
//! The SQL is compiled in ([`queries`]); a configured folder overrides any
//! file by name. For a set of weeks, analysis
//! 1. finds the history window (`history_start.sql`), runs
//!    `student_day.sql` and `counted_attempts.sql` once over it
//!    (partition-pruned) and keeps the results in memory as tables of those
//!    names, the building blocks of every week;
//! 2. runs `queries/week_enrollments.sql` and `student_week.sql` per week,
//!    with the week bound as parameters, one week per core at a time, and
//!    replaces that week's partition atomically;
//! 3. runs `queries/course_week.sql` per week over the fresh student_week.
//!
//! Every result depends only on the lake's raw tables and the week, so weeks
//! can be computed in any order, and again, with the same rows.

mod prepared;
pub mod queries;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::Serialize;
use tracing::{Instrument, info, info_span};

use self::prepared::{LiveTable, Prepared};
pub use self::queries::Queries;
use crate::engine::{self, Tuning, udf};
use sha2::{Digest, Sha256};

use crate::lake::{self, LakeTable, Store, parquet_io};
use crate::predict;
use crate::{Error, Result};

/// One institution week: local Monday 00:00 to the next, in UTC instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Week {
    /// The local date of the Monday.
    pub period_start: NaiveDate,
    /// Monday 00:00 local, in UTC.
    pub start: DateTime<Utc>,
    /// The next Monday 00:00 local, in UTC (exclusive).
    pub end: DateTime<Utc>,
}

impl Week {
    /// The week containing local date `day` in `tz`.
    pub fn containing(day: NaiveDate, tz: Tz) -> Self {
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        Self {
            period_start: monday,
            start: local_midnight(monday, tz),
            end: local_midnight(monday + Duration::days(7), tz),
        }
    }

    /// The week before.
    pub fn previous(&self, tz: Tz) -> Self {
        Self::containing(self.period_start - Duration::days(7), tz)
    }

    /// The week's last local day.
    pub fn last_day(&self) -> NaiveDate {
        self.period_start + Duration::days(6)
    }
}

/// 00:00 of a local date as a UTC instant. Where a DST change skips
/// midnight, the day starts at the first instant that exists.
pub fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// Which weeks to analyze.
#[derive(Clone, Debug)]
pub enum WeekSelection {
    /// Every week from the first to the last activity or attempt.
    AllWithData,
    /// The weeks from the one starting on the Monday `from` to the one
    /// starting on the Monday `to`, both included (`from == to` is one week).
    Range(NaiveDate, NaiveDate),
}

/// Called with (weeks done, weeks total) after each week's student_week
/// partition is written.
pub type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// How to analyze.
#[derive(Clone)]
pub struct AnalyzeOptions {
    pub weeks: WeekSelection,
    pub tz: Tz,
    /// Risk thresholds on success_probability.
    pub high_below: f64,
    pub medium_below: f64,
    /// Gap that ends an inferred session.
    pub session_gap_minutes: i64,
    /// A folder whose `<query>.sql` files replace the built-in queries of
    /// the same name (`[analytics] queries`, `LEARNLAKE_QUERIES`).
    pub queries: Option<PathBuf>,
    /// Progress per week, for a bar or log lines.
    pub progress: Option<Progress>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            weeks: WeekSelection::AllWithData,
            tz: Tz::UTC,
            high_below: 0.4,
            medium_below: 0.7,
            session_gap_minutes: 30,
            queries: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for AnalyzeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyzeOptions")
            .field("weeks", &self.weeks)
            .field("tz", &self.tz)
            .field("high_below", &self.high_below)
            .field("medium_below", &self.medium_below)
            .field("session_gap_minutes", &self.session_gap_minutes)
            .field("queries", &self.queries)
            .field("progress", &self.progress.as_ref().map(|_| "…"))
            .finish()
    }
}

/// What analysis wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnalyzeReport {
    /// period_start → (student_week rows, course_week rows).
    pub weeks: BTreeMap<NaiveDate, (usize, usize)>,
    /// risk_flags rows written (one per student_week row of the weeks asked).
    pub risk_flags: usize,
    /// The risk model that scored the rows (docs/PREDICTIONS.md).
    pub model_version: String,
    pub seconds: f64,
}

/// Runs a query file with named parameters and collects the result.
pub async fn run_query(
    ctx: &SessionContext,
    queries: &Queries,
    name: &str,
    params: &[(&str, ScalarValue)],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let wrap = |source| Error::Query {
        name: name.to_string(),
        source,
    };
    let started = std::time::Instant::now();
    let df = query_frame(ctx, queries, name, params).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let planned = started.elapsed();
    if Tuning::of(ctx).explain_analyze {
        // For tuning: run the query once more under EXPLAIN ANALYZE and log
        // the plan with its metrics (rows, time per operator).
        let explained = df.clone().explain(false, true).map_err(wrap)?;
        let batches = explained.collect().await.map_err(wrap)?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
        info!(query = name, "EXPLAIN ANALYZE\n{text}");
    }
    let task = df.task_ctx();
    let plan = df.create_physical_plan().await.map_err(wrap)?;
    let optimized = started.elapsed();
    let batches = datafusion::physical_plan::collect(plan, Arc::new(task))
        .await
        .map_err(wrap)?;
    tracing::debug!(
        query = name,
        plan_ms = planned.as_millis() as u64,
        physical_plan_ms = optimized.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "query ran"
    );
    Ok((schema, batches))
}

/// A query file with named parameters bound, not yet run: for results
/// that are streamed rather than collected (`learnlake flags`).
pub async fn query_frame(
    ctx: &SessionContext,
    queries: &Queries,
    name: &str,
    params: &[(&str, ScalarValue)],
) -> Result<datafusion::dataframe::DataFrame> {
    let text = queries.load(name)?;
    let wrap = |source| Error::Query {
        name: name.to_string(),
        source,
    };
    let df = ctx.sql(&text).await.map_err(wrap)?;
    df.with_param_values(param_values(params)).map_err(wrap)
}

/// Named query parameters as DataFusion binds them.
fn param_values(params: &[(&str, ScalarValue)]) -> ParamValues {
    ParamValues::Map(
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().into()))
            .collect(),
    )
}

/// An instant as a query parameter (`Timestamp(µs, UTC)`).
pub fn ts(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into()))
}

/// A day as a query parameter (`Date32`).
pub fn date(d: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(days(d)))
}

use crate::lake::date32 as days;

/// The weeks that hold activity or attempts (`queries/data_span.sql`).
async fn weeks_with_data(ctx: &SessionContext, queries: &Queries, tz: Tz) -> Result<Vec<Week>> {
    Ok(match data_span(ctx, queries, tz).await? {
        Some((first, last)) => weeks_between(first, last, tz),
        None => Vec::new(),
    })
}

/// The local day of the last activity or attempt, if any.
pub async fn last_data_day(
    ctx: &SessionContext,
    queries: &Queries,
    tz: Tz,
) -> Result<Option<NaiveDate>> {
    for table in [LakeTable::Activity, LakeTable::Attempts] {
        engine::register_empty_if_missing(ctx, table)?;
    }
    Ok(data_span(ctx, queries, tz).await?.map(|(_, last)| last))
}

/// The local days of the first and last activity or attempt.
async fn data_span(
    ctx: &SessionContext,
    queries: &Queries,
    tz: Tz,
) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let (_, batches) = run_query(ctx, queries, "data_span", &[]).await?;
    let mut bounds = [None, None];
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        for (c, bound) in bounds.iter_mut().enumerate() {
            if let Some(a) = b
                .column(c)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                && a.is_valid(0)
            {
                *bound = Some(a.value(0));
            }
        }
    }
    let [Some(first), Some(last)] = bounds else {
        return Ok(None);
    };
    let local_day = |micros: i64| {
        NaiveDate::default()
            + Duration::days(udf::local_micros(&tz, micros).div_euclid(86_400_000_000))
    };
    Ok(Some((local_day(first), local_day(last))))
}

/// The weeks of a [`WeekSelection::Range`]: `from` and `to` must be Mondays
/// (a week is named by its Monday, `period_start`), `from` not after `to`.
pub fn weeks_of_range(from: NaiveDate, to: NaiveDate, tz: Tz) -> Result<Vec<Week>> {
    for day in [from, to] {
        if day.weekday() != chrono::Weekday::Mon {
            let monday = Week::containing(day, tz).period_start;
            return Err(Error::InvalidWeeks(format!(
                "{day} is a {}, and a week is named by its Monday: the week holding {day} is {monday}",
                day.format("%A")
            )));
        }
    }
    if from > to {
        return Err(Error::InvalidWeeks(format!(
            "the first week {from} is after the last week {to}; give the earlier one first"
        )));
    }
    Ok(weeks_between(from, to, tz))
}

/// Every week from the one containing `from` to the one containing `to`.
pub fn weeks_between(from: NaiveDate, to: NaiveDate, tz: Tz) -> Vec<Week> {
    let mut weeks = Vec::new();
    let mut week = Week::containing(from, tz);
    while week.period_start <= to {
        weeks.push(week);
        week = Week::containing(week.period_start + Duration::days(7), tz);
    }
    weeks
}

/// The building blocks of student_week: each is computed once per run over
/// the history window by `queries/<name>.sql` and kept in memory under that
/// name, so the weeks read neither activity's history nor attempts again.
const RUN_TABLES: [&str; 2] = ["student_day", "counted_attempts"];

/// Computes and writes student_week and course_week for the selected weeks.
pub async fn analyze(
    lake: &Store,
    ctx: &SessionContext,
    options: &AnalyzeOptions,
) -> Result<AnalyzeReport> {
    let result = analyze_weeks(lake, ctx, options).await;
    if engine::cluster::is_distributed(ctx) {
        // The run's intermediate tables, whether it ended well or not.
        let folder = work_folder(ctx);
        match lake.list(&folder).await {
            Ok(files) => {
                for meta in files {
                    if let Err(e) = lake.delete(&lake.relative(&meta.location)).await {
                        tracing::warn!("could not remove {}: {e}", meta.location);
                    }
                }
            }
            Err(e) => tracing::warn!("could not list {folder} to remove it: {e}"),
        }
    }
    result
}

/// Where a run on a cluster keeps its intermediate tables (the cluster's
/// processes read them from the lake's store): `_work/<session id>/`.
fn work_folder(ctx: &SessionContext) -> String {
    format!("_work/{}", ctx.session_id())
}

async fn analyze_weeks(
    lake: &Store,
    ctx: &SessionContext,
    options: &AnalyzeOptions,
) -> Result<AnalyzeReport> {
    let started = std::time::Instant::now();
    let tz = options.tz;
    let queries = Queries::new(options.queries.as_deref())?;
    // A usage error is reported before anything is read.
    let range = match &options.weeks {
        WeekSelection::AllWithData => None,
        WeekSelection::Range(from, to) => Some(weeks_of_range(*from, *to, tz)?),
    };
    if !ctx.table_exist(LakeTable::Enrollments.name())? {
        return Err(Error::NothingToAnalyze(
            "the lake has no enrollments yet; ingest the reference files (landing/enrollments.csv, courses.csv, …) first".into(),
        ));
    }
    if !ctx.table_exist(LakeTable::Activity.name())?
        && !ctx.table_exist(LakeTable::Attempts.name())?
    {
        return Err(Error::NothingToAnalyze(
            "the lake has no activity and no attempts yet; put them in landing/activity/ and landing/attempts/ and run `learnlake ingest` first".into(),
        ));
    }
    // A lake may lack some tables (yet): analyzed as if they were empty.
    // An enrollment of an unknown course still counts (docs/ANALYTICS.md).
    for table in [
        LakeTable::Activity,
        LakeTable::Attempts,
        LakeTable::Courses,
        LakeTable::Assessments,
    ] {
        engine::register_empty_if_missing(ctx, table)?;
    }
    let requested: Vec<Week> = match range {
        Some(weeks) => weeks,
        None => weeks_with_data(ctx, &queries, tz).await?,
    };
    let mut report = AnalyzeReport::default();
    if requested.is_empty() {
        return Err(Error::NothingToAnalyze(
            "the lake's activity and attempts tables hold no rows".into(),
        ));
    }
    // course_week compares with the previous week's student_week, so that
    // week must exist too (computed, never guessed).
    let existing = partitions(lake, LakeTable::StudentWeek).await?;
    let mut student_weeks: BTreeSet<Week> = requested.iter().copied().collect();
    for w in &requested {
        let prev = w.previous(tz);
        if !student_weeks.contains(&prev) && !existing.contains(&prev.period_start) {
            student_weeks.insert(prev);
        }
    }
    let first = *student_weeks.first().expect("not empty");
    let last = *student_weeks.last().expect("not empty");
    // The risk model reaches the SQL as bound parameters.
    let model = predict::current_model(lake).await?;
    let model_params = model.params()?;
    // Intermediate tables of a run on a cluster (removed by `analyze`).
    let work = work_folder(ctx);
    report.model_version = model.version.clone();

    // The history window: back to the earliest history start of an
    // enrollment that can be active in these weeks, one UTC day of slack for
    // the zone.
    let history_from = history_start(ctx, &queries, tz, first, last).await? - Duration::days(1);
    let history_to = last.end.date_naive() + Duration::days(1);
    let common = |w: &Week| -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("zone", ScalarValue::Utf8(Some(tz.name().to_string()))),
            ("history_from", date(history_from)),
            ("history_to", date(history_to)),
            ("period_start", date(w.period_start)),
            ("week_start", ts(w.start)),
            ("week_end", ts(w.end)),
            ("high_below", ScalarValue::Float64(Some(options.high_below))),
            (
                "medium_below",
                ScalarValue::Float64(Some(options.medium_below)),
            ),
            (
                "session_gap_seconds",
                ScalarValue::Int64(Some(options.session_gap_minutes * 60)),
            ),
        ]
        .into_iter()
        .chain(model_params.iter().cloned())
        .collect()
    };

    for table in RUN_TABLES {
        let span = info_span!("run_table", table, from = %history_from, to = %last.end);
        async {
            let rows = materialize(lake, ctx, &work, &queries, table, &common(&last)).await?;
            info!(rows, "table ready");
            Ok::<_, Error>(())
        }
        .instrument(span)
        .await?;
    }

    // Weeks are independent and small: one worker per core (target
    // partitions), each a task with its own single-partition session (and
    // week_enrollments), takes weeks from one queue. Whole weeks side by side
    // keep the cores busier than splitting each week's small operators, and
    // one week's planning and writing overlap another's execution. Newest
    // first: a history's latest weeks have the most enrollments, and a
    // worker's plan, made for its first week, then serves the rest (see
    // `Prepared::run`).
    let queue: VecDeque<(Week, Vec<(&'static str, ScalarValue)>)> = student_weeks
        .iter()
        .rev()
        .map(|w| (*w, common(w)))
        .collect();
    let total = queue.len();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let done = Arc::new(AtomicUsize::new(0));
    let workers = ctx.copied_config().target_partitions().max(1);
    let mut week_workers = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let week_ctx = week_session(ctx).await?;
        let (queue, lake, queries, work) =
            (queue.clone(), lake.clone(), queries.clone(), work.clone());
        let (done, progress) = (done.clone(), options.progress.clone());
        week_workers.spawn(async move {
            let mut written = Vec::new();
            let mut prepared = None;
            loop {
                let next = queue.lock().expect("not poisoned").pop_front();
                let Some((week, params)) = next else {
                    return Ok::<_, Error>(written);
                };
                let span = info_span!("student_week", period_start = %week.period_start);
                let rows = student_week(
                    &lake,
                    &week_ctx,
                    &work,
                    &queries,
                    week,
                    &params,
                    &mut prepared,
                )
                .instrument(span)
                .await?;
                written.push((week, rows));
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(progress) = &progress {
                    progress(n, total);
                }
            }
        });
    }
    // The first failure ends the run (dropping the set stops the others).
    while let Some(joined) = week_workers.join_next().await {
        let written =
            joined.map_err(|e| Error::Worker(format!("a student_week worker: {e}")))??;
        for (week, rows) in written {
            if requested.contains(&week) {
                report.weeks.entry(week.period_start).or_default().0 = rows;
            }
        }
    }
    engine::register_lake(ctx, lake).await?;
    // Each week's course_week and risk_flags read only student_week, which
    // is complete now: as many weeks at a time as there were week workers.
    let mut tail = futures::stream::iter(requested.iter().copied())
        .map(|week| {
            let (lake, ctx, queries) = (lake.clone(), ctx.clone(), queries.clone());
            let mut params = common(&week);
            params.push(("previous_start", date(week.previous(tz).period_start)));
            tokio::spawn(async move {
                let span = info_span!("course_week", period_start = %week.period_start);
                let course_rows = query_into_partition(
                    &lake,
                    &ctx,
                    &queries,
                    LakeTable::CourseWeek,
                    week.period_start,
                    &params,
                )
                .instrument(span)
                .await?;
                let span = info_span!("risk_flags", as_of_date = %week.last_day());
                let flags = query_into_partition(
                    &lake,
                    &ctx,
                    &queries,
                    LakeTable::RiskFlags,
                    week.last_day(),
                    &params,
                )
                .instrument(span)
                .await?;
                Ok::<_, Error>((week, course_rows, flags))
            })
        })
        .buffer_unordered(workers);
    while let Some(done) = tail.next().await {
        let (week, course_rows, flags) =
            done.map_err(|e| Error::Worker(format!("a course_week/risk_flags task: {e}")))??;
        report.weeks.entry(week.period_start).or_default().1 = course_rows;
        report.risk_flags += flags;
    }
    engine::register_lake(ctx, lake).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A session for one week's queries: the same engine (settings, memory pool,
/// object stores, functions) and the same tables as `ctx`, but one partition
/// and its own namespace, so each week in flight keeps its own
/// `week_enrollments`.
async fn week_session(ctx: &SessionContext) -> Result<SessionContext> {
    let config = ctx
        .copied_config()
        .with_target_partitions(1)
        .with_create_default_catalog_and_schema(true)
        // A prepared plan runs again for each week: no filter may keep
        // state from one run in another operator (and the week's inputs
        // are in memory, where dynamic filters save nothing).
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false);
    // Everything of `ctx`'s state (functions, planner, a cluster's
    // settings) but the catalog.
    let state =
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(ctx.state())
            .with_config(config)
            .with_catalog_list(Arc::new(
                datafusion::catalog::MemoryCatalogProviderList::new(),
            ))
            .build();
    let week_ctx = SessionContext::new_with_state(state);
    let catalog = ctx.catalog("datafusion").expect("the default catalog");
    let schema = catalog.schema("public").expect("the default schema");
    for name in schema.table_names() {
        if let Some(table) = schema.table(&name).await? {
            week_ctx.register_table(name.as_str(), table)?;
        }
    }
    Ok(week_ctx)
}

/// Computes one week of student_week and replaces its partition; returns
/// the rows written. `prepared` keeps the worker's plan of
/// student_week.sql from one week to the next (see [`prepared`]); on a
/// cluster, or when tuning with EXPLAIN ANALYZE, each week is planned anew.
async fn student_week(
    lake: &Store,
    ctx: &SessionContext,
    work: &str,
    queries: &Queries,
    week: Week,
    params: &[(&str, ScalarValue)],
    prepared: &mut Option<Prepared>,
) -> Result<usize> {
    let table = LakeTable::StudentWeek;
    if engine::cluster::is_distributed(ctx) || Tuning::of(ctx).explain_analyze {
        materialize(lake, ctx, work, queries, "week_enrollments", params).await?;
        return query_into_partition(lake, ctx, queries, table, week.period_start, params).await;
    }
    let (schema, enrollments) = run_query(ctx, queries, "week_enrollments", params).await?;
    // The executed plan's schema may be more exact than the logical one.
    let schema = enrollments.first().map_or(schema, RecordBatch::schema);
    let mut plan = match prepared.take() {
        Some(plan) if plan.fits(&schema, params) => plan,
        _ => {
            let input = Arc::new(LiveTable::new(schema, enrollments.clone()));
            ctx.deregister_table("week_enrollments")?;
            ctx.register_table("week_enrollments", input.clone())?;
            Prepared::new(ctx, queries, table.name(), params, input).await?
        }
    };
    let (schema, batches) = plan.run(ctx, enrollments, params).await?;
    *prepared = Some(plan);
    let rows = write_partition(lake, table, week.period_start, &schema, &batches).await?;
    info!(rows, "{} written", table.name());
    Ok(rows)
}

/// Runs `queries/<table>.sql` and replaces the table's partition
/// `period_start` (for risk_flags: the week's last day) with the result;
/// returns the rows written.
async fn query_into_partition(
    lake: &Store,
    ctx: &SessionContext,
    queries: &Queries,
    table: LakeTable,
    period_start: NaiveDate,
    params: &[(&str, ScalarValue)],
) -> Result<usize> {
    let (schema, batches) = run_query(ctx, queries, table.name(), params).await?;
    let rows = write_partition(lake, table, period_start, &schema, &batches).await?;
    info!(rows, "{} written", table.name());
    Ok(rows)
}

/// Runs `queries/<name>.sql` and keeps the result in memory as the table
/// `name`, replacing an earlier one; returns its row count.
async fn materialize(
    lake: &Store,
    ctx: &SessionContext,
    work: &str,
    queries: &Queries,
    name: &str,
    params: &[(&str, ScalarValue)],
) -> Result<usize> {
    let (schema, batches) = run_query(ctx, queries, name, params).await?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    // The executed plan's schema may be more exact than the logical one
    // (a window's result is known non-null), and a MemTable insists.
    let schema = batches.first().map_or(schema, RecordBatch::schema);
    ctx.deregister_table(name)?;
    if engine::cluster::is_distributed(ctx) {
        // A cluster's executors read it from the lake's store.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut files = Vec::new();
        if rows > 0 {
            let rel = format!(
                "{work}/{name}-{}.parquet",
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let data = parquet_io::encode(&schema, &batches)?;
            let size = data.len() as u64;
            lake.put(&rel, data).await?;
            files.push(engine::cluster::SnapshotFile {
                path: lake.path(&rel).to_string(),
                size,
                date: None,
            });
        }
        let table = engine::cluster::SnapshotTable {
            store: lake.base_url().to_string(),
            partition: None,
            files,
            schema,
        };
        ctx.register_table(name, Arc::new(table))?;
    } else {
        ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    }
    Ok(rows)
}

/// The first local day of the history window of the weeks first..last
/// (`queries/history_start.sql`): no row of those weeks counts anything
/// earlier.
async fn history_start(
    ctx: &SessionContext,
    queries: &Queries,
    tz: Tz,
    first: Week,
    last: Week,
) -> Result<NaiveDate> {
    let params = [
        ("zone", ScalarValue::Utf8(Some(tz.name().to_string()))),
        ("from", date(first.period_start)),
        ("to", date(last.last_day())),
    ];
    let (_, batches) = run_query(ctx, queries, "history_start", &params).await?;
    let start = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Date32Array>()
                .cloned()
        })
        .filter(|a| a.is_valid(0))
        .map(|a| lake::from_date32(a.value(0)))
        .unwrap_or(first.period_start);
    Ok(start.min(first.period_start))
}

/// The period_start values a derived table has partitions for (in its
/// current Delta version).
pub async fn partitions(lake: &Store, table: LakeTable) -> Result<BTreeSet<NaiveDate>> {
    let Some(delta) = lake::delta::open(lake, table.folder()).await? else {
        return Ok(BTreeSet::new());
    };
    Ok(lake::delta::files(&delta, table.folder())?
        .into_iter()
        .filter_map(|(_, day)| day)
        .collect())
}

/// Replaces one week's partition of a derived table: the new file is
/// written under a name of its own, then one Delta commit removes the
/// partition's current files and adds it (readers see the old week or the
/// new one, never both; the old file stays for time travel until vacuumed).
async fn write_partition(
    lake: &Store,
    table: LakeTable,
    period_start: NaiveDate,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<usize> {
    let column = table
        .partition_column()
        .expect("derived tables are partitioned");
    let day = period_start.format("%Y-%m-%d").to_string();
    let partition = lake::partition_folder(column, &day)?;
    // The partition column lives in the folder name, not in the file.
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != column)
        .collect();
    let file_schema: SchemaRef = Arc::new(Schema::new(
        keep.iter()
            .map(|&i| schema.field(i).clone())
            .collect::<Vec<_>>(),
    ));
    let projected: Vec<RecordBatch> = batches
        .iter()
        .map(|b| b.project(&keep))
        .collect::<std::result::Result<_, _>>()?;
    let rows = projected.iter().map(RecordBatch::num_rows).sum();
    let data = parquet_io::encode(&file_schema, &projected)?;
    // Named by content: the same result gets the same file, and an
    // unchanged partition needs no new version.
    let path = format!(
        "{partition}/part-{}.parquet",
        &hex::encode(Sha256::digest(&data))[..16]
    );
    let size = data.len() as u64;
    // The table's schema: the query's columns with the partition column last.
    let mut fields: Vec<Field> = file_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(column, DataType::Date32, false));
    let table_schema = Schema::new(fields);
    let mut delta =
        lake::delta::open_or_create(lake, table.folder(), &table_schema, Some(column)).await?;
    let current: Vec<String> = lake::delta::files(&delta, table.folder())?
        .into_iter()
        .filter(|(_, day)| *day == Some(period_start))
        .map(|(file, _)| file)
        .collect();
    if current == [path.clone()] {
        return Ok(rows);
    }
    lake.put(&format!("{}/{path}", table.folder()), data)
        .await?;
    let mut commit = lake::delta::Commit::append(vec![lake::delta::DataFile {
        path,
        size,
        rows: rows as u64,
        partition: Some(period_start),
    }]);
    commit.replace = lake::delta::Replace::Partitions(vec![period_start]);
    commit.schema = Some(table_schema);
    commit.info = vec![(
        "learnlake".to_string(),
        serde_json::json!({ "operation": "analyze", "partition": day }),
    )];
    lake::delta::commit(&mut delta, table.folder(), commit).await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_local_mondays_and_follow_dst() {
        let london: Tz = "Europe/London".parse().unwrap();
        let w = Week::containing(NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(), london);
        assert_eq!(
            w.period_start,
            NaiveDate::from_ymd_opt(2026, 3, 30).unwrap()
        );
        // BST: local midnight is 23:00 UTC the day before.
        assert_eq!(w.start.to_rfc3339(), "2026-03-29T23:00:00+00:00");
        // The week of the change (Sunday 29 March) lasts 167 hours.
        let change = Week::containing(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(), london);
        assert_eq!((change.end - change.start).num_hours(), 167);
        let ny: Tz = "America/New_York".parse().unwrap();
        let w = Week::containing(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(), ny);
        assert_eq!(w.period_start, NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
        assert_eq!((w.end - w.start).num_hours(), 167);
    }

    #[test]
    fn a_range_covers_whole_weeks() {
        let weeks = weeks_between(
            NaiveDate::from_ymd_opt(2026, 2, 4).unwrap(),
            NaiveDate::from_ymd_opt(2026, 2, 16).unwrap(),
            Tz::UTC,
        );
        let starts: Vec<String> = weeks.iter().map(|w| w.period_start.to_string()).collect();
        assert_eq!(starts, ["2026-02-02", "2026-02-09", "2026-02-16"]);
    }
}

#[cfg(test)]
mod sql_tests {
    //! The enrollment rules of queries/week_enrollments.sql and
    //! history_start.sql, on in-memory tables holding exactly the columns
    //! those queries read.

    use datafusion::arrow::array::{
        Date32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn micros(text: Option<&str>) -> Option<i64> {
        text.map(|t| {
            DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&Utc)
                .timestamp_micros()
        })
    }

    /// (student, course, enrolled_at, status, withdrawn_at)
    type Enrollment = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );

    fn tables(enrollments: &[Enrollment]) -> SessionContext {
        let ctx = SessionContext::new();
        engine::register_functions(&ctx);
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("student_id", DataType::Utf8, false),
            Field::new("course_id", DataType::Utf8, false),
            Field::new("enrolled_at", ts(), true),
            Field::new("status", DataType::Utf8, true),
            Field::new("withdrawn_at", ts(), true),
        ]));
        let column = |f: fn(&Enrollment) -> Option<&'static str>| {
            enrollments.iter().map(f).collect::<StringArray>()
        };
        let instants = |f: fn(&Enrollment) -> Option<&'static str>| {
            enrollments
                .iter()
                .map(|e| micros(f(e)))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC")
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(column(|e| Some(e.0))),
                Arc::new(column(|e| Some(e.1))),
                Arc::new(instants(|e| e.2)),
                Arc::new(column(|e| e.3)),
                Arc::new(instants(|e| e.4)),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("enrollments", Arc::new(table)).unwrap();
        // One known course, C1, from Monday 9 March 2026; CX is unknown.
        let schema = Arc::new(Schema::new(vec![
            Field::new("course_id", DataType::Utf8, false),
            Field::new("start_date", DataType::Date32, true),
            Field::new("end_date", DataType::Date32, true),
            Field::new("total_lessons", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["C1"])),
                Arc::new(Date32Array::from(vec![Some(days(day("2026-03-09")))])),
                Arc::new(Date32Array::from(vec![None::<i32>])),
                Arc::new(Int64Array::from(vec![Some(4)])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("courses", Arc::new(table)).unwrap();
        ctx
    }

    const ENROLLMENTS: [Enrollment; 8] = [
        (
            "s1",
            "C1",
            Some("2026-03-01T09:00:00Z"),
            Some("active"),
            None,
        ),
        // withdrawn with no date (ingest normally fills one in): never active
        (
            "s2",
            "C1",
            Some("2026-02-01T09:00:00Z"),
            Some("withdrawn"),
            None,
        ),
        // withdrawn during the week: active that week
        (
            "s3",
            "C1",
            Some("2026-03-01T09:00:00Z"),
            Some("withdrawn"),
            Some("2026-03-10T09:00:00Z"),
        ),
        // withdrawn before the week
        (
            "s4",
            "C1",
            Some("2026-02-10T09:00:00Z"),
            Some("withdrawn"),
            Some("2026-03-05T09:00:00Z"),
        ),
        // a course that is in no courses file: kept, taken as running
        (
            "s5",
            "CX",
            Some("2026-03-02T09:00:00Z"),
            Some("active"),
            None,
        ),
        // no status at all
        ("s6", "C1", None, None, None),
        // enrolled after the week
        (
            "s7",
            "C1",
            Some("2026-03-20T09:00:00Z"),
            Some("active"),
            None,
        ),
        // a date in withdrawn_at decides, whatever the status says
        (
            "s8",
            "C1",
            Some("2026-03-01T09:00:00Z"),
            Some("active"),
            Some("2026-03-06T09:00:00Z"),
        ),
    ];

    fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
        let mut out: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let a = b
                    .column(column)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn week_enrollments_follow_withdrawals_and_keep_unknown_courses() {
        let ctx = tables(&ENROLLMENTS);
        let week = Week::containing(day("2026-03-09"), Tz::UTC);
        let params = [
            ("zone", ScalarValue::Utf8(Some("UTC".into()))),
            ("period_start", date(week.period_start)),
            ("week_start", ts(week.start)),
            ("week_end", ts(week.end)),
        ];
        let (_, batches) = run_query(&ctx, &Queries::default(), "week_enrollments", &params)
            .await
            .unwrap();
        assert_eq!(strings(&batches, 0), ["s1", "s3", "s5", "s6"]);
    }

    #[tokio::test]
    async fn the_history_starts_at_the_earliest_enrollment_or_course_start() {
        let run = |enrollments: &'static [Enrollment]| async move {
            let ctx = tables(enrollments);
            let week = Week::containing(day("2026-03-09"), Tz::UTC);
            history_start(&ctx, &Queries::default(), Tz::UTC, week, week)
                .await
                .unwrap()
        };
        // s1 enrolled on 1 March, before C1's start; s2 (withdrawn, no date)
        // and s4 (withdrawn before the week) do not reach back further.
        assert_eq!(run(&ENROLLMENTS).await, day("2026-03-01"));
        // Only enrollments without a date: the course start, capped at the
        // first week's Monday.
        assert_eq!(
            run(&[("s6", "C1", None, None, None)]).await,
            day("2026-03-09")
        );
        // An unknown course and no enrolled_at: no bound at all.
        assert_eq!(
            run(&[("s9", "CX", None, None, None)]).await,
            day("1970-01-01")
        );
    }
}
