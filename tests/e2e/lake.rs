//! The lake as Delta tables: files per partition, compaction, vacuum, time
//! travel, an ingest and a compaction at once, and kill -9 during a
//! compaction and a partition replace.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use learnlake_pipeline::lake::{Store, delta};

use super::{ingest, ingest_ok, learnlake_ok, scratch, second_reader, sql_one};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn generate(
    dir: &Path,
    name: &str,
    students: &str,
    seed: &str,
    profile: &str,
) -> std::path::PathBuf {
    let landing = dir.join(name);
    learnlake_ok(
        dir,
        &[
            "generate",
            "--out",
            s(&landing),
            "--students",
            students,
            "--courses",
            "4",
            "--weeks",
            "8",
            "--seed",
            seed,
            "--profile",
            profile,
        ],
        &[],
    );
    landing
}

/// Current files of a table, counted per partition value.
fn files_per_partition(lake: &Path, table: &str) -> BTreeMap<Option<chrono::NaiveDate>, usize> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(s(lake), false).unwrap();
        let t = delta::open(&store, table)
            .await
            .unwrap()
            .expect("a Delta table");
        let mut out = BTreeMap::new();
        for (_, day) in delta::files(&t, table).unwrap() {
            *out.entry(day).or_default() += 1;
        }
        out
    })
}

/// Parquet data files on disk below a table folder (any version).
fn files_on_disk(lake: &Path, table: &str) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("_delta_log") {
                    walk(&p, n);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&lake.join(table), &mut n);
    n
}

/// One ingest run writes one sorted file per partition; several runs (or a
/// run over its memory budget) write more, and `compact` merges them in one
/// commit each; `vacuum` then leaves exactly the current files, which a
/// plain Parquet reader reads as the same rows.
#[test]
fn one_file_per_partition_per_run_compaction_and_vacuum() {
    let (_tmp, dir) = scratch();
    let landing = generate(&dir, "landing", "120", "3", "daily-clicks");
    let lake = dir.join("lake");
    ingest_ok(&dir, &lake, &landing, &[]);
    let per_partition = files_per_partition(&lake, "activity");
    assert!(per_partition.len() > 30, "{per_partition:?}");
    assert!(
        per_partition.values().all(|&n| n == 1),
        "one run, one file per partition: {per_partition:?}"
    );
    // Sorted by (course_id, student_id, timestamp) inside each file.
    let unsorted = sql_one(
        &dir,
        &lake,
        "SELECT COUNT(*) FROM (SELECT course_id, student_id, timestamp, \
           LAG(course_id) OVER (PARTITION BY event_date ORDER BY course_id, student_id, timestamp) AS pc \
         FROM activity) WHERE pc > course_id",
    );
    assert_eq!(unsorted, "0");
    let clean = second_reader(&lake);

    // The same events arriving in three deliveries, each ingested as it
    // comes (with a 1 MiB memory budget, so the runs spill): three files
    // per partition.
    let small = dir.join("small");
    let feed = dir.join("feed");
    std::fs::create_dir_all(feed.join("activity")).unwrap();
    for f in [
        "students.csv",
        "courses.csv",
        "enrollments.csv",
        "assessments.jsonl",
    ] {
        std::fs::copy(landing.join(f), feed.join(f)).unwrap();
    }
    std::fs::create_dir_all(feed.join("attempts")).unwrap();
    for e in std::fs::read_dir(landing.join("attempts")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, feed.join("attempts").join(p.file_name().unwrap())).unwrap();
    }
    let mut lines: Vec<String> = Vec::new();
    for e in std::fs::read_dir(landing.join("activity")).unwrap() {
        let p = e.unwrap().path();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap()),
            &mut text,
        )
        .unwrap_or_else(|_| {
            text = std::fs::read_to_string(&p).unwrap();
            0
        });
        lines.extend(text.lines().map(str::to_string));
    }
    for (i, part) in [0, 1, 2]
        .into_iter()
        .map(|i| (i, lines.iter().skip(i).step_by(3)))
    {
        let text: Vec<&str> = part.map(String::as_str).collect();
        std::fs::write(
            feed.join(format!("activity/part-{i}.jsonl")),
            text.join("\n"),
        )
        .unwrap();
        ingest_ok(&dir, &small, &feed, &[("LEARNLAKE_INGEST_BATCH_MB", "1")]);
    }
    let before = files_per_partition(&small, "activity");
    assert!(before.values().all(|&n| n == 3), "{before:?}");
    let out = learnlake_ok(&dir, &["--lake", s(&small), "compact"], &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("activity: "), "{said}");
    let after = files_per_partition(&small, "activity");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert!(after.values().all(|&n| n == 1), "{after:?}");
    let seen = second_reader(&small);
    assert_eq!(
        seen["duckdb"]["activity"]["ids_sha"],
        clean["duckdb"]["activity"]["ids_sha"]
    );
    assert_eq!(
        seen["polars"]["activity"]["rows"],
        clean["duckdb"]["activity"]["rows"]
    );

    // The compacted-away files stay for time travel until vacuumed.
    let current: usize = after.values().sum();
    assert!(files_on_disk(&small, "activity") > current);
    learnlake_ok(
        &dir,
        &["--lake", s(&small), "vacuum", "--retention-days", "7"],
        &[],
    );
    assert!(
        files_on_disk(&small, "activity") > current,
        "kept for 7 days"
    );
    learnlake_ok(
        &dir,
        &[
            "--lake",
            s(&small),
            "vacuum",
            "--table",
            "activity",
            "--retention-days",
            "0",
        ],
        &[],
    );
    assert_eq!(files_on_disk(&small, "activity"), current);
    let plain = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import duckdb; print(duckdb.sql(\"SELECT COUNT(*), COUNT(DISTINCT event_id) FROM \
             read_parquet('{}/activity/*/*.parquet', hive_partitioning = true)\").fetchall()[0])",
            s(&small)
        ))
        .output()
        .unwrap();
    let rows = clean["duckdb"]["activity"]["rows"].as_u64().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout).trim(),
        format!("({rows}, {rows})"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // A table that does not exist is named.
    let out = super::learnlake(
        &dir,
        &["--lake", s(&small), "compact", "--table", "nope"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown table \"nope\""));
}

/// A re-analysis replaces a week by one commit; the version before it still
/// returns the old rows.
#[test]
fn time_travel_returns_the_rows_before_a_reanalysis() {
    let (_tmp, dir) = scratch();
    let landing = generate(&dir, "landing", "80", "4", "rich");
    let lake = dir.join("lake");
    let week = "2026-03-02";
    // First only the data up to the week's Wednesday, then all of it.
    let early = dir.join("early");
    std::fs::create_dir_all(early.join("activity")).unwrap();
    for f in [
        "students.csv",
        "courses.csv",
        "enrollments.csv",
        "assessments.jsonl",
    ] {
        std::fs::copy(landing.join(f), early.join(f)).unwrap();
    }
    let mut kept = String::new();
    for e in std::fs::read_dir(landing.join("activity")).unwrap() {
        for line in std::fs::read_to_string(e.unwrap().path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ts =
                chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
            if ts < chrono::DateTime::parse_from_rfc3339("2026-03-04T00:00:00Z").unwrap() {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    std::fs::write(early.join("activity/early.jsonl"), kept).unwrap();
    ingest_ok(&dir, &lake, &early, &[]);
    learnlake_ok(&dir, &["--lake", s(&lake), "analyze", "--week", week], &[]);
    let query = format!(
        "SELECT SUM(interactions), COUNT(*) FROM student_week WHERE period_start = DATE '{week}'"
    );
    let old = sql_one(&dir, &lake, &query);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Store::open(s(&lake), false).unwrap();
    let version = runtime.block_on(async {
        delta::open(&store, "student_week")
            .await
            .unwrap()
            .unwrap()
            .version()
            .unwrap()
    });

    ingest_ok(&dir, &lake, &landing, &[]);
    learnlake_ok(&dir, &["--lake", s(&lake), "analyze", "--week", week], &[]);
    let new = sql_one(&dir, &lake, &query);
    assert_ne!(old, new, "the re-analysis saw the rest of the week");

    let then = runtime.block_on(async {
        let t = delta::open_version(&store, "student_week", version)
            .await
            .unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table("student_week", delta::provider(&t, &ctx).await.unwrap())
            .unwrap();
        let batches = ctx.sql(&query).await.unwrap().collect().await.unwrap();
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
            + ","
            + &datafusion::arrow::util::display::array_value_to_string(batches[0].column(1), 0)
                .unwrap()
    });
    assert_eq!(
        then, old,
        "version {version} still has the rows before the re-analysis"
    );
    // The deltalake package reads the same version.
    let py = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "from deltalake import DeltaTable; import pyarrow.compute as pc, datetime as dt\n\
             t = DeltaTable('{}/student_week', version={version}).to_pyarrow_table()\n\
             t = t.filter(pc.equal(t['period_start'], dt.date(2026, 3, 2)))\n\
             print(f\"{{pc.sum(t['interactions']).as_py()}},{{t.num_rows}}\")",
            s(&lake)
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        old,
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
}

/// An ingest and a compaction of the same table at the same time: both
/// succeed, and every event is there once.
#[test]
fn an_ingest_and_a_compaction_at_once() {
    let (_tmp, dir) = scratch();
    let first = generate(&dir, "first", "100", "5", "daily-clicks");
    let second = generate(&dir, "second", "100", "6", "daily-clicks");
    let lake = dir.join("lake");
    // Many small files to compact, then a second landing's ingest alongside.
    ingest_ok(&dir, &lake, &first, &[("LEARNLAKE_INGEST_BATCH_MB", "1")]);
    let clean = dir.join("clean");
    ingest_ok(&dir, &clean, &first, &[]);
    // The second landing's ids overlap the first's (same generator ids).
    for e in std::fs::read_dir(second.join("activity")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"ev-", "\"ev2-");
        std::fs::write(&p, text).unwrap();
    }
    ingest_ok(&dir, &clean, &second, &[]);
    let expected = second_reader(&clean);

    let compacting = Command::new(env!("CARGO_BIN_EXE_learnlake"))
        .current_dir(&dir)
        .args(["--lake", s(&lake), "compact"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ingested = ingest(&dir, &lake, &second, &[("LEARNLAKE_INGEST_BATCH_MB", "1")]);
    let compacted = compacting.wait_with_output().unwrap();
    assert!(
        ingested.status.success(),
        "{}",
        String::from_utf8_lossy(&ingested.stderr)
    );
    if !compacted.status.success() {
        // A compaction that lost to a conflicting commit is simply run again.
        learnlake_ok(&dir, &["--lake", s(&lake), "compact"], &[]);
    }
    let seen = second_reader(&lake);
    for kind in ["activity", "attempts"] {
        assert_eq!(
            seen["duckdb"][kind]["rows"], expected["duckdb"][kind]["rows"],
            "{kind}"
        );
        assert_eq!(
            seen["duckdb"][kind]["ids_sha"], expected["duckdb"][kind]["ids_sha"],
            "{kind}"
        );
        assert_eq!(
            seen["duckdb"][kind]["rows"], seen["duckdb"][kind]["distinct_ids"],
            "{kind}"
        );
    }
}

/// kill -9 at several moments of a compaction and of an analysis (a
/// partition replace): the next run completes, and the tables hold exactly
/// the rows of runs that were never interrupted.
#[test]
fn killed_compactions_and_partition_replaces_leave_whole_versions() {
    let (_tmp, dir) = scratch();
    let landing = generate(&dir, "landing", "150", "7", "rich");
    let clean = dir.join("clean");
    ingest_ok(&dir, &clean, &landing, &[]);
    learnlake_ok(&dir, &["--lake", s(&clean), "analyze"], &[]);
    let expected = second_reader(&clean);
    let weeks =
        "SELECT period_start, COUNT(*), SUM(interactions) FROM student_week GROUP BY 1 ORDER BY 1";
    let expected_weeks = learnlake_ok(
        &dir,
        &["--lake", s(&clean), "sql", weeks, "--format", "csv"],
        &[],
    )
    .stdout;

    for (i, delay_ms) in [5u64, 40, 120, 300].into_iter().enumerate() {
        let lake = dir.join(format!("lake-{i}"));
        ingest_ok(&dir, &lake, &landing, &[("LEARNLAKE_INGEST_BATCH_MB", "1")]);
        for args in [vec!["compact"], vec!["analyze"]] {
            let mut child = Command::new(env!("CARGO_BIN_EXE_learnlake"))
                .current_dir(&dir)
                .args(["--lake", s(&lake)])
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            let _ = child.kill();
            child.wait().unwrap();
            // Whatever the moment, the lake reads as a whole version.
            let seen = second_reader(&lake);
            assert_eq!(
                seen["duckdb"]["activity"]["ids_sha"], expected["duckdb"]["activity"]["ids_sha"],
                "{args:?} killed after {delay_ms} ms"
            );
        }
        learnlake_ok(&dir, &["--lake", s(&lake), "compact"], &[]);
        learnlake_ok(&dir, &["--lake", s(&lake), "analyze"], &[]);
        let seen = second_reader(&lake);
        assert_eq!(seen["duckdb"]["activity"], expected["duckdb"]["activity"]);
        let got = learnlake_ok(
            &dir,
            &["--lake", s(&lake), "sql", weeks, "--format", "csv"],
            &[],
        )
        .stdout;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected_weeks),
            "after kills at {delay_ms} ms"
        );
    }
}
