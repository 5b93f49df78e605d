//! The risk model end to end: `learnlake train` on generated history, the
//! model applied in SQL by `analyze`, no leakage from later data, and the
//! at-risk flags exported and read back by a second reader.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{fingerprint, ingest_ok, learnlake_ok, scratch, second_reader_of};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn generate(dir: &Path, students: &str, courses: &str, weeks: &str, seed: &str) -> PathBuf {
    let landing = dir.join("landing");
    learnlake_ok(
        dir,
        &[
            "generate",
            "--out",
            s(&landing),
            "--students",
            students,
            "--courses",
            courses,
            "--weeks",
            weeks,
            "--seed",
            seed,
        ],
        &[],
    );
    landing
}

fn sql_csv(dir: &Path, lake: &Path, query: &str) -> Vec<Vec<String>> {
    let out = learnlake_ok(
        dir,
        &["--lake", s(lake), "sql", query, "--format", "csv"],
        &[],
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn train_validates_on_the_newest_courses_and_analysis_scores_with_the_model() {
    let (_tmp, dir) = scratch();
    let landing = generate(&dir, "400", "6", "26", "11");
    let lake = dir.join("lake");
    ingest_ok(&dir, &lake, &landing, &[]);

    // No analyze first: train computes the student_week weeks it needs.
    let out = learnlake_ok(&dir, &["--lake", s(&lake), "train", "--feature-gains"], &[]);
    let text = stdout(&out);
    eprintln!("{text}");
    assert!(text.contains("missing student_week weeks first"), "{text}");
    assert!(text.contains("held out the newest"), "{text}");
    assert!(text.contains("held-out gain of each feature"), "{text}");
    assert!(text.contains("saved lr-1 as the current model"), "{text}");

    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_meta/models/lr-1.json")).unwrap())
            .unwrap();
    let metrics = &model["metrics"];
    let week5 = metrics["auc_by_week"]["5"]
        .as_f64()
        .expect("week 5 measured");
    assert!(week5 >= 0.8, "held-out AUC at week 5 is {week5}");
    assert!(metrics["auc"].as_f64().unwrap() >= 0.8, "{metrics}");
    let training = &model["training"];
    assert_eq!(
        training["holdout_courses"].as_array().unwrap().len(),
        1,
        "{training}"
    );
    assert_eq!(
        training["training_courses"].as_array().unwrap().len(),
        2,
        "{training}"
    );

    // The same data and a deterministic fit: not worse than lr-1, so saved.
    let again = stdout(&learnlake_ok(&dir, &["--lake", s(&lake), "train"], &[]));
    assert!(again.contains("saved lr-2 as the current model"), "{again}");
    assert!(
        again.contains("lr-1"),
        "compared with lr-1, the current model: {again}"
    );
    let models = stdout(&learnlake_ok(&dir, &["--lake", s(&lake), "models"], &[]));
    assert!(
        models.contains("lr-1") && models.contains("* lr-2"),
        "{models}"
    );
    let listed = sql_csv(&dir, &lake, "SELECT version FROM models ORDER BY version");
    assert_eq!(listed, [["lr-1"], ["lr-2"]]);

    // Re-analyzing a week scores it with the new model, in SQL.
    let week = "2026-03-09";
    learnlake_ok(&dir, &["--lake", s(&lake), "analyze", "--week", week], &[]);
    let versions = sql_csv(
        &dir,
        &lake,
        "SELECT DISTINCT model_version FROM student_week WHERE period_start = DATE '2026-03-09'",
    );
    assert_eq!(versions, [["lr-2"]]);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_meta/models/lr-2.json")).unwrap())
            .unwrap();
    let features = model["features"].as_array().unwrap();
    let columns: Vec<String> = features
        .iter()
        .map(|f| format!("feature_{}", f["name"].as_str().unwrap()))
        .collect();
    let rows = sql_csv(
        &dir,
        &lake,
        &format!(
            "SELECT success_probability, {} FROM student_week WHERE period_start = DATE '{week}'",
            columns.join(", ")
        ),
    );
    assert!(rows.len() > 100, "{} rows", rows.len());
    let intercept = model["intercept"].as_f64().unwrap();
    for row in &rows {
        let p_sql: f64 = row[0].parse().unwrap();
        let mut z = intercept;
        for (f, x) in features.iter().zip(&row[1..]) {
            let x: f64 = x.parse().unwrap();
            z += f["coefficient"].as_f64().unwrap() * (x - f["mean"].as_f64().unwrap())
                / f["scale"].as_f64().unwrap();
        }
        let p_rust = 1.0 / (1.0 + (-z).exp());
        assert!(
            (p_sql - p_rust).abs() < 1e-12,
            "SQL {p_sql} vs Rust {p_rust}: {row:?}"
        );
    }

    // Reasons: rule codes with values, and feature pulls with their size.
    let factors = sql_csv(
        &dir,
        &lake,
        &format!(
            "SELECT array_to_string(risk_factors, '|') FROM student_week \
             WHERE period_start = DATE '{week}' AND risk_level = 'high' AND cardinality(risk_factors) > 0"
        ),
    );
    assert!(!factors.is_empty(), "high-risk rows explain themselves");
    for f in factors
        .iter()
        .flat_map(|r| r[0].split('|').map(str::to_string).collect::<Vec<_>>())
    {
        let (name, delta) = f.split_once(": ").unwrap_or_else(|| panic!("{f}"));
        assert!(features.iter().any(|x| x["name"] == name), "{f}");
        assert!(delta.parse::<f64>().unwrap() < 0.0, "{f}");
    }

    let seen = second_reader_of(
        &lake,
        &["enrollments", "student_week", "risk_flags", "models"],
    );
    let flags = &seen["pyarrow"]["risk_flags"]["types"];
    assert_eq!(flags["as_of_date"], "date32[day]", "{flags}");
    assert_eq!(flags["success_probability"], "double", "{flags}");
    // Through the Delta schema the list's child is named `element`.
    assert_eq!(flags["indicators"], "list<element: string>", "{flags}");
    let polars = &seen["polars"]["risk_flags"]["types"];
    assert_eq!(polars["as_of_date"], "Date", "{polars}");
    assert_eq!(polars["indicators"], "List(String)", "{polars}");
    assert_eq!(seen["duckdb"]["risk_flags"]["delta"], true);
    assert_eq!(flags["flag_id"], "string", "{flags}");
    assert_eq!(seen["duckdb"]["models"]["rows"], 2);
}

/// Keeps the activity and attempt lines of a landing folder whose
/// timestamp is before `end`.
fn cut_landing(from: &Path, to: &Path, end: chrono::DateTime<chrono::Utc>) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    for (folder, fields) in [
        ("activity", &["timestamp"][..]),
        ("attempts", &["submitted_at", "completed_at"][..]),
    ] {
        for entry in std::fs::read_dir(to.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .filter(|line| {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    let ts = fields.iter().find_map(|f| v[*f].as_str()).unwrap();
                    chrono::DateTime::parse_from_rfc3339(ts).unwrap() < end
                })
                .collect();
            std::fs::write(&path, kept.join("\n")).unwrap();
        }
    }
}

#[test]
fn a_week_scores_the_same_whatever_comes_after_it_and_flags_export() {
    let (_tmp, dir) = scratch();
    let full = generate(&dir, "150", "4", "12", "5");
    let week = "2026-03-09";
    let end: chrono::DateTime<chrono::Utc> = "2026-03-16T00:00:00Z".parse().unwrap();
    let cut = dir.join("cut");
    cut_landing(&full, &cut, end);
    let (lake_full, lake_cut) = (dir.join("lake-full"), dir.join("lake-cut"));
    ingest_ok(&dir, &lake_full, &full, &[]);
    ingest_ok(&dir, &lake_cut, &cut, &[]);
    for lake in [&lake_full, &lake_cut] {
        learnlake_ok(&dir, &["--lake", s(lake), "analyze", "--week", week], &[]);
    }
    let part = |lake: &Path, table: &str| {
        let mut f = fingerprint(&lake.join(table), &[]);
        f.retain(|k, _| k.contains("2026-03-09") || k.contains("2026-03-15"));
        assert_eq!(f.len(), 1, "{table}: {f:?}");
        f
    };
    assert_eq!(
        part(&lake_full, "risk_flags"),
        part(&lake_cut, "risk_flags"),
        "risk_flags of {week} changed when later data was added"
    );
    // The model's inputs and outputs are bit-identical (CSV prints the
    // shortest exact form of a double); other sums may differ in the last
    // bit with the order parallel reads deliver rows in.
    let model_columns = "student_id, course_id, feature_score, feature_has_score, feature_submitted_ratio, \
        feature_has_due, feature_missed_assessments, feature_days_inactive, feature_engagement_rank, \
        feature_late_submissions, feature_never_started, feature_interactions_vs_course, \
        feature_week_vs_course, feature_recent_vs_course, feature_trend, feature_active_days_ratio, \
        feature_course_elapsed, feature_weeks_enrolled, feature_score_vs_course, success_probability, \
        risk_level, array_to_string(risk_factors, '|'), array_to_string(risk_indicators, '|'), model_version";
    let select = |lake: &Path, columns: &str| {
        sql_csv(
            &dir,
            lake,
            &format!(
                "SELECT {columns} FROM student_week WHERE period_start = DATE '{week}' ORDER BY student_id, course_id"
            ),
        )
    };
    let full_rows = select(&lake_full, model_columns);
    assert!(full_rows.len() > 50);
    assert_eq!(
        full_rows,
        select(&lake_cut, model_columns),
        "the model's view of {week} changed"
    );
    let every_column = |lake: &Path| -> Vec<serde_json::Value> {
        let query = format!(
            "SELECT * FROM student_week WHERE period_start = DATE '{week}' ORDER BY student_id, course_id"
        );
        let out = learnlake_ok(
            &dir,
            &["--lake", s(lake), "sql", &query, "--format", "ndjson"],
            &[],
        );
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (every_column(&lake_full), every_column(&lake_cut));
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        for (key, x) in a.as_object().unwrap() {
            let y = &b[key];
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    assert!(
                        (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                        "{key}: {x} vs {y}"
                    )
                }
                _ => assert_eq!(x, y, "{key}"),
            }
        }
    }

    // Flags: deterministic ids, filters, three formats, a second reader.
    let before = fingerprint(&lake_full.join("risk_flags"), &[]);
    learnlake_ok(
        &dir,
        &["--lake", s(&lake_full), "analyze", "--week", week],
        &[],
    );
    assert_eq!(
        before,
        fingerprint(&lake_full.join("risk_flags"), &[]),
        "a re-run gives the same flags"
    );

    let lake = &lake_full;
    let count = |filter: &str| -> usize {
        sql_csv(
            &dir,
            lake,
            &format!("SELECT COUNT(*) FROM risk_flags {filter}"),
        )[0][0]
            .parse()
            .unwrap()
    };
    let all = count("");
    assert!(all > 50, "{all} flags");
    let out = learnlake_ok(
        &dir,
        &["--lake", s(lake), "flags", "--format", "ndjson"],
        &[],
    );
    assert_eq!(stdout(&out).lines().count(), all);
    let out = learnlake_ok(
        &dir,
        &[
            "--lake",
            s(lake),
            "flags",
            "--level",
            "medium",
            "--changed",
            "--since",
            "2026-03-15",
        ],
        &[],
    );
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        count(
            "WHERE risk_level IN ('high', 'medium') AND changed AND as_of_date >= DATE '2026-03-15'"
        )
    );
    for l in &lines {
        assert!(
            l["risk_level"] == "high" || l["risk_level"] == "medium",
            "{l}"
        );
        assert_eq!(l["changed"], true, "{l}");
        assert_eq!(l["flag_id"].as_str().unwrap().len(), 32, "{l}");
    }
    let csv_path = dir.join("flags.csv");
    learnlake_ok(
        &dir,
        &[
            "--lake",
            s(lake),
            "flags",
            "--format",
            "csv",
            "--output",
            s(&csv_path),
        ],
        &[],
    );
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(text.starts_with("flag_id,student_id,course_id,as_of_date,risk_level,previous_level,changed,success_probability,indicators,factors,model_version"), "{text}");
    assert_eq!(text.lines().count(), all + 1);
    let parquet_path = dir.join("flags.parquet");
    learnlake_ok(
        &dir,
        &[
            "--lake",
            s(lake),
            "flags",
            "--format",
            "parquet",
            "--output",
            s(&parquet_path),
            "--level",
            "high",
        ],
        &[],
    );
    let script = format!(
        "import pyarrow.parquet as pq, duckdb\n\
         t = pq.read_table('{p}')\n\
         print(t.num_rows)\n\
         print(dict((f.name, str(f.type)) for f in t.schema))\n\
         print(duckdb.sql(\"SELECT COUNT(*) FROM read_parquet('{p}') WHERE risk_level <> 'high'\").fetchall()[0][0])",
        p = s(&parquet_path)
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].parse::<usize>().unwrap(),
        count("WHERE risk_level = 'high'")
    );
    assert!(
        lines[1].contains("'as_of_date': 'date32[day]'"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("'factors': 'list<element: string>'"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "0");
}
