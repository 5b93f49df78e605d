//! Weekly analytics: `student_week` and `course_week`, one partition per
//! week, computed by the SQL in `queries/` (see docs/ANALYTICS.md).
//!
//! For a set of weeks, analysis
//! 1. runs `queries/student_day.sql` and `counted_attempts.sql` once over
//!    the whole history window (partition-pruned) and keeps the results in
//!    memory as tables of those names, the building blocks of every week;
//! 2. runs `queries/week_enrollments.sql` and `student_week.sql` per week,
//!    with the week bound as parameters, one week per core at a time, and
//!    replaces that week's partition atomically;
//! 3. runs `queries/course_week.sql` per week over the fresh student_week.
//!
//! Every result depends only on the lake's raw tables and the week, so weeks
//! can be computed in any order, and again, with the same rows.

pub mod udf;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::Serialize;
use tracing::{Instrument, info, info_span};

use crate::engine;
use crate::lake::{LakeTable, Store, parquet_io, partition_folder};
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
    /// The weeks containing these dates, from..=to.
    Range(NaiveDate, NaiveDate),
}

/// How to analyze.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    pub weeks: WeekSelection,
    pub tz: Tz,
    /// Risk thresholds on success_probability.
    pub high_below: f64,
    pub medium_below: f64,
    /// Gap that ends an inferred session.
    pub session_gap_minutes: i64,
    /// Where `*.sql` live.
    pub queries: Queries,
}

/// What analysis wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnalyzeReport {
    /// period_start → (student_week rows, course_week rows).
    pub weeks: BTreeMap<NaiveDate, (usize, usize)>,
    pub seconds: f64,
}

/// The folder of query files, read at run time.
#[derive(Clone, Debug)]
pub struct Queries {
    pub dir: PathBuf,
}

impl Queries {
    /// `LEARNLAKE_QUERIES`, else `./queries`, else the source tree's `queries/`.
    pub fn locate(configured: Option<&Path>) -> Result<Self> {
        let candidates = configured
            .map(Path::to_path_buf)
            .into_iter()
            .chain(std::env::var_os("LEARNLAKE_QUERIES").map(PathBuf::from))
            .chain([
                PathBuf::from("queries"),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries"),
            ]);
        for dir in candidates {
            if dir.join("student_week.sql").is_file() {
                return Ok(Self { dir });
            }
        }
        Err(Error::Config(
            "cannot find the queries folder (student_week.sql, …); run from the project root or set LEARNLAKE_QUERIES".into(),
        ))
    }

    /// The text of `<name>.sql`.
    pub fn load(&self, name: &str) -> Result<String> {
        let path = self.dir.join(format!("{name}.sql"));
        std::fs::read_to_string(&path).map_err(|source| Error::ReadFile { path, source })
    }
}

/// Runs a query file with named parameters and collects the result.
pub async fn run_query(
    ctx: &SessionContext,
    queries: &Queries,
    name: &str,
    params: &[(&str, ScalarValue)],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let text = queries.load(name)?;
    let wrap = |source| Error::Query {
        name: name.to_string(),
        source,
    };
    let map = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone().into()))
        .collect();
    let started = std::time::Instant::now();
    let df = ctx.sql(&text).await.map_err(wrap)?;
    let df = df.with_param_values(ParamValues::Map(map)).map_err(wrap)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let planned = started.elapsed();
    if std::env::var_os("LEARNLAKE_EXPLAIN_ANALYZE").is_some() {
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

fn ts(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into()))
}

fn date(d: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(days(d)))
}

fn days(d: NaiveDate) -> i32 {
    d.signed_duration_since(NaiveDate::default()).num_days() as i32
}

/// The weeks that hold activity or attempts.
async fn weeks_with_data(ctx: &SessionContext, tz: Tz) -> Result<Vec<Week>> {
    let mut bounds: Vec<i64> = Vec::new();
    for (table, column) in [("activity", "timestamp"), ("attempts", "submitted_at")] {
        if !ctx.table_exist(table)? {
            continue;
        }
        let batches = ctx
            .sql(&format!(
                "SELECT MIN(\"{column}\"), MAX(\"{column}\") FROM {table}"
            ))
            .await?
            .collect()
            .await?;
        for b in &batches {
            for c in 0..2 {
                if let Some(a) = b
                    .column(c)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    && a.is_valid(0)
                {
                    bounds.push(a.value(0));
                }
            }
        }
    }
    let (Some(&first), Some(&last)) = (bounds.iter().min(), bounds.iter().max()) else {
        return Ok(Vec::new());
    };
    let local_day = |micros: i64| {
        NaiveDate::default()
            + Duration::days(udf::local_micros(&tz, micros).div_euclid(86_400_000_000))
    };
    Ok(weeks_between(local_day(first), local_day(last), tz))
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
    let started = std::time::Instant::now();
    let tz = options.tz;
    for table in ["enrollments", "courses"] {
        if !ctx.table_exist(table)? {
            return Err(Error::Config(format!(
                "the lake has no {table} yet; ingest the reference files (landing/{table}.csv) before analyze"
            )));
        }
    }
    let requested: Vec<Week> = match &options.weeks {
        WeekSelection::AllWithData => weeks_with_data(ctx, tz).await?,
        WeekSelection::Range(from, to) => weeks_between(*from, *to, tz),
    };
    let mut report = AnalyzeReport::default();
    if requested.is_empty() {
        info!("no weeks with data; nothing to analyze");
        return Ok(report);
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

    // The history window: back to the earliest start of a course running in
    // these weeks, one UTC day of slack for the zone.
    let history_from = history_start(ctx, &options.queries, first, last).await? - Duration::days(1);
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
    };

    if !ctx.table_exist("activity")? {
        return Err(Error::Config(
            "the lake has no activity yet; run `learnlake ingest` first".into(),
        ));
    }
    // A lake may have activity but no attempts or assessments (yet).
    for table in [LakeTable::Attempts, LakeTable::Assessments] {
        engine::register_empty_if_missing(ctx, table)?;
    }
    for table in RUN_TABLES {
        let span = info_span!("run_table", table, from = %history_from, to = %last.end);
        async {
            let rows = materialize(ctx, &options.queries, table, &common(&last)).await?;
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
    // one week's planning and writing overlap another's execution.
    let queue: VecDeque<(Week, Vec<(&'static str, ScalarValue)>)> =
        student_weeks.iter().map(|w| (*w, common(w))).collect();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.copied_config().target_partitions().max(1) {
        let week_ctx = week_session(ctx).await?;
        let (queue, lake, queries) = (queue.clone(), lake.clone(), options.queries.clone());
        workers.spawn(async move {
            let mut written = Vec::new();
            loop {
                let next = queue.lock().expect("not poisoned").pop_front();
                let Some((week, params)) = next else {
                    return Ok::<_, Error>(written);
                };
                let span = info_span!("student_week", period_start = %week.period_start);
                let rows = student_week(&lake, &week_ctx, &queries, week, &params)
                    .instrument(span)
                    .await?;
                written.push((week, rows));
            }
        });
    }
    // The first failure ends the run (dropping the set stops the others).
    while let Some(joined) = workers.join_next().await {
        let written =
            joined.map_err(|e| Error::Worker(format!("a student_week worker: {e}")))??;
        for (week, rows) in written {
            if requested.contains(&week) {
                report.weeks.entry(week.period_start).or_default().0 = rows;
            }
        }
    }
    engine::register_lake(ctx, lake).await?;
    for week in &requested {
        let span = info_span!("course_week", period_start = %week.period_start);
        let mut params = common(week);
        params.push(("previous_start", date(week.previous(tz).period_start)));
        let rows = query_into_partition(
            lake,
            ctx,
            &options.queries,
            LakeTable::CourseWeek,
            week.period_start,
            &params,
        )
        .instrument(span)
        .await?;
        report.weeks.entry(week.period_start).or_default().1 = rows;
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
    let config = ctx.copied_config().with_target_partitions(1);
    let week_ctx = SessionContext::new_with_config_rt(config, ctx.runtime_env());
    for udf in udf::functions() {
        week_ctx.register_udf(udf);
    }
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
/// the rows written.
async fn student_week(
    lake: &Store,
    ctx: &SessionContext,
    queries: &Queries,
    week: Week,
    params: &[(&str, ScalarValue)],
) -> Result<usize> {
    materialize(ctx, queries, "week_enrollments", params).await?;
    query_into_partition(
        lake,
        ctx,
        queries,
        LakeTable::StudentWeek,
        week.period_start,
        params,
    )
    .await
}

/// Runs `queries/<table>.sql` and replaces the table's partition of the
/// week starting `period_start` with the result; returns the rows written.
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
    ctx: &SessionContext,
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
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(rows)
}

/// The earliest start_date of the courses running during first..last (or
/// 1970 when one of them has none).
async fn history_start(
    ctx: &SessionContext,
    queries: &Queries,
    first: Week,
    last: Week,
) -> Result<NaiveDate> {
    let params = [
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
        .map(|a| NaiveDate::default() + Duration::days(i64::from(a.value(0))))
        .unwrap_or(first.period_start);
    Ok(start.min(first.period_start))
}

/// The period_start values a derived table has partitions for.
async fn partitions(lake: &Store, table: LakeTable) -> Result<BTreeSet<NaiveDate>> {
    let column = table
        .partition_column()
        .expect("derived tables are partitioned");
    let mut found = BTreeSet::new();
    for meta in lake.list(table.name()).await? {
        let rel = lake.relative(&meta.location);
        if let Some(value) = rel
            .split('/')
            .find_map(|p| p.strip_prefix(&format!("{column}=")))
            && let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        {
            found.insert(d);
        }
    }
    Ok(found)
}

/// Replaces one week's partition of a derived table: the new file is put
/// atomically under a fixed name, then anything else in the folder goes.
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
    let folder = partition_folder(
        table.name(),
        column,
        &period_start.format("%Y-%m-%d").to_string(),
    )?;
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
    let file = format!("{folder}/part-0.parquet");
    lake.put(&file, parquet_io::encode(&file_schema, &projected)?)
        .await?;
    for meta in lake.list(&folder).await? {
        let rel = lake.relative(&meta.location);
        if rel != file {
            lake.delete(&rel).await?;
        }
    }
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
