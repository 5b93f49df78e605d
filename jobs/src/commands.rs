//! What each command does, on top of the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use indicatif::{ProgressBar, ProgressStyle};
use learnlake_pipeline::analytics::{self, AnalyzeOptions, AnalyzeReport, WeekSelection};
use learnlake_pipeline::config::Config;
use learnlake_pipeline::engine::{self, EngineOptions};
use learnlake_pipeline::generate::{self, GenerateOptions};
use learnlake_pipeline::ingest::{self, IngestOptions, IngestReport};
use learnlake_pipeline::lake::{Store, parquet_io};
use tracing::{info, warn};

use crate::cli::{Cli, Command, GenerateArgs, Global, OutputFormat};

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(args) => run_generate(&args).map(|_| ()),
        Command::Demo { out } => demo(&cli.global, &out).await,
        command => {
            let config = load_config(&cli.global, None)?;
            match command {
                Command::Ingest => {
                    let report = run_ingest(&config).await?;
                    print_ingest_report(&report);
                    Ok(())
                }
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
                Command::Sql {
                    query,
                    format,
                    output,
                } => sql(&config, &query, format, output.as_deref()).await,
                Command::Tables => tables(&config).await,
                Command::Schema { table } => schema(&config, &table).await,
                Command::Generate(_) | Command::Demo { .. } => unreachable!(),
            }
        }
    }
}

/// Config file, then environment, then command-line options.
fn load_config(global: &Global, base: Option<(&str, &str)>) -> Result<Config> {
    let env = |key: &str| std::env::var(key).ok();
    let mut config = Config::load(global.config.as_deref(), &env)?;
    if let Some((lake, landing)) = base {
        config.lake.url = lake.to_string();
        config.landing.url = landing.to_string();
    }
    if let Some(lake) = &global.lake {
        config.lake.url.clone_from(lake);
    }
    if let Some(landing) = &global.landing {
        config.landing.url.clone_from(landing);
    }
    if let Some(tz) = &global.timezone {
        config.timezone.clone_from(tz);
    }
    config.validate()?;
    Ok(config)
}

/// The in-process engine's settings. Ballista engines are accepted by the
/// config but not wired in yet: refuse them rather than run locally unasked.
fn engine_options(config: &Config) -> Result<EngineOptions> {
    if config.engine.url != "local" {
        bail!(
            "engine.url {:?} is not supported by this build yet; use \"local\"",
            config.engine.url
        );
    }
    let mut options = EngineOptions {
        memory_limit_bytes: config.engine.memory_limit_mb << 20,
        ..EngineOptions::default()
    };
    if let Some(n) = config.engine.target_partitions {
        options.target_partitions = n;
    }
    Ok(options)
}

fn bar(total: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template =
        format!("{{spinner}} {{msg}} [{{bar:30}}] {{{unit}}}/{{total_{unit}}} ({{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
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
    let lake = Store::open(&config.lake.url, true).context("opening the lake")?;
    let landing_url = learnlake_pipeline::lake::store::parse_location(&config.landing.url)?;
    if let Ok(root) = landing_url.to_file_path()
        && !root.is_dir()
    {
        bail!(
            "landing area {} does not exist; set --landing, LEARNLAKE_LANDING or [landing] url, or create it (learnlake generate --out {})",
            root.display(),
            root.display()
        );
    }
    let landing = Store::open(&config.landing.url, false).context("opening the landing area")?;
    if config.hash_key.is_none() {
        warn!("LEARNLAKE_HASH_KEY is not set: ip_address values are dropped, not stored");
    }
    let total: u64 = landing.list("").await?.iter().map(|m| m.size).sum();
    let progress = bar(total, "bytes");
    progress.set_message("ingesting");
    let p = progress.clone();
    let options = IngestOptions {
        batch_bytes: config.ingest.batch_mb << 20,
        threads: config
            .ingest
            .threads
            .unwrap_or_else(|| IngestOptions::default().threads),
        hash_key: config.hash_key.as_ref().map(|k| k.as_bytes().to_vec()),
        progress: Some(Arc::new(move |n| p.inc(n))),
        ..IngestOptions::default()
    };
    let report = ingest::ingest(&lake, &landing, &options)
        .await
        .context("ingest")?;
    progress.finish_and_clear();
    Ok(report)
}

async fn run_analyze(config: &Config, weeks: WeekSelection) -> Result<AnalyzeReport> {
    let lake = Store::open(&config.lake.url, false).context("opening the lake")?;
    let ctx = engine::session(&lake, &engine_options(config)?).await?;
    let options = AnalyzeOptions {
        weeks,
        tz: config.tz(),
        high_below: config.risk.high_below,
        medium_below: config.risk.medium_below,
        session_gap_minutes: config.analytics.session_gap_minutes,
        ..AnalyzeOptions::default()
    };
    let report = analytics::analyze(&lake, &ctx, &options)
        .await
        .context("analyze")?;
    Ok(report)
}

fn print_analyze_report(report: &AnalyzeReport) {
    println!(
        "{:<12} {:>14} {:>12}",
        "week", "student_week", "course_week"
    );
    for (week, (students, courses)) in &report.weeks {
        println!("{:<12} {:>14} {:>12}", week.to_string(), students, courses);
    }
    println!("analyze took {:.2}s", report.seconds);
}

fn print_ingest_report(report: &IngestReport) {
    println!(
        "{:<12} {:>6} {:>8} {:>10} {:>11} {:>12} {:>11}",
        "kind", "files", "skipped", "accepted", "duplicates", "quarantined", "bad files"
    );
    let mut rows: Vec<(&str, &ingest::KindReport)> =
        report.kinds.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let total = report.total();
    rows.push(("total", &total));
    for (kind, r) in rows {
        println!(
            "{:<12} {:>6} {:>8} {:>10} {:>11} {:>12} {:>11}",
            kind,
            r.files,
            r.files_skipped,
            r.rows_accepted,
            r.duplicates,
            r.rows_quarantined,
            r.files_quarantined
        );
    }
    println!("ingest took {:.2}s", report.seconds);
    if total.rows_quarantined > 0 || total.files_quarantined > 0 {
        warn!(
            rows = total.rows_quarantined,
            files = total.files_quarantined,
            "some input was quarantined; inspect it with: learnlake sql \"SELECT source_file, line_number, reason FROM quarantine_activity\""
        );
    }
}

async fn sql(
    config: &Config,
    query: &str,
    format: OutputFormat,
    output: Option<&Path>,
) -> Result<()> {
    let lake = Store::open(&config.lake.url, false)?;
    let ctx = engine::session(&lake, &engine_options(config)?).await?;
    let df = ctx.sql(query).await.context("planning the query")?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.context("running the query")?;
    let mut out: Vec<u8> = Vec::new();
    match format {
        OutputFormat::Table => {
            out.extend_from_slice(pretty_format_batches(&batches)?.to_string().as_bytes());
            out.push(b'\n');
        }
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(&mut out);
            for b in &batches {
                w.write(b)?;
            }
        }
        OutputFormat::Ndjson => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
        }
        OutputFormat::Parquet => {
            if output.is_none() {
                bail!("--format parquet needs --output PATH");
            }
            out = parquet_io::encode(&schema, &batches)?.to_vec();
        }
    }
    match output {
        Some(path) => {
            std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&out)?;
        }
    }
    Ok(())
}

async fn tables(config: &Config) -> Result<()> {
    let lake = Store::open(&config.lake.url, false)?;
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
    let lake = Store::open(&config.lake.url, false)?;
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

/// The data-samples folder of the source tree, when running from it.
fn data_samples() -> Option<PathBuf> {
    let here = PathBuf::from("data-samples/landing");
    if here.is_dir() {
        return Some(here);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/landing");
    built.is_dir().then_some(built)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

async fn demo(global: &Global, out: &Path) -> Result<()> {
    let landing = out.join("landing");
    let lake = out.join("lake");
    match data_samples() {
        Some(samples) if !landing.exists() => {
            println!(
                "== copying the sample landing data from {}",
                samples.display()
            );
            copy_dir(&samples, &landing)?;
        }
        Some(_) => println!("== using the landing data already in {}", landing.display()),
        None => {
            println!("== generating sample landing data");
            run_generate(&GenerateArgs {
                out: landing.clone(),
                students: 40,
                courses: 3,
                weeks: 10,
                start: chrono::NaiveDate::from_ymd_opt(2026, 2, 2).expect("valid date"),
                seed: 7,
                gzip: false,
            })?;
        }
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
    sql(&config, summary, OutputFormat::Table, None).await?;
    println!();
    println!("== the lake at {}", lake.display());
    tables(&config).await?;
    println!();
    println!(
        "Try: learnlake --lake {} sql \"SELECT activity_type, COUNT(*) FROM activity GROUP BY 1 ORDER BY 2 DESC\"",
        lake.display()
    );
    Ok(())
}
