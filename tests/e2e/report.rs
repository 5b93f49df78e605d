//! `learnlake report` end to end: reports rendered from a real lake and
//! delivered to a real SMTP server on loopback (tests/smtp_server.py,
//! aiosmtpd), parsed back as a mail client would; exactly once across
//! re-runs, a server that is down and then answers 4xx, a kill -9 in the
//! middle of a batch, and a permanent refusal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ingest_ok, learnlake, learnlake_ok, scratch};

pub(crate) struct SmtpServer {
    child: Child,
    log: PathBuf,
    pub(crate) port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Starts the server; `faults` are its options (`--fail-first 2`, …).
    /// With `port`, listens there (a restarted server keeps its address).
    pub(crate) fn start(dir: &Path, name: &str, port: Option<u16>, faults: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp_server.py");
        let log = dir.join(format!("{name}.log"));
        let port_file = dir.join(format!("{name}.port"));
        let child = Command::new("python3")
            .arg(&script)
            .arg("--log")
            .arg(&log)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--port", &port.unwrap_or(0).to_string()])
            .args(faults)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SMTP server (scripts/test installs aiosmtpd)");
        let port = super::port_from_file(
            &port_file,
            Duration::from_secs(20),
            "the SMTP server did not start; is aiosmtpd installed (pip install aiosmtpd)?",
        );
        Self { child, log, port }
    }

    pub(crate) fn wait_listening(&self) {
        let started = Instant::now();
        while !self.records().iter().any(|r| r["status"] == "listening") {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server not listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(crate) fn accepted(&self) -> Vec<serde_json::Value> {
        accepted_in(&self.log)
    }
}

fn accepted_in(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["status"] == 250)
        .collect()
}

/// A lake with six weeks of 60 students in 3 courses, analyzed; every
/// student's name is a script tag and one course title carries CR/LF and a
/// header, to prove both are harmless. Algebra (c01) runs 2 to 20 February,
/// Biology (c02) 16 February to 27 March, Chemistry (c03) 9 February to
/// 10 April: the week of 16 February has three courses, later weeks two.
fn hostile_lake(dir: &Path) -> PathBuf {
    let landing = dir.join("landing");
    learnlake_ok(
        dir,
        &[
            "generate",
            "--out",
            landing.to_str().unwrap(),
            "--students",
            "60",
            "--courses",
            "3",
            "--weeks",
            "6",
            "--seed",
            "5",
        ],
        &[],
    );
    rewrite_csv(&landing.join("students.csv"), |i, header, row| {
        let name = header.iter().position(|h| h == "name").unwrap();
        row[name] = format!("<script>alert({i})</script>");
        // Every other student wants no notifications at all.
        if i % 2 == 0 {
            for pref in [
                "notify_reminders",
                "notify_achievements",
                "notify_deadlines",
            ] {
                let k = header.iter().position(|h| h == pref).unwrap();
                row[k] = "false".into();
            }
        }
    });
    rewrite_csv(&landing.join("courses.csv"), |i, header, row| {
        if i == 1 {
            let title = header.iter().position(|h| h == "title").unwrap();
            row[title] = "Biology\r\nBcc: evil@example.com".to_string();
        }
    });
    let lake = dir.join("lake");
    ingest_ok(dir, &lake, &landing, &[]);
    learnlake_ok(dir, &["--lake", lake.to_str().unwrap(), "analyze"], &[]);
    lake
}

fn rewrite_csv(path: &Path, edit: impl Fn(usize, &[String], &mut Vec<String>)) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut writer = csv::Writer::from_path(path.with_extension("new")).unwrap();
    writer.write_record(&header).unwrap();
    for (i, record) in reader.records().enumerate() {
        let mut row: Vec<String> = record.unwrap().iter().map(String::from).collect();
        edit(i, &header, &mut row);
        writer.write_record(&row).unwrap();
    }
    writer.flush().unwrap();
    std::fs::rename(path.with_extension("new"), path).unwrap();
}

fn smtp_config(dir: &Path, name: &str, port: u16) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[privacy]\nmin_group_size = 5\n\n[email]\ntransport = \"smtp\"\n\
             from = \"learnlake <reports@example.edu>\"\n\
             admins = [\"head@example.edu\", \"dean@example.edu\"]\n\
             timeout_seconds = 3\nstudent_reports = false\n\n\
             [email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
        ),
    )
    .unwrap();
    path
}

/// message id → times accepted, over the logs of every server given.
fn deliveries(logs: &[&Path]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for log in logs {
        for r in accepted_in(log) {
            *ids.entry(r["message_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    ids
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn reports_reach_a_real_smtp_server_once_through_outages_retries_and_a_crash() {
    let (_tmp, dir) = scratch();
    let lake = hostile_lake(&dir);
    let lake_s = lake.to_str().unwrap();
    let env = [
        ("LEARNLAKE_EMAIL_BACKOFF_MS", "150"),
        ("LEARNLAKE_EMAIL_MAX_ATTEMPTS", "12"),
    ];

    // Down for a second, then two 451s, then accepting.
    let flaky = SmtpServer::start(
        &dir,
        "flaky",
        None,
        &["--start-after", "1.0", "--fail-first", "2"],
    );
    let cfg = smtp_config(&dir, "smtp.toml", flaky.port);
    let cfg_s = cfg.to_str().unwrap();
    let args = [
        "--config",
        cfg_s,
        "--lake",
        lake_s,
        "report",
        "--week",
        "2026-03-02",
    ];
    let out = learnlake_ok(&dir, &args, &env);
    let text = stdout(&out);
    let accepted = flaky.accepted();
    // Two administrators and the instructors of the two courses that run
    // that week.
    assert_eq!(accepted.len(), 4, "{text}\n{:#?}", flaky.records());
    assert!(
        text.contains("4 sent, 0 sent before, 0 failed, 0 failed before, 0 left in the outbox"),
        "{text}"
    );
    assert_eq!(
        flaky
            .records()
            .iter()
            .filter(|r| r["status"] == 451)
            .count(),
        2
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("retrying"),
        "the outage was retried: {stderr}"
    );

    for m in &accepted {
        // multipart/alternative: text/plain, then multipart/related with
        // the HTML and the inline PNG charts it refers to.
        let types: Vec<&str> = m["structure"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types[0], "multipart/alternative", "{types:?}");
        assert_eq!(types[1], "text/plain");
        assert_eq!(types[2], "multipart/related");
        assert_eq!(types[3], "text/html");
        let referenced: Vec<&str> = m["cids_referenced"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(referenced.len(), 3, "three charts: {referenced:?}");
        for cid in &referenced {
            assert_eq!(m["cids_inline_png"][cid], true, "{cid} is an inline PNG");
        }
        assert!(m["message_id"].as_str().unwrap().ends_with("@learnlake>"));
        // Headers cannot be injected through a title, nor scripts through a name.
        assert!(
            !m["header_names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h == "bcc"),
            "{m}"
        );
        assert_eq!(m["rcpt_tos"].as_array().unwrap().len(), 1);
        let html = m["html"].as_str().unwrap();
        assert!(!html.contains("<script>"), "names are escaped");
        assert!(m["text"].as_str().unwrap().contains("At risk: high"));
    }
    let admin: Vec<_> = accepted
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .unwrap()
                .starts_with("Weekly learning report")
        })
        .collect();
    assert_eq!(admin.len(), 2);
    let html = admin[0]["html"].as_str().unwrap();
    assert!(
        html.contains("&lt;script&gt;alert("),
        "the at-risk list shows the escaped names"
    );
    let course_subjects: Vec<&str> = accepted
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .filter(|s| s.contains("weekly report"))
        .collect();
    assert!(
        course_subjects
            .iter()
            .any(|s| s.starts_with("Biology Bcc: evil@example.com: weekly report")),
        "the CR/LF became a space: {course_subjects:?}"
    );

    // A re-run sends nothing.
    let out = learnlake_ok(&dir, &args, &env);
    assert!(
        stdout(&out).contains("0 sent, 4 sent before"),
        "{}",
        stdout(&out)
    );
    assert_eq!(flaky.accepted().len(), 4);

    // kill -9 while the third message the server sees hangs (the others,
    // sent in parallel, are accepted and recorded), then a re-run against a
    // healthy server: every message of that week delivered exactly once.
    let hung = SmtpServer::start(&dir, "hung", None, &["--stall-at", "3"]);
    hung.wait_listening();
    let cfg2 = smtp_config(&dir, "smtp2.toml", hung.port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_learnlake"))
        .current_dir(&dir)
        .args([
            "--config",
            cfg2.to_str().unwrap(),
            "--lake",
            lake_s,
            "report",
            "--week",
            "2026-02-23",
        ])
        .env_remove("LEARNLAKE_CONFIG")
        .env("LEARNLAKE_EMAIL_TIMEOUT_SECONDS", "600")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !hung.records().iter().any(|r| r["status"] == "stalled") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:#?}",
            hung.records()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The crash comes after the ledger caught up with what the server
    // accepted (a message accepted in the instant before a crash and not
    // yet recorded would go again: docs/REPORTS.md, "Delivery").
    let recorded = || {
        std::fs::read_dir(lake.join("_meta/mail/sent"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let started = Instant::now();
    loop {
        let accepted = hung.accepted().len();
        std::thread::sleep(Duration::from_millis(300));
        if recorded() >= accepted && hung.accepted().len() == accepted {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the ledger lags"
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is mid-batch when killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before_crash = hung.accepted().len();
    assert!(
        (2..=3).contains(&before_crash),
        "two, or three with parallel sends, delivered before the crash: {before_crash}"
    );
    let port = hung.port;
    let hung_log = hung.log.clone();
    drop(hung);
    let healthy = SmtpServer::start(&dir, "healthy", Some(port), &[]);
    healthy.wait_listening();
    let out = learnlake_ok(
        &dir,
        &[
            "--config",
            cfg2.to_str().unwrap(),
            "--lake",
            lake_s,
            "report",
            "--week",
            "2026-02-23",
        ],
        &env,
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{} sent, {before_crash} sent before",
            4 - before_crash
        )),
        "the outbox was finished first: {text}"
    );
    let week2 = deliveries(&[&hung_log, &healthy.log]);
    assert_eq!(week2.len(), 4, "{week2:?}");
    assert!(
        week2.values().all(|&n| n == 1),
        "each exactly once: {week2:?}"
    );
    assert!(
        week2
            .keys()
            .all(|id| !deliveries(&[&flaky.log]).contains_key(id)),
        "another week, other message ids"
    );

    // A permanent refusal (550) is recorded, reported, and not retried; the
    // week of 16 February has three courses: five messages.
    let picky = SmtpServer::start(&dir, "picky", None, &["--reject", "dean@example.edu"]);
    picky.wait_listening();
    let cfg3 = smtp_config(&dir, "smtp3.toml", picky.port);
    let args3 = [
        "--config",
        cfg3.to_str().unwrap(),
        "--lake",
        lake_s,
        "report",
        "--week",
        "2026-02-16",
    ];
    let out = learnlake(&dir, &args3, &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dean@example.edu") && err.contains("550"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("4 sent, 0 sent before, 1 failed"),
        "{}",
        stdout(&out)
    );
    let out = learnlake_ok(&dir, &args3, &env);
    assert!(
        stdout(&out).contains("0 sent, 4 sent before, 0 failed, 1 failed before"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        picky
            .records()
            .iter()
            .filter(|r| r["status"] == 550)
            .count(),
        1,
        "not retried"
    );
}

#[test]
fn the_file_transport_dry_run_and_html_preview() {
    let (_tmp, dir) = scratch();
    let lake = hostile_lake(&dir);
    let lake_s = lake.to_str().unwrap();
    let outbox = dir.join("outbox");
    let preview = dir.join("preview");
    let env = [
        ("LEARNLAKE_EMAIL_ADMINS", "head@example.edu"),
        ("LEARNLAKE_EMAIL_OUTBOX", outbox.to_str().unwrap()),
        ("LEARNLAKE_PRIVACY_MIN_GROUP_SIZE", "5"),
        ("LEARNLAKE_EMAIL_STUDENT_REPORTS", "false"),
    ];
    // --dry-run renders and lists, and neither sends nor records.
    let out = learnlake_ok(
        &dir,
        &[
            "--lake",
            lake_s,
            "report",
            "--week",
            "2026-03-02",
            "--dry-run",
            "--html",
            preview.to_str().unwrap(),
        ],
        &env,
    );
    let text = stdout(&out);
    // One administrator and two instructors.
    assert!(
        text.contains("3 message(s) (--dry-run: nothing sent)"),
        "{text}"
    );
    assert!(text.contains("head@example.edu"), "{text}");
    assert!(!outbox.exists(), "nothing written by a dry run");
    assert!(
        !lake.join("_meta/mail").exists(),
        "nothing recorded by a dry run"
    );
    let html = std::fs::read_to_string(preview.join("admin_report-2026-03-02.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "the preview carries its charts"
    );
    assert!(html.contains("&lt;script&gt;"));

    // The plain-text report, with the run's clock taken out.
    let report = std::fs::read_to_string(preview.join("admin_report-2026-03-02.txt")).unwrap();
    let stable: String = report
        .lines()
        .map(|l| match l.find("as of ") {
            Some(i) => format!("{}as of [time];", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("admin_report_text", stable);

    // The file transport: one .eml per message, named by its id; a re-run
    // writes nothing new.
    let out = learnlake_ok(
        &dir,
        &["--lake", lake_s, "report", "--week", "2026-03-02"],
        &env,
    );
    assert!(
        stdout(&out).contains("3 sent, 0 sent before"),
        "{}",
        stdout(&out)
    );
    let files: Vec<_> = std::fs::read_dir(outbox.join("2026-03-02"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| f.extension().unwrap() == "eml"));
    let out = learnlake_ok(
        &dir,
        &["--lake", lake_s, "report", "--week", "2026-03-02"],
        &env,
    );
    assert!(
        stdout(&out).contains("0 sent, 3 sent before"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_dir(outbox.join("2026-03-02"))
            .unwrap()
            .count(),
        3
    );

    // Validation names what to fix.
    let out = learnlake(
        &dir,
        &["--lake", lake_s, "report"],
        &[("LEARNLAKE_EMAIL_FROM", "not an address")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("email.from"));
    let out = learnlake_ok(&dir, &["validate"], &[]);
    assert!(
        stdout(&out).contains("templates compile"),
        "{}",
        stdout(&out)
    );
}

/// The .eml files under `dir`, described as a mail client reads them.
fn parse_outbox(dir: &Path) -> Vec<serde_json::Value> {
    let mut files = Vec::new();
    for week in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(week.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp_server.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--parse")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn students_csv(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(dir.join("landing/students.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn students_guardians_and_advisors_see_their_own_view_and_notifications_follow_preferences() {
    let (_tmp, dir) = scratch();
    let lake = hostile_lake(&dir);
    let lake_s = lake.to_str().unwrap();
    let outbox = dir.join("outbox");
    let env = [("LEARNLAKE_EMAIL_OUTBOX", outbox.to_str().unwrap())];
    let out = learnlake_ok(
        &dir,
        &["--lake", lake_s, "report", "--week", "2026-03-02"],
        &env,
    );
    let text = stdout(&out);
    let students = students_csv(&dir);
    let messages = parse_outbox(&outbox);
    let of_kind = |prefix: &str| -> Vec<&serde_json::Value> {
        messages
            .iter()
            .filter(|m| {
                let path = m["path"].as_str().unwrap();
                let name = Path::new(path).file_name().unwrap().to_str().unwrap();
                name.starts_with(prefix)
            })
            .collect()
    };
    let student_reports = of_kind("student_report-");
    let guardian_reports = of_kind("guardian_report");
    let advisor_reports = of_kind("advisor_report-");
    assert!(
        !student_reports.is_empty() && !guardian_reports.is_empty() && !advisor_reports.is_empty(),
        "{text}"
    );
    let with_guardian = students
        .iter()
        .filter(|s| !s["guardian_email"].is_empty())
        .count();
    assert!(guardian_reports.len() <= with_guardian);
    let advisors: std::collections::BTreeSet<&str> = students
        .iter()
        .map(|s| s["advisor_email"].as_str())
        .filter(|a| !a.is_empty())
        .collect();
    assert!(advisor_reports.len() <= advisors.len());
    for m in &student_reports {
        let html = m["html"].as_str().unwrap();
        assert!(html.contains("Your week in review"), "{html}");
        assert!(
            html.contains("Compared with the class"),
            "a student sees where they stand"
        );
        assert!(!html.contains("success"), "no model output for students");
    }
    for m in &guardian_reports {
        let html = m["html"].as_str().unwrap();
        let text = m["text"].as_str().unwrap();
        for forbidden in [
            "Compared with the class",
            "classmates",
            "percentile",
            "success",
            "risk",
        ] {
            assert!(
                !html.contains(forbidden) && !text.contains(forbidden),
                "guardian sees {forbidden:?}: {html}"
            );
        }
        assert!(
            html.contains("&lt;script&gt;"),
            "the name is escaped in the guardian's view too"
        );
    }
    assert!(
        advisor_reports
            .iter()
            .any(|m| m["html"].as_str().unwrap().contains("level-")),
        "advisors see risk levels"
    );

    // Notifications: by preference, once.
    let out = learnlake_ok(
        &dir,
        &["--lake", lake_s, "notify", "--week", "2026-03-02"],
        &env,
    );
    let text = stdout(&out);
    let before = messages.len();
    let messages = parse_outbox(&outbox);
    let notes: Vec<&serde_json::Value> = messages
        .iter()
        .filter(|m| {
            let name = Path::new(m["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            ["inactivity_reminder", "deadline_reminder", "achievement"]
                .iter()
                .any(|k| name.starts_with(k))
        })
        .collect();
    assert!(
        !notes.is_empty(),
        "some student is due a notification: {text}"
    );
    let opted_out: std::collections::BTreeSet<String> = students
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s["email"].to_lowercase())
        .collect();
    for m in &notes {
        let to = m["to"].as_str().unwrap().to_lowercase();
        assert!(
            !opted_out.iter().any(|o| to.contains(o.as_str())),
            "{to} asked for no notifications"
        );
    }
    let sent_now = messages.len() - before;
    assert!(
        text.contains(&format!("{sent_now} sent, 0 sent before")),
        "{text}"
    );
    let out = learnlake_ok(
        &dir,
        &["--lake", lake_s, "notify", "--week", "2026-03-02"],
        &env,
    );
    assert!(
        stdout(&out).contains(&format!("0 sent, {sent_now} sent before")),
        "{}",
        stdout(&out)
    );
}
