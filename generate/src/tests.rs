use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::Value;

use super::population::Archetype;
use super::*;

const KNOWN_TYPES: [&str; 15] = [
    "login",
    "logout",
    "lesson_start",
    "lesson_complete",
    "content_view",
    "resource_view",
    "resource_download",
    "video_play",
    "video_complete",
    "quiz_start",
    "quiz_submit",
    "assignment_submit",
    "forum_post",
    "help_requested",
    "achievement_earned",
];

fn options(out: &Path) -> GenerateOptions {
    GenerateOptions {
        out: out.to_path_buf(),
        ..GenerateOptions::default()
    }
}

/// Every file under `dir`, relative path → bytes, in path order.
fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn ndjson_lines(dir: &Path) -> Vec<Value> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".jsonl"))
        .collect();
    names.sort();
    let mut values = Vec::new();
    for path in names {
        let mut text = String::new();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(fs::File::open(&path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = fs::read_to_string(&path).unwrap();
        }
        for line in text.lines() {
            values.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")));
        }
    }
    values
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(str::to_owned)
                .zip(r.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn timestamp(value: &Value) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn same_options_give_identical_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = GenerateOptions {
        students: 60,
        ..options(a.path())
    };
    let first = generate(&opts, &|_| {}).unwrap();
    let second = generate(
        &GenerateOptions {
            out: b.path().to_path_buf(),
            ..opts.clone()
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(first, second);
    let (tree_a, tree_b) = (read_tree(a.path()), read_tree(b.path()));
    assert_eq!(
        tree_a.keys().collect::<Vec<_>>(),
        tree_b.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &tree_a {
        assert!(bytes == &tree_b[path], "{} differs", path.display());
    }

    // A different seed gives different data.
    let c = tempfile::tempdir().unwrap();
    generate(
        &GenerateOptions {
            out: c.path().to_path_buf(),
            seed: 43,
            ..opts
        },
        &|_| {},
    )
    .unwrap();
    assert_ne!(
        fs::read(a.path().join("activity/activity-00001.jsonl")).unwrap(),
        fs::read(c.path().join("activity/activity-00001.jsonl")).unwrap()
    );
}

#[test]
fn landing_exercises_the_contract_and_the_analytics_rules() {
    let dir = tempfile::tempdir().unwrap();
    let reported = std::sync::atomic::AtomicU64::new(0);
    let summary = generate(&options(dir.path()), &|n| {
        reported.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    let root = dir.path();
    assert_eq!(reported.into_inner(), summary.events);
    assert_eq!(summary.students, 200);
    assert_eq!(summary.files, 6);

    // Manifest: every archetype is present.
    let manifest: Value =
        serde_json::from_slice(&fs::read(root.join("GENERATED.json")).unwrap()).unwrap();
    let archetypes = manifest["archetypes"].as_object().unwrap();
    for archetype in Archetype::ALL {
        assert!(
            archetypes[archetype.as_str()].as_u64().unwrap() > 0,
            "{}",
            archetype.as_str()
        );
    }
    assert_eq!(manifest["counts"]["events"].as_u64(), Some(summary.events));

    // Reference files.
    let students = csv_rows(&root.join("students.csv"));
    assert_eq!(students.len(), 200);
    assert_eq!(students[122]["student_id"], "s000123");
    let zones: BTreeSet<_> = students.iter().map(|s| s["timezone"].as_str()).collect();
    assert!(zones.len() >= 3, "{zones:?}");
    for zone in &zones {
        assert!(zone.parse::<chrono_tz::Tz>().is_ok(), "{zone}");
    }

    let courses = csv_rows(&root.join("courses.csv"));
    let window_end = NaiveDate::from_ymd_opt(2026, 4, 27).unwrap();
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let finished: BTreeSet<_> = courses
        .iter()
        .filter(|c| date(&c["end_date"]) < window_end)
        .map(|c| c["course_id"].clone())
        .collect();
    assert!(
        !finished.is_empty() && finished.len() < courses.len(),
        "{finished:?}"
    );
    let course_start: BTreeMap<_, _> = courses
        .iter()
        .map(|c| (c["course_id"].clone(), date(&c["start_date"])))
        .collect();

    let enrollments = csv_rows(&root.join("enrollments.csv"));
    assert_eq!(enrollments.len(), summary.enrollments);
    let mut results = BTreeSet::new();
    let mut per_student: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mid_course = 0;
    for e in &enrollments {
        let enrolled = timestamp(&Value::String(e["enrolled_at"].clone()));
        if enrolled.date_naive() > course_start[&e["course_id"]] {
            mid_course += 1;
        }
        *per_student.entry(e["student_id"].as_str()).or_default() += 1;
        if finished.contains(&e["course_id"]) {
            assert!(!e["final_result"].is_empty(), "{e:?}");
            results.insert(e["final_result"].as_str());
        } else {
            assert!(e["final_result"].is_empty(), "{e:?}");
        }
        assert!(["active", "withdrawn", "completed", "paused"].contains(&e["status"].as_str()));
        assert_eq!(
            e["status"] == "withdrawn",
            !e["withdrawn_at"].is_empty(),
            "{e:?}"
        );
    }
    assert_eq!(
        results,
        BTreeSet::from(["distinction", "fail", "pass", "withdrawn"])
    );
    assert!(mid_course > 0);
    assert!(per_student.values().any(|&n| n >= 2));

    let assessments: Vec<Value> = fs::read_to_string(root.join("assessments.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(assessments.len(), summary.assessments);
    let due: BTreeMap<String, DateTime<FixedOffset>> = assessments
        .iter()
        .map(|a| {
            (
                a["assessment_id"].as_str().unwrap().to_owned(),
                timestamp(&a["due_at"]),
            )
        })
        .collect();

    // Activity.
    let events = ndjson_lines(&root.join("activity"));
    assert_eq!(events.len() as u64, summary.events);
    let mut event_ids = BTreeSet::new();
    let mut active_students = BTreeSet::new();
    let mut offsets_by_student: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let (mut zulu, mut local, mut nested, mut flat, mut with_category, mut without_category) =
        (0, 0, 0, 0, 0, 0);
    for e in &events {
        let id = e["event_id"].as_str().unwrap();
        assert!(event_ids.insert(id.to_owned()), "duplicate {id}");
        let student = e["student_id"].as_str().unwrap().to_owned();
        let kind = e["activity_type"].as_str().unwrap();
        assert!(
            KNOWN_TYPES.contains(&kind) || kind == "bookmark_added",
            "{kind}"
        );
        let ts = timestamp(&e["timestamp"]);
        if e["timestamp"].as_str().unwrap().ends_with('Z') {
            zulu += 1;
        } else {
            local += 1;
            offsets_by_student
                .entry(student.clone())
                .or_default()
                .insert(ts.offset().local_minus_utc());
        }
        if e.get("device").is_some() {
            nested += 1;
        } else {
            assert!(e.get("device_type").is_some());
            flat += 1;
        }
        if e.get("activity_category").is_some() {
            with_category += 1;
        } else {
            without_category += 1;
        }
        for key in ["progress", "score"] {
            if let Some(v) = e.get(key) {
                assert!((0.0..=100.0).contains(&v.as_f64().unwrap()), "{e}");
            }
        }
        active_students.insert(student);
    }
    assert!(
        zulu > 0
            && local > 0
            && nested > 0
            && flat > 0
            && with_category > 0
            && without_category > 0
    );
    // Someone's local offset changed with daylight saving time.
    assert!(offsets_by_student.values().any(|o| o.len() > 1));

    // Attempts.
    let attempts = ndjson_lines(&root.join("attempts"));
    assert_eq!(attempts.len() as u64, summary.attempts);
    let (mut late, mut practice, mut retries, mut quiz_alias, mut completed_alias, mut flags) =
        (0, 0, 0, 0, 0, 0);
    for a in &attempts {
        active_students.insert(a["student_id"].as_str().unwrap().to_owned());
        let id = a
            .get("assessment_id")
            .or_else(|| a.get("quiz_id"))
            .unwrap()
            .as_str()
            .unwrap();
        quiz_alias += usize::from(a.get("quiz_id").is_some());
        let submitted = a
            .get("submitted_at")
            .or_else(|| a.get("completed_at"))
            .unwrap();
        completed_alias += usize::from(a.get("completed_at").is_some());
        let score = a["score"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&score));
        let is_practice = a
            .get("is_practice")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || a["assessment_type"] == "practice";
        if is_practice {
            practice += 1;
        } else if timestamp(submitted) > due[id] {
            late += 1;
        }
        if a.get("attempt_number").and_then(Value::as_u64).unwrap_or(1) >= 2 {
            retries += 1;
        }
        if let Some(started) = a.get("started_at") {
            assert!(timestamp(started) <= timestamp(submitted));
        }
        assert!(!a["answers"].as_array().unwrap().is_empty());
        flags += usize::from(a.get("integrity_flags").is_some());
    }
    assert!(
        late > 0 && practice > 0 && retries > 0,
        "late {late} practice {practice} retries {retries}"
    );
    assert!(quiz_alias > 0 && completed_alias > 0 && flags > 0);

    // Never-started students: enrolled, but no events and no attempts.
    assert!(
        enrollments
            .iter()
            .any(|e| !active_students.contains(&e["student_id"]))
    );
}

#[test]
fn outcomes_follow_scores() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &GenerateOptions {
            students: 600,
            ..options(dir.path())
        },
        &|_| {},
    )
    .unwrap();
    // Mean of each finished enrollment's non-practice scores, by final result.
    let mut scores: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for a in ndjson_lines(&dir.path().join("attempts")) {
        let practice = a
            .get("is_practice")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || a["assessment_type"] == "practice";
        if !practice {
            let key = (
                a["student_id"].as_str().unwrap().to_owned(),
                a["course_id"].as_str().unwrap().to_owned(),
            );
            scores
                .entry(key)
                .or_default()
                .push(a["score"].as_f64().unwrap());
        }
    }
    let mut by_result: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in csv_rows(&dir.path().join("enrollments.csv")) {
        if let Some(s) = scores.get(&(e["student_id"].clone(), e["course_id"].clone()))
            && !e["final_result"].is_empty()
        {
            by_result
                .entry(e["final_result"].clone())
                .or_default()
                .push(s.iter().sum::<f64>() / s.len() as f64);
        }
    }
    let mean = |r: &str| by_result[r].iter().sum::<f64>() / by_result[r].len() as f64;
    assert!(mean("distinction") > mean("pass"), "{by_result:?}");
    assert!(mean("pass") > mean("fail"), "{by_result:?}");
}

#[test]
fn gzip_output_and_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("activity/activity-00009.jsonl");
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    fs::write(&stale, "{}\n").unwrap();
    let keep = dir.path().join("activity/notes.txt");
    fs::write(&keep, "keep me").unwrap();

    let opts = GenerateOptions {
        students: 30,
        gzip: true,
        ..options(dir.path())
    };
    let summary = generate(&opts, &|_| {}).unwrap();
    assert!(!stale.exists());
    assert!(keep.exists());
    assert!(dir.path().join("activity/activity-00001.jsonl.gz").exists());
    assert!(dir.path().join("attempts/attempts-00001.jsonl.gz").exists());
    assert_eq!(
        ndjson_lines(&dir.path().join("activity")).len() as u64,
        summary.events
    );
    let on_disk: u64 = read_tree(dir.path())
        .iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n != "GENERATED.json" && n != "notes.txt")
        })
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(on_disk, summary.bytes);
}

#[test]
fn split_files_hold_a_fixed_number_of_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut stream = SplitNdjson::new(dir.path().to_path_buf(), "activity", false, 3);
    for i in 0..7 {
        stream
            .write_line(format!("{{\"n\":{i}}}\n").as_bytes())
            .unwrap();
    }
    stream.finish().unwrap();
    assert_eq!(stream.files, 3);
    assert_eq!(stream.lines, 7);
    let last = fs::read_to_string(dir.path().join("activity-00003.jsonl")).unwrap();
    assert_eq!(last, "{\"n\":6}\n");
}

#[test]
fn invalid_options_say_what_to_fix() {
    let err = generate(
        &GenerateOptions {
            students: 0,
            weeks: 0,
            ..GenerateOptions::default()
        },
        &|_| {},
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "generate: students must be at least 1; weeks must be between 1 and 520, got 0"
    );
}

#[test]
fn small_and_odd_shapes_work() {
    for (students, courses, weeks) in [(1, 1, 1), (3, 2, 2), (5, 13, 3), (8, 3, 52)] {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(
            &GenerateOptions {
                students,
                courses,
                weeks,
                ..options(dir.path())
            },
            &|_| {},
        )
        .unwrap();
        assert_eq!(summary.courses, courses);
        assert_eq!(
            csv_rows(&dir.path().join("enrollments.csv")).len(),
            summary.enrollments
        );
        assert_eq!(
            ndjson_lines(&dir.path().join("activity")).len() as u64,
            summary.events
        );
    }
}

/// Regenerates `data-samples/landing` (run with `--ignored`); see data-samples/README.md.
#[test]
#[ignore = "writes the committed sample in data-samples/"]
fn write_data_samples() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/landing");
    let summary = generate(
        &GenerateOptions {
            out,
            students: 40,
            courses: 3,
            weeks: 10,
            start: NaiveDate::from_ymd_opt(2026, 2, 2).unwrap(),
            seed: 7,
            // Compressed to keep the repository small; same content as without --gzip.
            gzip: true,
            profile: Profile::Rich,
        },
        &|_| {},
    )
    .unwrap();
    println!("{summary:?}");
}

/// Regenerates `data-samples/mixed` (run with `--ignored`), the demo's
/// landing: the sample history with students 14–26 told as xAPI statements
/// and 27–40 as Caliper events; see data-samples/README.md.
#[test]
#[ignore = "writes the committed sample in data-samples/"]
fn write_mixed_data_samples() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/mixed");
    let options = GenerateOptions {
        out: out.clone(),
        students: 40,
        courses: 3,
        weeks: 10,
        start: NaiveDate::from_ymd_opt(2026, 2, 2).unwrap(),
        seed: 7,
        gzip: true,
        profile: Profile::Rich,
    };
    generate(&options, &|_| {}).unwrap();
    let number = |s: &str| s.trim_start_matches('s').parse::<u32>().unwrap_or(0);
    let xapi = crate::to_format(&out, crate::OtherFormat::Xapi, true, &|s| {
        (14..=26).contains(&number(s))
    })
    .unwrap();
    let caliper = crate::to_format(&out, crate::OtherFormat::Caliper, true, &|s| {
        (27..=40).contains(&number(s))
    })
    .unwrap();
    // The reference files are data-samples/landing's (the same options):
    // the demo takes them from there.
    let landing = out.join("../landing");
    for file in [
        "students.csv",
        "courses.csv",
        "enrollments.csv",
        "assessments.jsonl",
    ] {
        assert_eq!(
            fs::read(out.join(file)).unwrap(),
            fs::read(landing.join(file)).unwrap(),
            "{file}"
        );
        fs::remove_file(out.join(file)).unwrap();
    }
    // Its counts are landing's (only the compressed size differs).
    fs::remove_file(out.join("GENERATED.json")).unwrap();
    println!("{xapi:?} {caliper:?}");
}

/// Telling some students' history in another format moves exactly their
/// rows: the rest stays native, nothing is written twice or lost.
#[test]
fn other_formats_take_exactly_the_selected_students_rows() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path()), &|_| {}).unwrap();
    let lines = |path: &Path| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
        out
    };
    let odd = |s: &str| s.trim_start_matches('s').parse::<u32>().unwrap() % 2 == 1;
    let moved = crate::to_format(dir.path(), crate::OtherFormat::Xapi, false, &odd).unwrap();
    let statements = lines(&dir.path().join("xapi"));
    assert_eq!(statements.len() as u64, moved.statements);
    assert!(
        statements
            .iter()
            .all(|s| odd(s["actor"]["account"]["name"].as_str().unwrap()))
    );
    let rest = lines(&dir.path().join("activity"));
    let attempts = lines(&dir.path().join("attempts"));
    assert!(rest.iter().all(|e| !odd(e["student_id"].as_str().unwrap())));
    assert_eq!(
        (rest.len() + attempts.len()) as u64 + moved.statements,
        summary.events + summary.attempts
    );
    // The rest as Caliper: envelopes of events, the native files gone.
    let all = crate::to_format(dir.path(), crate::OtherFormat::Caliper, false, &|_| true).unwrap();
    assert_eq!(all.statements, (rest.len() + attempts.len()) as u64);
    let envelopes = lines(&dir.path().join("caliper"));
    let events: usize = envelopes
        .iter()
        .map(|e| e["data"].as_array().unwrap().len())
        .sum();
    assert_eq!(events as u64, all.statements);
    assert!(
        std::fs::read_dir(dir.path().join("activity"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// The daily-clicks profile: the same simulated students as the rich
/// profile (attempts and reference files byte-identical), their events
/// folded into one narrow seven-field event per student × site × UTC day
/// whose click counts add up to the rich events' interactions.
#[test]
fn daily_clicks_fold_the_rich_events_per_site_and_day() {
    let (rich_dir, narrow_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rich = GenerateOptions {
        students: 40,
        ..options(rich_dir.path())
    };
    let narrow = GenerateOptions {
        out: narrow_dir.path().to_path_buf(),
        profile: Profile::DailyClicks,
        ..rich.clone()
    };
    let rich_summary = generate(&rich, &|_| {}).unwrap();
    let narrow_summary = generate(&narrow, &|_| {}).unwrap();
    assert_eq!(rich_summary.attempts, narrow_summary.attempts);
    assert!(
        narrow_summary.events * 2 < rich_summary.events,
        "{} narrow events vs {} rich: folding did not fold",
        narrow_summary.events,
        rich_summary.events
    );
    for file in [
        "attempts/attempts-00001.jsonl",
        "students.csv",
        "courses.csv",
        "enrollments.csv",
        "assessments.jsonl",
    ] {
        assert!(
            fs::read(rich_dir.path().join(file)).unwrap()
                == fs::read(narrow_dir.path().join(file)).unwrap(),
            "{file} differs between the profiles"
        );
    }

    let clicks = |v: &Value| v["interaction_count"].as_u64().unwrap_or(1).max(1);
    let rich_events = ndjson_lines(&rich_dir.path().join("activity"));
    let narrow_events = ndjson_lines(&narrow_dir.path().join("activity"));
    assert_eq!(narrow_events.len() as u64, narrow_summary.events);
    let mut rich_clicks: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in &rich_events {
        let key = (
            e["student_id"].as_str().unwrap().to_owned(),
            e["course_id"].as_str().unwrap_or("").to_owned(),
        );
        *rich_clicks.entry(key).or_default() += clicks(e);
    }
    let mut narrow_clicks: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in &narrow_events {
        let fields: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "event_id",
                "student_id",
                "course_id",
                "resource_id",
                "timestamp",
                "activity_type",
                "interaction_count"
            ]),
            "{e}"
        );
        assert!(e["interaction_count"].as_u64().unwrap() >= 1);
        let key = (
            e["student_id"].as_str().unwrap().to_owned(),
            e["course_id"].as_str().unwrap().to_owned(),
        );
        *narrow_clicks.entry(key).or_default() += clicks(e);
    }
    // Every rich event belongs to its enrollment's course (rich events
    // without a course_id are folded into that course's sites).
    let rich_by_student: BTreeMap<&String, u64> =
        rich_clicks
            .iter()
            .fold(BTreeMap::new(), |mut m, ((s, _), n)| {
                *m.entry(s).or_default() += n;
                m
            });
    let narrow_by_student: BTreeMap<&String, u64> =
        narrow_clicks
            .iter()
            .fold(BTreeMap::new(), |mut m, ((s, _), n)| {
                *m.entry(s).or_default() += n;
                m
            });
    assert_eq!(rich_by_student, narrow_by_student);
    // One event per (student, course, site, day): the site key folds types
    // without a target by their type, so (site, type) is unique per day.
    let unique: BTreeSet<_> = narrow_events
        .iter()
        .map(|e| {
            (
                e["student_id"].as_str().unwrap().to_owned(),
                e["course_id"].as_str().unwrap().to_owned(),
                e["resource_id"].as_str().unwrap().to_owned(),
                e["activity_type"].as_str().unwrap().to_owned(),
                timestamp(&e["timestamp"]).naive_utc().date(),
            )
        })
        .collect();
    assert_eq!(unique.len(), narrow_events.len());
}
