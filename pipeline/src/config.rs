//! `learnlake.toml`: one file, every key optional, every value overridable by
//! the environment (`LEARNLAKE_*`) and then by command-line options.
//!
//! [`Config::load`] reads the file, applies the environment, then the
//! command-line overrides, and only then validates, collecting every problem
//! at once and naming each by its key (so a bad `LEARNLAKE_TIMEZONE` that
//! `--timezone` replaces is no problem at all).
//!
//! Environment: each key `section.field` is `LEARNLAKE_SECTION_FIELD`
//! (`risk.high_below` is `LEARNLAKE_RISK_HIGH_BELOW`,
//! `engine.memory_limit_mb` is `LEARNLAKE_ENGINE_MEMORY_LIMIT_MB`), with the
//! short names of PRODUCT §9 for the common ones (see [`ENVIRONMENT`]).
//! `[[jobs]]` are set only in the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Institution zone for weeks, days and schedules (IANA name, default UTC).
    pub timezone: String,
    /// Where the lake lives.
    pub lake: LakeConfig,
    /// Where raw files arrive.
    pub landing: LandingConfig,
    /// Which SQL engine runs the queries.
    pub engine: EngineConfig,
    /// Ingest tuning.
    pub ingest: IngestConfig,
    /// How records of other systems (landing/xapi/, caliper/, openedx/,
    /// moodle/) map to learnlake's rows (docs/INPUTS.md).
    pub inputs: InputsConfig,
    /// Analytics settings.
    pub analytics: AnalyticsConfig,
    /// Risk level thresholds on success_probability.
    pub risk: RiskConfig,
    /// Privacy settings.
    pub privacy: PrivacyConfig,
    /// E-mail delivery.
    pub email: EmailConfig,
    /// How `learnlake schedule` and `learnlake run` coordinate.
    pub scheduler: SchedulerConfig,
    /// Scheduled jobs.
    pub jobs: Vec<JobConfig>,
    /// Endpoints that receive changed at-risk flags (`learnlake flags --deliver`).
    pub webhooks: Vec<WebhookConfig>,
    /// The key for keyed hashes of PII (only from `LEARNLAKE_HASH_KEY`).
    #[serde(skip)]
    pub hash_key: Option<String>,
    /// Problems found while applying the environment and the command line,
    /// by key; reported by [`Config::validate`] with every other problem.
    #[serde(skip)]
    pending: Vec<(String, String)>,
    /// The file this config was read from, if any (for messages).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[lake]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `file://./lake` (default), a path, `s3://bucket/prefix`, `gs://…`, `az://…`.
    pub url: String,
    /// Size `learnlake compact` merges a partition's files into, in MiB (256).
    pub target_file_mb: u64,
    /// Days a file no version needs any more is kept before `learnlake
    /// vacuum` deletes it: time travel reaches back this far (7).
    pub vacuum_retention_days: i64,
    /// object_store options of an `s3://`, `gs://` or `az://` lake, e.g.
    /// `{ endpoint = "http://127.0.0.1:9000", region = "us-east-1",
    /// allow_http = "true" }` for MinIO or another S3-compatible server.
    /// They override the `AWS_*` / `GOOGLE_*` / `AZURE_*` environment;
    /// credentials stay in that environment (never in this file).
    pub options: BTreeMap<String, String>,
}

/// `[landing]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LandingConfig {
    /// `file://./landing` (default) or any object-store URL.
    pub url: String,
    /// object_store options of a remote landing area, as `[lake] options`
    /// (when empty, a landing on the lake's scheme uses the lake's).
    pub options: BTreeMap<String, String>,
}

/// Which engine runs the SQL.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Engine {
    /// DataFusion in this process (default).
    Local,
    /// An in-process Ballista cluster (for tests and trials).
    BallistaStandalone,
    /// A Ballista scheduler at `ballista://host:port`.
    Ballista(String),
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "local" => Ok(Self::Local),
            "ballista-standalone" => Ok(Self::BallistaStandalone),
            url if url.starts_with("ballista://") && url.len() > "ballista://".len() => {
                Ok(Self::Ballista(url.to_string()))
            }
            other => Err(format!(
                "{other:?} is not an engine; use \"local\", \"ballista-standalone\" or \"ballista://host:port\""
            )),
        }
    }
}

impl From<Engine> for String {
    fn from(engine: Engine) -> String {
        engine.to_string()
    }
}

impl TryFrom<String> for Engine {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::BallistaStandalone => f.write_str("ballista-standalone"),
            Self::Ballista(url) => f.write_str(url),
        }
    }
}

/// `[engine]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Where `analyze` and `sql` run their SQL: `local` (default, in the
    /// command), `ballista://host:port` (a cluster of `learnlake scheduler`
    /// and `learnlake executor` processes) or `ballista-standalone` (a
    /// scheduler and two executors inside the command). See docs/CLUSTER.md.
    pub url: Engine,
    /// Memory the engine may use before spilling to disk, in MiB (default 4096).
    pub memory_limit_mb: usize,
    /// DataFusion's target_partitions (default: the number of cores).
    pub target_partitions: Option<usize>,
}

/// `[ingest]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Memory of parsed rows a run holds, in MiB (default 1024); beyond it
    /// the rows are spilled to Arrow IPC files in the temporary folder, and
    /// the run still writes one file per partition per table. Input is
    /// parsed in batches of at most 256 MiB of text (less when this is
    /// smaller), the next one while the last is checked. Bounds ingest
    /// memory to a small multiple of this, whatever the input size: while
    /// rows are spilled, the rows held since are kept too (up to twice
    /// this); 50 M narrow events peaked at 5.2 GB with 1024, 4.2 GB with 512.
    pub batch_mb: usize,
    /// Parser threads (default: the number of cores).
    pub threads: Option<usize>,
}

/// `[inputs]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputsConfig {
    /// Where an xAPI statement names its course: "auto" (the context
    /// activity, parent or grouping, whose type is a course; else the first
    /// grouping; else the first parent), "parent", "grouping", or
    /// "extension:<IRI>" (the value of that key of context.extensions).
    pub xapi_course: String,
    /// How ids are taken from IRIs (xAPI courses and activities, Caliper
    /// actors, courses, objects and sessions): "last-segment"
    /// (https://lms.example.edu/courses/CS101 -> CS101, the codes the
    /// reference files use) or "iri" (kept whole).
    pub ids: String,
    /// A CSV file in the landing area (path relative to its root) with the
    /// columns actor,student_id: actor identifiers mapped to student ids,
    /// looked up first. Actors are xAPI mailto: addresses, mbox_sha1sums,
    /// openids, accounts written homePage|name or a bare account name,
    /// Caliper actor IRIs, Open edX usernames and Moodle user ids. Name it
    /// with a leading underscore (_actors.csv) so ingest does not read it
    /// as data.
    pub actors: Option<String>,
    /// Which Open edX field is the student id: "user_id" (context.user_id,
    /// the username when an event has none) or "username".
    pub openedx_student: String,
    /// Prefix of Moodle event ids (<site>-<log id>): a log id is unique
    /// only within one Moodle site, so give each site its own.
    pub moodle_site: String,
}

impl Default for InputsConfig {
    fn default() -> Self {
        Self {
            xapi_course: "auto".into(),
            ids: "last-segment".into(),
            actors: None,
            openedx_student: "user_id".into(),
            moodle_site: "moodle".into(),
        }
    }
}

impl InputsConfig {
    /// The mapping ingest uses, without the actors file (read from the
    /// landing area by the caller); every problem, each with its key.
    pub fn mapping(&self) -> Result<crate::ingest::records::lms::Mapping, Vec<String>> {
        use crate::ingest::records::lms::{IdStyle, Mapping, OpenEdxStudent, XapiCourse};
        let mut problems = Vec::new();
        let xapi_course = XapiCourse::parse(&self.xapi_course)
            .map_err(|e| problems.push(format!("inputs.xapi_course: {e}")))
            .unwrap_or(XapiCourse::Auto);
        let ids = match self.ids.as_str() {
            "last-segment" => IdStyle::LastSegment,
            "iri" => IdStyle::Iri,
            other => {
                problems.push(format!("inputs.ids: {other:?} is not last-segment or iri"));
                IdStyle::LastSegment
            }
        };
        let openedx_student = match self.openedx_student.as_str() {
            "user_id" => OpenEdxStudent::UserId,
            "username" => OpenEdxStudent::Username,
            other => {
                problems.push(format!(
                    "inputs.openedx_student: {other:?} is not user_id or username"
                ));
                OpenEdxStudent::UserId
            }
        };
        let site = self.moodle_site.trim();
        if site.is_empty() || site.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!(
                "inputs.moodle_site: {:?} must be a short name without spaces, like moodle or lms2",
                self.moodle_site
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Mapping {
            xapi_course,
            ids,
            openedx_student,
            moodle_site: site.to_string(),
            ..Mapping::default()
        })
    }
}

/// `[analytics]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Events without a session_id form inferred sessions; a gap longer
    /// than this, in minutes, starts a new one (30).
    pub session_gap_minutes: i64,
    /// A folder whose `<query>.sql` files replace the built-in queries of the
    /// same name (default: none, the queries built into the binary).
    pub queries: Option<PathBuf>,
}

/// `[risk]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// success_probability below this is high risk (0.4).
    pub high_below: f64,
    /// success_probability below this (and not high) is medium risk (0.7).
    pub medium_below: f64,
}

/// `[privacy]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Groups smaller than this are not shown in aggregates (10).
    pub min_group_size: usize,
    /// Days raw partitions (activity, attempts, the quarantines) are kept:
    /// `learnlake retention` and the `retention` step delete older ones
    /// (unset: kept for ever).
    pub raw_retention_days: Option<u32>,
}

/// How e-mail leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `.eml` files in the outbox folder (default).
    File,
    /// An SMTP relay (`[email.smtp]`).
    Smtp,
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "file" => Ok(Self::File),
            "smtp" => Ok(Self::Smtp),
            other => Err(format!(
                "{other:?} is not a transport; use \"file\" or \"smtp\""
            )),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a relay on loopback only).
    None,
    /// Upgrade with STARTTLS (default, port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::Starttls),
            "tls" => Ok(Self::Tls),
            other => Err(format!(
                "{other:?} is not a TLS mode; use \"none\", \"starttls\" or \"tls\""
            )),
        }
    }
}

/// `[email]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `file` (default: `.eml` files in `outbox`) or `smtp`.
    pub transport: Transport,
    /// Folder for the file transport (`./outbox`).
    pub outbox: String,
    /// The From address.
    pub from: String,
    /// Recipients of the administrator report.
    pub admins: Vec<String>,
    /// A folder whose `<name>.hbs` files replace the built-in templates of
    /// the same name (none: the built-in ones).
    pub templates: Option<PathBuf>,
    /// Attempts per message in one run when the server answers 4xx or
    /// cannot be reached (5).
    pub max_attempts: u32,
    /// The longest one message may take to send, connection included (60).
    pub timeout_seconds: u64,
    /// Messages in flight at once, each on its own pooled SMTP connection
    /// (4; 1 to 64).
    pub parallel: usize,
    /// Whether `learnlake report` also sends the student performance
    /// reports (to students, guardians and advisors) (true).
    pub student_reports: bool,
    /// The SMTP relay, for `transport = "smtp"`.
    pub smtp: SmtpConfig,
}

/// `[email.smtp]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port (587).
    pub port: u16,
    /// `none`, `starttls` (default) or `tls`.
    pub tls: TlsMode,
    /// User name; the password only comes from `LEARNLAKE_SMTP_PASSWORD`.
    pub username: Option<String>,
    /// Only from `LEARNLAKE_SMTP_PASSWORD`: secrets stay out of files.
    #[serde(skip)]
    pub password: Option<String>,
}

/// `[scheduler]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Seconds a job's lease lasts without renewal: a process that dies
    /// holding it blocks the job this long at most (60; renewed every
    /// quarter of it while the job runs).
    pub lease_seconds: u64,
    /// Seconds the running step gets to finish after SIGTERM or ctrl-c
    /// before it is cancelled and recorded as such (30).
    pub shutdown_grace_seconds: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            lease_seconds: 60,
            shutdown_grace_seconds: 30,
        }
    }
}

/// `[[jobs]]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The job's name (`learnlake run NAME`): letters, digits, `-`, `_`.
    pub name: String,
    /// Six-field cron expression (sec min hour day month weekday, weekdays
    /// as names) on the wall clock of `timezone`.
    pub schedule: String,
    /// Steps in order: ingest, analyze, train, report, notify, flags,
    /// compact, vacuum.
    pub steps: Vec<String>,
    /// Slots missed while no daemon ran (or while the previous run
    /// overran): `latest` runs the newest one (default), `all` runs each
    /// in order, `none` runs none and waits for the next.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Times a failed step is tried again, with backoff, before the run is
    /// recorded as failed (2).
    #[serde(default = "default_job_retries")]
    pub retries: u32,
    /// Seconds before the first retry, doubling each time (30).
    #[serde(default = "default_job_backoff")]
    pub retry_backoff_seconds: u64,
}

fn default_job_retries() -> u32 {
    2
}

fn default_job_backoff() -> u64 {
    30
}

/// What the scheduler does with slots it missed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run the newest missed slot only.
    #[default]
    Latest,
    /// Run every missed slot, oldest first.
    All,
    /// Skip them.
    None,
}

/// `[[webhooks]]`: an endpoint that receives every changed at-risk flag,
/// once, as a signed JSON POST (docs/PREDICTIONS.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint's name: its delivery ledger and log lines (letters,
    /// digits, `-` and `_`).
    pub name: String,
    /// The http:// or https:// URL flags are POSTed to.
    pub url: String,
    /// The environment variable that holds the signing secret (Standard
    /// Webhooks: `whsec_<base64>`, or any text); secrets never live in the file.
    pub secret_env: String,
    /// Allow loopback and private-network addresses (refused by default, so
    /// a config cannot point learnlake at internal services by accident).
    #[serde(default)]
    pub allow_private: bool,
    /// Seconds one attempt may take (default 10).
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
    /// Attempts per flag in one run before it is reported undelivered
    /// (default 6; the next run tries again).
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
}

fn default_webhook_timeout() -> u64 {
    10
}

fn default_webhook_attempts() -> u32 {
    6
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            lake: LakeConfig::default(),
            landing: LandingConfig::default(),
            engine: EngineConfig::default(),
            ingest: IngestConfig::default(),
            inputs: InputsConfig::default(),
            risk: RiskConfig::default(),
            analytics: AnalyticsConfig::default(),
            privacy: PrivacyConfig::default(),
            email: EmailConfig::default(),
            scheduler: SchedulerConfig::default(),
            jobs: Vec::new(),
            webhooks: Vec::new(),
            hash_key: None,
            pending: Vec::new(),
            source: None,
        }
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: "file://./lake".into(),
            target_file_mb: 256,
            vacuum_retention_days: 7,
            options: BTreeMap::new(),
        }
    }
}

impl Default for LandingConfig {
    fn default() -> Self {
        Self {
            url: "file://./landing".into(),
            options: BTreeMap::new(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            url: Engine::Local,
            memory_limit_mb: 4096,
            target_partitions: None,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            batch_mb: 1024,
            threads: None,
        }
    }
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            high_below: 0.4,
            medium_below: 0.7,
        }
    }
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            session_gap_minutes: 30,
            queries: None,
        }
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            min_group_size: 10,
            raw_retention_days: None,
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: Transport::File,
            outbox: "./outbox".into(),
            from: "learnlake <reports@example.edu>".into(),
            admins: Vec::new(),
            templates: None,
            max_attempts: 5,
            timeout_seconds: 60,
            parallel: 4,
            student_reports: true,
            smtp: SmtpConfig::default(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            tls: TlsMode::Starttls,
            username: None,
            password: None,
        }
    }
}

/// The steps a job can run, in the order a weekly job usually lists them.
pub const STEPS: [&str; 9] = [
    "ingest",
    "analyze",
    "train",
    "report",
    "notify",
    "flags",
    "retention",
    "compact",
    "vacuum",
];

/// Every environment variable learnlake reads for its config, and the key it
/// sets. The generic `LEARNLAKE_SECTION_FIELD` form works for every key; the
/// short names are the ones PRODUCT §9 promises.
pub const ENVIRONMENT: [(&str, &str); 40] = [
    ("LEARNLAKE_TIMEZONE", "timezone"),
    ("LEARNLAKE_LAKE", "lake.url"),
    ("LEARNLAKE_LAKE_URL", "lake.url"),
    ("LEARNLAKE_LANDING", "landing.url"),
    ("LEARNLAKE_LANDING_URL", "landing.url"),
    ("LEARNLAKE_ENGINE", "engine.url"),
    ("LEARNLAKE_ENGINE_URL", "engine.url"),
    ("LEARNLAKE_ENGINE_MEMORY_LIMIT_MB", "engine.memory_limit_mb"),
    (
        "LEARNLAKE_ENGINE_TARGET_PARTITIONS",
        "engine.target_partitions",
    ),
    ("LEARNLAKE_INGEST_BATCH_MB", "ingest.batch_mb"),
    ("LEARNLAKE_INGEST_THREADS", "ingest.threads"),
    ("LEARNLAKE_INPUTS_XAPI_COURSE", "inputs.xapi_course"),
    ("LEARNLAKE_INPUTS_IDS", "inputs.ids"),
    ("LEARNLAKE_INPUTS_ACTORS", "inputs.actors"),
    ("LEARNLAKE_INPUTS_OPENEDX_STUDENT", "inputs.openedx_student"),
    ("LEARNLAKE_INPUTS_MOODLE_SITE", "inputs.moodle_site"),
    (
        "LEARNLAKE_ANALYTICS_SESSION_GAP_MINUTES",
        "analytics.session_gap_minutes",
    ),
    ("LEARNLAKE_QUERIES", "analytics.queries"),
    ("LEARNLAKE_ANALYTICS_QUERIES", "analytics.queries"),
    ("LEARNLAKE_RISK_HIGH_BELOW", "risk.high_below"),
    ("LEARNLAKE_RISK_MEDIUM_BELOW", "risk.medium_below"),
    ("LEARNLAKE_PRIVACY_MIN_GROUP_SIZE", "privacy.min_group_size"),
    (
        "LEARNLAKE_PRIVACY_RAW_RETENTION_DAYS",
        "privacy.raw_retention_days",
    ),
    ("LEARNLAKE_EMAIL_TRANSPORT", "email.transport"),
    ("LEARNLAKE_EMAIL_OUTBOX", "email.outbox"),
    ("LEARNLAKE_EMAIL_FROM", "email.from"),
    ("LEARNLAKE_EMAIL_ADMINS", "email.admins"),
    ("LEARNLAKE_TEMPLATES", "email.templates"),
    ("LEARNLAKE_EMAIL_TEMPLATES", "email.templates"),
    ("LEARNLAKE_EMAIL_MAX_ATTEMPTS", "email.max_attempts"),
    ("LEARNLAKE_EMAIL_TIMEOUT_SECONDS", "email.timeout_seconds"),
    ("LEARNLAKE_EMAIL_PARALLEL", "email.parallel"),
    ("LEARNLAKE_EMAIL_STUDENT_REPORTS", "email.student_reports"),
    ("LEARNLAKE_SMTP_HOST", "email.smtp.host"),
    ("LEARNLAKE_SMTP_PORT", "email.smtp.port"),
    ("LEARNLAKE_SMTP_TLS", "email.smtp.tls"),
    ("LEARNLAKE_SMTP_USERNAME", "email.smtp.username"),
    ("LEARNLAKE_SMTP_PASSWORD", "email.smtp.password"),
    (
        "LEARNLAKE_SCHEDULER_LEASE_SECONDS",
        "scheduler.lease_seconds",
    ),
    (
        "LEARNLAKE_SCHEDULER_SHUTDOWN_GRACE_SECONDS",
        "scheduler.shutdown_grace_seconds",
    ),
];

/// A quick syntax check of an address (the mail builder checks it fully):
/// one `@` with text on both sides, no spaces or control characters.
pub fn plausible_address(text: &str) -> bool {
    let text = text.trim();
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// The address of a `Name <addr>` or `addr` mailbox.
pub fn from_address(text: &str) -> Option<&str> {
    match (text.find('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close && text[close + 1..].trim().is_empty() => {
            Some(text[open + 1..close].trim())
        }
        (None, None) => Some(text.trim()),
        _ => None,
    }
}

fn number<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not {what}"))
}

/// This file's text: `learnlake config` prints each key with the doc
/// comment it has here, so the documentation of a key lives in one place.
const SOURCE: &str = include_str!("config.rs");

/// The fields of `pub struct name` in this file, in order, as (field, type,
/// doc comment), leaving out `#[serde(skip)]` ones.
fn documented_fields(name: &str) -> Vec<(&'static str, &'static str, String)> {
    let Some(start) = SOURCE.find(&format!("pub struct {name} {{\n")) else {
        return Vec::new();
    };
    let body = &SOURCE[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let mut fields = Vec::new();
    let (mut doc, mut skip) = (Vec::new(), false);
    for line in body.lines().skip(1).map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_string());
        } else if line.starts_with("#[serde(skip") {
            skip = true;
        } else if let Some(rest) = line.strip_prefix("pub ")
            && let Some((field, ty)) = rest.split_once(':')
        {
            if !skip {
                fields.push((
                    field.trim(),
                    ty.trim().trim_end_matches(','),
                    doc.join("\n"),
                ));
            }
            (doc, skip) = (Vec::new(), false);
        }
    }
    fields
}

/// `# ` before each line of a doc comment.
fn comment(out: &mut String, doc: &str, indent: &str) {
    for line in doc.lines() {
        if line.is_empty() {
            out.push_str(&format!("{indent}#\n"));
        } else {
            out.push_str(&format!("{indent}# {line}\n"));
        }
    }
}

/// Writes `table`'s keys (of the struct `name`) and then its sub-tables.
fn write_table(out: &mut String, name: &str, table: &toml::Table, section: &str) {
    let fields = documented_fields(name);
    let is_table = |ty: &str| SOURCE.contains(&format!("pub struct {ty} {{\n"));
    for (field, ty, doc) in &fields {
        if is_table(ty) || ty.starts_with("Vec<") && is_table(&ty[4..ty.len() - 1]) {
            continue;
        }
        comment(out, doc, "");
        match table.get(*field) {
            Some(value) => out.push_str(&format!("{field} = {value}\n")),
            None => out.push_str(&format!("# {field} =   (unset)\n")),
        }
    }
    for (field, ty, doc) in &fields {
        let key = if section.is_empty() {
            field.to_string()
        } else {
            format!("{section}.{field}")
        };
        if is_table(ty) {
            out.push('\n');
            comment(out, doc, "");
            out.push_str(&format!("[{key}]\n"));
            let empty = toml::Table::new();
            let sub = table
                .get(*field)
                .and_then(|v| v.as_table())
                .unwrap_or(&empty);
            write_table(out, ty, sub, &key);
        } else if let Some(item) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>'))
            && is_table(item)
        {
            out.push('\n');
            comment(out, doc, "");
            let items = table
                .get(*field)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            if items.is_empty() {
                // None configured: an example, commented out.
                let example = match item {
                    "JobConfig" => JobConfig {
                        name: "weekly".into(),
                        schedule: "0 0 7 * * Mon".into(),
                        steps: ["ingest", "analyze", "report", "notify", "flags"]
                            .map(String::from)
                            .to_vec(),
                        catch_up: CatchUp::Latest,
                        retries: default_job_retries(),
                        retry_backoff_seconds: default_job_backoff(),
                    }
                    .to_table(),
                    _ => WebhookConfig {
                        name: "advising".into(),
                        url: "https://advising.example.edu/hooks/learnlake".into(),
                        secret_env: "LEARNLAKE_WEBHOOK_ADVISING_SECRET".into(),
                        allow_private: false,
                        timeout_seconds: default_webhook_timeout(),
                        max_attempts: default_webhook_attempts(),
                    }
                    .to_table(),
                };
                let mut text = String::new();
                text.push_str(&format!("[[{key}]]\n"));
                write_table(&mut text, item, &example, &key);
                for line in text.lines() {
                    if line.is_empty() || line.starts_with('#') {
                        out.push_str(&format!("{line}\n"));
                    } else {
                        out.push_str(&format!("# {line}\n"));
                    }
                }
            }
            for value in items {
                out.push_str(&format!("[[{key}]]\n"));
                let empty = toml::Table::new();
                write_table(out, item, value.as_table().unwrap_or(&empty), &key);
            }
        }
    }
}

trait ToTable {
    fn to_table(&self) -> toml::Table;
}

impl<T: Serialize> ToTable for T {
    fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).unwrap_or_default()
    }
}

impl Config {
    /// The object_store options of the landing area: its own, or when it has
    /// none and lives on the lake's kind of store, the lake's.
    pub fn landing_options(&self) -> &BTreeMap<String, String> {
        let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_string());
        if self.landing.options.is_empty() && scheme(&self.landing.url) == scheme(&self.lake.url) {
            &self.lake.options
        } else {
            &self.landing.options
        }
    }

    /// This config as a `learnlake.toml` with every key and its
    /// documentation (`learnlake config`; of [`Config::default`]:
    /// `learnlake config --defaults`). Secrets are never written.
    pub fn annotated(&self) -> String {
        let mut out = String::from(
            "# learnlake.toml: every key is optional; the values below are what\n\
             # learnlake uses. Each key can also be set by the environment\n\
             # (LEARNLAKE_SECTION_KEY, e.g. LEARNLAKE_RISK_HIGH_BELOW) and by\n\
             # the command line (--lake, --landing, --timezone).\n\n",
        );
        write_table(&mut out, "Config", &self.to_table(), "");
        out
    }

    /// Reads the config file (an explicit `path`, else `LEARNLAKE_CONFIG`, else
    /// `./learnlake.toml` when present, else the defaults), applies the
    /// environment from `env`, then `overrides` (`(key, value)`, e.g. from
    /// the command line), and validates the result.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
    ) -> Result<Self> {
        let config = Self::load_unchecked(path, env, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::load`] without the final validation: a file that cannot be
    /// read or parsed is still an error; [`Config::problems`] lists the rest.
    pub fn load_unchecked(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
    ) -> Result<Self> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| env("LEARNLAKE_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(p) => Some(p),
            None => Some(PathBuf::from("learnlake.toml")).filter(|p| p.exists()),
        };
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::Config(format!(
                        "cannot read the config file {}: {e}; pass an existing file with --config or LEARNLAKE_CONFIG",
                        path.display()
                    ))
                })?;
                Self::from_toml(&text).map_err(|e| match e {
                    Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
                    other => other,
                })?
            }
            None => Self::default(),
        };
        config.source = file;
        config.apply_env(env);
        for (key, value) in overrides {
            config.set(key, value, &format!("--{}", key.replace(['.', '_'], "-")));
        }
        Ok(config)
    }

    /// Parses TOML text (no environment, no validation).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string().trim_end().to_string()))
    }

    /// Applies the `LEARNLAKE_*` variables of [`ENVIRONMENT`]; a value that
    /// does not parse is reported by [`Config::validate`], unless a later
    /// override of the same key replaces it.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        for (var, key) in ENVIRONMENT {
            if let Some(value) = env(var) {
                self.set(key, &value, var);
            }
        }
        self.hash_key = env("LEARNLAKE_HASH_KEY").filter(|k| !k.is_empty());
    }

    /// Sets one key from text; `source` names where the text came from
    /// (`LEARNLAKE_RISK_HIGH_BELOW`, `--timezone`) for the error message.
    pub fn set(&mut self, key: &str, value: &str, source: &str) {
        self.pending.retain(|(k, _)| k != key);
        if let Err(problem) = self.try_set(key, value) {
            self.pending
                .push((key.to_string(), format!("{key} (from {source}): {problem}")));
        }
    }

    fn try_set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let optional = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
        match key {
            "timezone" => self.timezone = value.to_string(),
            "lake.url" => self.lake.url = value.to_string(),
            "lake.target_file_mb" => self.lake.target_file_mb = number(value, "a number of MiB")?,
            "lake.vacuum_retention_days" => {
                self.lake.vacuum_retention_days = number(value, "a number of days")?;
            }
            "landing.url" => self.landing.url = value.to_string(),
            "engine.url" => self.engine.url = value.parse()?,
            "engine.memory_limit_mb" => {
                self.engine.memory_limit_mb = number(value, "a number of MiB")?;
            }
            "engine.target_partitions" => {
                self.engine.target_partitions = Some(number(value, "a number of partitions")?);
            }
            "ingest.batch_mb" => self.ingest.batch_mb = number(value, "a number of MiB")?,
            "ingest.threads" => self.ingest.threads = Some(number(value, "a number of threads")?),
            "inputs.xapi_course" => self.inputs.xapi_course = value.to_string(),
            "inputs.ids" => self.inputs.ids = value.to_string(),
            "inputs.actors" => self.inputs.actors = optional(value),
            "inputs.openedx_student" => self.inputs.openedx_student = value.to_string(),
            "inputs.moodle_site" => self.inputs.moodle_site = value.to_string(),
            "analytics.session_gap_minutes" => {
                self.analytics.session_gap_minutes = number(value, "a number of minutes")?;
            }
            "analytics.queries" => self.analytics.queries = optional(value).map(PathBuf::from),
            "risk.high_below" => self.risk.high_below = number(value, "a number like 0.4")?,
            "risk.medium_below" => self.risk.medium_below = number(value, "a number like 0.7")?,
            "privacy.min_group_size" => {
                self.privacy.min_group_size = number(value, "a number of people")?;
            }
            "privacy.raw_retention_days" => {
                self.privacy.raw_retention_days = match value.trim() {
                    "" => None,
                    days => Some(number(days, "a number of days")?),
                };
            }
            "email.transport" => self.email.transport = value.parse()?,
            "email.outbox" => self.email.outbox = value.to_string(),
            "email.from" => self.email.from = value.to_string(),
            "email.admins" => {
                self.email.admins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect();
            }
            "email.templates" => self.email.templates = optional(value).map(PathBuf::from),
            "email.max_attempts" => {
                self.email.max_attempts = number(value, "a number of attempts")?;
            }
            "email.timeout_seconds" => {
                self.email.timeout_seconds = number(value, "a number of seconds")?;
            }
            "email.parallel" => {
                self.email.parallel = number(value, "a number of messages")?;
            }
            "email.student_reports" => {
                self.email.student_reports = match value.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => return Err(format!("{other:?} is not true or false")),
                };
            }
            "email.smtp.host" => self.email.smtp.host = value.to_string(),
            "email.smtp.port" => self.email.smtp.port = number(value, "a port number")?,
            "email.smtp.tls" => self.email.smtp.tls = value.parse()?,
            "email.smtp.username" => self.email.smtp.username = optional(value),
            "email.smtp.password" => self.email.smtp.password = optional(value),
            "scheduler.lease_seconds" => {
                self.scheduler.lease_seconds = number(value, "a number of seconds")?;
            }
            "scheduler.shutdown_grace_seconds" => {
                self.scheduler.shutdown_grace_seconds = number(value, "a number of seconds")?;
            }
            other => return Err(format!("{other:?} is not a config key")),
        }
        Ok(())
    }

    /// Checks every value, reporting all problems at once (on one line, as
    /// PRODUCT §12 asks), each with its key and what to do.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }

    /// Every problem of the config, each with its key and what to do.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.pending.iter().map(|(_, p)| p.clone()).collect();
        if let Err(e) = self.tz() {
            problems.push(e);
        }
        for (key, url) in [
            ("lake.url", &self.lake.url),
            ("landing.url", &self.landing.url),
        ] {
            if let Err(e) = crate::lake::store::parse_location(url) {
                problems.push(format!("{key}: {e}"));
            }
        }
        for (key, url, options) in [
            ("lake.options", &self.lake.url, &self.lake.options),
            ("landing.options", &self.landing.url, &self.landing.options),
        ] {
            problems.extend(
                crate::lake::store::option_problems(url, options)
                    .into_iter()
                    .map(|p| format!("{key}: {p}")),
            );
        }
        if let Err(inputs) = self.inputs.mapping() {
            problems.extend(inputs);
        }
        if self.engine.memory_limit_mb < 64 {
            problems.push(format!(
                "engine.memory_limit_mb: {} is too little; give at least 64",
                self.engine.memory_limit_mb
            ));
        }
        if self.engine.target_partitions == Some(0) {
            problems.push("engine.target_partitions: must be at least 1 (or unset)".into());
        }
        if self.lake.target_file_mb == 0 {
            problems.push("lake.target_file_mb: must be at least 1".into());
        }
        if self.lake.vacuum_retention_days < 0 {
            problems.push("lake.vacuum_retention_days: must be 0 or more".into());
        }
        if self.ingest.batch_mb == 0 {
            problems.push("ingest.batch_mb: must be at least 1".into());
        }
        if self.ingest.threads == Some(0) {
            problems.push("ingest.threads: must be at least 1 (or unset)".into());
        }
        if self.analytics.session_gap_minutes < 1 {
            problems.push("analytics.session_gap_minutes: must be at least 1".into());
        }
        if let Some(dir) = &self.analytics.queries
            && !dir.is_dir()
        {
            problems.push(format!(
                "analytics.queries: the folder {} does not exist; create it or unset the key",
                dir.display()
            ));
        }
        let r = &self.risk;
        if !(0.0 <= r.high_below && r.high_below <= r.medium_below && r.medium_below <= 1.0) {
            problems.push(format!(
                "risk: expected 0 <= high_below ({}) <= medium_below ({}) <= 1",
                r.high_below, r.medium_below
            ));
        }
        if self.privacy.min_group_size == 0 {
            problems.push("privacy.min_group_size: must be at least 1".into());
        }
        if self.email.transport == Transport::Smtp && self.email.smtp.host.is_empty() {
            problems.push(
                "email.smtp.host: the smtp transport needs a relay host; set it or LEARNLAKE_SMTP_HOST"
                    .into(),
            );
        }
        if let Some(dir) = &self.email.templates
            && !dir.is_dir()
        {
            problems.push(format!(
                "email.templates: the folder {} does not exist; create it or unset the key",
                dir.display()
            ));
        }
        if self.email.max_attempts == 0 || self.email.timeout_seconds == 0 {
            problems.push("email: max_attempts and timeout_seconds must be at least 1".into());
        }
        if !(1..=64).contains(&self.email.parallel) {
            problems.push(format!(
                "email.parallel: {} messages at once; use 1 to 64 (4 suits most servers)",
                self.email.parallel
            ));
        }
        if !from_address(&self.email.from).is_some_and(plausible_address) {
            problems.push(format!(
                "email.from: {:?} is not an address like \"learnlake <reports@example.edu>\"",
                self.email.from
            ));
        }
        for (i, admin) in self.email.admins.iter().enumerate() {
            if !plausible_address(admin) {
                problems.push(format!(
                    "email.admins[{i}]: {admin:?} is not an e-mail address like head@example.edu"
                ));
            }
        }
        if self.scheduler.lease_seconds < 4 {
            problems.push("scheduler.lease_seconds: must be at least 4".into());
        }
        let mut job_names = std::collections::BTreeSet::new();
        for (i, job) in self.jobs.iter().enumerate() {
            let valid_name = !job.name.is_empty()
                && job
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                problems.push(format!(
                    "jobs[{i}].name: {:?} must be letters, digits, - or _",
                    job.name
                ));
            } else if !job_names.insert(job.name.as_str()) {
                problems.push(format!(
                    "jobs[{i}].name: {:?} is used by an earlier job; give each job its own name",
                    job.name
                ));
            }
            if let Err(e) = crate::schedule::Schedule::parse(&job.schedule) {
                problems.push(format!("jobs[{i}].schedule: {e}"));
            }
            if job.steps.is_empty() {
                problems.push(format!(
                    "jobs[{i}].steps: list at least one step ({})",
                    STEPS.join(", ")
                ));
            }
            for step in &job.steps {
                if step == "retention" && self.privacy.raw_retention_days.is_none() {
                    problems.push(format!(
                        "jobs[{i}].steps: the retention step needs [privacy] raw_retention_days (how many days of raw data to keep)"
                    ));
                } else if !STEPS.contains(&step.as_str()) {
                    problems.push(format!(
                        "jobs[{i}].steps: unknown step {step:?} (known: {})",
                        STEPS.join(", ")
                    ));
                }
            }
            if job.retry_backoff_seconds == 0 && job.retries > 0 {
                problems.push(format!(
                    "jobs[{i}].retry_backoff_seconds: must be at least 1 when retries is set"
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let valid_name = !hook.name.is_empty()
                && hook
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                problems.push(format!(
                    "webhooks[{i}].name: {:?} must be letters, digits, - or _",
                    hook.name
                ));
            } else if !names.insert(hook.name.as_str()) {
                problems.push(format!(
                    "webhooks[{i}].name: {:?} is used twice; give each endpoint its own name",
                    hook.name
                ));
            }
            match url::Url::parse(&hook.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => problems.push(format!(
                    "webhooks[{i}].url: {:?} is not an http:// or https:// URL",
                    hook.url
                )),
            }
            if hook.secret_env.is_empty() {
                problems.push(format!(
                    "webhooks[{i}].secret_env: name the environment variable that holds the signing secret"
                ));
            }
            if hook.timeout_seconds == 0 || hook.max_attempts == 0 {
                problems.push(format!(
                    "webhooks[{i}]: timeout_seconds and max_attempts must be at least 1"
                ));
            }
        }
        problems
    }

    /// The institution zone; an unknown name is an error, never UTC.
    pub fn tz(&self) -> Result<Tz, String> {
        self.timezone.parse::<Tz>().map_err(|_| {
            format!(
                "timezone: {:?} is not an IANA time zone; use a name like \"Europe/London\" or \"UTC\"",
                self.timezone
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
timezone = "Europe/London"
[lake]
url = "file://./lake"
[landing]
url = "file://./landing"
[engine]
url = "local"
[risk]
high_below = 0.4
medium_below = 0.7
[privacy]
min_group_size = 10
[email]
transport = "file"
outbox = "./outbox"
from = "learnlake <reports@example.edu>"
admins = ["head@example.edu"]
[email.smtp]
host = "smtp.example.edu"
port = 587
tls = "starttls"
username = "reports"
[[jobs]]
name = "weekly"
schedule = "0 0 7 * * Mon"
steps = ["ingest", "analyze", "report", "notify", "flags"]
"#;
        let config = Config::from_toml(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.tz(), Ok(chrono_tz::Europe::London));
        assert_eq!(config.engine.url, Engine::Local);
        assert_eq!(config.email.transport, Transport::File);
        assert_eq!(config.email.smtp.tls, TlsMode::Starttls);
    }

    #[test]
    fn the_annotated_defaults_document_every_key_and_read_back_as_the_defaults() {
        let text = Config::default().annotated();
        let back = Config::from_toml(&text).unwrap();
        back.validate().unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", Config::default()));
        for (name, _, doc) in [
            "Config",
            "LakeConfig",
            "EngineConfig",
            "EmailConfig",
            "SmtpConfig",
            "SchedulerConfig",
            "JobConfig",
            "WebhookConfig",
        ]
        .into_iter()
        .flat_map(documented_fields)
        {
            assert!(!doc.is_empty(), "{name} has no doc comment");
        }
        for expected in [
            "timezone = \"UTC\"",
            "[lake]\n",
            "url = \"file://./lake\"",
            "[email.smtp]\n",
            "# Seconds a job's lease lasts without renewal",
            "lease_seconds = 60",
            "# [[jobs]]\n",
            "# schedule = \"0 0 7 * * Mon\"",
            "# [[webhooks]]\n",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert!(!text.contains("password ="), "secrets are never written");
        // A configured job is written as a table, and reads back.
        let mut config = Config::from_toml(
            "timezone = \"Europe/London\"\n[[jobs]]\nname = \"w\"\nschedule = \"0 0 7 * * Mon\"\nsteps = [\"ingest\"]\n",
        )
        .unwrap();
        config.email.smtp.password = Some("hunter2-xyzzy".into());
        let text = config.annotated();
        let job = &text[text.find("[[jobs]]\n").expect("a [[jobs]] table")..];
        assert!(job.contains("\nname = \"w\"\n"), "{text}");
        assert!(!text.contains("hunter2-xyzzy"));
        let back = Config::from_toml(&text).unwrap();
        assert_eq!(back.jobs[0].name, "w");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut config = Config::from_toml(
            "timezone = \"Mars/Base\"\n[[jobs]]\nname = \"w\"\nschedule = \"0 0 7 * *\"\nsteps = [\"ingest\", \"dance\"]\n\
             [[jobs]]\nname = \"w\"\nschedule = \"0 0 7 30 Feb *\"\nsteps = [\"ingest\"]\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "LEARNLAKE_RISK_HIGH_BELOW" => Some("low".to_string()),
            "LEARNLAKE_SMTP_PORT" => Some("seventy".to_string()),
            _ => None,
        };
        config.apply_env(&env);
        let err = config.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "config: risk.high_below (from LEARNLAKE_RISK_HIGH_BELOW): \"low\" is not a number like 0.4; \
             email.smtp.port (from LEARNLAKE_SMTP_PORT): \"seventy\" is not a port number; \
             timezone: \"Mars/Base\" is not an IANA time zone; use a name like \"Europe/London\" or \"UTC\"; \
             jobs[0].schedule: \"0 0 7 * *\" has 5 fields, expected 6 (sec min hour day month weekday), e.g. \"0 0 7 * * Mon\"; \
             jobs[0].steps: unknown step \"dance\" (known: ingest, analyze, train, report, notify, flags, retention, compact, vacuum); \
             jobs[1].name: \"w\" is used by an earlier job; give each job its own name; \
             jobs[1].schedule: \"0 0 7 30 Feb *\" never fires (no such date); check the day and month fields"
        );
    }

    #[test]
    fn email_settings_are_checked_with_what_to_fix() {
        let env = |k: &str| match k {
            "LEARNLAKE_EMAIL_FROM" => Some("reports at example".to_string()),
            "LEARNLAKE_EMAIL_ADMINS" => Some("head@example.edu, dean".to_string()),
            "LEARNLAKE_EMAIL_STUDENT_REPORTS" => Some("maybe".to_string()),
            "LEARNLAKE_EMAIL_MAX_ATTEMPTS" => Some("0".to_string()),
            _ => None,
        };
        let mut config = Config::default();
        config.apply_env(&env);
        let err = config.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "config: email.student_reports (from LEARNLAKE_EMAIL_STUDENT_REPORTS): \"maybe\" is not true or false; \
             email: max_attempts and timeout_seconds must be at least 1; \
             email.from: \"reports at example\" is not an address like \"learnlake <reports@example.edu>\"; \
             email.admins[1]: \"dean\" is not an e-mail address like head@example.edu"
        );
        assert_eq!(
            from_address("learnlake <r@example.edu>"),
            Some("r@example.edu")
        );
        assert_eq!(from_address("r@example.edu"), Some("r@example.edu"));
        assert_eq!(from_address("x <r@example.edu"), None);
        assert!(!plausible_address("a@b.c\r\nBcc: d@e.f"));
    }

    #[test]
    fn an_unknown_zone_is_an_error_not_utc() {
        let config = Config {
            timezone: "Europe/Londn".into(),
            ..Config::default()
        };
        assert!(config.tz().is_err());
        assert!(config.validate().is_err());
    }

    #[test]
    fn the_command_line_fixes_what_the_environment_broke() {
        let env = |k: &str| match k {
            "LEARNLAKE_TIMEZONE" => Some("Nowhere/Land".to_string()),
            "LEARNLAKE_ENGINE_MEMORY_LIMIT_MB" => Some("lots".to_string()),
            _ => None,
        };
        let mut config = Config::default();
        config.apply_env(&env);
        assert!(config.validate().is_err());
        config.set("timezone", "Asia/Tokyo", "--timezone");
        config.set("engine.memory_limit_mb", "512", "--engine-memory-limit-mb");
        config.validate().unwrap();
        assert_eq!(config.tz(), Ok(chrono_tz::Asia::Tokyo));
        assert_eq!(config.engine.memory_limit_mb, 512);
    }

    #[test]
    fn enums_refuse_unknown_values() {
        let err = Config::from_toml("[email]\ntransport = \"pigeon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `pigeon`"), "{err}");
        let err = Config::from_toml("[email.smtp]\ntls = \"ssl\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `ssl`"), "{err}");
        let err = Config::from_toml("[engine]\nurl = \"spark\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"spark\" is not an engine; use \"local\""),
            "{err}"
        );
        let config = Config::from_toml("[engine]\nurl = \"ballista://sched:50050\"\n").unwrap();
        assert_eq!(
            config.engine.url,
            Engine::Ballista("ballista://sched:50050".into())
        );
    }

    #[test]
    fn the_session_gap_and_queries_folder_are_read_and_checked() {
        let config = Config::from_toml("[analytics]\nsession_gap_minutes = 45\n").unwrap();
        assert_eq!(config.analytics.session_gap_minutes, 45);
        assert_eq!(Config::default().analytics.session_gap_minutes, 30);
        let config = Config::from_toml(
            "[analytics]\nsession_gap_minutes = 0\nqueries = \"/no/such/queries\"\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("analytics.session_gap_minutes: must be at least 1"),
            "{err}"
        );
        assert!(
            err.contains("analytics.queries: the folder /no/such/queries does not exist"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("[lake]\nuri = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `uri`"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file_for_every_key() {
        let dir = std::env::temp_dir();
        let dir_text = dir.to_str().unwrap().to_string();
        let env = move |k: &str| {
            let v = match k {
                "LEARNLAKE_LAKE" => "s3://bucket/lake",
                "LEARNLAKE_LANDING" => "s3://bucket/landing",
                "LEARNLAKE_TIMEZONE" => "Asia/Tokyo",
                "LEARNLAKE_HASH_KEY" => "k",
                "LEARNLAKE_ENGINE" => "ballista-standalone",
                "LEARNLAKE_ENGINE_MEMORY_LIMIT_MB" => "1024",
                "LEARNLAKE_ENGINE_TARGET_PARTITIONS" => "3",
                "LEARNLAKE_INGEST_BATCH_MB" => "8",
                "LEARNLAKE_INGEST_THREADS" => "2",
                "LEARNLAKE_ANALYTICS_SESSION_GAP_MINUTES" => "20",
                "LEARNLAKE_QUERIES" => dir_text.as_str(),
                "LEARNLAKE_RISK_HIGH_BELOW" => "0.3",
                "LEARNLAKE_RISK_MEDIUM_BELOW" => "0.6",
                "LEARNLAKE_PRIVACY_MIN_GROUP_SIZE" => "5",
                "LEARNLAKE_EMAIL_TRANSPORT" => "smtp",
                "LEARNLAKE_EMAIL_OUTBOX" => "/tmp/out",
                "LEARNLAKE_EMAIL_FROM" => "x@example.edu",
                "LEARNLAKE_EMAIL_ADMINS" => "a@example.edu, b@example.edu",
                "LEARNLAKE_SMTP_HOST" => "relay",
                "LEARNLAKE_SMTP_PORT" => "2525",
                "LEARNLAKE_SMTP_TLS" => "tls",
                "LEARNLAKE_SMTP_USERNAME" => "u",
                "LEARNLAKE_SMTP_PASSWORD" => "p",
                _ => return None,
            };
            Some(v.to_string())
        };
        let mut config = Config::from_toml("timezone = \"UTC\"\n").unwrap();
        config.apply_env(&env);
        config.validate().unwrap();
        assert_eq!(config.lake.url, "s3://bucket/lake");
        assert_eq!(config.landing.url, "s3://bucket/landing");
        assert_eq!(config.timezone, "Asia/Tokyo");
        assert_eq!(config.hash_key.as_deref(), Some("k"));
        assert_eq!(config.engine.url, Engine::BallistaStandalone);
        assert_eq!(config.engine.memory_limit_mb, 1024);
        assert_eq!(config.engine.target_partitions, Some(3));
        assert_eq!(config.ingest.batch_mb, 8);
        assert_eq!(config.ingest.threads, Some(2));
        assert_eq!(config.analytics.session_gap_minutes, 20);
        assert_eq!(config.analytics.queries, Some(dir));
        assert_eq!(config.risk.high_below, 0.3);
        assert_eq!(config.risk.medium_below, 0.6);
        assert_eq!(config.privacy.min_group_size, 5);
        assert_eq!(config.email.transport, Transport::Smtp);
        assert_eq!(config.email.outbox, "/tmp/out");
        assert_eq!(config.email.from, "x@example.edu");
        assert_eq!(config.email.admins, ["a@example.edu", "b@example.edu"]);
        assert_eq!(config.email.smtp.host, "relay");
        assert_eq!(config.email.smtp.port, 2525);
        assert_eq!(config.email.smtp.tls, TlsMode::Tls);
        assert_eq!(config.email.smtp.username.as_deref(), Some("u"));
        assert_eq!(config.email.smtp.password.as_deref(), Some("p"));
        // Every documented variable names a key `set` knows.
        for (var, key) in ENVIRONMENT {
            let mut c = Config::default();
            c.set(key, "", var);
            assert!(
                !c.pending
                    .iter()
                    .any(|(_, p)| p.contains("is not a config key")),
                "{var}"
            );
        }
    }
}
