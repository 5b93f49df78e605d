//! What each command does, on top of the library.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::util::pretty::pretty_format_batches;
use indicatif::{ProgressBar, ProgressStyle};
use learnlake_generate::{self as generate, GenerateOptions, Profile};
use learnlake_pipeline::analytics::{self, AnalyzeOptions, AnalyzeReport, WeekSelection};
use learnlake_pipeline::config::Config;
use learnlake_pipeline::engine::{self, EngineOptions};
use learnlake_pipeline::ingest::{self, IngestOptions, IngestReport};
use learnlake_pipeline::lake::{LakeTable, Store};
use learnlake_pipeline::predict::{self, TrainOptions, TrainReport};
use tracing::{info, warn};

use crate::cli::{
    Cli, Command, GenerateArgs, GenerateFormat, GenerateProfile, Global, OutputFormat,
};
use crate::mail::{self, Delivery, Sender};
use crate::output::StreamFormat;
use crate::progress::Progress;
use crate::students::StudentWeekData;
use crate::templates::Templates;
use crate::{flags, report as reports, webhooks};

/// A failure the exit code tells apart (see `cli::EXIT_CODES`); errors of
/// the library are told apart in `main` by their variant.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command line or config asks for something this build cannot do.
    #[error("{0}")]
    Usage(String),
    /// The lake or landing area cannot be reached or read.
    #[error("{0}")]
    Unreachable(String),
}

/// The object_store options for remote lakes: the `AWS_*`, `GOOGLE_*` and
/// `AZURE_*` environment, read here so the library never reads it.
fn storage_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .collect()
}

/// The environment's storage options, then `options` (`[lake] options`),
/// which win over them.
fn options_with(options: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut all = storage_options();
    all.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Opens the lake or landing area (`what`), failing with [`Failure::Unreachable`].
fn open_store(
    location: &str,
    options: &std::collections::BTreeMap<String, String>,
    create: bool,
    what: &str,
    hint: &str,
) -> Result<Store> {
    let url = learnlake_pipeline::lake::store::parse_location(location)?;
    if !create
        && let Ok(root) = url.to_file_path()
        && !root.is_dir()
    {
        return Err(Failure::Unreachable(format!(
            "the {what} {} does not exist; {hint}",
            root.display()
        ))
        .into());
    }
    Store::open_with_options(location, create, &options_with(options))
        .with_context(|| Failure::Unreachable(format!("cannot open the {what} at {location}")))
}

const LAKE_HINT: &str = "run `learnlake ingest` first, or point --lake / LEARNLAKE_LAKE / [lake] url at an existing lake";

/// The lake, which must exist.
fn open_lake(config: &Config) -> Result<Store> {
    lake_store(config, false)
}

/// The lake, created where it does not exist yet (a first ingest, the
/// scheduler's commands, which record their runs in it).
fn open_lake_creating(config: &Config) -> Result<Store> {
    lake_store(config, true)
}

fn lake_store(config: &Config, create: bool) -> Result<Store> {
    let (url, options) = (&config.lake.url, &config.lake.options);
    open_store(url, options, create, "lake", LAKE_HINT)
}

/// The lake's table folders (every table, and each kind's quarantine), or
/// the one `only` names.
fn table_folders(only: Option<&str>) -> Result<Vec<(String, String)>> {
    let all = learnlake_pipeline::lake::tables::folders();
    match only {
        None => Ok(all),
        Some(name) => match all.into_iter().find(|(n, _)| n == name) {
            Some(found) => Ok(vec![found]),
            None => bail!(
                "unknown table {name:?}; the lake's tables are {}",
                LakeTable::ALL.map(|t| t.name()).join(", ") + ", quarantine_<kind>"
            ),
        },
    }
}

async fn compact(
    config: &Config,
    only: Option<&str>,
    before: Option<chrono::NaiveDate>,
) -> Result<()> {
    let lake = open_lake(config)?;
    let target = config.lake.target_file_mb << 20;
    for (name, folder) in table_folders(only)? {
        let done = learnlake_pipeline::lake::delta::compact(&lake, &folder, target, before)
            .await
            .with_context(|| format!("compacting {name}"))?;
        if done.files_removed > 0 {
            println!(
                "{name}: {} files merged into {} (version {})",
                done.files_removed,
                done.files_added,
                done.version.map_or_else(|| "-".into(), |v| v.to_string())
            );
        }
    }
    Ok(())
}

/// `learnlake retention [--days N] [--dry-run]`; returns its counts.
async fn retention(config: &Config, days: Option<u32>, dry_run: bool) -> Result<serde_json::Value> {
    let Some(days) = days.or(config.privacy.raw_retention_days) else {
        return Err(Failure::Usage(
            "no retention is set: set [privacy] raw_retention_days (or LEARNLAKE_PRIVACY_RAW_RETENTION_DAYS), or pass --days N"
                .into(),
        )
        .into());
    };
    let lake = open_lake(config)?;
    let today = chrono::Utc::now()
        .with_timezone(&zone(config)?)
        .date_naive();
    let cutoff = today - chrono::Duration::days(i64::from(days));
    let dropped = learnlake_pipeline::lake::retention::drop_raw_before(&lake, cutoff, dry_run)
        .await
        .context("retention")?;
    let verb = if dry_run {
        "would drop (--dry-run)"
    } else {
        "dropped"
    };
    if dropped.is_empty() {
        println!("nothing dated before {cutoff} ({days} days before {today}); nothing to drop");
    }
    for d in &dropped {
        println!(
            "{}: {verb} {} partition(s) dated {} to {} ({} files, {:.1} MB)",
            d.table,
            d.partitions.len(),
            d.partitions
                .first()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            d.partitions
                .last()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            d.files,
            d.bytes as f64 / 1e6
        );
    }
    Ok(serde_json::json!({
        "before": cutoff.to_string(),
        "partitions": dropped.iter().map(|d| d.partitions.len()).sum::<usize>(),
        "files": dropped.iter().map(|d| d.files).sum::<usize>(),
        "dry_run": dry_run,
    }))
}

/// `learnlake forget --student ID [--dry-run]` (docs/LAKE.md, "Erasure").
async fn forget(config: &Config, student_id: &str, dry_run: bool) -> Result<()> {
    use learnlake_pipeline::lake::erase;
    let student_id = student_id.trim();
    if student_id.is_empty() {
        return Err(Failure::Usage("--student needs the student's id".into()).into());
    }
    let lake = open_lake(config)?;
    let started = std::time::Instant::now();
    let subject = erase::subject(&lake, student_id)
        .await
        .context("looking the student up in the students table")?;
    let flag_ids = erase::flag_ids(&lake, student_id)
        .await
        .context("finding the student's flag ids")?;
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "forget {student_id}: {} e-mail address(es) and {} name(s) on record{}",
        subject.emails.len(),
        subject.names.len(),
        if dry_run {
            " (--dry-run: nothing changes)"
        } else {
            ""
        }
    );
    // The ledgers first and the students table last: a run stopped half
    // way still finds the flag ids, the address and the name next time.
    let hooks = webhooks::forget(&lake, &flag_ids, dry_run)
        .await
        .context("removing the student's flags from the webhook ledgers")?;
    let outbox = Path::new(&config.email.outbox);
    let sent = mail::forget(&lake, &subject, Some(outbox), dry_run)
        .await
        .context("removing the student from the mail ledger and outbox")?;
    println!(
        "mail: {verb} {} ledger record(s), {} unsent message(s) from the outbox, {} .eml file(s) from {}; webhooks: {verb} {hooks} delivery record(s)",
        sent.records,
        sent.pending.len(),
        sent.files,
        outbox.display()
    );
    for (kind, period, to) in sent
        .pending
        .iter()
        .filter(|(_, _, to)| !subject.emails.iter().any(|e| e.eq_ignore_ascii_case(to)))
    {
        println!(
            "  withdrawn unsent {kind} for {period} to {to}: `learnlake report --week {period}` (or notify) sends it again without the student"
        );
    }
    let mut rows = 0;
    let tables = erase::forget(&lake, &subject, dry_run, |e| {
        rows += e.rows;
        if e.rows > 0 {
            println!(
                "{}: {verb} {} row(s) from {} file(s) ({:.1} MB read, {:.1} MB written)",
                e.table,
                e.rows,
                e.files_rewritten,
                e.bytes_read as f64 / 1e6,
                e.bytes_written as f64 / 1e6
            );
        }
    })
    .await
    .context(
        "erasing the student's rows stopped; no table is left half-changed: run the same command again to finish",
    )?;
    if dry_run {
        return Ok(());
    }
    let old: u64 = tables.iter().map(|t| t.old_files_deleted).sum();
    let log: u64 = tables.iter().map(|t| t.log_entries_deleted).sum();
    if rows == 0 && sent.records + sent.pending.len() + sent.files + hooks == 0 {
        println!("nothing of {student_id} was left in the lake");
    }
    println!(
        "history: {old} older data file(s) and {log} log entr(ies) deleted; every table's time travel now starts here ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    info!(rows, old_files = old, log_entries = log, "forget finished");
    Ok(())
}

async fn vacuum(config: &Config, only: Option<&str>, retention_days: Option<i64>) -> Result<()> {
    let lake = open_lake(config)?;
    let days = retention_days.unwrap_or(config.lake.vacuum_retention_days);
    if days < 0 {
        bail!("--retention-days must be 0 or more");
    }
    for (name, folder) in table_folders(only)? {
        let deleted = learnlake_pipeline::lake::delta::vacuum(
            &lake,
            &folder,
            chrono::Duration::days(days),
            false,
        )
        .await
        .with_context(|| format!("vacuuming {name}"))?;
        if !deleted.is_empty() {
            println!("{name}: {} files deleted", deleted.len());
        }
    }
    Ok(())
}

/// The institution zone (validated with the rest of the config).
fn zone(config: &Config) -> Result<chrono_tz::Tz> {
    config.tz().map_err(|e| anyhow::anyhow!(e))
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(args) => run_generate(&args).map(|_| ()),
        Command::Demo { out } => demo(&cli.global, &out).await,
        Command::Validate { check_connections } => validate(&cli.global, check_connections).await,
        Command::Config { defaults: true } => {
            print!("{}", Config::default().annotated());
            Ok(())
        }
        command => {
            let config = load_config(&cli.global, None)?;
            match command {
                Command::Ingest => {
                    let report = run_ingest(&config).await?;
                    print_ingest_report(&report);
                    Ok(())
                }
                Command::Retention { days, dry_run } => {
                    retention(&config, days, dry_run).await.map(|_| ())
                }
                Command::Forget { student, dry_run } => forget(&config, &student, dry_run).await,
                Command::Scheduler {
                    bind,
                    external_host,
                } => {
                    let lake = open_lake(&config)?;
                    engine::cluster::scheduler(&lake, bind, &external_host).await?;
                    Ok(())
                }
                Command::Executor {
                    scheduler,
                    bind_host,
                    port,
                    grpc_port,
                    external_host,
                    slots,
                    work_dir,
                } => {
                    let (scheduler_host, scheduler_port) = scheduler
                        .rsplit_once(':')
                        .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
                        .ok_or_else(|| {
                            Failure::Usage(format!(
                                "--scheduler {scheduler:?}: give the scheduler as HOST:PORT (e.g. localhost:50050)"
                            ))
                        })?;
                    let lake = open_lake(&config)?;
                    let options = engine::cluster::ExecutorOptions {
                        scheduler_host,
                        scheduler_port,
                        bind_host,
                        port,
                        grpc_port,
                        external_host,
                        slots: slots.unwrap_or_else(|| {
                            std::thread::available_parallelism().map_or(2, |n| n.get())
                        }),
                        work_dir: work_dir.map(|p| p.display().to_string()),
                        memory_limit_bytes: config.engine.memory_limit_mb << 20,
                    };
                    engine::cluster::executor(&lake, options).await?;
                    Ok(())
                }
                Command::Compact { table, older_than } => {
                    compact(&config, table.as_deref(), older_than).await
                }
                Command::Vacuum {
                    table,
                    retention_days,
                } => vacuum(&config, table.as_deref(), retention_days).await,
                Command::Analyze { week, from, to } => {
                    let selection = match (week, from, to) {
                        (Some(w), _, _) => WeekSelection::Range(w, w),
                        (None, Some(f), Some(t)) => WeekSelection::Range(f, t),
                        _ => WeekSelection::AllWithData,
                    };
                    let report = run_analyze(&config, selection).await?;
                    print_analyze_report(&report);
                    Ok(())
                }
                Command::Train {
                    force,
                    feature_gains,
                } => {
                    let report = run_train(&config, force, feature_gains).await?;
                    print_train_report(&report);
                    Ok(())
                }
                Command::Models => models(&config).await,
                Command::Flags {
                    since,
                    level,
                    deliver: true,
                    ..
                } => deliver_flags(&config, since, level).await.map(|_| ()),
                Command::Flags {
                    since,
                    level,
                    changed,
                    format,
                    output,
                    deliver: false,
                } => {
                    let filter = flags::Filter {
                        since,
                        level,
                        changed,
                    };
                    let lake = open_lake(&config)?;
                    let ctx = engine::session(&lake, &engine_options(&config)?).await?;
                    let queries = analytics::Queries::new(config.analytics.queries.as_deref())?;
                    let rows =
                        flags::export(&ctx, &queries, &filter, format, output.as_deref()).await?;
                    if let Some(path) = &output {
                        println!("{rows} flags written to {}", path.display());
                    }
                    Ok(())
                }
                Command::Report {
                    week,
                    course,
                    dry_run,
                    html,
                } => run_report(&config, week, course, dry_run, html.as_deref())
                    .await
                    .map(|_| ()),
                Command::Notify { week, dry_run } => {
                    run_notify(&config, week, dry_run).await.map(|_| ())
                }
                Command::Config { .. } => {
                    print!("{}", config.annotated());
                    Ok(())
                }
                Command::Run { job, slot } => {
                    let lake = open_lake_creating(&config)?;
                    crate::scheduler::run_once(&config, &lake, &job, &slot).await
                }
                Command::Schedule => {
                    let lake = open_lake_creating(&config)?;
                    crate::scheduler::daemon(&config, &lake).await
                }
                Command::Status => {
                    let lake = open_lake_creating(&config)?;
                    crate::scheduler::status(&config, &lake).await
                }
                Command::Sql {
                    query,
                    format,
                    output,
                    pseudonymise,
                } => sql(&config, &query, format, output.as_deref(), pseudonymise).await,
                Command::Tables => tables(&config).await,
                Command::Schema { table } => schema(&config, &table).await,
                Command::Generate(_) | Command::Demo { .. } | Command::Validate { .. } => {
                    unreachable!()
                }
            }
        }
    }
}

/// `learnlake flags --deliver`: every changed flag not yet delivered, to
/// each endpoint; returns (delivered, delivered before, failed).
async fn deliver_flags(
    config: &Config,
    since: Option<chrono::NaiveDate>,
    level: Option<crate::cli::RiskLevel>,
) -> Result<(usize, usize, usize)> {
    let lake = open_lake(config)?;
    let ctx = engine::session(&lake, &engine_options(config)?).await?;
    let queries = analytics::Queries::new(config.analytics.queries.as_deref())?;
    let reports = webhooks::deliver(
        &lake,
        &ctx,
        &queries,
        &config.webhooks,
        since,
        level,
        &|name| std::env::var(name).ok(),
    )
    .await?;
    let mut failed = Vec::new();
    let mut totals = (0, 0, 0);
    for r in &reports {
        println!(
            "{}: {} delivered, {} delivered before, {} failed",
            r.endpoint, r.delivered, r.already_delivered, r.failed
        );
        totals.0 += r.delivered;
        totals.1 += r.already_delivered;
        totals.2 += r.failed;
        if r.failed > 0 {
            failed.push(format!(
                "{}: {} flag(s) undelivered ({})",
                r.endpoint,
                r.failed,
                r.last_error.as_deref().unwrap_or("?")
            ));
        }
    }
    if !failed.is_empty() {
        bail!("{}; the next run tries them again", failed.join("; "));
    }
    Ok(totals)
}

/// Runs one job step (`[[jobs]] steps`) for the slot `slot`, returning its
/// counts for `job_runs.step_counts`. `analyze` computes the newest week
/// with data (up to the slot's) and the week before it (just finished,
/// late data included); `report` and `notify` take the newest finished
/// week, as their commands do.
pub(crate) async fn run_step(
    config: &Config,
    step: &str,
    slot: chrono::DateTime<chrono::Utc>,
) -> Result<serde_json::Value> {
    use serde_json::json;
    Ok(match step {
        "ingest" => {
            let report = run_ingest(config).await?;
            print_ingest_report(&report);
            let t = report.total();
            json!({
                "files": t.files,
                "rows": t.rows_accepted,
                "duplicates": t.duplicates,
                "quarantined": t.rows_quarantined,
            })
        }
        "analyze" => {
            let tz = zone(config)?;
            let slot_day = slot.with_timezone(&tz).date_naive();
            let selection = match newest_data_day(config).await? {
                Some(newest) => {
                    let day = newest.min(slot_day);
                    let week = |d| analytics::Week::containing(d, tz).period_start;
                    WeekSelection::Range(week(day - chrono::Duration::days(7)), week(day))
                }
                // Nothing ingested yet: the analysis says what to do.
                None => WeekSelection::AllWithData,
            };
            let report = run_analyze(config, selection).await?;
            print_analyze_report(&report);
            json!({
                "weeks": report.weeks.len(),
                "student_week_rows": report.weeks.values().map(|w| w.0).sum::<usize>(),
                "risk_flags": report.risk_flags,
            })
        }
        "train" => {
            let report = run_train(config, false, false).await?;
            print_train_report(&report);
            json!({ "saved": report.saved, "version": report.model.version })
        }
        "report" => {
            let (week, sent) = run_report(config, None, None, false, None).await?;
            json!({ "week": week.to_string(), "messages": sent })
        }
        "notify" => json!({ "messages": run_notify(config, None, false).await? }),
        "flags" => {
            let (delivered, before, failed) = deliver_flags(config, None, None).await?;
            json!({ "delivered": delivered, "delivered_before": before, "failed": failed })
        }
        "retention" => retention(config, None, false).await?,
        "compact" => {
            compact(config, None, None).await?;
            json!({})
        }
        "vacuum" => {
            vacuum(config, None, None).await?;
            json!({})
        }
        other => bail!("unknown step {other:?}"),
    })
}

/// The newest day (partition) of the activity and attempts tables, from
/// the Delta log alone (no data file is read).
async fn newest_data_day(config: &Config) -> Result<Option<chrono::NaiveDate>> {
    let lake = open_lake(config)?;
    let mut newest = None;
    for table in [LakeTable::Activity, LakeTable::Attempts] {
        if let Some(t) = learnlake_pipeline::lake::delta::open(&lake, table.folder()).await? {
            let days = learnlake_pipeline::lake::delta::files(&t, table.folder())?
                .into_iter()
                .filter_map(|(_, day)| day);
            newest = newest.max(days.max());
        }
    }
    Ok(newest)
}

/// Config file, then environment, then command-line options; validated
/// once all are applied.
fn load_config(global: &Global, base: Option<(&str, &str)>) -> Result<Config> {
    let config = load_config_unchecked(global, base)?;
    config.validate()?;
    Ok(config)
}

/// [`load_config`] without validating the values (a file that cannot be
/// read or parsed is still an error).
fn load_config_unchecked(global: &Global, base: Option<(&str, &str)>) -> Result<Config> {
    let env = |key: &str| std::env::var(key).ok();
    let mut overrides: Vec<(&str, &str)> = Vec::new();
    if let Some((lake, landing)) = base {
        overrides.push(("lake.url", lake));
        overrides.push(("landing.url", landing));
    }
    if let Some(lake) = &global.lake {
        overrides.push(("lake.url", lake));
    }
    if let Some(landing) = &global.landing {
        overrides.push(("landing.url", landing));
    }
    if let Some(tz) = &global.timezone {
        overrides.push(("timezone", tz));
    }
    Ok(Config::load_unchecked(
        global.config.as_deref(),
        &env,
        &overrides,
    )?)
}

/// `DATAFUSION_EXECUTION_BATCH_SIZE=4096` → `datafusion.execution.batch_size`,
/// for every DataFusion setting (the same names DataFusion's own CLI reads).
fn datafusion_settings() -> Vec<(String, String)> {
    datafusion::config::ConfigOptions::new()
        .entries()
        .into_iter()
        .filter_map(|entry| {
            let var = entry.key.to_uppercase().replace('.', "_");
            std::env::var(&var).ok().map(|value| (entry.key, value))
        })
        .collect()
}

/// The settings of the engine that runs the analytics SQL and `learnlake
/// sql`: the configured one (`[engine] url`), in this process or on a
/// Ballista cluster.
fn cluster_engine_options(config: &Config) -> Result<EngineOptions> {
    let mut options = engine_options(config)?;
    options.engine = config.engine.url.clone();
    Ok(options)
}

/// The settings of the in-process engine, for the small queries of the
/// other commands (reports, flags, training, the table listings).
fn engine_options(config: &Config) -> Result<EngineOptions> {
    let explain = std::env::var("LEARNLAKE_EXPLAIN_ANALYZE").unwrap_or_default();
    let mut options = EngineOptions {
        memory_limit_bytes: config.engine.memory_limit_mb << 20,
        datafusion: datafusion_settings(),
        explain_analyze: matches!(explain.as_str(), "1" | "true" | "yes"),
        ..EngineOptions::default()
    };
    if let Some(n) = config.engine.target_partitions {
        options.target_partitions = n;
    }
    Ok(options)
}

fn run_generate(args: &GenerateArgs) -> Result<generate::GenerateSummary> {
    let options = GenerateOptions {
        out: args.out.clone(),
        students: args.students,
        courses: args.courses,
        weeks: args.weeks,
        start: args.start,
        seed: args.seed,
        gzip: args.gzip,
        profile: match args.profile {
            GenerateProfile::Rich => Profile::Rich,
            GenerateProfile::DailyClicks => Profile::DailyClicks,
        },
    };
    let progress = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new_spinner();
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} generating: {pos} events ({per_sec})")
        {
            b.set_style(style);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let summary = generate::generate(&options, &|n| progress.inc(n))
        .with_context(|| format!("generating into {}", args.out.display()))?;
    progress.finish_and_clear();
    if args.format == GenerateFormat::Xapi {
        let xapi = generate::to_xapi(&args.out, args.gzip)
            .with_context(|| format!("writing xAPI statements into {}", args.out.display()))?;
        info!(
            statements = xapi.statements,
            files = xapi.files,
            bytes = xapi.bytes,
            "the history as xAPI statements in xapi/"
        );
        println!(
            "xapi: {} statements in {} files ({:.1} MB) replace activity/ and attempts/",
            xapi.statements,
            xapi.files,
            xapi.bytes as f64 / 1e6
        );
    }
    let secs = started.elapsed().as_secs_f64();
    info!(
        events = summary.events,
        attempts = summary.attempts,
        students = summary.students,
        files = summary.files,
        seconds = secs,
        "generated"
    );
    println!(
        "generated {} events, {} attempts, {} students, {} courses, {} enrollments in {} files ({:.1} MB) under {} in {:.1}s",
        summary.events,
        summary.attempts,
        summary.students,
        summary.courses,
        summary.enrollments,
        summary.files,
        summary.bytes as f64 / 1e6,
        args.out.display(),
        secs
    );
    Ok(summary)
}

async fn run_ingest(config: &Config) -> Result<IngestReport> {
    let lake = open_lake_creating(config)?;
    let hint = match learnlake_pipeline::lake::store::parse_location(&config.landing.url)
        .ok()
        .and_then(|url| url.to_file_path().ok())
    {
        Some(root) => format!(
            "set --landing, LEARNLAKE_LANDING or [landing] url, or create it (learnlake generate --out {})",
            root.display()
        ),
        None => "set --landing, LEARNLAKE_LANDING or [landing] url".into(),
    };
    let landing = open_store(
        &config.landing.url,
        config.landing_options(),
        false,
        "landing area",
        &hint,
    )?;
    if config.hash_key.is_none() {
        warn!("LEARNLAKE_HASH_KEY is not set: ip_address values are dropped, not stored");
    }
    let mut mapping = config
        .inputs
        .mapping()
        .map_err(|problems| Failure::Usage(problems.join("; ")))?;
    if let Some(path) = &config.inputs.actors {
        let text = landing.get(path).await.with_context(|| {
            Failure::Usage(format!(
                "inputs.actors: cannot read {path:?} in the landing area {}; put the actor,student_id CSV there or unset inputs.actors",
                landing.url
            ))
        })?;
        let actors = learnlake_pipeline::ingest::records::lms::read_actors(&text)
            .map_err(|e| Failure::Usage(format!("inputs.actors: {path}: {e}")))?;
        info!(actors = actors.len(), "actor lookup loaded");
        mapping.actors = Arc::new(actors);
    }
    // The bytes ingest will read: a file feeding two kinds (an xAPI file:
    // activity, then attempts) once per kind, as ingest reports progress.
    let objects = landing
        .list("")
        .await
        .with_context(|| Failure::Unreachable(format!("cannot list {}", landing.url)))?;
    let total: u64 = ingest::source::classify(&landing, &objects)
        .0
        .iter()
        .map(|s| s.size)
        .sum();
    let progress = Arc::new(Progress::new("ingest", "bytes", total));
    let p = progress.clone();
    let options = IngestOptions {
        batch_bytes: config.ingest.batch_mb.min(256) << 20,
        hold_bytes: config.ingest.batch_mb << 20,
        threads: config
            .ingest
            .threads
            .unwrap_or_else(|| IngestOptions::default().threads),
        hash_key: config.hash_key.as_ref().map(|k| k.as_bytes().to_vec()),
        progress: Some(Arc::new(move |n| p.inc(n))),
        timezone: zone(config)?,
        mapping: Arc::new(mapping),
        ..IngestOptions::default()
    };
    let report = ingest::ingest(&lake, &landing, &options)
        .await
        .context("ingest")?;
    progress.finish();
    Ok(report)
}

async fn run_analyze(config: &Config, weeks: WeekSelection) -> Result<AnalyzeReport> {
    let lake = open_lake(config)?;
    let ctx = engine::session(&lake, &cluster_engine_options(config)?).await?;
    let progress = Arc::new(Progress::new("analyze", "weeks", 0));
    let options = analyze_options(config, weeks, &progress)?;
    let report = analytics::analyze(&lake, &ctx, &options).await;
    progress.finish();
    Ok(report?)
}

fn print_analyze_report(report: &AnalyzeReport) {
    println!(
        "{:<12} {:>14} {:>12}",
        "week",
        LakeTable::StudentWeek.name(),
        LakeTable::CourseWeek.name()
    );
    for (week, (students, courses)) in &report.weeks {
        println!("{:<12} {:>14} {:>12}", week.to_string(), students, courses);
    }
    println!(
        "risk model {}{}; {} risk_flags rows",
        report.model_version,
        if report.model_version == predict::DEFAULT_VERSION {
            " (the default model: no trained model yet, see `learnlake train`)"
        } else {
            ""
        },
        report.risk_flags
    );
    println!("analyze took {:.2}s", report.seconds);
}

fn analyze_options(
    config: &Config,
    weeks: WeekSelection,
    progress: &Arc<Progress>,
) -> Result<AnalyzeOptions> {
    let p = progress.clone();
    Ok(AnalyzeOptions {
        weeks,
        tz: zone(config)?,
        high_below: config.risk.high_below,
        medium_below: config.risk.medium_below,
        session_gap_minutes: config.analytics.session_gap_minutes,
        queries: config.analytics.queries.clone(),
        progress: Some(Arc::new(move |done, total| {
            p.set(done as u64, total as u64)
        })),
    })
}

async fn run_train(config: &Config, force: bool, feature_gains: bool) -> Result<TrainReport> {
    let lake = open_lake(config)?;
    let ctx = engine::session(&lake, &engine_options(config)?).await?;
    let progress = Arc::new(Progress::new("analyze", "weeks", 0));
    let options = TrainOptions {
        analyze: analyze_options(config, WeekSelection::AllWithData, &progress)?,
        force,
        feature_gains,
        ..TrainOptions::default()
    };
    let report = predict::train(&lake, &ctx, &options).await;
    progress.finish();
    Ok(report?)
}

fn fmt_auc(a: Option<f64>) -> String {
    a.map_or_else(|| "-".to_string(), |a| format!("{a:.3}"))
}

fn print_train_report(report: &TrainReport) {
    let model = &report.model;
    let current = &report.current;
    let training = model
        .training
        .as_ref()
        .expect("a trained model has its training set");
    let (new, old) = (
        model.metrics.as_ref().expect("measured"),
        current.metrics.as_ref().expect("measured"),
    );
    if report.weeks_analyzed > 0 {
        println!(
            "computed {} missing student_week weeks first",
            report.weeks_analyzed
        );
    }
    if !report.skipped_courses.is_empty() {
        println!(
            "skipped finished courses without a start_date: {}",
            report.skipped_courses.join(", ")
        );
    }
    println!(
        "fitted on {} courses ({} rows, {:.0}% from successful enrollments; class weight: {}); held out the newest: {} ({} rows)",
        training.training_courses.len(),
        training.training_rows,
        100.0 * training.success_rate,
        training.class_weight,
        training.holdout_courses.join(", "),
        training.holdout_rows
    );
    println!();
    println!("held-out AUC by course week (week 1 holds the course start):");
    println!(
        "{:>6} {:>7} {:>10} {:>12}",
        "week", "rows", "new", current.version
    );
    for (week, rows, a, b) in predict::train::auc_table(new, old) {
        let mark = if predict::metrics::HEADLINE_WEEKS.contains(&week) {
            " *"
        } else {
            ""
        };
        println!(
            "{week:>6} {rows:>7} {:>10} {:>12}{mark}",
            fmt_auc(a),
            fmt_auc(b)
        );
    }
    println!(
        "{:>6} {:>7} {:>10} {:>12}",
        "all",
        new.rows,
        fmt_auc(new.auc),
        fmt_auc(old.auc)
    );
    println!(
        "Brier score: new {:.4}, {} {:.4} (lower is better)",
        new.brier, current.version, old.brier
    );
    println!();
    println!("calibration of the new model (held out):");
    println!(
        "{:>11} {:>7} {:>10} {:>9}",
        "predicted", "rows", "mean", "observed"
    );
    for bin in &new.calibration {
        println!(
            "{:>5.1}–{:<5.1} {:>7} {:>10.3} {:>9.3}",
            bin.from, bin.to, bin.rows, bin.mean_predicted, bin.observed
        );
    }
    println!();
    println!("largest standardised coefficients:");
    for (name, w) in predict::train::largest_coefficients(model).iter().take(8) {
        println!("  {name:<24} {w:+.3}");
    }
    if !report.feature_gains.is_empty() {
        println!();
        println!("held-out gain of each feature (full model minus the model without it):");
        println!("  {:<24} {:>10} {:>10}", "feature", "AUC", "AUC wk 5");
        for g in &report.feature_gains {
            let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:+.4}"));
            println!(
                "  {:<24} {:>10} {:>10}",
                g.feature,
                f(g.auc_gain),
                f(g.auc_week_5_gain)
            );
        }
    }
    println!();
    match (&report.refused, report.saved) {
        (None, _) => println!("saved {} as the current model", model.version),
        (Some(why), true) => println!(
            "saved {} as the current model (--force): {why}",
            model.version
        ),
        (Some(why), false) => println!(
            "not saved: {why}; {} stays current (`learnlake train --force` saves it anyway)",
            current.version
        ),
    }
    println!("training took {:.1}s", report.seconds);
}

async fn models(config: &Config) -> Result<()> {
    let lake = open_lake(config)?;
    let saved = predict::saved_models(&lake).await?;
    let current = predict::current_model(&lake).await?;
    if saved.is_empty() {
        println!(
            "no trained model yet: analysis uses {} (docs/PREDICTIONS.md); `learnlake train` fits one",
            predict::DEFAULT_VERSION
        );
        return Ok(());
    }
    println!(
        "  version    trained_at               auc    wk 2    wk 5   wk 10   wk 20   brier  held out"
    );
    for m in &saved {
        let q = m.metrics.clone().unwrap_or_default();
        println!(
            "{:<2}{:<10} {:<20} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7.4}  {}",
            if m.version == current.version {
                "*"
            } else {
                ""
            },
            m.version,
            m.trained_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            fmt_auc(q.auc),
            fmt_auc(q.auc_at(2)),
            fmt_auc(q.auc_at(5)),
            fmt_auc(q.auc_at(10)),
            fmt_auc(q.auc_at(20)),
            q.brier,
            m.training
                .as_ref()
                .map(|t| t.holdout_courses.join(","))
                .unwrap_or_default()
        );
    }
    println!("* the current model (analysis scores with it)");
    Ok(())
}

fn print_ingest_report(report: &IngestReport) {
    // voided: rows removed by xAPI voiding statements; no row: records of
    // other systems that make no row of that table (docs/INPUTS.md).
    println!(
        "{:<12} {:>6} {:>8} {:>10} {:>11} {:>12} {:>11} {:>7} {:>7}",
        "kind",
        "files",
        "skipped",
        "accepted",
        "duplicates",
        "quarantined",
        "bad files",
        "voided",
        "no row"
    );
    let mut rows: Vec<(&str, &ingest::KindReport)> =
        report.kinds.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let total = report.total();
    rows.push(("total", &total));
    for (kind, r) in rows {
        println!(
            "{:<12} {:>6} {:>8} {:>10} {:>11} {:>12} {:>11} {:>7} {:>7}",
            kind,
            r.files,
            r.files_skipped,
            r.rows_accepted,
            r.duplicates,
            r.rows_quarantined,
            r.files_quarantined,
            r.voided,
            r.no_row
        );
    }
    println!("ingest took {:.2}s", report.seconds);
    if total.rows_quarantined > 0 || total.files_quarantined > 0 {
        let kind = report
            .kinds
            .iter()
            .find(|(_, r)| r.rows_quarantined > 0 || r.files_quarantined > 0)
            .map_or("activity", |(k, _)| k.as_str());
        warn!(
            rows = total.rows_quarantined,
            files = total.files_quarantined,
            "some input was quarantined; inspect it with: learnlake sql \"SELECT source_file, line_number, reason FROM quarantine_{kind}\""
        );
    }
}

async fn sql(
    config: &Config,
    query: &str,
    format: OutputFormat,
    output: Option<&Path>,
    pseudonymise: bool,
) -> Result<()> {
    let lake = open_lake(config)?;
    // Pseudonyms are computed in this process (the key stays here).
    let options = if pseudonymise {
        engine_options(config)?
    } else {
        cluster_engine_options(config)?
    };
    let ctx = engine::session(&lake, &options).await?;
    if pseudonymise {
        let Some(key) = &config.hash_key else {
            return Err(Failure::Usage(
                "--pseudonymise needs the key of the keyed hashes: set LEARNLAKE_HASH_KEY".into(),
            )
            .into());
        };
        crate::pseudonym::pseudonymise(&ctx, key.as_bytes(), config.privacy.min_group_size).await?;
    }
    let df = ctx.sql(query).await.context("planning the query")?;
    let format = match format {
        OutputFormat::Table => {
            // A table is for people: laid out once every row is in.
            let batches = df.collect().await.context("running the query")?;
            let text = format!("{}\n", pretty_format_batches(&batches)?);
            match output {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(text.as_bytes())?;
                }
            }
            return Ok(());
        }
        OutputFormat::Csv => StreamFormat::Csv,
        OutputFormat::Ndjson => StreamFormat::Ndjson,
        OutputFormat::Parquet => StreamFormat::Parquet,
    };
    crate::output::write_stream(df, format, output)
        .await
        .context("running the query")?;
    Ok(())
}

async fn tables(config: &Config) -> Result<()> {
    let lake = open_lake(config)?;
    let ctx = engine::session(&lake, &engine_options(config)?).await?;
    let mut names: Vec<String> = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        println!(
            "the lake at {} has no tables yet; run `learnlake ingest`",
            lake.url
        );
        return Ok(());
    }
    println!("{:<24} {:>12}", "table", "rows");
    for name in names {
        let batches = ctx
            .sql(&format!("SELECT COUNT(*) FROM \"{name}\""))
            .await?
            .collect()
            .await?;
        let count = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        println!("{name:<24} {count:>12}");
    }
    Ok(())
}

async fn schema(config: &Config, table: &str) -> Result<()> {
    let lake = open_lake(config)?;
    let ctx = engine::session(&lake, &engine_options(config)?).await?;
    let provider = ctx.table_provider(table).await.with_context(|| {
        format!(
            "no table {table:?} in the lake at {}; `learnlake tables` lists them",
            lake.url
        )
    })?;
    for field in provider.schema().fields() {
        println!(
            "{:<24} {:<40} {}",
            field.name(),
            field.data_type().to_string(),
            if field.is_nullable() {
                "null"
            } else {
                "not null"
            }
        );
    }
    Ok(())
}

/// The sample landing data, built into the binary so the demo runs
/// anywhere; data-samples/landing stays the one copy in the source tree.
const SAMPLES: [(&str, &[u8]); 11] = [
    (
        "GENERATED.json",
        include_bytes!("../../data-samples/landing/GENERATED.json"),
    ),
    (
        "assessments.jsonl",
        include_bytes!("../../data-samples/landing/assessments.jsonl"),
    ),
    (
        "courses.csv",
        include_bytes!("../../data-samples/landing/courses.csv"),
    ),
    (
        "enrollments.csv",
        include_bytes!("../../data-samples/landing/enrollments.csv"),
    ),
    (
        "students.csv",
        include_bytes!("../../data-samples/landing/students.csv"),
    ),
    // The history of 40 students: 13 native, 13 as xAPI statements, 14 as
    // Caliper events (data-samples/mixed, see its README).
    (
        "activity/activity-00001.jsonl.gz",
        include_bytes!("../../data-samples/mixed/activity/activity-00001.jsonl.gz"),
    ),
    (
        "attempts/attempts-00001.jsonl.gz",
        include_bytes!("../../data-samples/mixed/attempts/attempts-00001.jsonl.gz"),
    ),
    (
        "xapi/statements-00001.jsonl.gz",
        include_bytes!("../../data-samples/mixed/xapi/statements-00001.jsonl.gz"),
    ),
    (
        "xapi/statements-00002.jsonl.gz",
        include_bytes!("../../data-samples/mixed/xapi/statements-00002.jsonl.gz"),
    ),
    (
        "caliper/events-00001.jsonl.gz",
        include_bytes!("../../data-samples/mixed/caliper/events-00001.jsonl.gz"),
    ),
    (
        "caliper/events-00002.jsonl.gz",
        include_bytes!("../../data-samples/mixed/caliper/events-00002.jsonl.gz"),
    ),
];

fn write_samples(landing: &Path) -> Result<()> {
    for (rel, bytes) in SAMPLES {
        let path = landing.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn demo(global: &Global, out: &Path) -> Result<()> {
    let landing = out.join("landing");
    let lake = out.join("lake");
    if landing.exists() {
        println!("== using the landing data already in {}", landing.display());
    } else {
        println!(
            "== writing the sample landing data to {}",
            landing.display()
        );
        write_samples(&landing)?;
    }
    let lake_url = lake.to_string_lossy().to_string();
    let landing_url = landing.to_string_lossy().to_string();
    let mut config = load_config(global, Some((&lake_url, &landing_url)))?;
    if config.hash_key.is_none() {
        config.hash_key = Some("learnlake-demo-key".into());
        println!("   (LEARNLAKE_HASH_KEY not set: the demo hashes ip_address with a demo key)");
    }
    println!("== ingesting {} -> {}", landing.display(), lake.display());
    let report = run_ingest(&config).await?;
    print_ingest_report(&report);
    println!();
    println!(
        "== analyzing every week with data (zone {})",
        config.timezone
    );
    let analysis = run_analyze(&config, WeekSelection::AllWithData).await?;
    print_analyze_report(&analysis);
    println!();
    println!("== the latest week, per course");
    let summary = "SELECT course_id AS course, CAST(period_start AS VARCHAR) AS week, enrolled, \
                   active AS active_this_week, ROUND(mean_score_to_date, 1) AS mean_score, \
                   risk_high AS high_risk, risk_medium AS medium_risk, risk_low AS low_risk \
                   FROM course_week WHERE period_start = (SELECT MAX(period_start) FROM course_week) \
                   ORDER BY course_id";
    sql(&config, summary, OutputFormat::Table, None, false).await?;
    println!();
    println!("== the lake at {}", lake.display());
    tables(&config).await?;
    println!();
    let outbox = out.join("outbox");
    let previews = out.join("reports");
    if config.email.transport == learnlake_pipeline::config::Transport::File {
        config.email.outbox = outbox.to_string_lossy().to_string();
    }
    if config.email.admins.is_empty() {
        config.email.admins = vec!["head@example.edu".into()];
    }
    println!("== the weekly reports (to {})", config.email.outbox);
    let (week, _) = run_report(&config, None, None, false, Some(&previews)).await?;
    println!();
    println!("== the notifications of that week");
    run_notify(&config, Some(week), false).await?;
    println!();
    println!(
        "Open the administrator report in a browser: {}",
        previews.join(format!("admin_report-{week}.html")).display()
    );
    println!(
        "Try: learnlake --lake {} sql \"SELECT activity_type, COUNT(*) FROM activity GROUP BY 1 ORDER BY 2 DESC\"",
        lake.display()
    );
    Ok(())
}

/// Test hook: the first e-mail retry wait in milliseconds (default 1000).
fn email_backoff() -> std::time::Duration {
    let ms = std::env::var("LEARNLAKE_EMAIL_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000u64);
    std::time::Duration::from_millis(ms)
}

/// The week a report or notify run is about: the one containing `day`, or
/// else the newest analyzed week that is over in the data (the lake holds
/// activity or attempts after its last day), or else the newest analyzed
/// week. A report on the week in progress would show a few hours of it.
async fn report_week(
    lake: &Store,
    ctx: &datafusion::prelude::SessionContext,
    queries: &analytics::Queries,
    day: Option<chrono::NaiveDate>,
    tz: chrono_tz::Tz,
) -> Result<analytics::Week> {
    if let Some(day) = day {
        return Ok(analytics::Week::containing(day, tz));
    }
    let analyzed = analytics::partitions(lake, LakeTable::StudentWeek).await?;
    let newest = *analyzed.last().ok_or_else(|| {
        anyhow::anyhow!("the lake has no analyzed week yet; run `learnlake analyze` first")
    })?;
    let last_data = analytics::last_data_day(ctx, queries, tz).await?;
    let finished = analyzed
        .iter()
        .rev()
        .map(|d| analytics::Week::containing(*d, tz))
        .find(|w| last_data.is_some_and(|last| last > w.last_day()));
    Ok(finished.unwrap_or_else(|| analytics::Week::containing(newest, tz)))
}

/// A session over the lake with what reports read (missing reference
/// tables are empty, a missing student_week is an error).
async fn report_session(
    config: &Config,
    lake: &Store,
) -> Result<datafusion::prelude::SessionContext> {
    let ctx = engine::session(lake, &engine_options(config)?).await?;
    for table in [
        LakeTable::Students,
        LakeTable::Courses,
        LakeTable::Assessments,
        LakeTable::Attempts,
    ] {
        engine::register_empty_if_missing(&ctx, table)?;
    }
    for table in [LakeTable::StudentWeek, LakeTable::CourseWeek] {
        if !ctx.table_exist(table.name())? {
            bail!(
                "the lake has no {} yet; run `learnlake analyze` first",
                table.name()
            );
        }
    }
    Ok(ctx)
}

fn generated_at(tz: chrono_tz::Tz) -> String {
    chrono::Utc::now()
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// What `report` and `notify` read: the templates and the From address
/// checked first (a config mistake fails before the lake is read), then the
/// lake, its session and the week.
struct ReportRun {
    tz: chrono_tz::Tz,
    templates: Templates,
    from: lettre::message::Mailbox,
    lake: Store,
    ctx: datafusion::prelude::SessionContext,
    queries: analytics::Queries,
    week: analytics::Week,
    /// When the figures were read, in the institution zone.
    generated_at: String,
    min_group_size: usize,
}

impl ReportRun {
    async fn open(config: &Config, week: Option<chrono::NaiveDate>) -> Result<Self> {
        let tz = zone(config)?;
        let templates = Templates::load(config.email.templates.as_deref())?;
        let from = mail::from_mailbox(&config.email)?;
        let lake = open_lake(config)?;
        let ctx = report_session(config, &lake).await?;
        let queries = analytics::Queries::new(config.analytics.queries.as_deref())?;
        let week = report_week(&lake, &ctx, &queries, week, tz).await?;
        Ok(Self {
            tz,
            templates,
            from,
            lake,
            ctx,
            queries,
            week,
            generated_at: generated_at(tz),
            min_group_size: config.privacy.min_group_size,
        })
    }

    /// The week's rows per student (performance reports, notifications).
    async fn student_data(&self) -> Result<StudentWeekData> {
        StudentWeekData::load(
            &self.ctx,
            &self.queries,
            self.week,
            self.tz,
            self.generated_at.clone(),
            self.min_group_size,
        )
        .await
    }
}

/// `learnlake report`: renders the week's reports and delivers them once.
async fn run_report(
    config: &Config,
    week: Option<chrono::NaiveDate>,
    course: Option<String>,
    dry_run: bool,
    html: Option<&Path>,
) -> Result<(chrono::NaiveDate, usize)> {
    let run = ReportRun::open(config, week).await?;
    let period_start = run.week.period_start;
    let request = reports::ReportRequest {
        period_start,
        course: course.clone(),
        zone: run.tz,
        min_group_size: run.min_group_size,
        generated_at: run.generated_at.clone(),
    };
    let rendered = reports::render(
        &run.ctx,
        &run.queries,
        &run.templates,
        &request,
        &config.email.admins,
    )
    .await?;
    if let Some(dir) = html {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for r in &rendered {
            let stem = format!("{}-{period_start}", r.kind.replace(':', "-"));
            let path = dir.join(format!("{stem}.html"));
            std::fs::write(&path, &r.html_standalone)
                .with_context(|| format!("writing {}", path.display()))?;
            let text = dir.join(format!("{stem}.txt"));
            std::fs::write(&text, format!("Subject: {}\n\n{}", r.subject, r.text))
                .with_context(|| format!("writing {}", text.display()))?;
            println!("{}: {}", r.kind, path.display());
        }
    }
    if config.email.admins.is_empty() {
        println!(
            "No administrators are configured ([email] admins or LEARNLAKE_EMAIL_ADMINS): the administrator report goes to nobody."
        );
    }
    let mut drafts: Vec<mail::Draft> = rendered
        .iter()
        .flat_map(|r| r.drafts(period_start))
        .collect();
    if config.email.student_reports {
        let mut data = run.student_data().await?;
        if let Some(only) = &course {
            for rows in data.students.values_mut() {
                rows.retain(|r| r.get("course_id").and_then(|v| v.as_str()) == Some(only.as_str()));
            }
            data.students.retain(|_, rows| !rows.is_empty());
        }
        let performance = data.performance_reports(&run.templates)?;
        if let Some(dir) = html {
            // One example of each kind, to look at.
            let mut shown = std::collections::BTreeSet::new();
            for d in &performance {
                let kind = d.kind.split(':').next().unwrap_or(&d.kind).to_string();
                if shown.insert(kind.clone()) {
                    let path = dir.join(format!("{kind}-{period_start}.html"));
                    std::fs::write(&path, &d.html)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("{kind} (example, to {}): {}", d.to, path.display());
                }
            }
        }
        drafts.extend(performance);
    }
    let sent = deliver(config, &run, drafts, dry_run).await?;
    Ok((period_start, sent))
}

/// `learnlake notify`: the week's notifications, delivered once.
async fn run_notify(
    config: &Config,
    week: Option<chrono::NaiveDate>,
    dry_run: bool,
) -> Result<usize> {
    let run = ReportRun::open(config, week).await?;
    let drafts = run.student_data().await?.notifications(&run.templates)?;
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for d in &drafts {
        *kinds.entry(d.kind.as_str()).or_default() += 1;
    }
    println!(
        "Week of {}: {}",
        run.week.period_start,
        if kinds.is_empty() {
            "no notification is due".to_string()
        } else {
            kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    deliver(config, &run, drafts, dry_run).await
}

/// Builds the drafts into messages and delivers them once (or lists them
/// with `dry_run`); a message that could not be addressed or delivered
/// makes the run fail after everything else went. Returns how many
/// messages this run sent.
async fn deliver(
    config: &Config,
    run: &ReportRun,
    drafts: Vec<mail::Draft>,
    dry_run: bool,
) -> Result<usize> {
    let (from, lake, period_start) = (&run.from, &run.lake, run.week.period_start);
    let date = std::time::SystemTime::now();
    let mut outgoing = Vec::new();
    let mut refused = Vec::new();
    for draft in &drafts {
        match mail::build(from, draft, date) {
            Ok(m) => outgoing.push(m),
            Err(e) => refused.push(format!("{} to {:?}: {e:#}", draft.kind, draft.to)),
        }
    }
    for problem in &refused {
        warn!("{problem}");
    }
    if dry_run {
        println!(
            "Week of {period_start}: {} message(s) (--dry-run: nothing sent)",
            outgoing.len()
        );
        for m in &outgoing {
            println!(
                "  {:<28} {:<40} {} ({} KB)",
                m.kind,
                m.to,
                m.subject,
                m.eml.len() / 1024
            );
        }
        for problem in &refused {
            println!("  not addressable: {problem}");
        }
        return Ok(0);
    }
    let sender = Sender::from_config(
        &config.email,
        std::time::Duration::from_secs(config.email.timeout_seconds),
    )?;
    let tuning = mail::Tuning {
        backoff: email_backoff(),
        max_attempts: config.email.max_attempts,
        // The file transport writes with blocking calls on this task:
        // nothing to overlap.
        parallel: match config.email.transport {
            learnlake_pipeline::config::Transport::Smtp => config.email.parallel,
            learnlake_pipeline::config::Transport::File => 1,
        },
        timeout: std::time::Duration::from_secs(config.email.timeout_seconds),
    };
    let progress = Progress::new("send", "messages", outgoing.len() as u64);
    let mut delivery = Delivery::start(lake, &sender, tuning, &progress).await?;
    delivery.send_all(outgoing).await?;
    let summary = delivery.finish().await?;
    progress.finish();
    println!(
        "Week of {period_start}: {} sent, {} sent before, {} failed, {} failed before, {} left in the outbox",
        summary.sent, summary.already, summary.failed, summary.failed_before, summary.pending
    );
    if let Sender::File { dir } = &sender {
        println!("Outbox: {}", dir.join(period_start.to_string()).display());
    }
    let mut problems = summary.errors;
    problems.extend(refused);
    if !problems.is_empty() {
        bail!(
            "{} message(s) not delivered: {}{}",
            problems.len(),
            problems[..problems.len().min(3)].join("; "),
            if summary.pending > 0 {
                "; the next run sends what is left in the outbox"
            } else {
                ""
            }
        );
    }
    Ok(summary.sent)
}

/// `learnlake validate [--check-connections]`: every problem of the config,
/// the queries and the templates (and, asked, whatever cannot be reached),
/// each on its own line with where it is; exit 2 if any.
async fn validate(global: &Global, check_connections: bool) -> Result<()> {
    let config = load_config_unchecked(global, None)?;
    let source = config
        .source
        .as_ref()
        .map_or_else(|| "config".to_string(), |p| p.display().to_string());
    let mut problems: Vec<String> = config
        .problems()
        .into_iter()
        .map(|p| format!("{source}: {p}"))
        .collect();
    let mut parsed = 0;
    match analytics::Queries::new(config.analytics.queries.as_deref()) {
        Ok(queries) => {
            for (name, _) in analytics::queries::EMBEDDED {
                match queries
                    .load(name)
                    .map_err(anyhow::Error::from)
                    .and_then(|text| {
                        datafusion::sql::parser::DFParser::parse_sql(&text)
                            .map_err(anyhow::Error::from)
                    }) {
                    Ok(_) => parsed += 1,
                    Err(e) => problems.push(format!("query {name}: {e:#}")),
                }
            }
        }
        Err(e) => problems.push(format!("analytics.queries: {e:#}")),
    }
    if let Err(e) = Templates::load(config.email.templates.as_deref()) {
        problems.push(format!("email.templates: {e:#}"));
    }
    if let Err(e) = mail::from_mailbox(&config.email) {
        problems.push(format!("email.from: {e:#}"));
    }
    if check_connections {
        problems.extend(unreachable(&config).await);
    }
    if problems.is_empty() {
        println!(
            "config ok; {parsed} queries parse; {} templates compile{}",
            Templates::names().count(),
            if check_connections {
                "; every connection answers"
            } else {
                ""
            }
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("  {p}");
    }
    Err(Failure::Usage(format!(
        "{} problem(s), listed above; fix them and run `learnlake validate` again",
        problems.len()
    ))
    .into())
}

/// What `validate --check-connections` cannot reach: the lake and landing
/// area (listed), the SMTP relay and each webhook endpoint (a TCP connection
/// within 5 seconds).
async fn unreachable(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, url, options) in [
        ("lake.url", &config.lake.url, &config.lake.options),
        ("landing.url", &config.landing.url, config.landing_options()),
    ] {
        let reached = match Store::open_with_options(url, false, &options_with(options)) {
            Ok(store) => store
                .list("")
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = reached {
            problems.push(format!("{key}: cannot reach {url}: {e:#}"));
        }
    }
    let mut endpoints = Vec::new();
    if config.email.transport == learnlake_pipeline::config::Transport::Smtp {
        endpoints.push((
            "email.smtp".to_string(),
            config.email.smtp.host.clone(),
            config.email.smtp.port,
        ));
    }
    for (i, hook) in config.webhooks.iter().enumerate() {
        if let Ok(url) = url::Url::parse(&hook.url)
            && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
        {
            endpoints.push((format!("webhooks[{i}].url"), host.to_string(), port));
        }
    }
    for (key, host, port) in endpoints {
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!("{key}: cannot connect to {host}:{port}: {e}")),
            Err(_) => problems.push(format!(
                "{key}: no answer from {host}:{port} within 5 seconds"
            )),
        }
    }
    problems
}
