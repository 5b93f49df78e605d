//! Other systems' records (docs/INPUTS.md): the specifications' own example
//! statements and events, one learning history told natively, as xAPI and
//! as Caliper, hostile records of every format, voiding, and Moodle's log.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::{ingest_ok, learnlake, learnlake_ok, scratch, second_reader_of};

const KEY: (&str, &str) = ("LEARNLAKE_HASH_KEY", "inputs-test-key");

/// Rows of a query over `lake`, as JSON objects.
fn rows(dir: &Path, lake: &Path, query: &str) -> Vec<Value> {
    let lake = lake.to_str().unwrap();
    let out = learnlake_ok(
        dir,
        &["--lake", lake, "sql", query, "--format", "ndjson"],
        &[],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The quarantine's reasons of `kind` (none when it has no table).
fn quarantined(dir: &Path, lake: &Path, kind: &str) -> Vec<Value> {
    if !lake.join(format!("_quarantine/{kind}")).exists() {
        return Vec::new();
    }
    rows(
        dir,
        lake,
        &format!(
            "SELECT source_file, line_number, reason FROM quarantine_{kind} ORDER BY source_file, line_number"
        ),
    )
}

/// Copies the JSON files of `from` (not its sub-folders) into `to`.
fn copy_json(from: &Path, to: &Path) -> usize {
    std::fs::create_dir_all(to).unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    n
}

fn summary_line<'a>(stdout: &'a str, kind: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} line in\n{stdout}"))
        .split_whitespace()
        .collect()
}

/// The published examples of the xAPI, Caliper and Open edX specifications
/// (data-samples/spec-examples, provenance in its PROVENANCE.md) ingest
/// without a quarantined row, into the rows the mapping tables predict.
#[test]
fn spec_examples_ingest_as_their_mapping_tables_say() {
    let (_tmp, dir) = scratch();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/spec-examples");
    let landing = dir.join("landing");
    let files = copy_json(&examples.join("xapi"), &landing.join("xapi"))
        + copy_json(&examples.join("caliper"), &landing.join("caliper"))
        + copy_json(&examples.join("openedx"), &landing.join("openedx"))
        + copy_json(
            &examples.join("openedx/erb-current-shape"),
            &landing.join("openedx/erb"),
        );
    assert_eq!(files, 27);
    let lake = dir.join("lake");
    let out = ingest_ok(&dir, &lake, &landing, &[KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(quarantined(&dir, &lake, "activity").is_empty());
    assert!(quarantined(&dir, &lake, "attempts").is_empty());

    // xAPI: 5 statements by one person + 1 by a Group of 3 members; Caliper:
    // 10 events, the grade an attempt only; Open edX: 11 events.
    let activity = summary_line(&stdout, "activity");
    assert_eq!(activity[3], "28", "accepted: {stdout}");
    assert_eq!(activity[8], "1", "no row: the Caliper grade; {stdout}");
    let attempts = summary_line(&stdout, "attempts");
    // Scored xAPI examples name no course: events only (2 under no row).
    assert_eq!((attempts[3], attempts[8]), ("4", "2"), "{stdout}");

    let by_id = |id: &str| -> Value {
        let found = rows(
            &dir,
            &lake,
            &format!("SELECT * FROM activity WHERE event_id = '{id}'"),
        );
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        found[0].clone()
    };
    // xAPI cmi5 example: account actor, "failed" with a scaled score.
    let cmi5 = by_id("2a41c918-b88b-4220-20a5-a4c32391a240");
    assert_eq!(cmi5["student_id"], "1625378");
    assert_eq!(cmi5["activity_type"], "quiz_submit");
    assert_eq!(cmi5["score"], 65.0);
    assert_eq!(cmi5["duration_seconds"], 1800.0);
    assert_eq!(cmi5["success"], false);
    assert_eq!(cmi5["session_id"], "458240298378231", "the cmi5 session id");
    assert_eq!(cmi5["resource_id"], "AUidentifier");
    assert!(cmi5["course_id"].is_null());
    // "completed" on a course-typed object whose context names a parent.
    let completed = by_id("d1eec41f-1e93-4ed6-acbf-5c4bd0c24269");
    assert_eq!(completed["activity_type"], "lesson_complete");
    assert_eq!(completed["course_id"], "non-absolute-activity-id");
    assert!(
        completed["student_id"]
            .as_str()
            .unwrap()
            .starts_with("mbox-"),
        "a keyed hash, never the address"
    );
    // The Group's members, one row each.
    for member in 0..3 {
        let row = by_id(&format!("6690e6c9-3ef0-4ed3-8b37-7f3964730bee#{member}"));
        assert_eq!(
            row["activity_type"], "attended",
            "an unknown verb's last segment"
        );
        assert_eq!(row["activity_category"], "other");
        assert_eq!(row["course_id"], "267", "the first parent");
        assert_eq!(row["duration_seconds"], 3600.0);
    }
    let experienced = by_id("33cff416-e331-4c9d-969e-5373a1756120");
    assert_eq!(experienced["activity_type"], "content_view");
    assert_eq!(
        experienced["timestamp"], "2013-04-01T12:00:00Z",
        "{experienced}"
    );

    // Caliper.
    let submitted = by_id("urn:uuid:dad88464-0c20-4a19-a1ba-ddf2f9c3ff33");
    assert_eq!(submitted["student_id"], "554433");
    assert_eq!(submitted["activity_type"], "quiz_submit");
    assert_eq!(submitted["course_id"], "1");
    assert_eq!(submitted["quiz_id"], "1");
    assert_eq!(submitted["duration_seconds"], 630.0);
    assert_eq!(
        submitted["session_id"],
        "1f6442a482de72ea6ad134943812bff564a76259"
    );
    let types: Vec<(String, String)> = rows(
        &dir,
        &lake,
        "SELECT event_id, activity_type FROM activity WHERE event_id LIKE 'urn:uuid:%' ORDER BY event_id",
    )
    .into_iter()
    .map(|r| {
        (
            r["event_id"].as_str().unwrap().to_string(),
            r["activity_type"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    let type_of = |id: &str| types.iter().find(|(e, _)| e == id).map(|(_, t)| t.as_str());
    assert_eq!(
        type_of("urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594"),
        Some("quiz_start"),
        "in an envelope"
    );
    assert_eq!(
        type_of("urn:uuid:e5891791-3d27-4df1-a272-091806a43dfb"),
        Some("answered")
    );
    assert_eq!(
        type_of("urn:uuid:956b4a02-8de0-4991-b8c5-b6eebb6b4cab"),
        Some("Paused")
    );
    assert_eq!(
        type_of("urn:uuid:0d015a85-abf5-49ee-abb1-46dbd57fe64e"),
        Some("forum_post")
    );
    assert_eq!(
        type_of("urn:uuid:ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f"),
        Some("content_view")
    );
    assert_eq!(
        type_of("urn:uuid:fcd495d0-3740-4298-9bec-1154571dc211"),
        Some("login")
    );
    assert_eq!(
        type_of("urn:uuid:cd088ca7-c044-405c-bb41-0b2a8506f907"),
        Some("content_view")
    );
    assert_eq!(
        type_of("urn:uuid:a50ca17f-5971-47bb-8fca-4e6e6879001d"),
        None,
        "a grade is no activity"
    );
    let grade = rows(
        &dir,
        &lake,
        "SELECT * FROM attempts WHERE student_id = '554433'",
    );
    assert_eq!(grade.len(), 1, "{grade:?}");
    assert_eq!(grade[0]["assessment_id"], "1");
    assert_eq!(grade[0]["points_earned"], 10.0);
    assert_eq!(grade[0]["points_possible"], 15.0);
    assert!((grade[0]["score"].as_f64().unwrap() - 66.666).abs() < 0.01);

    // Open edX: the graded server problem checks are attempts (the grades
    // service's record of the same submissions is an event only).
    let problems = rows(
        &dir,
        &lake,
        "SELECT student_id, course_id, assessment_id, score FROM attempts WHERE course_id LIKE 'course-v1:%' ORDER BY submitted_at",
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p["course_id"] == "course-v1:edX+DemoX+Demo_Course")
    );
    let edx = rows(
        &dir,
        &lake,
        "SELECT activity_type, COUNT(*) AS n FROM activity WHERE event_id LIKE 'openedx-%' GROUP BY activity_type ORDER BY activity_type",
    );
    let count = |t: &str| {
        edx.iter()
            .find(|r| r["activity_type"] == t)
            .map_or(0, |r| r["n"].as_i64().unwrap())
    };
    assert_eq!(count("quiz_submit"), 3, "the server's checks: {edx:?}");
    assert_eq!(count("edx.grades.problem.submitted"), 2, "{edx:?}");
    assert_eq!(count("video_play"), 2, "{edx:?}");
    assert_eq!(count("forum_post"), 1, "{edx:?}");
    assert_eq!(count("content_view"), 1, "{edx:?}");
    assert_eq!(count("problem_check"), 1, "the browser's copy: {edx:?}");

    // A second reader sees the same rows.
    let seen = second_reader_of(&lake, &["activity", "attempts"]);
    assert_eq!(seen["duckdb"]["activity"]["rows"], 28);
    assert_eq!(seen["pyarrow"]["attempts"]["rows"], 4);

    // Ingesting again reads nothing and changes nothing.
    let again = ingest_ok(&dir, &lake, &landing, &[KEY]);
    let again = String::from_utf8_lossy(&again.stdout);
    assert_eq!(summary_line(&again, "activity")[3], "0", "{again}");
    assert_eq!(
        summary_line(&again, "total")[2],
        "54",
        "every file skipped: {again}"
    );
}

/// One small learning history: 3 students in one course over two weeks.
struct History {
    events: Vec<Ev>,
}

struct Ev {
    id: String,
    student: &'static str,
    at: String,
    kind: &'static str,
    session: String,
    /// lesson / quiz / resource id, by kind.
    object: String,
    /// quiz_submit: (score, points of 10).
    score: Option<f64>,
}

fn history() -> History {
    let mut events = Vec::new();
    let students = ["s1", "s2", "s3"];
    let mut n = 0;
    for (week, monday) in ["2026-03-02", "2026-03-09"].iter().enumerate() {
        for (s, &student) in students.iter().enumerate() {
            // s3 stops after the first week.
            if student == "s3" && week == 1 {
                continue;
            }
            for day in 0..(3 - s as u32) {
                let session = format!("{student}-w{week}-d{day}");
                let date = chrono::NaiveDate::parse_from_str(monday, "%Y-%m-%d").unwrap()
                    + chrono::Duration::days(i64::from(day) * 2);
                let at = |h: u32, m: u32| format!("{date}T{h:02}:{m:02}:00Z");
                let mut push = |kind, object: String, at: String, score| {
                    n += 1;
                    events.push(Ev {
                        id: format!("ev-{n:04}"),
                        student,
                        at,
                        kind,
                        session: session.clone(),
                        object,
                        score,
                    });
                };
                push("login", String::new(), at(9 + s as u32, 0), None);
                push("content_view", format!("P{day}"), at(9 + s as u32, 5), None);
                push("video_play", format!("V{day}"), at(9 + s as u32, 15), None);
                if day == 0 {
                    push(
                        "lesson_complete",
                        format!("L{week}"),
                        at(9 + s as u32, 30),
                        None,
                    );
                    push("forum_post", String::new(), at(20, 10 + s as u32), None);
                }
                if day == 1 {
                    let quiz = format!("Q{}", week + 1);
                    push("quiz_start", quiz.clone(), at(14, 0), None);
                    push(
                        "quiz_submit",
                        quiz,
                        at(14, 10),
                        Some(100.0 - 10.0 * (s as f64 + week as f64 * 2.0)),
                    );
                }
            }
        }
    }
    History { events }
}

/// The reference files, natively, for every landing.
fn reference(landing: &Path) {
    std::fs::create_dir_all(landing).unwrap();
    std::fs::write(
        landing.join("students.csv"),
        "student_id,name,email,timezone\ns1,Ann,ann@example.edu,UTC\ns2,Bo,bo@example.edu,UTC\ns3,Cy,cy@example.edu,UTC\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("courses.csv"),
        "course_id,title,start_date,end_date,total_lessons,passing_score\nC1,Course one,2026-03-02,2026-04-24,4,60\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("enrollments.csv"),
        "student_id,course_id,enrolled_at,status\ns1,C1,2026-02-25,active\ns2,C1,2026-02-25,active\ns3,C1,2026-02-25,active\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("assessments.csv"),
        "assessment_id,course_id,assessment_type,title,due_at,weight\nQ1,C1,quiz,Quiz 1,2026-03-06,1\nQ2,C1,quiz,Quiz 2,2026-03-13,1\n",
    )
    .unwrap();
}

fn native(h: &History, landing: &Path) {
    reference(landing);
    let (mut activity, mut attempts) = (String::new(), String::new());
    for e in &h.events {
        let mut event = json!({
            "event_id": e.id, "student_id": e.student, "timestamp": e.at,
            "activity_type": e.kind, "course_id": "C1", "session_id": e.session,
        });
        match e.kind {
            "content_view" | "video_play" => event["resource_id"] = json!(e.object),
            "lesson_complete" => event["lesson_id"] = json!(e.object),
            "quiz_start" | "quiz_submit" => event["quiz_id"] = json!(e.object),
            _ => {}
        }
        if let Some(score) = e.score {
            event["duration_seconds"] = json!(600);
            let submitted = chrono::DateTime::parse_from_rfc3339(&e.at).unwrap();
            let started = submitted - chrono::Duration::minutes(10);
            writeln!(
                attempts,
                "{}",
                json!({
                    "attempt_id": e.id, "student_id": e.student, "course_id": "C1",
                    "assessment_id": e.object, "assessment_type": "quiz",
                    "started_at": started.to_rfc3339(), "submitted_at": e.at, "score": score,
                })
            )
            .unwrap();
        }
        writeln!(activity, "{event}").unwrap();
    }
    std::fs::create_dir_all(landing.join("activity")).unwrap();
    std::fs::create_dir_all(landing.join("attempts")).unwrap();
    std::fs::write(landing.join("activity/history.jsonl"), activity).unwrap();
    std::fs::write(landing.join("attempts/history.jsonl"), attempts).unwrap();
}

/// The history as an LRS exports it: one pretty-printed JSON array.
fn xapi(h: &History, landing: &Path) {
    reference(landing);
    let lms = "https://lms.example.edu";
    let statements: Vec<Value> = h
        .events
        .iter()
        .map(|e| {
            let (verb, object, kind) = match e.kind {
                "login" => ("https://w3id.org/xapi/adl/verbs/logged-in", lms.to_string(), "http://id.tincanapi.com/activitytype/lms"),
                "content_view" => ("http://adlnet.gov/expapi/verbs/experienced", format!("{lms}/pages/{}", e.object), "http://activitystrea.ms/schema/1.0/page"),
                "video_play" => ("https://w3id.org/xapi/video/verbs/played", format!("{lms}/videos/{}", e.object), "https://w3id.org/xapi/video/activity-type/video"),
                "lesson_complete" => ("http://adlnet.gov/expapi/verbs/completed", format!("{lms}/lessons/{}", e.object), "http://adlnet.gov/expapi/activities/lesson"),
                "forum_post" => ("http://adlnet.gov/expapi/verbs/commented", format!("{lms}/forum/1"), "http://id.tincanapi.com/activitytype/discussion"),
                "quiz_start" => ("http://adlnet.gov/expapi/verbs/attempted", format!("{lms}/quizzes/{}", e.object), "http://adlnet.gov/expapi/activities/assessment"),
                "quiz_submit" => ("http://adlnet.gov/expapi/verbs/completed", format!("{lms}/quizzes/{}", e.object), "http://adlnet.gov/expapi/activities/assessment"),
                other => panic!("{other}"),
            };
            let mut s = json!({
                "id": e.id,
                "actor": {"objectType": "Agent", "account": {"homePage": lms, "name": e.student}},
                "verb": {"id": verb, "display": {"en-US": verb.rsplit('/').next().unwrap()}},
                "object": {"objectType": "Activity", "id": object, "definition": {"type": kind}},
                "context": {
                    "registration": e.session,
                    "contextActivities": {"grouping": [{"id": format!("{lms}/courses/C1"), "definition": {"type": "http://adlnet.gov/expapi/activities/course"}}]},
                },
                "timestamp": e.at,
                "stored": e.at,
                "version": "1.0.3",
            });
            if let Some(score) = e.score {
                s["result"] = json!({"score": {"raw": score / 10.0, "min": 0, "max": 10}, "duration": "PT10M", "completion": true});
            }
            s
        })
        .collect();
    std::fs::create_dir_all(landing.join("xapi")).unwrap();
    std::fs::write(
        landing.join("xapi/lrs-export.json"),
        serde_json::to_string_pretty(&statements).unwrap(),
    )
    .unwrap();
}

/// The history as a Caliper sensor sends it: envelopes, one per line; each
/// quiz submission followed by its grade.
fn caliper(h: &History, landing: &Path) {
    reference(landing);
    let base = "https://lms.example.edu";
    let mut lines = String::new();
    for chunk in h.events.chunks(5) {
        let mut data = Vec::new();
        for e in chunk {
            let (kind, action, object) = match e.kind {
                "login" => (
                    "SessionEvent",
                    "LoggedIn",
                    json!({"id": base, "type": "SoftwareApplication"}),
                ),
                "content_view" => (
                    "NavigationEvent",
                    "NavigatedTo",
                    json!({"id": format!("{base}/pages/{}", e.object), "type": "WebPage"}),
                ),
                "video_play" => (
                    "MediaEvent",
                    "Started",
                    json!({"id": format!("{base}/videos/{}", e.object), "type": "VideoObject", "duration": "PT20M"}),
                ),
                "lesson_complete" => (
                    "Event",
                    "Completed",
                    json!({"id": format!("{base}/lessons/{}", e.object), "type": "Chapter"}),
                ),
                "forum_post" => (
                    "MessageEvent",
                    "Posted",
                    json!({"id": format!("{base}/forums/1/messages/{}", e.id), "type": "Message"}),
                ),
                "quiz_start" => (
                    "AssessmentEvent",
                    "Started",
                    json!({"id": format!("{base}/quizzes/{}", e.object), "type": "Assessment"}),
                ),
                "quiz_submit" => (
                    "AssessmentEvent",
                    "Submitted",
                    json!({"id": format!("{base}/quizzes/{}", e.object), "type": "Assessment"}),
                ),
                other => panic!("{other}"),
            };
            let actor = json!({"id": format!("{base}/users/{}", e.student), "type": "Person"});
            let group = json!({"id": format!("{base}/courses/C1"), "type": "CourseSection"});
            let mut event = json!({
                "@context": "http://purl.imsglobal.org/ctx/caliper/v1p2",
                "id": format!("urn:uuid:{}", e.id), "type": kind, "actor": actor, "action": action,
                "object": object, "eventTime": e.at, "group": group,
                "session": {"id": format!("{base}/sessions/{}", e.session), "type": "Session"},
            });
            let attempt_id = format!("{base}/quizzes/{}/users/{}/attempts/1", e.object, e.student);
            if e.kind == "quiz_submit" {
                event["generated"] =
                    json!({"id": attempt_id, "type": "Attempt", "duration": "PT10M"});
            }
            data.push(event);
            if let Some(score) = e.score {
                let submitted = chrono::DateTime::parse_from_rfc3339(&e.at).unwrap();
                let started = (submitted - chrono::Duration::minutes(10)).to_rfc3339();
                data.push(json!({
                    "@context": "http://purl.imsglobal.org/ctx/caliper/v1p2",
                    "id": format!("urn:uuid:grade-{}", e.id), "type": "GradeEvent",
                    "actor": {"id": format!("{base}/autograder"), "type": "SoftwareApplication"},
                    "action": "Graded",
                    "object": {"id": attempt_id, "type": "Attempt",
                               "assignee": {"id": format!("{base}/users/{}", e.student), "type": "Person"},
                               "assignable": {"id": format!("{base}/quizzes/{}", e.object), "type": "Assessment"},
                               "count": 1, "startedAtTime": started, "endedAtTime": e.at},
                    "eventTime": e.at,
                    "generated": {"id": format!("{attempt_id}/score"), "type": "Score", "scoreGiven": score / 10.0, "maxScore": 10},
                    "group": {"id": format!("{base}/courses/C1"), "type": "CourseSection"},
                }));
            }
        }
        writeln!(
            lines,
            "{}",
            json!({"sensor": format!("{base}/sensor"), "sendTime": "2026-03-20T00:00:00Z",
                   "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2", "data": data})
        )
        .unwrap();
    }
    std::fs::create_dir_all(landing.join("caliper")).unwrap();
    std::fs::write(landing.join("caliper/sensor.jsonl"), lines).unwrap();
}

/// student_week of a landing, as CSV text.
fn student_weeks(dir: &Path, name: &str, write: impl Fn(&Path)) -> String {
    let landing = dir.join(format!("{name}-landing"));
    let lake = dir.join(format!("{name}-lake"));
    write(&landing);
    let out = ingest_ok(dir, &lake, &landing, &[KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        summary_line(&stdout, "total")[5],
        "0",
        "nothing quarantined: {stdout}"
    );
    let lake_s = lake.to_str().unwrap();
    learnlake_ok(dir, &["--lake", lake_s, "analyze"], &[]);
    let out = learnlake_ok(
        dir,
        &[
            "--lake",
            lake_s,
            "sql",
            "SELECT * FROM student_week ORDER BY student_id, course_id, period_start",
            "--format",
            "csv",
        ],
        &[],
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn one_history_natively_as_xapi_and_as_caliper_gives_identical_student_weeks() {
    let (_tmp, dir) = scratch();
    let h = history();
    let native = student_weeks(&dir, "native", |l| native(&h, l));
    assert!(native.lines().count() > 4, "{native}");
    let xapi = student_weeks(&dir, "xapi", |l| xapi(&h, l));
    assert_eq!(native, xapi, "xAPI differs from native");
    let caliper = student_weeks(&dir, "caliper", |l| caliper(&h, l));
    assert_eq!(native, caliper, "Caliper differs from native");
    // The rows carry what the history says: s3 stopped after week one.
    assert!(native.contains("s3"), "{native}");
}

/// Hostile records of every format: each is quarantined with its reason,
/// every valid record is kept once, nothing panics; a voiding statement
/// removes what it voids, across files and runs.
#[test]
fn hostile_records_are_quarantined_and_voiding_removes_what_it_voids() {
    let (_tmp, dir) = scratch();
    let landing = dir.join("landing");
    let lake = dir.join("lake");
    for folder in ["xapi", "caliper", "openedx", "moodle"] {
        std::fs::create_dir_all(landing.join(folder)).unwrap();
    }
    let statement = |id: &str, student: &str, extra: &str| {
        format!(
            r#"{{"id":"{id}","actor":{{"account":{{"homePage":"https://lms","name":"{student}"}}}},"verb":{{"id":"http://adlnet.gov/expapi/verbs/completed"}},"object":{{"id":"https://lms/quizzes/Q1","definition":{{"type":"http://adlnet.gov/expapi/activities/assessment"}}}},"context":{{"contextActivities":{{"grouping":[{{"id":"https://lms/courses/C1"}}]}}}},"timestamp":"2026-03-03T10:00:00Z"{extra}}}"#
        )
    };
    let void = |id: &str, target: &str| {
        format!(
            r#"{{"id":"{id}","actor":{{"account":{{"homePage":"https://lms","name":"admin"}}}},"verb":{{"id":"http://adlnet.gov/expapi/verbs/voided"}},"object":{{"objectType":"StatementRef","id":"{target}"}},"timestamp":"2026-03-04T10:00:00Z"}}"#
        )
    };
    let huge = statement(
        "x-huge",
        "s1",
        &format!(r#","result":{{"response":"{}"}}"#, "a".repeat(10 << 20)),
    );
    let deep = format!(
        r#"{{"id":"x-deep","result":{{"extensions":{{"x":{}{}}}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let xapi_lines = [
        statement("x-1", "s1", r#","result":{"score":{"scaled":0.8}}"#),
        statement("x-2", "s2", r#","result":{"score":{"scaled":0.6}}"#),
        statement("x-3", "s3", ""),
        statement("x-1", "s1", ""), // a duplicate id: dropped
        statement("x-bad-score", "s1", r#","result":{"score":{"raw":12,"max":10}}"#),
        r#"{"id":"x-no-actor","verb":{"id":"http://adlnet.gov/expapi/verbs/completed"},"object":{"id":"o"},"timestamp":"2026-03-03T10:00:00Z"}"#.to_string(),
        r#"{"id":"x-truncated","actor":{"account":{"name":"s1""#.to_string(),
        huge,
        deep,
        void("v-1", "x-2"),
        void("v-unknown", "never-sent"),
    ];
    let mut xapi_file = xapi_lines.join("\n").into_bytes();
    xapi_file.extend_from_slice(b"\n\xff\xfe not text \x00\n");
    std::fs::write(landing.join("xapi/a.jsonl"), xapi_file).unwrap();
    std::fs::write(
        landing.join("caliper/a.jsonl"),
        [
            r#"{"id":"urn:uuid:c-1","type":"ViewEvent","actor":"https://lms/users/s1","action":"Viewed","object":{"id":"https://lms/docs/1","type":"Document"},"eventTime":"2026-03-03T11:00:00Z","group":{"id":"https://lms/courses/C1"}}"#,
            r#"{"id":"urn:uuid:c-2","type":"ViewEvent","action":"Viewed","object":{"id":"https://lms/docs/1"},"eventTime":"2026-03-03T11:00:00Z"}"#,
            r#"{"id":"urn:uuid:c-3","type":"ViewEvent","actor":"https://lms/users/s1","action":"Viewed","object":{"id":"d"}}"#,
            r#"{"id":"urn:uuid:c-4","type":"GradeEvent","actor":"https://lms/grader","action":"Graded","object":{"id":"https://lms/attempts/9","type":"Attempt","assignee":"https://lms/users/s1","assignable":"https://lms/quizzes/Q1"},"eventTime":"2026-03-03T11:00:00Z","generated":{"type":"Score","scoreGiven":20,"maxScore":10},"group":{"id":"https://lms/courses/C1"}}"#,
            r#"{"sensor":"s","data":[{"id":"urn:uuid:c-5","type":"Event"#,
            &format!(
                r#"{{"id":"urn:uuid:c-6","object":{}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        landing.join("openedx/tracking.log"),
        [
            r#"{"username":"ann","event_type":"play_video","event_source":"browser","time":"2026-03-03T12:00:00+00:00","context":{"user_id":1,"course_id":"course-v1:X+Y+Z"},"event":"{\"id\":\"v1\"}"}"#,
            r#"{"event_type":"play_video","time":"2026-03-03T12:00:00+00:00","context":{"course_id":"course-v1:X+Y+Z"}}"#,
            r#"{"username":"ann","event_type":"problem_check","event_source":"server","time":"2026-03-03T12:00:00+00:00","context":{"user_id":1,"course_id":"course-v1:X+Y+Z"},"event":{"problem_id":"p1","grade":5,"max_grade":2}}"#,
            r#"{"username":"ann","event_type":"play_video""#,
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        landing.join("moodle/log.csv"),
        "id,eventname,component,action,target,crud,edulevel,contextlevel,contextinstanceid,userid,courseid,timecreated,ip\n\
         1,\\core\\event\\course_viewed,core,viewed,course,r,2,50,7,17,4,1772532900,10.0.0.1\n\
         2,\\core\\event\\course_viewed,core,viewed,course,r,2,50,7,0,4,1772532900,10.0.0.1\n\
         3,\\core\\event\\course_viewed,core,viewed,course,r,2,50,7,17,4,yesterday,10.0.0.1\n",
    )
    .unwrap();
    let out = ingest_ok(&dir, &lake, &landing, &[KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);

    let reasons: Vec<String> = quarantined(&dir, &lake, "activity")
        .iter()
        .map(|r| {
            format!(
                "{} {}: {}",
                r["source_file"].as_str().unwrap(),
                r["line_number"],
                r["reason"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "xapi/a.jsonl 5: result.score.raw: 12 is outside its range 0–10",
        "xapi/a.jsonl 6: statement has no actor",
        "xapi/a.jsonl 7: malformed JSON",
        "xapi/a.jsonl 8: record is 10.5 MB; records over 4 MiB are refused",
        // Deep nesting where nothing is read is skipped without recursion.
        "xapi/a.jsonl 9: statement has no verb.id",
        "xapi/a.jsonl 11: voids statement \"never-sent\", which the lake does not hold",
        "xapi/a.jsonl 12: line holds a NUL byte",
        "caliper/a.jsonl 2: event has no actor",
        "caliper/a.jsonl 3: event has no eventTime",
        "caliper/a.jsonl 5: malformed JSON",
        "caliper/a.jsonl 6: malformed JSON: recursion limit exceeded",
        "openedx/tracking.log 2: event has no user",
        "openedx/tracking.log 3: event.grade: 5 is outside its range 0–2",
        "openedx/tracking.log 4: malformed JSON",
        "moodle/log.csv 4: timecreated \"yesterday\" is not Unix seconds",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expected)),
            "no quarantined row starts {expected:?}; got {reasons:#?}"
        );
    }
    assert_eq!(reasons.len(), 15, "{reasons:#?}");
    let attempt_reasons: Vec<String> = quarantined(&dir, &lake, "attempts")
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        attempt_reasons.len(),
        1,
        "reported once, not again by the attempts pass: {attempt_reasons:?}"
    );
    assert!(attempt_reasons[0].contains("generated.scoreGiven: 20 is outside its range 0–10"));

    // Kept: x-1 and x-3 (x-2 voided), c-1, ann's video, Moodle row 1.
    let ids: Vec<String> = rows(
        &dir,
        &lake,
        "SELECT event_id FROM activity ORDER BY event_id",
    )
    .iter()
    .map(|r| r["event_id"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids.contains(&"x-1".to_string()) && ids.contains(&"x-3".to_string()));
    assert!(!ids.contains(&"x-2".to_string()), "voided in the same file");
    assert!(ids.contains(&"moodle-1".to_string()));
    let attempts: Vec<String> = rows(
        &dir,
        &lake,
        "SELECT attempt_id FROM attempts ORDER BY attempt_id",
    )
    .iter()
    .map(|r| r["attempt_id"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(attempts, ["x-1"], "x-2's attempt is voided too");
    let activity = summary_line(&stdout, "activity");
    assert_eq!(
        (activity[4], activity[7]),
        ("1", "1"),
        "duplicates, voided: {stdout}"
    );

    // A later file voids a statement committed by the first run.
    std::fs::write(landing.join("xapi/b.jsonl"), void("v-2", "x-1")).unwrap();
    let out = ingest_ok(&dir, &lake, &landing, &[KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summary_line(&stdout, "activity")[7], "1", "{stdout}");
    assert_eq!(summary_line(&stdout, "attempts")[7], "1", "{stdout}");
    let left = rows(
        &dir,
        &lake,
        "SELECT COUNT(*) AS n FROM activity WHERE event_id = 'x-1'",
    );
    assert_eq!(left[0]["n"], 0);
    let left = rows(&dir, &lake, "SELECT COUNT(*) AS n FROM attempts");
    assert_eq!(left[0]["n"], 0);
    // Read by a second reader: the voided rows are gone from the current version.
    let seen = second_reader_of(&lake, &["activity", "attempts"]);
    assert_eq!(seen["duckdb"]["activity"]["rows"], 4);
    assert_eq!(seen["polars"]["attempts"]["rows"], 0);
    // And again: nothing changes.
    let out = ingest_ok(&dir, &lake, &landing, &[KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summary_line(&stdout, "activity")[3], "0", "{stdout}");
}

/// The [inputs] settings: an actor lookup in the landing area, Open edX
/// usernames, a Moodle site prefix; bad values are named by `validate`.
#[test]
fn inputs_settings_map_actors_and_bad_values_are_named() {
    let (_tmp, dir) = scratch();
    let landing = dir.join("landing");
    std::fs::create_dir_all(landing.join("xapi")).unwrap();
    std::fs::create_dir_all(landing.join("openedx")).unwrap();
    std::fs::create_dir_all(landing.join("moodle")).unwrap();
    std::fs::write(
        landing.join("_actors.csv"),
        "actor,student_id\nmailto:ann@example.edu,S-ANN\nbob,S-BOB\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("xapi/a.json"),
        r#"[{"id":"m-1","actor":{"mbox":"mailto:ann@example.edu"},"verb":{"id":"http://adlnet.gov/expapi/verbs/experienced"},"object":{"id":"https://lms/p/1"},"context":{"extensions":{"https://lms/x/course":"https://lms/courses/C9"}},"timestamp":"2026-03-03T10:00:00Z"}]"#,
    )
    .unwrap();
    std::fs::write(
        landing.join("openedx/tracking.log-20260303.gz"),
        {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(br#"{"username":"carol","event_type":"seq_goto","time":"2026-03-03T12:00:00","context":{"user_id":3,"course_id":"course-v1:X+Y+Z"},"event":{"id":"seq1"}}"#).unwrap();
            gz.finish().unwrap()
        },
    )
    .unwrap();
    std::fs::write(
        landing.join("moodle/log.json"),
        r#"{"id":"5","eventname":"\\mod_forum\\event\\post_created","component":"mod_forum","userid":"bob","courseid":"4","timecreated":"1772532900","contextlevel":"70","contextinstanceid":"12"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("learnlake.toml"),
        "[inputs]\nxapi_course = \"extension:https://lms/x/course\"\nids = \"iri\"\nactors = \"_actors.csv\"\nopenedx_student = \"username\"\nmoodle_site = \"campus2\"\n",
    )
    .unwrap();
    let lake = dir.join("lake");
    let out = ingest_ok(&dir, &lake, &landing, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summary_line(&stdout, "total")[5], "0", "{stdout}");
    let got = rows(
        &dir,
        &lake,
        "SELECT event_id, student_id, course_id, activity_type, timestamp FROM activity ORDER BY event_id",
    );
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0]["event_id"], "campus2-5");
    assert_eq!(got[0]["student_id"], "S-BOB");
    assert_eq!(got[0]["activity_type"], "forum_post");
    assert_eq!(got[1]["event_id"], "m-1");
    assert_eq!(
        got[1]["student_id"], "S-ANN",
        "looked up, no hash key needed"
    );
    assert_eq!(
        got[1]["course_id"], "https://lms/courses/C9",
        "the extension, kept whole"
    );
    assert_eq!(got[2]["student_id"], "carol");
    assert_eq!(got[2]["activity_type"], "content_view");
    assert_eq!(
        got[2]["timestamp"], "2026-03-03T12:00:00Z",
        "no offset: UTC"
    );

    std::fs::write(
        dir.join("learnlake.toml"),
        "[inputs]\nxapi_course = \"somewhere\"\nids = \"short\"\nopenedx_student = \"email\"\nmoodle_site = \"two words\"\n",
    )
    .unwrap();
    let out = learnlake(&dir, &["validate"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "inputs.xapi_course",
        "inputs.ids",
        "inputs.openedx_student",
        "inputs.moodle_site",
    ] {
        assert!(stderr.contains(key), "{key} not named:\n{stderr}");
    }
}
