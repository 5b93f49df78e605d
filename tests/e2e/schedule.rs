//! The scheduler as operators run it: `learnlake schedule` as a real
//! process stopped by SIGTERM, two daemons on one lake, a daemon killed
//! with -9 mid-run and restarted, `learnlake run` beside them, and
//! `validate` on a config with several mistakes. job_runs is read back
//! through `learnlake sql` and by the second readers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::report::SmtpServer;
use super::webhooks::{Receiver, SECRET};
use super::{learnlake, learnlake_ok, scratch, second_reader_of, small_landing};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small landing area and a config with `jobs` (TOML) under `dir`;
/// e-mail to the outbox folder, or to an SMTP server on loopback at `smtp`.
fn setup(dir: &Path, jobs: &str) -> PathBuf {
    setup_with(dir, jobs, None)
}

fn setup_with(dir: &Path, jobs: &str, smtp: Option<u16>) -> PathBuf {
    small_landing(dir, 40, 4, 7, &[]);
    let config = dir.join("learnlake.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"Europe/London\"\n\
             [lake]\nurl = \"{lake}\"\n\
             [landing]\nurl = \"{landing}\"\n\
             [email]\noutbox = \"{outbox}\"\nadmins = [\"head@example.edu\"]\n{transport}\n\
             [scheduler]\nlease_seconds = 5\nshutdown_grace_seconds = 20\n\
             {jobs}",
            lake = s(&dir.join("lake")),
            landing = s(&dir.join("landing")),
            outbox = s(&dir.join("outbox")),
            transport = match smtp {
                Some(port) => format!(
                    "transport = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\""
                ),
                None => "transport = \"file\"".to_string(),
            },
        ),
    )
    .unwrap();
    config
}

/// `learnlake schedule` in `dir`, its stderr going to `log`.
fn start_daemon(dir: &Path, log: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_learnlake"))
        .current_dir(dir)
        .args(["--config", "learnlake.toml", "schedule"])
        .env_remove("LEARNLAKE_CONFIG")
        .env("TEST_WEBHOOK_SECRET", SECRET)
        .env(
            "LEARNLAKE_LOG",
            "info,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn",
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .expect("the learnlake binary starts")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the daemon did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the file `log` has a line with every one of `words`.
fn wait_for_line(dir: &Path, log: &str, words: &[&str], limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Ok(file) = std::fs::File::open(dir.join(log)) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if words.iter().all(|w| line.contains(w)) {
                    return line;
                }
            }
        }
        assert!(
            started.elapsed() < limit,
            "no line with {words:?} in {log} within {limit:?}:\n{}",
            std::fs::read_to_string(dir.join(log)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// job_runs rows as (job, scheduled_for, status, trigger), through `learnlake sql`.
fn job_runs(dir: &Path) -> Vec<(String, String, String, String)> {
    let out = learnlake_ok(
        dir,
        &[
            "--config",
            "learnlake.toml",
            "sql",
            "SELECT job, CAST(scheduled_for AS VARCHAR) AS slot, status, \"trigger\" \
             FROM job_runs ORDER BY scheduled_for, finished_at",
            "--format",
            "csv",
        ],
        &[],
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_string(),
                r[1].to_string(),
                r[2].to_string(),
                r[3].to_string(),
            )
        })
        .collect()
}

fn activity_counts(dir: &Path) -> (String, String) {
    let out = learnlake_ok(
        dir,
        &[
            "--config",
            "learnlake.toml",
            "sql",
            "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM activity",
            "--format",
            "csv",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text.lines().nth(1).unwrap().to_string();
    let (n, d) = line.split_once(',').unwrap();
    (n.to_string(), d.to_string())
}

fn landing_events(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("landing/activity"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            std::fs::read_to_string(p).unwrap().lines().count()
        })
        .sum()
}

#[test]
fn the_daemon_runs_each_slot_once_stops_on_sigterm_and_records_job_runs() {
    let (_keep, dir) = scratch();
    setup(
        &dir,
        "[[jobs]]\nname = \"often\"\nschedule = \"*/3 * * * * *\"\nsteps = [\"ingest\"]\n",
    );
    let mut daemon = start_daemon(&dir, "daemon.log");
    // Three slots at least.
    std::thread::sleep(Duration::from_secs(10));
    sigterm(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(status.success(), "SIGTERM is a clean stop (exit 0):\n{log}");
    assert!(log.contains("scheduler stopped"), "{log}");
    assert!(log.contains("run_id="), "runs log their span: {log}");

    let runs = job_runs(&dir);
    assert!(runs.len() >= 2, "{runs:?}\n{log}");
    let mut slots = std::collections::BTreeSet::new();
    for (job, slot, status, trigger) in &runs {
        assert_eq!(
            (job.as_str(), status.as_str()),
            ("often", "succeeded"),
            "{runs:?}"
        );
        assert_eq!(trigger, "schedule");
        assert!(
            slots.insert(slot.clone()),
            "slot {slot} ran twice: {runs:?}"
        );
        let second: u32 = slot[17..19].parse().unwrap();
        assert_eq!(second % 3, 0, "slots fall on the schedule: {slot}");
    }
    // The first run ingested everything; the later ones found nothing new.
    let (rows, distinct) = activity_counts(&dir);
    assert_eq!(rows, distinct);
    assert_eq!(rows.parse::<usize>().unwrap(), landing_events(&dir));
    // A second reader sees the table with its documented types.
    let seen = second_reader_of(&dir.join("lake"), &["job_runs"]);
    assert_eq!(seen["pyarrow"]["job_runs"]["rows"], runs.len());
    assert_eq!(
        seen["pyarrow"]["job_runs"]["types"]["scheduled_for"],
        "timestamp[us, tz=UTC]"
    );
    assert_eq!(seen["polars"]["job_runs"]["rows"], runs.len());

    // `status` shows the job, its next fire time and its last run.
    let out = learnlake_ok(&dir, &["--config", "learnlake.toml", "status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("often") && text.contains("succeeded (schedule"),
        "{text}"
    );

    // `run --slot latest` fills the newest slot once; again, it has nothing to do.
    let first = learnlake_ok(
        &dir,
        &[
            "--config",
            "learnlake.toml",
            "run",
            "often",
            "--slot",
            "latest",
        ],
        &[],
    );
    let again = learnlake(
        &dir,
        &[
            "--config",
            "learnlake.toml",
            "run",
            "often",
            "--slot",
            "latest",
        ],
        &[],
    );
    let (first, again) = (
        String::from_utf8_lossy(&first.stdout).to_string(),
        String::from_utf8_lossy(&again.stdout).to_string(),
    );
    assert!(
        first.contains("succeeded") || first.contains("already ran"),
        "{first}"
    );
    // Within the same 3-second slot, or the next one: never twice per slot.
    let runs = job_runs(&dir);
    let mut per_slot = std::collections::BTreeMap::new();
    for (_, slot, status, _) in &runs {
        if status == "succeeded" {
            *per_slot.entry(slot.clone()).or_insert(0) += 1;
        }
    }
    assert!(per_slot.values().all(|&n| n == 1), "{runs:?}\n{again}");
    // JSON logs carry the run's and the step's span fields on every line.
    let out = learnlake_ok(
        &dir,
        &[
            "--config",
            "learnlake.toml",
            "--log-format",
            "json",
            "run",
            "often",
        ],
        &[],
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = lines
        .iter()
        .find(|l| l["fields"]["message"] == "step succeeded")
        .unwrap_or_else(|| panic!("no step line in {lines:?}"));
    assert_eq!(step["spans"][0]["name"], "run", "{step}");
    assert_eq!(step["spans"][0]["job"], "often", "{step}");
    assert!(
        step["spans"][0]["run_id"]
            .as_str()
            .unwrap()
            .starts_with("often-")
    );
    assert!(step["spans"][0]["scheduled_for"].is_string(), "{step}");
    assert_eq!(step["span"]["step"], "ingest", "{step}");
    // An unknown name says what exists.
    let out = learnlake(&dir, &["--config", "learnlake.toml", "run", "nightly"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jobs in the config: often"), "{err}");
}

#[test]
fn two_daemons_on_one_lake_run_no_slot_twice_and_lose_none() {
    let (_keep, dir) = scratch();
    setup(
        &dir,
        // catch_up = all: on a loaded machine a run may outlast its 5
        // seconds, and then the next slot waits for it instead of being
        // superseded, so "none lost" is exact.
        "[[jobs]]\nname = \"busy\"\nschedule = \"*/5 * * * * *\"\nsteps = [\"ingest\", \"analyze\"]\n\
         catch_up = \"all\"\n",
    );
    // The lake exists before both start (the first run of each would
    // otherwise also race to create it; that case is the lease's too).
    let mut a = start_daemon(&dir, "a.log");
    let mut b = start_daemon(&dir, "b.log");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    sigterm(&a);
    sigterm(&b);
    assert!(wait_exit(&mut a, Duration::from_secs(40)).success());
    assert!(wait_exit(&mut b, Duration::from_secs(40)).success());
    let elapsed = started.elapsed();
    let runs = job_runs(&dir);
    let logs = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(dir.join("a.log")).unwrap(),
        std::fs::read_to_string(dir.join("b.log")).unwrap()
    );
    let succeeded: Vec<&String> = runs
        .iter()
        .filter(|r| r.2 == "succeeded")
        .map(|r| &r.1)
        .collect();
    let distinct: std::collections::BTreeSet<_> = succeeded.iter().collect();
    assert_eq!(
        distinct.len(),
        succeeded.len(),
        "a slot ran twice: {runs:?}"
    );
    assert!(
        runs.iter().all(|r| r.2 == "succeeded"),
        "every run succeeded: {runs:?}\n{logs}"
    );
    // None lost: consecutive slots 5 seconds apart, about one per 5 s.
    let times: Vec<chrono::NaiveDateTime> = succeeded
        .iter()
        .map(|t| {
            chrono::NaiveDateTime::parse_from_str(&t[..19].replace('T', " "), "%Y-%m-%d %H:%M:%S")
                .unwrap()
        })
        .collect();
    for pair in times.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            5,
            "a slot was lost between {} and {}: {runs:?}",
            pair[0],
            pair[1]
        );
    }
    // About one run per 5 s (fewer only if runs took longer than that).
    assert!(
        times.len() as u64 >= elapsed.as_secs() / 10,
        "{} runs in {elapsed:?}: {runs:?}\n{logs}",
        times.len()
    );
}

#[test]
fn a_daemon_killed_mid_run_completes_the_slot_once_after_restart() {
    let (_keep, dir) = scratch();
    let smtp = SmtpServer::start(&dir, "smtp", None, &[]);
    smtp.wait_listening();
    let receiver = Receiver::start(&dir, "hook", 0, 0);
    setup_with(
        &dir,
        &format!(
            "[[jobs]]\nname = \"weekly\"\nschedule = \"*/30 * * * * *\"\n\
             steps = [\"ingest\", \"analyze\", \"report\", \"notify\", \"flags\"]\n\
             [[webhooks]]\nname = \"advising\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
             secret_env = \"TEST_WEBHOOK_SECRET\"\nallow_private = true\n",
            receiver.port
        ),
        Some(smtp.port),
    );
    let mut first = start_daemon(&dir, "first.log");
    // Killed while the reports go out (or just before).
    let line = wait_for_line(
        &dir,
        "first.log",
        &["step started", "step=report"],
        Duration::from_secs(90),
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let killed_run = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("run_id="))
        .map(|w| w.trim_end_matches(['}', ':']).to_string())
        .unwrap_or_default();

    let mut second = start_daemon(&dir, "second.log");
    wait_for_line(
        &dir,
        "second.log",
        &["run succeeded"],
        Duration::from_secs(90),
    );
    sigterm(&second);
    assert!(wait_exit(&mut second, Duration::from_secs(40)).success());
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap();
    assert!(log.contains("recorded as abandoned"), "{log}");

    let runs = job_runs(&dir);
    let abandoned: Vec<_> = runs.iter().filter(|r| r.2 == "abandoned").collect();
    assert_eq!(abandoned.len(), 1, "{runs:?}");
    let slot = &abandoned[0].1;
    let completed = runs
        .iter()
        .filter(|r| &r.1 == slot && r.2 == "succeeded")
        .count();
    assert_eq!(
        completed, 1,
        "the killed slot completes once: {runs:?} ({killed_run})"
    );
    // Downstream: every event once, every message once.
    let (rows, distinct) = activity_counts(&dir);
    assert_eq!(rows, distinct);
    assert_eq!(rows.parse::<usize>().unwrap(), landing_events(&dir));
    let accepted = smtp.accepted();
    assert!(!accepted.is_empty(), "the reports reached the SMTP server");
    let ids: Vec<&str> = accepted
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a message arrived twice");
    let flags = receiver.accepted();
    assert!(!flags.is_empty(), "changed flags reached the endpoint");
    assert!(
        flags.values().all(|&n| n == 1),
        "a flag arrived twice: {flags:?}"
    );
}

#[test]
fn sigterm_mid_step_cancels_after_the_grace_period_records_it_and_the_slot_runs_again() {
    let (_keep, dir) = scratch();
    setup(
        &dir,
        "[[jobs]]\nname = \"often\"\nschedule = \"*/20 * * * * *\"\nsteps = [\"ingest\", \"analyze\"]\n",
    );
    let config = std::fs::read_to_string(dir.join("learnlake.toml"))
        .unwrap()
        .replace("shutdown_grace_seconds = 20", "shutdown_grace_seconds = 0");
    std::fs::write(dir.join("learnlake.toml"), config).unwrap();
    let mut daemon = start_daemon(&dir, "first.log");
    wait_for_line(
        &dir,
        "first.log",
        &["step started", "step=analyze"],
        Duration::from_secs(60),
    );
    sigterm(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert!(status.success(), "a stop is exit 0:\n{log}");
    let runs = job_runs(&dir);
    assert_eq!(runs.len(), 1, "{runs:?}\n{log}");
    assert_eq!(runs[0].2, "cancelled", "{runs:?}");
    // The cancelled slot is caught up by the next start.
    let slot = runs[0].1.clone();
    let mut daemon = start_daemon(&dir, "second.log");
    wait_for_line(
        &dir,
        "second.log",
        &["run succeeded"],
        Duration::from_secs(60),
    );
    sigterm(&daemon);
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    let runs = job_runs(&dir);
    assert!(
        runs.iter()
            .any(|r| r.1 == slot && r.2 == "succeeded" && r.3 == "catch-up"),
        "{runs:?}"
    );
}

#[test]
fn validate_reports_every_mistake_of_a_config_at_once() {
    let (_keep, dir) = scratch();
    std::fs::write(
        dir.join("learnlake.toml"),
        "timezone = \"Europe/Londn\"\n\
         [[jobs]]\nname = \"weekly\"\nschedule = \"0 0 7 * * 1\"\nsteps = [\"ingest\", \"analyse\"]\n\
         [[jobs]]\nname = \"weekly\"\nschedule = \"0 0 7 31 Apr *\"\nsteps = [\"report\"]\n\
         [[jobs]]\nname = \"hourly\"\nschedule = \"0 0 * * *\"\nsteps = [\"ingest\"]\n",
    )
    .unwrap();
    let out = learnlake(&dir, &["validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "timezone: \"Europe/Londn\" is not an IANA time zone",
        "jobs[0].schedule: \"0 0 7 * * 1\": write weekdays as names",
        "jobs[0].steps: unknown step \"analyse\"",
        "jobs[1].name: \"weekly\" is used by an earlier job",
        "jobs[1].schedule: \"0 0 7 31 Apr *\" never fires",
        "jobs[2].schedule: \"0 0 * * *\" has 5 fields",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    std::fs::write(
        dir.join("learnlake.toml"),
        "timezone = \"Europe/London\"\n\
         [[jobs]]\nname = \"weekly\"\nschedule = \"0 0 7 * * Mon\"\nsteps = [\"ingest\", \"analyze\", \"report\"]\n",
    )
    .unwrap();
    learnlake_ok(&dir, &["validate"], &[]);

    // --check-connections: a lake that is not there, an SMTP relay and a
    // webhook endpoint that nobody answers on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("learnlake.toml"),
        format!(
            "[lake]\nurl = \"{}\"\n[email]\ntransport = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {closed}\n\
             [[webhooks]]\nname = \"x\"\nurl = \"http://127.0.0.1:{closed}/hook\"\nsecret_env = \"X\"\nallow_private = true\n",
            s(&dir.join("no-lake"))
        ),
    )
    .unwrap();
    learnlake_ok(&dir, &["validate"], &[]);
    let out = learnlake(&dir, &["validate", "--check-connections"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "lake.url: cannot reach",
        &format!("email.smtp: cannot connect to 127.0.0.1:{closed}"),
        &format!("webhooks[0].url: cannot connect to 127.0.0.1:{closed}"),
        "landing.url: cannot reach",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_failing_step_is_retried_with_backoff_then_the_run_is_recorded_as_failed() {
    let (_keep, dir) = scratch();
    // Nothing ingested: analyze fails every time.
    std::fs::create_dir_all(dir.join("landing")).unwrap();
    std::fs::write(
        dir.join("learnlake.toml"),
        format!(
            "[lake]\nurl = \"{}\"\n[[jobs]]\nname = \"nightly\"\nschedule = \"0 0 3 * * *\"\n\
             steps = [\"ingest\", \"analyze\", \"report\"]\nretries = 2\nretry_backoff_seconds = 1\n",
            s(&dir.join("lake"))
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = learnlake(&dir, &["--config", "learnlake.toml", "run", "nightly"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("analyze failed after 3 attempt(s)"), "{err}");
    assert!(
        err.contains("ingest the reference files"),
        "the step's own reason: {err}"
    );
    // Backoff 1 s then 2 s (plus jitter) between the three attempts.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.matches("step failed").count(), 2, "{err}");
    let out = learnlake_ok(
        &dir,
        &[
            "--config",
            "learnlake.toml",
            "sql",
            "SELECT status, attempts, steps_succeeded, steps_total, error FROM job_runs",
            "--format",
            "csv",
        ],
        &[],
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], "failed");
    // ingest once, analyze three times; report never ran.
    assert_eq!((&rows[0][1], &rows[0][2], &rows[0][3]), ("4", "1", "3"));
    assert!(rows[0][4].contains("analyze failed after 3 attempt(s)"));
}
