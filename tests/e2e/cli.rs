//! The command line as a person meets it: clean summaries on stdout, no
//! log noise or colour codes on stderr, errors that say what to fix, once,
//! and exit codes that tell a config error, an unreachable lake and a
//! failed run apart.

use std::path::Path;
use std::process::{Command, Output};

use crate::scratch;

/// Runs the binary as a user would: no `LEARNLAKE_LOG`, no config.
fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_learnlake"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("LEARNLAKE_CONFIG")
        .env_remove("LEARNLAKE_LOG")
        .env_remove("RUST_LOG")
        .env_remove("LEARNLAKE_TIMEZONE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the learnlake binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Times and the scratch folder vary from run to run.
fn redact(out: &str, dir: &Path) -> String {
    out.replace(dir.to_str().unwrap(), "[DIR]")
        .lines()
        .map(|line| match line.find(" took ") {
            Some(at) => format!("{} took [SECONDS]", &line[..at]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_quiet(stderr: &str) {
    assert!(!stderr.contains("INFO"), "INFO lines by default:\n{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes off a terminal:\n{stderr}"
    );
}

#[test]
fn demo_ingest_and_analyze_print_clean_summaries() {
    // The scratch folder has no data-samples: the demo carries its own.
    let (_tmp, dir) = scratch();
    let out = run(&dir, &["demo", "--out", "demo"], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_quiet(&stderr);
    insta::assert_snapshot!("demo_stdout", redact(&text(&out.stdout), &dir));

    let lake = dir.join("lake2");
    let args = [
        "--lake",
        lake.to_str().unwrap(),
        "--landing",
        "demo/landing",
        "ingest",
    ];
    let out = run(&dir, &args, &[("LEARNLAKE_HASH_KEY", "k")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_quiet(&stderr);
    insta::assert_snapshot!("ingest_stdout", redact(&text(&out.stdout), &dir));

    let args = ["--lake", "lake2", "analyze", "--week", "2026-03-02"];
    let out = run(&dir, &args, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_quiet(&stderr);
    insta::assert_snapshot!("analyze_stdout", redact(&text(&out.stdout), &dir));

    // -v shows progress: weeks done of the total, with a rate.
    let args = [
        "-v",
        "--lake",
        "lake2",
        "analyze",
        "--from",
        "2026-03-02",
        "--to",
        "2026-03-09",
    ];
    let out = run(&dir, &args, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("task=\"analyze\" unit=\"weeks\" done=2 total=2 per_second="),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    let out = run(
        &dir,
        &[
            "-v",
            "--lake",
            "lake3",
            "--landing",
            "demo/landing",
            "ingest",
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("task=\"ingest\" unit=\"bytes\""),
        "{stderr}"
    );

    // SQL that starts with a `--` comment, after `--` or not.
    let out = run(
        &dir,
        &[
            "--lake",
            "lake2",
            "sql",
            "--format",
            "csv",
            "--",
            "-- a note\nSELECT 1 AS one",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\n1\n");
}

#[test]
fn errors_say_what_to_fix_once_with_distinct_exit_codes() {
    let (_tmp, dir) = scratch();
    let code = |out: &Output| out.status.code().unwrap();

    // A missing config file: the cause appears once; a config error is 2.
    let out = run(&dir, &["--config", "nope.toml", "tables"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 2, "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.starts_with("error: config: cannot read the config file nope.toml"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Every problem at once, each with its key.
    let out = run(
        &dir,
        &["--timezone", "Mars/Base", "tables"],
        &[
            ("LEARNLAKE_RISK_HIGH_BELOW", "low"),
            ("LEARNLAKE_QUERIES", "no-such-dir"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 2, "{stderr}");
    for problem in [
        "risk.high_below (from LEARNLAKE_RISK_HIGH_BELOW): \"low\" is not a number like 0.4",
        "timezone: \"Mars/Base\" is not an IANA time zone",
        "analytics.queries: the folder no-such-dir does not exist",
    ] {
        assert!(stderr.contains(problem), "{stderr}");
    }

    // A bad LEARNLAKE_TIMEZONE that --timezone replaces is no problem; the
    // unknown zone alone is (never a silent UTC).
    let (_tmp2, lake_dir) = scratch();
    let lake = lake_dir.to_str().unwrap();
    let out = run(
        &dir,
        &["--lake", lake, "--timezone", "Europe/Paris", "tables"],
        &[("LEARNLAKE_TIMEZONE", "Europe/Pariss")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        &dir,
        &["--lake", lake, "tables"],
        &[("LEARNLAKE_TIMEZONE", "Europe/Pariss")],
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("timezone: \"Europe/Pariss\""));
    let out = run(
        &dir,
        &["--lake", lake, "tables"],
        &[("LEARNLAKE_ENGINE", "spark")],
    );
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr)
            .contains("engine.url (from LEARNLAKE_ENGINE): \"spark\" is not an engine")
    );

    // DataFusion settings come from DATAFUSION_*; a bad one is a config
    // error, told on one line.
    let query = "SELECT value FROM information_schema.df_settings \
                 WHERE name = 'datafusion.execution.batch_size'";
    let args = ["--lake", lake, "sql", "--format", "csv", query];
    let out = run(&dir, &args, &[("DATAFUSION_EXECUTION_BATCH_SIZE", "77")]);
    assert_eq!(text(&out.stdout), "value\n77\n", "{}", text(&out.stderr));
    let out = run(&dir, &args, &[("DATAFUSION_EXECUTION_BATCH_SIZE", "many")]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 2, "{stderr}");
    assert!(
        stderr.starts_with("error: engine setting datafusion.execution.batch_size = \"many\""),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // A lake that is not there is 3, with what to do.
    let out = run(&dir, &["--lake", "nowhere", "analyze"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 3, "{stderr}");
    assert!(
        stderr.contains("nowhere/ does not exist; run `learnlake ingest` first"),
        "{stderr}"
    );
    let out = run(&dir, &["--landing", "no-landing", "ingest"], &[]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));

    // Weeks that are not weeks are usage errors.
    let out = run(
        &dir,
        &[
            "--lake",
            lake,
            "analyze",
            "--from",
            "2026-03-16",
            "--to",
            "2026-03-02",
        ],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("give the earlier one first"));
    let out = run(
        &dir,
        &["--lake", lake, "analyze", "--week", "2026-03-04"],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("2026-03-04 is a Wednesday"));

    // An empty lake: a failed run, not a silent success.
    std::fs::create_dir_all(dir.join("landing")).unwrap();
    std::fs::write(dir.join("landing/courses.csv"), "course_id,title,start_date,end_date,total_lessons,passing_score,instructor_email\nC1,Algebra,2026-03-02,,4,60,t@example.edu\n").unwrap();
    let out = run(&dir, &["--lake", "empty", "ingest"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&dir, &["--lake", "empty", "analyze"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("nothing to analyze"), "{stderr}");

    // The codes are documented where a user looks.
    let out = run(&dir, &["--help"], &[]);
    let help = text(&out.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("2  usage or config error"), "{help}");
    assert!(
        help.contains("3  the lake or landing area cannot be reached"),
        "{help}"
    );
}
