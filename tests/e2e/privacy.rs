//! Data teams and privacy: `learnlake retention` drops raw partitions older
//! than the configured age, files included, and the lake stays readable;
//! `learnlake sql` streams its results in every format.

use std::path::Path;

use super::{learnlake_ok, scratch, second_reader, small_landing, sql_one};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Parquet files under `folder` whose partition (`column=YYYY-MM-DD`) is before `cutoff`.
fn files_before(folder: &Path, column: &str, cutoff: chrono::NaiveDate) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(day) = name.strip_prefix(&format!("{column}="))
            && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap() < cutoff
        {
            n += std::fs::read_dir(&path)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "parquet")
                })
                .count();
        }
    }
    n
}

#[test]
fn retention_drops_old_raw_partitions_and_their_files_and_nothing_else() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 40, 4, 3, &["--start", "2026-01-05"]);
    let lake = dir.join("lake");
    learnlake_ok(
        &dir,
        &["--lake", s(&lake), "--landing", "landing", "ingest"],
        &[],
    );
    let cutoff = chrono::NaiveDate::from_ymd_opt(2026, 1, 19).unwrap();
    let days = (chrono::Utc::now().date_naive() - cutoff)
        .num_days()
        .to_string();
    let total = sql_one(&dir, &lake, "SELECT COUNT(*) FROM activity");
    let kept = sql_one(
        &dir,
        &lake,
        "SELECT COUNT(*) FROM activity WHERE event_date >= DATE '2026-01-19'",
    );
    let kept_attempts = sql_one(
        &dir,
        &lake,
        "SELECT COUNT(*) FROM attempts WHERE submitted_date >= DATE '2026-01-19'",
    );
    assert!(kept.parse::<u64>().unwrap() < total.parse::<u64>().unwrap());
    assert!(files_before(&lake.join("activity"), "event_date", cutoff) > 0);

    // A dry run lists and keeps everything.
    let out = learnlake_ok(
        &dir,
        &[
            "--lake",
            s(&lake),
            "retention",
            "--days",
            &days,
            "--dry-run",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "activity: would drop (--dry-run) 14 partition(s) dated 2026-01-05 to 2026-01-18"
        ),
        "{text}"
    );
    assert_eq!(sql_one(&dir, &lake, "SELECT COUNT(*) FROM activity"), total);

    // Without a setting or --days, it says what to set.
    let out = super::learnlake(&dir, &["--lake", s(&lake), "retention"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("raw_retention_days"));

    let out = learnlake_ok(
        &dir,
        &["--lake", s(&lake), "retention"],
        &[("LEARNLAKE_PRIVACY_RAW_RETENTION_DAYS", &days)],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("activity: dropped 14 partition(s)"), "{text}");
    assert_eq!(sql_one(&dir, &lake, "SELECT COUNT(*) FROM activity"), kept);
    assert_eq!(
        sql_one(&dir, &lake, "SELECT COUNT(*) FROM attempts"),
        kept_attempts
    );
    assert_eq!(
        sql_one(&dir, &lake, "SELECT MIN(event_date) FROM activity"),
        "2026-01-19"
    );
    // The files are gone from the disk, not only from the current version.
    assert_eq!(
        files_before(&lake.join("activity"), "event_date", cutoff),
        0
    );
    assert_eq!(
        files_before(&lake.join("attempts"), "submitted_date", cutoff),
        0
    );
    // Other readers see the same.
    let seen = second_reader(&lake);
    assert_eq!(seen["pyarrow"]["activity"]["rows"].to_string(), kept);
    assert_eq!(
        seen["duckdb"]["attempts"]["rows"].to_string(),
        kept_attempts
    );
    // Reference snapshots are not raw partitions.
    assert_eq!(sql_one(&dir, &lake, "SELECT COUNT(*) FROM students"), "40");
    // Again: nothing left to drop.
    let out = learnlake_ok(
        &dir,
        &["--lake", s(&lake), "retention", "--days", &days],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to drop"));
}

#[test]
fn sql_streams_csv_ndjson_and_parquet_that_other_readers_read_back() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 30, 3, 5, &[]);
    let lake = dir.join("lake");
    learnlake_ok(
        &dir,
        &["--lake", s(&lake), "--landing", "landing", "ingest"],
        &[],
    );
    let total: usize = sql_one(&dir, &lake, "SELECT COUNT(*) FROM activity")
        .parse()
        .unwrap();
    let query = "SELECT event_id, student_id, timestamp, [1, 2] AS pair FROM activity";
    let run = |format: &str, output: Option<&str>| {
        let mut args = vec!["--lake", s(&lake), "sql", query, "--format", format];
        if let Some(path) = output {
            args.extend(["--output", path]);
        }
        learnlake_ok(&dir, &args, &[])
    };
    // NDJSON: one object per row, lists as arrays.
    let out = run("ndjson", None);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), total);
    assert_eq!(lines[0]["pair"], serde_json::json!([1, 2]));
    // CSV: a header, one line per row, lists as "a; b".
    let out = run("csv", None);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), total);
    assert_eq!(&rows[0][3], "1; 2");
    // Parquet: written beside the target, renamed when complete, read by pyarrow.
    let path = dir.join("out.parquet");
    run("parquet", Some(s(&path)));
    assert!(!dir.join("out.parquet.partial").exists());
    let read = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.num_rows, t.schema.field('timestamp').type)",
            s(&path),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        format!("{total} timestamp[us, tz=UTC]"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
}

#[test]
fn sql_pseudonymise_shows_keyed_hashes_only_and_joins_still_work() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 20, 2, 8, &[]);
    let lake = dir.join("lake");
    learnlake_ok(
        &dir,
        &["--lake", s(&lake), "--landing", "landing", "ingest"],
        &[],
    );
    let query = "SELECT s.student_id, s.email, s.name, COUNT(*) AS events \
                 FROM activity a JOIN students s ON a.student_id = s.student_id \
                 GROUP BY 1, 2, 3 ORDER BY 4, 1";
    let run = |key: Option<&str>, pseudonymise: bool| {
        let mut args = vec!["--lake", s(&lake), "sql", query, "--format", "csv"];
        if pseudonymise {
            args.push("--pseudonymise");
        }
        let env: Vec<(&str, &str)> = key.map(|k| ("LEARNLAKE_HASH_KEY", k)).into_iter().collect();
        super::learnlake(&dir, &args, &env)
    };
    let rows = |out: &std::process::Output| -> Vec<Vec<String>> {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        csv::Reader::from_reader(out.stdout.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    };
    let plain = rows(&run(Some("k1"), false));
    let hidden = rows(&run(Some("k1"), true));
    assert!(plain.len() > 10, "{plain:?}");
    // The join still matches every student: same counts.
    let counts = |r: &[Vec<String>]| {
        let mut c: Vec<String> = r.iter().map(|r| r[3].clone()).collect();
        c.sort();
        c
    };
    assert_eq!(counts(&plain), counts(&hidden));
    let text = String::from_utf8_lossy(&run(Some("k1"), true).stdout).to_string();
    for row in &plain {
        for personal in &row[..3] {
            assert!(
                !text.contains(personal.as_str()),
                "{personal} leaked:\n{text}"
            );
        }
    }
    for row in &hidden {
        for pseudonym in &row[..3] {
            assert_eq!(pseudonym.len(), 64, "{row:?}");
            assert!(pseudonym.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }
    // Stable under one key, different under another.
    assert_eq!(rows(&run(Some("k1"), true)), hidden);
    let other = rows(&run(Some("k2"), true));
    assert_ne!(other[0][0], hidden[0][0]);
    // Without a key it says what to set.
    let out = run(None, true);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LEARNLAKE_HASH_KEY"));
}
