//! `learnlake.toml`: one file, every key optional, every value overridable by
//! the environment (`LEARNLAKE_*`) and then by command-line options.
//!
//! [`Config::load`] reads the file, applies the environment, and validates
//! everything at once, naming each problem by its key.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::{Error, Result};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
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
    /// Analytics settings.
    pub analytics: AnalyticsConfig,
    /// Risk level thresholds on success_probability.
    pub risk: RiskConfig,
    /// Privacy settings.
    pub privacy: PrivacyConfig,
    /// E-mail delivery.
    pub email: EmailConfig,
    /// Scheduled jobs.
    pub jobs: Vec<JobConfig>,
    /// The key for keyed hashes of PII (only from `LEARNLAKE_HASH_KEY`).
    #[serde(skip)]
    pub hash_key: Option<String>,
}

/// `[lake]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `file://./lake` (default), a path, `s3://bucket/prefix`, `gs://…`, `az://…`.
    pub url: String,
}

/// `[landing]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LandingConfig {
    /// `file://./landing` (default) or any object-store URL.
    pub url: String,
}

/// `[engine]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// `local` (default), `ballista://host:port` or `ballista-standalone`.
    pub url: String,
    /// Memory the engine may use before spilling to disk, in MiB (default 4096).
    pub memory_limit_mb: usize,
    /// DataFusion's target_partitions (default: the number of cores).
    pub target_partitions: Option<usize>,
}

/// `[ingest]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Uncompressed input processed per batch, in MiB (default 256). Bounds
    /// ingest memory to a small multiple of this, whatever the input size.
    pub batch_mb: usize,
    /// Parser threads (default: the number of cores).
    pub threads: Option<usize>,
}

/// `[analytics]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Events without a session_id form inferred sessions; a gap longer
    /// than this, in minutes, starts a new one (30).
    pub session_gap_minutes: i64,
}

/// `[risk]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// success_probability below this is high risk (0.4).
    pub high_below: f64,
    /// success_probability below this (and not high) is medium risk (0.7).
    pub medium_below: f64,
}

/// `[privacy]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Groups smaller than this are not shown in aggregates (10).
    pub min_group_size: usize,
}

/// `[email]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `file` (default: `.eml` files in `outbox`) or `smtp`.
    pub transport: String,
    /// Folder for the file transport (`./outbox`).
    pub outbox: String,
    /// The From address.
    pub from: String,
    /// Recipients of the administrator report.
    pub admins: Vec<String>,
    /// `[email.smtp]`
    pub smtp: SmtpConfig,
}

/// `[email.smtp]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port (587).
    pub port: u16,
    /// `none`, `starttls` (default) or `tls`.
    pub tls: String,
    /// User name; the password only comes from `LEARNLAKE_SMTP_PASSWORD`.
    pub username: Option<String>,
}

/// `[[jobs]]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The job's name (`learnlake run NAME`).
    pub name: String,
    /// Six-field cron expression (sec min hour day month weekday) in `timezone`.
    pub schedule: String,
    /// Steps in order: ingest, analyze, train, report, notify, flags, retention.
    pub steps: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            lake: LakeConfig::default(),
            landing: LandingConfig::default(),
            engine: EngineConfig::default(),
            ingest: IngestConfig::default(),
            risk: RiskConfig::default(),
            analytics: AnalyticsConfig::default(),
            privacy: PrivacyConfig::default(),
            email: EmailConfig::default(),
            jobs: Vec::new(),
            hash_key: None,
        }
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: "file://./lake".into(),
        }
    }
}

impl Default for LandingConfig {
    fn default() -> Self {
        Self {
            url: "file://./landing".into(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            url: "local".into(),
            memory_limit_mb: 4096,
            target_partitions: None,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            batch_mb: 256,
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
        }
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { min_group_size: 10 }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: "file".into(),
            outbox: "./outbox".into(),
            from: "learnlake <reports@example.edu>".into(),
            admins: Vec::new(),
            smtp: SmtpConfig::default(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            tls: "starttls".into(),
            username: None,
        }
    }
}

const STEPS: [&str; 7] = [
    "ingest",
    "analyze",
    "train",
    "report",
    "notify",
    "flags",
    "retention",
];

impl Config {
    /// Reads the config file (an explicit `path`, else `LEARNLAKE_CONFIG`, else
    /// `./learnlake.toml` when present, else the defaults), applies the
    /// environment from `env`, and validates.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| env("LEARNLAKE_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(p) => Some(p),
            None => Some(PathBuf::from("learnlake.toml")).filter(|p| p.exists()),
        };
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                Self::from_toml(&text).map_err(|e| match e {
                    Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
                    other => other,
                })?
            }
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no environment, no validation).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Applies `LEARNLAKE_*` overrides.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let set = |target: &mut String, key: &str| {
            if let Some(v) = env(key) {
                *target = v;
            }
        };
        set(&mut self.lake.url, "LEARNLAKE_LAKE");
        set(&mut self.landing.url, "LEARNLAKE_LANDING");
        set(&mut self.timezone, "LEARNLAKE_TIMEZONE");
        set(&mut self.engine.url, "LEARNLAKE_ENGINE");
        set(&mut self.email.transport, "LEARNLAKE_EMAIL_TRANSPORT");
        set(&mut self.email.outbox, "LEARNLAKE_EMAIL_OUTBOX");
        set(&mut self.email.smtp.host, "LEARNLAKE_SMTP_HOST");
        set(&mut self.email.smtp.tls, "LEARNLAKE_SMTP_TLS");
        if let Some(user) = env("LEARNLAKE_SMTP_USERNAME") {
            self.email.smtp.username = Some(user);
        }
        if let Some(port) = env("LEARNLAKE_SMTP_PORT") {
            self.email.smtp.port = port.parse().map_err(|_| {
                Error::Config(format!("LEARNLAKE_SMTP_PORT={port:?} is not a port number"))
            })?;
        }
        self.hash_key = env("LEARNLAKE_HASH_KEY").filter(|k| !k.is_empty());
        Ok(())
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.timezone.parse::<Tz>().is_err() {
            problems.push(format!(
                "timezone: {:?} is not an IANA time zone (e.g. \"Europe/London\", \"UTC\")",
                self.timezone
            ));
        }
        for (key, url) in [
            ("lake.url", &self.lake.url),
            ("landing.url", &self.landing.url),
        ] {
            if let Err(e) = crate::lake::store::parse_location(url) {
                problems.push(format!("{key}: {e}"));
            }
        }
        let engine = &self.engine.url;
        if !(engine == "local"
            || engine == "ballista-standalone"
            || engine.starts_with("ballista://"))
        {
            problems.push(format!(
                "engine.url: {engine:?} is not one of \"local\", \"ballista-standalone\", \"ballista://host:port\""
            ));
        }
        if self.engine.memory_limit_mb < 64 {
            problems.push("engine.memory_limit_mb: must be at least 64".into());
        }
        if self.ingest.batch_mb == 0 {
            problems.push("ingest.batch_mb: must be at least 1".into());
        }
        if self.analytics.session_gap_minutes < 1 {
            problems.push("analytics.session_gap_minutes: must be at least 1".into());
        }
        let r = &self.risk;
        if !(0.0 <= r.high_below && r.high_below <= r.medium_below && r.medium_below <= 1.0) {
            problems.push(format!(
                "risk: expected 0 <= high_below ({}) <= medium_below ({}) <= 1",
                r.high_below, r.medium_below
            ));
        }
        if !matches!(self.email.transport.as_str(), "file" | "smtp") {
            problems.push(format!(
                "email.transport: {:?} is not \"file\" or \"smtp\"",
                self.email.transport
            ));
        }
        if !matches!(self.email.smtp.tls.as_str(), "none" | "starttls" | "tls") {
            problems.push(format!(
                "email.smtp.tls: {:?} is not \"none\", \"starttls\" or \"tls\"",
                self.email.smtp.tls
            ));
        }
        for (i, job) in self.jobs.iter().enumerate() {
            let fields = job.schedule.split_whitespace().count();
            if fields != 6 {
                problems.push(format!(
                    "jobs[{i}].schedule: {:?} has {fields} fields, expected 6 (sec min hour day month weekday)",
                    job.schedule
                ));
            }
            for step in &job.steps {
                if !STEPS.contains(&step.as_str()) {
                    problems.push(format!(
                        "jobs[{i}].steps: unknown step {step:?} (known: {})",
                        STEPS.join(", ")
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }

    /// The institution zone (validated).
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

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
        assert_eq!(config.tz(), chrono_tz::Europe::London);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut config = Config::from_toml(
            "timezone = \"Mars/Base\"\n[[jobs]]\nname = \"w\"\nschedule = \"0 0 7 * *\"\nsteps = [\"ingest\", \"dance\"]\n",
        )
        .unwrap();
        config.apply_env(&no_env).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("timezone: \"Mars/Base\" is not an IANA time zone"),
            "{err}"
        );
        assert!(
            err.contains("jobs[0].schedule: \"0 0 7 * *\" has 5 fields, expected 6"),
            "{err}"
        );
        assert!(
            err.contains("jobs[0].steps: unknown step \"dance\""),
            "{err}"
        );
    }

    #[test]
    fn the_session_gap_is_read_and_checked() {
        let config = Config::from_toml("[analytics]\nsession_gap_minutes = 45\n").unwrap();
        assert_eq!(config.analytics.session_gap_minutes, 45);
        assert_eq!(Config::default().analytics.session_gap_minutes, 30);
        let config = Config::from_toml("[analytics]\nsession_gap_minutes = 0\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("analytics.session_gap_minutes: must be at least 1"),
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
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "LEARNLAKE_LAKE" => Some("s3://bucket/lake".to_string()),
            "LEARNLAKE_TIMEZONE" => Some("Asia/Tokyo".to_string()),
            "LEARNLAKE_HASH_KEY" => Some("k".to_string()),
            _ => None,
        };
        let mut config = Config::from_toml("timezone = \"UTC\"\n").unwrap();
        config.apply_env(&env).unwrap();
        assert_eq!(config.lake.url, "s3://bucket/lake");
        assert_eq!(config.timezone, "Asia/Tokyo");
        assert_eq!(config.hash_key.as_deref(), Some("k"));
    }
}
