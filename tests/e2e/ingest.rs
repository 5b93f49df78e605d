//! Ingest end to end: hostile input, idempotency, crash safety, second readers.

use std::io::Write;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    fingerprint, ingest, ingest_ok, learnlake, learnlake_ok, scratch, second_reader,
    second_reader_of,
};

const KEY: (&str, &str) = ("LEARNLAKE_HASH_KEY", "test-key");

/// Generated landing data plus a set of hostile files. Returns the number of
/// generated activity lines and the number of valid hostile activity rows.
fn hostile_landing(dir: &Path) -> (u64, u64) {
    let landing = dir.join("landing");
    learnlake_ok(
        dir,
        &[
            "generate",
            "--out",
            landing.to_str().unwrap(),
            "--students",
            "30",
            "--courses",
            "3",
            "--weeks",
            "6",
            "--seed",
            "11",
        ],
        &[],
    );
    let mut generated = 0u64;
    let mut first_id = None;
    for entry in std::fs::read_dir(landing.join("activity")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            generated += 1;
            if first_id.is_none() {
                let v: Value = serde_json::from_str(line).unwrap();
                first_id = Some(v["event_id"].as_str().unwrap().to_string());
            }
        }
    }
    let first_id = first_id.expect("the generator wrote events");

    let hostile = [
        // valid: non-ASCII ids, path-like ids, an unknown activity type
        r#"{"event_id":"h-ok-1","student_id":"élève-ü","timestamp":"2026-02-03T10:00:00+09:00","activity_type":"login","course_id":"c-ünï"}"#,
        r#"{"event_id":"../../etc/passwd","student_id":"s/../x","timestamp":"2026-02-03T10:00:00Z","activity_type":"content_view"}"#,
        r#"{"event_id":"h-new-type","student_id":"s1","timestamp":"2026-02-04T10:00:00Z","activity_type":"teleport","ip_address":"192.0.2.7"}"#,
        // duplicate within the file
        r#"{"event_id":"h-ok-1","student_id":"dup","timestamp":"2026-02-03T11:00:00Z","activity_type":"login"}"#,
        // bad rows
        r#"{"event_id":"h-bad-1", "student_id": "s1", "timestamp": "2026-02-03T10:00:00Z""#,
        r#"{"event_id":"h-bad-2","timestamp":"2026-02-03T10:00:00Z","activity_type":"login"}"#,
        r#"{"event_id":"h-bad-3","student_id":"s1","timestamp":"2026-02-03T10:00:00Z","activity_type":"login","duration_seconds":"ten"}"#,
        r#"{"event_id":"h-bad-4","student_id":"s1","timestamp":"2026-02-03T10:00:00Z","activity_type":"quiz_submit","score":101}"#,
        r#"{"event_id":"h-bad-5","student_id":"s1","timestamp":"2026-02-30T10:00:00Z","activity_type":"login"}"#,
        r#"{"event_id":"h-bad-6","student_id":"s1","timestamp":"2026-02-03T25:00:00Z","activity_type":"login"}"#,
        r#"{"event_id":"h-bad-7","student_id":"s1","timestamp":"yesterday","activity_type":"login"}"#,
        "not json at all",
        "",
    ];
    std::fs::write(
        landing.join("activity/zz-hostile.jsonl"),
        hostile.join("\n"),
    )
    .unwrap();
    // duplicates across files: of a hostile row and of a generated event
    std::fs::write(
        landing.join("activity/zz-hostile-2.jsonl"),
        format!(
            "{}\n{}\n",
            r#"{"event_id":"h-ok-1","student_id":"again","timestamp":"2026-02-05T11:00:00Z","activity_type":"login"}"#,
            format_args!(r#"{{"event_id":"{first_id}","student_id":"again","timestamp":"2026-02-05T11:00:00Z","activity_type":"login"}}"#),
        ),
    )
    .unwrap();
    // flat CSV activity: two good rows, one bad
    std::fs::write(
        landing.join("activity/flat.csv"),
        "event_id,student_id,timestamp,activity_type,duration_seconds,success\n\
         csv-1,s1,2026-02-03T10:00:00Z,video_play,30,true\n\
         csv-2,s1,2026-02-03T10:05:00Z,video_complete,,no\n\
         csv-3,s1,2026-02-03T10:06:00Z,video_play,-5,true\n",
    )
    .unwrap();
    // a corrupt gzip: a real gzip header, then garbage
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"event_id\":\"gz-1\",\"student_id\":\"s1\",\"timestamp\":\"2026-02-03T10:00:00Z\",\"activity_type\":\"login\"}\n").unwrap();
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() / 2);
    bytes.extend_from_slice(b"\xde\xad\xbe\xef garbage");
    std::fs::write(landing.join("activity/broken.jsonl.gz"), bytes).unwrap();
    // a gzip whose first 64 KiB are fine and whose end is corrupt: found
    // only while it is read, after its first rows were parsed and held
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..3000 {
        writeln!(
            gz,
            r#"{{"event_id":"late-{i}","student_id":"s{}","timestamp":"2026-02-0{}T10:{:02}:00Z","activity_type":"login"}}"#,
            i % 97,
            1 + i % 7,
            i % 60
        )
        .unwrap();
    }
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() * 9 / 10);
    bytes.extend_from_slice(b"\xde\xad\xbe\xef garbage");
    std::fs::write(landing.join("activity/late-broken.jsonl.gz"), bytes).unwrap();
    // a binary file among the attempts
    std::fs::write(
        landing.join("attempts/blob.jsonl"),
        b"\x00\x01\x02\x03binary\x00",
    )
    .unwrap();
    // hostile attempts
    std::fs::write(
        landing.join("attempts/zz-hostile.jsonl"),
        [
            r#"{"attempt_id":"ha-1","student_id":"s1","course_id":"c1","quiz_id":"q1","completed_at":"2026-02-03T10:00:00Z","score":80}"#,
            r#"{"attempt_id":"ha-1","student_id":"s1","course_id":"c1","quiz_id":"q1","completed_at":"2026-02-03T10:00:00Z","score":80}"#,
            r#"{"attempt_id":"ha-2","student_id":"s1","course_id":"c1","assessment_id":"q1","submitted_at":"2026-02-03T10:00:00Z"}"#,
            r#"{"attempt_id":"ha-3","student_id":"s1","course_id":"c1","assessment_id":"q1","submitted_at":"2026-02-03T10:00:00Z","score":150}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    // a reference file with one bad row
    std::fs::write(
        landing.join("students-extra.csv"),
        "student_id,name,timezone\nextra-1,Zoë,Asia/Tokyo\nextra-2,Bad,Mars/Olympus\n",
    )
    .unwrap();
    (generated, 5)
}

fn reasons(reader: &Value, kind: &str) -> Vec<String> {
    reader["quarantine"][kind]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["reason"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn hostile_input_keeps_every_valid_row_once_and_quarantines_the_rest() {
    let (_tmp, dir) = scratch();
    let (generated, valid_hostile) = hostile_landing(&dir);
    let lake = dir.join("lake");
    let landing = dir.join("landing");
    let out = ingest_ok(&dir, &lake, &landing, &[KEY]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("quarantined"),
        "a warning names the quarantine:\n{stderr}"
    );

    let seen = second_reader(&lake);
    let activity = &seen["duckdb"]["activity"];
    // every generated event once (one duplicate of them was offered again), plus the valid hostile rows
    assert_eq!(activity["rows"], generated + valid_hostile, "{activity}");
    assert_eq!(activity["distinct_ids"], activity["rows"]);
    assert_eq!(activity["partition_mismatch"], 0);
    assert_eq!(seen["pyarrow"]["activity"]["rows"], activity["rows"]);

    let activity_reasons = reasons(&seen, "activity");
    for expected in [
        "malformed JSON",
        "missing required field \"student_id\"",
        "field \"duration_seconds\": invalid type: string \"ten\", expected f64",
        "score 101 is outside 0–100",
        "timestamp \"2026-02-30T10:00:00Z\" is not an RFC 3339 timestamp",
        "timestamp \"2026-02-03T25:00:00Z\" is not an RFC 3339 timestamp",
        "timestamp \"yesterday\" is not an RFC 3339 timestamp",
        "duration_seconds -5 is negative",
        "corrupt gzip file",
    ] {
        assert!(
            activity_reasons.iter().any(|r| r.contains(expected)),
            "no quarantined row says {expected:?}; reasons: {activity_reasons:#?}"
        );
    }
    // 8 bad JSON lines, 1 bad CSV row, 2 corrupt files (one corrupt at its
    // head, one at its end: none of its rows is in the lake)
    assert_eq!(activity_reasons.len(), 11, "{activity_reasons:#?}");
    let late = seen["quarantine"]["activity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source_file"] == "activity/late-broken.jsonl.gz")
        .expect("the file corrupt at its end is quarantined whole");
    assert!(
        late["reason"]
            .as_str()
            .unwrap()
            .starts_with("corrupt gzip file"),
        "{late}"
    );
    assert!(late["raw"].as_str().unwrap().contains("late-0"), "{late}");
    let rows = seen["quarantine"]["activity"].as_array().unwrap();
    let bad3 = rows
        .iter()
        .find(|r| r["raw"].as_str().unwrap().contains("h-bad-3"))
        .unwrap();
    assert_eq!(bad3["source_file"], "activity/zz-hostile.jsonl");
    assert_eq!(bad3["line_number"], 7);

    let attempt_reasons = reasons(&seen, "attempts");
    assert!(
        attempt_reasons
            .iter()
            .any(|r| r.contains("missing required field \"score\"")),
        "{attempt_reasons:?}"
    );
    assert!(
        attempt_reasons
            .iter()
            .any(|r| r.contains("score 150 is outside 0–100")),
        "{attempt_reasons:?}"
    );
    assert!(
        attempt_reasons
            .iter()
            .any(|r| r.contains("not a text file")),
        "{attempt_reasons:?}"
    );
    let student_reasons = reasons(&seen, "students");
    assert!(
        student_reasons.iter().any(|r| r.contains("Mars/Olympus")),
        "{student_reasons:?}"
    );

    // types as the lake contract says, for both readers
    let types = &activity["types"];
    assert_eq!(types["timestamp"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(types["event_date"], "DATE");
    assert_eq!(types["interaction_count"], "BIGINT");
    assert_eq!(types["duration_seconds"], "DOUBLE");
    let pa_types = &seen["pyarrow"]["activity"]["types"];
    assert_eq!(pa_types["timestamp"], "timestamp[us, tz=UTC]");
    assert_eq!(pa_types["event_date"], "date32[day]");
    let attempts = &seen["duckdb"]["attempts"]["types"];
    assert_eq!(attempts["submitted_date"], "DATE");
    assert!(
        attempts["answers"].as_str().unwrap().starts_with("STRUCT("),
        "{attempts}"
    );
    assert_eq!(seen["duckdb"]["courses"]["types"]["start_date"], "DATE");

    // the raw IP address is nowhere in the lake
    let out = learnlake_ok(
        &dir,
        &[
            "--lake",
            lake.to_str().unwrap(),
            "sql",
            "SELECT ip_address FROM activity WHERE event_id = 'h-new-type'",
            "--format",
            "csv",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("192.0.2.7"), "{text}");
    assert_eq!(text.lines().nth(1).unwrap().len(), 64, "{text}");
    // the newest student row landed in the snapshot
    let out = learnlake_ok(
        &dir,
        &[
            "--lake",
            lake.to_str().unwrap(),
            "sql",
            "SELECT name FROM students WHERE student_id = 'extra-1'",
            "--format",
            "ndjson",
        ],
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"name":"Zoë"}"#
    );
}

#[test]
fn ingesting_twice_changes_nothing() {
    let (_tmp, dir) = scratch();
    hostile_landing(&dir);
    let lake = dir.join("lake");
    let landing = dir.join("landing");
    ingest_ok(&dir, &lake, &landing, &[KEY]);
    let first = fingerprint(&lake, &[]);
    let out = ingest_ok(&dir, &lake, &landing, &[KEY]);
    assert_eq!(
        fingerprint(&lake, &[]),
        first,
        "the second run changed the lake"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let total = stdout.lines().find(|l| l.starts_with("total")).unwrap();
    let fields: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(fields[1], "0", "no file is read again: {total}");
    assert_eq!(fields[3], "0", "no row is accepted again: {total}");
}

/// The `total` line of an ingest summary, split into its fields.
fn total_fields(out: &std::process::Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let total = stdout.lines().find(|l| l.starts_with("total")).unwrap();
    total.split_whitespace().map(str::to_string).collect()
}

/// A landing file rewritten with the same bytes (a new modification time)
/// is recognised by its content hash and not read again; so is one whose
/// ledger entry was written before the content hash was BLAKE3 (SHA-256,
/// under the field name `sha256`).
#[test]
fn a_file_rewritten_with_the_same_bytes_is_not_read_again_also_by_an_old_ledger() {
    let (_tmp, dir) = scratch();
    let landing = dir.join("landing");
    let lake = dir.join("lake");
    std::fs::create_dir_all(landing.join("activity")).unwrap();
    let file = landing.join("activity/a.jsonl");
    let text = [
        event("e1", "2026-03-02T10:00:00Z"),
        event("e2", "2026-03-03T11:00:00Z"),
    ]
    .join("\n");
    std::fs::write(&file, &text).unwrap();
    let first = total_fields(&ingest_ok(&dir, &lake, &landing, &[KEY]));
    assert_eq!(
        (first[1].as_str(), first[3].as_str()),
        ("1", "2"),
        "{first:?}"
    );
    let lake_before = fingerprint(&lake, &["_meta"]);
    let touch = || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, &text).unwrap();
    };

    touch();
    let again = total_fields(&ingest_ok(&dir, &lake, &landing, &[KEY]));
    assert_eq!(
        (again[1].as_str(), again[2].as_str()),
        ("0", "1"),
        "skipped by content: {again:?}"
    );

    // The ledger as an earlier version wrote it.
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let mut rewritten = 0;
    for entry in std::fs::read_dir(lake.join("_meta/ingest_ledger")).unwrap() {
        let path = entry.unwrap().path();
        let json = std::fs::read_to_string(&path).unwrap();
        assert!(json.contains("\"content_hash\": \"blake3:"), "{json}");
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for source in value["sources"].as_array_mut().unwrap() {
            let source = source.as_object_mut().unwrap();
            source.remove("content_hash");
            source.insert("sha256".into(), sha256.clone().into());
            rewritten += 1;
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    }
    assert!(rewritten > 0);
    touch();
    let old = total_fields(&ingest_ok(&dir, &lake, &landing, &[KEY]));
    assert_eq!(
        (old[1].as_str(), old[2].as_str()),
        ("0", "1"),
        "skipped by its SHA-256: {old:?}"
    );
    assert_eq!(
        fingerprint(&lake, &["_meta"]),
        lake_before,
        "the tables did not change"
    );

    // Changed bytes are read.
    std::fs::write(
        &file,
        format!("{text}\n{}", event("e3", "2026-03-04T09:00:00Z")),
    )
    .unwrap();
    let changed = total_fields(&ingest_ok(&dir, &lake, &landing, &[KEY]));
    assert_eq!(
        (
            changed[1].as_str(),
            changed[3].as_str(),
            changed[4].as_str()
        ),
        ("1", "1", "2"),
        "{changed:?}"
    );
}

/// Kill the ingest after n lake writes (and once with a real SIGKILL at a
/// random moment), run it again, and compare with one clean run.
#[test]
fn an_ingest_killed_anywhere_completes_to_the_same_lake() {
    let (_tmp, dir) = scratch();
    hostile_landing(&dir);
    let landing = dir.join("landing");
    // Small batches, so one run commits many.
    std::fs::write(dir.join("learnlake.toml"), "[ingest]\nbatch_mb = 1\n").unwrap();
    let run = |lake: &Path, env: &[(&str, &str)]| ingest(&dir, lake, &landing, env);
    let clean = dir.join("clean");
    assert!(run(&clean, &[KEY]).status.success());
    let expected_files = fingerprint(&clean, &["_meta", "_quarantine"]);
    let expected = second_reader(&clean);
    // Holding 1 MiB, the run spilled most rows to disk before its commits;
    // holding everything in memory gives the same tables.
    let in_memory = dir.join("in-memory");
    assert!(
        run(&in_memory, &[KEY, ("LEARNLAKE_INGEST_BATCH_MB", "1024")])
            .status
            .success()
    );
    let held = second_reader(&in_memory);
    assert_eq!(held["duckdb"], expected["duckdb"], "spilled vs held rows");
    assert_eq!(held["quarantine"], expected["quarantine"]);

    for n in [1, 2, 3, 5, 8, 13, 21] {
        let lake = dir.join(format!("crash-{n}"));
        let crashed = run(
            &lake,
            &[KEY, ("LEARNLAKE_TEST_CRASH_AFTER_WRITES", &n.to_string())],
        );
        assert!(
            !crashed.status.success(),
            "the run with a crash after {n} writes did not crash"
        );
        let resumed = run(&lake, &[KEY]);
        assert!(
            resumed.status.success(),
            "{}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            fingerprint(&lake, &["_meta", "_quarantine"]),
            expected_files,
            "crash after {n} writes"
        );
        let seen = second_reader(&lake);
        assert_eq!(seen["duckdb"], expected["duckdb"], "crash after {n} writes");
        for kind in ["activity", "attempts"] {
            let t = &seen["duckdb"][kind];
            assert_eq!(
                t["rows"], expected["duckdb"][kind]["rows"],
                "{kind}, crash after {n}"
            );
            assert_eq!(
                t["rows"], t["distinct_ids"],
                "{kind}, crash after {n}: every id once"
            );
        }
        assert_eq!(
            seen["quarantine"], expected["quarantine"],
            "crash after {n} writes"
        );
        // no staging files left behind
        let stray: Vec<String> = fingerprint(&lake, &[])
            .into_keys()
            .filter(|p| {
                !(p.ends_with(".parquet")
                    || p.ends_with(".json")
                    || p.ends_with(".idx")
                    || p.ends_with("/_complete")
                    || p.ends_with("/_last_checkpoint"))
            })
            .collect();
        assert!(stray.is_empty(), "stray files: {stray:?}");
    }

    // A real kill -9 while the run is writing: a landing big enough for many
    // batches, killed once the run has committed its first one, checked to
    // have been interrupted (fewer batches committed than a whole run).
    let big = dir.join("big-landing");
    learnlake_ok(
        &dir,
        &[
            "generate",
            "--out",
            big.to_str().unwrap(),
            "--students",
            "300",
            "--courses",
            "4",
            "--weeks",
            "8",
            "--seed",
            "5",
        ],
        &[],
    );
    let committed = |lake: &Path| {
        std::fs::read_dir(lake.join("_meta/ingest_ledger"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let big_clean = dir.join("big-clean");
    assert!(ingest(&dir, &big_clean, &big, &[KEY]).status.success());
    let expected = second_reader(&big_clean);
    let lake = dir.join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_learnlake"))
        .current_dir(&dir)
        .args([
            "--lake",
            lake.to_str().unwrap(),
            "--landing",
            big.to_str().unwrap(),
            "ingest",
        ])
        .env(KEY.0, KEY.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while committed(&lake) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed, not finished");
    let done = committed(&lake);
    assert!(
        done < committed(&big_clean),
        "the kill came after the run's last commit ({done} batches): nothing was interrupted"
    );
    assert!(ingest(&dir, &lake, &big, &[KEY]).status.success());
    assert_eq!(
        fingerprint(&lake, &["_meta", "_quarantine"]),
        fingerprint(&big_clean, &["_meta", "_quarantine"]),
        "after kill -9 at batch {done}"
    );
    let seen = second_reader(&lake);
    assert_eq!(seen["duckdb"], expected["duckdb"]);
    assert_eq!(seen["quarantine"], expected["quarantine"]);
    for kind in ["activity", "attempts"] {
        let t = &seen["duckdb"][kind];
        assert_eq!(t["rows"], expected["duckdb"][kind]["rows"], "{kind}");
        assert_eq!(t["rows"], t["distinct_ids"], "{kind}: every id once");
    }
}

#[test]
fn bad_config_and_missing_landing_fail_with_a_reason() {
    let (_tmp, dir) = scratch();
    let out = learnlake(&dir, &["--timezone", "Mars/Base", "ingest"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timezone: \"Mars/Base\" is not an IANA time zone"),
        "{err}"
    );

    let out = learnlake(
        &dir,
        &["--landing", dir.join("nowhere").to_str().unwrap(), "ingest"],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
}

/// One activity line (NDJSON) with `id` at `ts`.
fn event(id: &str, ts: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","student_id":"s1","course_id":"c1","timestamp":"{ts}","activity_type":"login"}}"#
    )
}

/// The `total` line of an ingest summary as (files, accepted, duplicates).
fn duplicates_of(out: &std::process::Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header = stdout
        .lines()
        .find(|l| l.contains("duplicates"))
        .unwrap_or_else(|| panic!("a summary header with duplicates:\n{stdout}"));
    let column = header
        .split_whitespace()
        .position(|w| w == "duplicates")
        .unwrap();
    let total = stdout.lines().find(|l| l.starts_with("total")).unwrap();
    total
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

/// An id sent again with a timestamp on another UTC date (a corrected clock, a
/// re-export) is stored once, in the same run and across runs, first copy
/// winning; also on a lake written before the id index existed.
#[test]
fn an_id_sent_again_on_another_date_is_stored_once() {
    let (_tmp, dir) = scratch();
    let landing = dir.join("landing");
    let lake = dir.join("lake");
    std::fs::create_dir_all(landing.join("activity")).unwrap();
    std::fs::create_dir_all(landing.join("attempts")).unwrap();
    std::fs::write(
        landing.join("activity/a.jsonl"),
        [
            event("e1", "2026-03-02T10:00:00Z"),
            event("e2", "2026-03-02T11:00:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    // Same run, later file: e1 again three days later.
    std::fs::write(
        landing.join("activity/b.jsonl"),
        [
            event("e1", "2026-03-05T10:00:00Z"),
            event("e3", "2026-03-05T10:00:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    let attempt = |id: &str, ts: &str| {
        format!(
            r#"{{"attempt_id":"{id}","student_id":"s1","course_id":"c1","assessment_id":"q1","submitted_at":"{ts}","score":70}}"#
        )
    };
    std::fs::write(
        landing.join("attempts/a.jsonl"),
        [
            attempt("t1", "2026-03-02T10:00:00Z"),
            attempt("t1", "2026-03-09T10:00:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    let first = ingest_ok(&dir, &lake, &landing, &[]);
    assert_eq!(
        duplicates_of(&first),
        2,
        "one activity and one attempt duplicate"
    );

    // Next run: e1 and e2 again on new dates, and t1 a month later.
    std::fs::write(
        landing.join("activity/c.jsonl"),
        [
            event("e1", "2026-04-01T10:00:00Z"),
            event("e2", "2026-02-01T10:00:00Z"),
            event("e4", "2026-04-01T10:00:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        landing.join("attempts/b.jsonl"),
        attempt("t1", "2026-04-09T10:00:00Z"),
    )
    .unwrap();
    let second = ingest_ok(&dir, &lake, &landing, &[]);
    assert_eq!(duplicates_of(&second), 3);

    // A lake from before the index: the next run builds it from the data.
    std::fs::remove_dir_all(lake.join("_meta/id_index")).unwrap();
    std::fs::write(
        landing.join("activity/d.jsonl"),
        [
            event("e3", "2026-05-01T10:00:00Z"),
            event("e5", "2026-05-01T10:00:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    let third = ingest_ok(&dir, &lake, &landing, &[]);
    assert_eq!(duplicates_of(&third), 1);

    let seen = second_reader_of(&lake, &["activity", "attempts"]);
    let activity = &seen["duckdb"]["activity"];
    assert_eq!(activity["rows"], 5, "{activity}");
    assert_eq!(activity["distinct_ids"], 5);
    assert_eq!(seen["duckdb"]["attempts"]["rows"], 1);
    // The first copy won.
    let out = learnlake_ok(
        &dir,
        &[
            "--lake",
            lake.to_str().unwrap(),
            "sql",
            r#"SELECT event_id, CAST("timestamp" AS VARCHAR) AS ts FROM activity ORDER BY event_id"#,
            "--format",
            "csv",
        ],
        &[],
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    let e1: Vec<&str> = csv.lines().filter(|l| l.starts_with("e1,")).collect();
    assert_eq!(e1.len(), 1, "{csv}");
    assert!(e1[0].contains("2026-03-02"), "the first copy wins: {csv}");
}

/// A NUL byte or invalid UTF-8 on one line costs that line, not the file.
#[test]
fn one_bad_line_costs_one_line() {
    let (_tmp, dir) = scratch();
    let landing = dir.join("landing");
    let lake = dir.join("lake");
    std::fs::create_dir_all(landing.join("activity")).unwrap();
    let mut text = Vec::new();
    for i in 1..=3000 {
        if i == 36 {
            text.extend_from_slice(b"{\"event_id\":\"\x00\xff\xfe\x00garbage\"}\n");
        } else {
            let line = event(&format!("e{i}"), "2026-03-02T10:00:00Z");
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
    }
    std::fs::write(landing.join("activity/big.jsonl"), &text).unwrap();
    // A file that is not text at all is still quarantined whole.
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(landing.join("activity/image.jsonl"), binary).unwrap();
    ingest_ok(&dir, &lake, &landing, &[]);
    let seen = second_reader_of(&lake, &["activity"]);
    assert_eq!(seen["duckdb"]["activity"]["rows"], 2999);
    let quarantine = seen["quarantine"]["activity"].as_array().unwrap();
    assert_eq!(quarantine.len(), 2, "{quarantine:?}");
    let line = quarantine
        .iter()
        .find(|r| r["source_file"] == "activity/big.jsonl")
        .unwrap();
    assert_eq!(line["line_number"], 36);
    assert!(
        line["reason"].as_str().unwrap().contains("NUL byte"),
        "{line}"
    );
    let whole = quarantine
        .iter()
        .find(|r| r["source_file"] == "activity/image.jsonl")
        .unwrap();
    assert!(whole["line_number"].is_null(), "{whole}");
    assert!(
        whole["reason"]
            .as_str()
            .unwrap()
            .contains("not a text file")
    );
}
