//! The command line (PRODUCT.md §12).

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// learnlake: learning-activity logs → a Parquet lake → weekly analytics.
#[derive(Debug, Parser)]
#[command(name = "learnlake", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The exit codes, for scripts and schedulers (shown by `learnlake --help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (rows quarantined by ingest are a warning, not a failure)
  1  the run failed (e.g. nothing to analyze yet, a query error)
  2  usage or config error: fix the command line, learnlake.toml or LEARNLAKE_*
  3  the lake or landing area cannot be reached or read

Logs go to stderr at warn; -v shows info (progress), -vv debug; RUST_LOG or
LEARNLAKE_LOG (e.g. \"info,datafusion=debug\") choose exactly.";

/// Options every command takes; they override the config file and environment.
#[derive(Debug, Args)]
pub struct Global {
    /// Config file (default: $LEARNLAKE_CONFIG, else ./learnlake.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Lake location: a path or file://, s3://, gs://, az:// URL.
    #[arg(long, global = true, value_name = "URL")]
    pub lake: Option<String>,
    /// Landing area: a path or object-store URL.
    #[arg(long, global = true, value_name = "URL")]
    pub landing: Option<String>,
    /// Institution time zone (IANA), for weeks and days.
    #[arg(long, global = true, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log lines on stderr: -v info (progress), -vv debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample data -> lake -> analytics, all under DIR.
    Demo {
        /// Where the demo's landing area and lake go.
        #[arg(long, default_value = "./demo")]
        out: PathBuf,
    },
    /// Synthetic landing data at any scale.
    Generate(GenerateArgs),
    /// Landing -> lake (idempotent).
    Ingest,
    /// Merge each partition's small files into files of `[lake]
    /// target_file_mb`, one commit per table; safe while readers and ingest run.
    Compact {
        /// Only this table (default: every table of the lake).
        #[arg(long)]
        table: Option<String>,
        /// Only partitions dated before this day (leave today's alone while
        /// it is still being written).
        #[arg(long, value_parser = parse_date)]
        older_than: Option<NaiveDate>,
    },
    /// Delete data files no current version needs (replaced, compacted
    /// away, or left by an interrupted run) once older than the retention.
    Vacuum {
        /// Only this table (default: every table of the lake).
        #[arg(long)]
        table: Option<String>,
        /// Keep files for this many days (default `[lake]
        /// vacuum_retention_days`, 7); time travel reaches back this far.
        #[arg(long)]
        retention_days: Option<i64>,
    },
    /// Delete raw partitions (activity, attempts, the quarantines) older
    /// than `[privacy] raw_retention_days`: one commit per table, and the
    /// removed files deleted at once.
    Retention {
        /// Keep this many days instead of `[privacy] raw_retention_days`.
        #[arg(long)]
        days: Option<u32>,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Erase one student: their rows leave every table (raw, reference,
    /// derived, quarantine) in one commit per table, the mail ledger,
    /// outbox and webhook ledgers drop what was to or about them, and
    /// every older copy (earlier versions' files, the tables' log before
    /// now) is deleted at once. Safe to run again; ends time travel.
    Forget {
        /// The student's id (`student_id`).
        #[arg(long = "student", value_name = "ID")]
        student: String,
        /// Count what would be erased; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// student_week and course_week (default: every week with data).
    Analyze {
        /// Analyze the week containing this date.
        #[arg(long, value_parser = parse_date, conflicts_with_all = ["from", "to"])]
        week: Option<NaiveDate>,
        /// First week of a range (the week containing this date).
        #[arg(long, value_parser = parse_date, requires = "to")]
        from: Option<NaiveDate>,
        /// Last week of a range.
        #[arg(long, value_parser = parse_date, requires = "from")]
        to: Option<NaiveDate>,
    },
    /// Fit the risk model on finished courses; saved unless it is worse
    /// than the current one on the newest finished courses.
    Train {
        /// Save the new model even if it is worse than the current one.
        #[arg(long)]
        force: bool,
        /// Also fit once without each feature and show its held-out gain.
        #[arg(long)]
        feature_gains: bool,
    },
    /// The saved risk models and their held-out metrics.
    Models,
    /// Export the at-risk flags (risk_flags), streamed.
    Flags {
        /// Flags as of this date or later.
        #[arg(long, value_parser = parse_date)]
        since: Option<NaiveDate>,
        /// Only flags at this level or above (medium includes high).
        #[arg(long, value_enum)]
        level: Option<RiskLevel>,
        /// Only flags whose level changed since the week before.
        #[arg(long)]
        changed: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FlagFormat::Ndjson)]
        format: FlagFormat,
        /// Write to this file (atomically) instead of stdout.
        #[arg(long, value_name = "PATH", conflicts_with = "deliver")]
        output: Option<PathBuf>,
        /// Instead of exporting, POST each changed flag not yet delivered to
        /// every [[webhooks]] endpoint of the config (signed, retried, once).
        #[arg(long)]
        deliver: bool,
    },
    /// Render and deliver the weekly reports: the administrator report (to
    /// [email] admins), each instructor's course report, and the student
    /// performance reports (students, guardians, advisors).
    Report {
        /// The week containing this date (default: the newest analyzed week that is over: the lake holds data after it).
        #[arg(long, value_parser = parse_date)]
        week: Option<NaiveDate>,
        /// Only this course.
        #[arg(long, value_name = "ID")]
        course: Option<String>,
        /// Render and list the recipients; send nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write each report as one HTML file (images inline) into DIR,
        /// to open in a browser.
        #[arg(long, value_name = "DIR")]
        html: Option<PathBuf>,
    },
    /// Notifications of the week: at-risk alerts to instructors and
    /// advisors, inactivity and deadline reminders and achievements to
    /// students (each by their preferences); each sent once.
    Notify {
        /// The week containing this date (default: as for `report`).
        #[arg(long, value_parser = parse_date)]
        week: Option<NaiveDate>,
        /// Render and list the recipients; send nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the config, the queries and the templates; every problem is
    /// listed with where it is and what to do (exit 2 if any).
    Validate {
        /// Also try to reach the lake, the landing area, the SMTP relay and
        /// each webhook endpoint.
        #[arg(long)]
        check_connections: bool,
    },
    /// Print the config in effect (file, environment and options applied)
    /// as an annotated learnlake.toml: every key, its value and its
    /// documentation. Secrets are never printed.
    Config {
        /// Print the defaults instead (a starting learnlake.toml).
        #[arg(long)]
        defaults: bool,
    },
    /// Run one configured job (or one step) once, now: for cron,
    /// Kubernetes CronJobs and Airflow. Takes the job's lease (never
    /// overlaps a daemon's run of it) and records the run in job_runs.
    Run {
        /// A `[[jobs]]` name, or a step (ingest, analyze, …) run alone.
        job: String,
        /// Which slot this run fills: `now` (a manual run, the default) or
        /// `latest` (the newest slot of the job's schedule; a slot that
        /// already succeeded is not run again — for cron and CronJobs).
        #[arg(long, default_value = "now", value_parser = ["now", "latest"])]
        slot: String,
    },
    /// The daemon: runs every job of the config on its schedule (in the
    /// institution zone), catches up missed slots at start, and stops
    /// cleanly on SIGTERM or ctrl-c.
    Schedule,
    /// The jobs, their next fire times, their last runs, and who runs them now.
    Status,
    /// Run SQL over the lake's tables.
    Sql {
        /// The query; text that starts with `-` (a `--` SQL comment) works
        /// after `--`: `learnlake sql -- "-- note\nSELECT 1"`.
        #[arg(allow_hyphen_values = true)]
        query: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Every table shows keyed hashes (LEARNLAKE_HASH_KEY) instead of
        /// student ids, flag ids, names and e-mail addresses; joins still
        /// work (docs/LAKE.md).
        #[arg(long, alias = "pseudonymize")]
        pseudonymise: bool,
    },
    /// List the lake's tables with their row counts.
    Tables,
    /// Show a table's columns and types.
    Schema {
        /// Table name (see `learnlake tables`).
        table: String,
    },
    /// A Ballista scheduler for `engine.url = "ballista://HOST:PORT"`: it
    /// plans the analytics SQL into stages for `learnlake executor`
    /// processes (which read the lake, so start them with the same
    /// `[lake]` settings). Runs until stopped.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
        /// The host name executors and clients reach this scheduler by.
        #[arg(long, default_value = "localhost")]
        external_host: String,
    },
    /// A Ballista executor: runs the tasks its scheduler hands out, reading
    /// the lake (with the config's `[lake]` URL and options) and keeping
    /// shuffle files in its work folder. Runs until stopped.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value = "localhost:50050")]
        scheduler: String,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// Port of the Arrow Flight service that serves shuffle data.
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Port of the executor's gRPC service.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// The host name the scheduler and other executors reach this one by.
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks run at once (default: the machine's cores).
        #[arg(long)]
        slots: Option<usize>,
        /// Folder for shuffle files (default: a temporary folder); give it real disk.
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output landing folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of students.
    #[arg(long, default_value_t = 200)]
    pub students: usize,
    /// Number of courses.
    #[arg(long, default_value_t = 4)]
    pub courses: usize,
    /// Number of weeks of activity.
    #[arg(long, default_value_t = 12)]
    pub weeks: u32,
    /// First day (a Monday is best), YYYY-MM-DD.
    #[arg(long, value_parser = parse_date, default_value = "2026-02-02")]
    pub start: NaiveDate,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write activity and attempts as .jsonl.gz.
    #[arg(long)]
    pub gzip: bool,
    /// Shape of the activity events: `rich` (every client event, with
    /// sessions, devices and details) or `daily-clicks` (one narrow event
    /// per student × site × day with its click count, as LMS exports have).
    #[arg(long, value_enum, default_value_t = GenerateProfile::Rich)]
    pub profile: GenerateProfile,
    /// How activity and attempts are written: `native` (activity/ and
    /// attempts/, PRODUCT §3) or `xapi` (the same history as xAPI
    /// statements in xapi/, as an LRS exports them; docs/INPUTS.md).
    #[arg(long, value_enum, default_value_t = GenerateFormat::Native)]
    pub format: GenerateFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenerateFormat {
    Native,
    Xapi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenerateProfile {
    Rich,
    DailyClicks,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RiskLevel {
    High,
    Medium,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlagFormat {
    Ndjson,
    Csv,
    Parquet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Ndjson,
    Parquet,
}

/// `YYYY-MM-DD`, with a message that shows the expected form.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{text:?} is not a date like 2026-03-02 ({e})"))
}
