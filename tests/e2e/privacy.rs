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

    // Small groups: a course under privacy.min_group_size keeps its course
    // and week in an export, and its figures are null; at or above, shown.
    learnlake_ok(&dir, &["--lake", s(&lake), "analyze"], &[]);
    let course_week = |min_group: &str| -> Vec<Vec<String>> {
        let args = [
            "--lake",
            s(&lake),
            "sql",
            "SELECT course_id, period_start, enrolled, active, mean_minutes, risk_high \
             FROM course_week ORDER BY 1, 2",
            "--format",
            "csv",
            "--pseudonymise",
        ];
        rows(&super::learnlake(
            &dir,
            &args,
            &[
                ("LEARNLAKE_HASH_KEY", "k1"),
                ("LEARNLAKE_PRIVACY_MIN_GROUP_SIZE", min_group),
            ],
        ))
    };
    let shown = course_week("1");
    assert!(shown.len() >= 2, "{shown:?}");
    assert!(
        shown.iter().all(|r| r[2..].iter().all(|v| !v.is_empty())),
        "{shown:?}"
    );
    let enrolled: usize = shown
        .iter()
        .map(|r| r[2].parse::<usize>().unwrap())
        .max()
        .unwrap();
    let hidden = course_week(&(enrolled + 1).to_string());
    assert_eq!(hidden.len(), shown.len());
    for (h, s) in hidden.iter().zip(&shown) {
        assert_eq!(h[..2], s[..2], "the group and week stay");
        assert!(h[2..].iter().all(String::is_empty), "{h:?}");
    }
}

/// Every text a reader could get out of the file at `path`: Parquet files
/// decoded (every column, nested ones formatted), e-mail decoded (headers
/// and quoted-printable or base64 parts), anything else as its bytes.
fn readable_text(path: &Path) -> String {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let data = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut text = name.clone();
    text.push('\n');
    if name.ends_with(".parquet") {
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(data),
            1024,
        )
        .unwrap_or_else(|e| panic!("{} is not readable Parquet: {e}", path.display()));
        for batch in reader {
            let batch = batch.unwrap();
            for column in batch.columns() {
                let format = ArrayFormatter::try_new(column, &FormatOptions::default()).unwrap();
                for i in 0..column.len() {
                    text.push_str(&format.value(i).to_string());
                    text.push('\n');
                }
            }
        }
    } else if name.ends_with(".eml") {
        fn walk(part: &mailparse::ParsedMail<'_>, text: &mut String) {
            for h in &part.headers {
                text.push_str(&h.get_value());
                text.push('\n');
            }
            if let Ok(body) = part.get_body() {
                text.push_str(&body);
            }
            for p in &part.subparts {
                walk(p, text);
            }
        }
        walk(&mailparse::parse_mail(&data).unwrap(), &mut text);
    } else {
        text.push_str(&String::from_utf8_lossy(&data));
    }
    text
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The files under `dirs` whose readable text holds any of `needles` (the
/// first as a whole word, the others anywhere, ignoring case).
fn files_mentioning(dirs: &[&Path], id: &str, needles: &[String]) -> Vec<String> {
    let mut files = Vec::new();
    for dir in dirs {
        files_under(dir, &mut files);
    }
    let word = regex_word(id);
    files
        .iter()
        .filter(|f| {
            let text = readable_text(f);
            let lower = text.to_lowercase();
            word(&text) || needles.iter().any(|n| lower.contains(&n.to_lowercase()))
        })
        .map(|f| f.display().to_string())
        .collect()
}

/// A test for `id` as a whole word (no letter, digit or `_` around it).
fn regex_word(id: &str) -> impl Fn(&str) -> bool + '_ {
    move |text: &str| {
        let inside = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        text.match_indices(id).any(|(at, _)| {
            !inside(text[..at].chars().next_back()) && !inside(text[at + id.len()..].chars().next())
        })
    }
}

fn csv_column(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn forget_erases_a_student_from_every_file_of_the_lake_and_is_safe_to_repeat() {
    use hmac::Mac;
    let (_keep, dir) = scratch();
    small_landing(&dir, 30, 4, 11, &["--start", "2026-03-02"]);
    let lake = dir.join("lake");
    let lake_s = s(&lake).to_string();
    let l = lake_s.as_str();
    learnlake_ok(&dir, &["--lake", l, "--landing", "landing", "ingest"], &[]);
    learnlake_ok(&dir, &["--lake", l, "analyze"], &[]);
    let student = sql_one(
        &dir,
        &lake,
        "SELECT s.student_id FROM students s JOIN risk_flags f USING (student_id) \
         WHERE s.email IS NOT NULL AND s.name IS NOT NULL ORDER BY 1 LIMIT 1",
    );
    assert!(!student.is_empty(), "a flagged student with an address");
    let one = |column: &str| {
        sql_one(
            &dir,
            &lake,
            &format!("SELECT {column} FROM students WHERE student_id = '{student}'"),
        )
    };
    let (email, name) = (one("email"), one("name"));
    assert!(email.contains('@') && !name.is_empty(), "{email} {name}");

    // More of the lake's places the student ends up in: a rejected line
    // that names them (quarantine), a late event on a day that already has
    // a file, compacted (delta-rs's commit carries min/max statistics of
    // student_id), the weeks analyzed again (the replaced files stay for
    // time travel), reports and notices in the file outbox and the mail
    // ledger, flags delivered to a webhook receiver.
    let day = sql_one(
        &dir,
        &lake,
        &format!("SELECT MIN(event_date) FROM activity WHERE student_id = '{student}'"),
    );
    std::fs::write(
        dir.join("landing/activity/late.jsonl"),
        format!(
            "{{\"event_id\":\"late-1\",\"student_id\":\"{student}\",\"timestamp\":\"{day}T12:00:00Z\",\
             \"activity_type\":\"login\",\"activity_category\":\"system\",\"course_id\":\"c01-algebra\"}}\n\
             {{\"event_id\":\"late-2\",\"student_id\":\"{student}\",\"timestamp\":\"not a time\"}}\n"
        ),
    )
    .unwrap();
    learnlake_ok(&dir, &["--lake", l, "--landing", "landing", "ingest"], &[]);
    assert_eq!(
        sql_one(
            &dir,
            &lake,
            "SELECT COUNT(*) FROM quarantine_activity WHERE raw LIKE '%late-2%'"
        ),
        "1"
    );
    learnlake_ok(&dir, &["--lake", l, "compact", "--table", "activity"], &[]);
    learnlake_ok(&dir, &["--lake", l, "analyze"], &[]);
    let outbox = dir.join("outbox");
    let mail_env = [("LEARNLAKE_EMAIL_OUTBOX", s(&outbox))];
    learnlake_ok(
        &dir,
        &["--lake", l, "report", "--week", "2026-03-16"],
        &mail_env,
    );
    let receiver = super::webhooks::Receiver::start(&dir, "hooks", 0, 0);
    let cfg = super::webhooks::config(&dir, "hooks.toml", &[("advising", receiver.port, true)]);
    learnlake_ok(
        &dir,
        &["--config", s(&cfg), "--lake", l, "flags", "--deliver"],
        &[("TEST_WEBHOOK_SECRET", super::webhooks::SECRET)],
    );
    let flags = csv_column(&learnlake_ok(
        &dir,
        &[
            "--lake",
            l,
            "sql",
            &format!("SELECT flag_id FROM risk_flags WHERE student_id = '{student}'"),
            "--format",
            "csv",
        ],
        &[],
    ));
    let delivered = receiver.accepted();
    assert!(
        flags.iter().any(|f| delivered.contains_key(f)),
        "a flag of the student was delivered"
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k1").unwrap();
    mac.update(student.as_bytes());
    let pseudonym = hex::encode(mac.finalize().into_bytes());
    let mut needles = vec![email.clone(), name.clone(), pseudonym];
    needles.extend(flags.iter().cloned());
    let dirs = [lake.as_path(), outbox.as_path()];
    let before = files_mentioning(&dirs, &student, &needles);
    for place in [
        "/activity/",
        "/_quarantine/",
        "/student_week/",
        "/_meta/mail/",
        "/_meta/webhooks/",
        "/outbox/",
        "_delta_log",
    ] {
        assert!(
            before.iter().any(|f| f.contains(place)),
            "the set-up puts the student in {place}: {before:#?}"
        );
    }
    let per_student = "SELECT student_id, COUNT(*) AS n FROM activity GROUP BY 1 ORDER BY 1";
    let counts_before: Vec<String> = csv_column(&learnlake_ok(
        &dir,
        &["--lake", l, "sql", per_student, "--format", "csv"],
        &[],
    ))
    .into_iter()
    .filter(|r| !r.starts_with(&format!("{student},")))
    .collect();

    // A dry run lists and changes nothing.
    let dry = learnlake_ok(
        &dir,
        &["--lake", l, "forget", "--student", &student, "--dry-run"],
        &mail_env,
    );
    let dry_text = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry_text.contains("activity: would remove"), "{dry_text}");
    assert_eq!(files_mentioning(&dirs, &student, &needles), before);

    // Killed right after its first commit, then run again: finishes.
    let crashed = super::learnlake(
        &dir,
        &["--lake", l, "forget", "--student", &student],
        &[mail_env[0], ("LEARNLAKE_TEST_CRASH_AFTER_WRITES", "1")],
    );
    assert!(!crashed.status.success());
    let out = learnlake_ok(
        &dir,
        &["--lake", l, "forget", "--student", &student],
        &mail_env,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("student_week: removed"), "{text}");
    assert!(text.contains("students: removed 1 row(s)"), "{text}");

    // No file of the lake or the outbox holds the id, the address, the
    // name, a flag id or the keyed hash any more.
    let left = files_mentioning(&dirs, &student, &needles);
    assert!(
        left.is_empty(),
        "still naming the student: {left:#?}\n{text}"
    );
    // Everyone else's rows are all there, and other tools read the lake.
    let counts_after = csv_column(&learnlake_ok(
        &dir,
        &["--lake", l, "sql", per_student, "--format", "csv"],
        &[],
    ));
    assert_eq!(counts_after, counts_before);
    second_reader(&lake);
    assert!(
        std::fs::read_dir(outbox.join("2026-03-16"))
            .unwrap()
            .count()
            > 0,
        "others' mail stays"
    );

    // Again: nothing left to do. The lake goes on working.
    let again = learnlake_ok(
        &dir,
        &["--lake", l, "forget", "--student", &student],
        &mail_env,
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("nothing of {student} was left")),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    learnlake_ok(&dir, &["--lake", l, "analyze"], &[]);
    assert_eq!(
        sql_one(
            &dir,
            &lake,
            &format!("SELECT COUNT(*) FROM student_week WHERE student_id = '{student}'")
        ),
        "0"
    );
}
