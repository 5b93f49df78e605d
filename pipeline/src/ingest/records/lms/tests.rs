use super::*;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMicrosecondType;

fn rows(kind: Kind) -> Rows {
    Rows::new(kind, Some(b"key")).with_mapping(Arc::new(Mapping::default()))
}

/// The activity row one record becomes, as (column, value) text.
fn activity(dialect: Dialect, line: &str) -> Vec<(String, String)> {
    let mut rows = rows(Kind::Activity);
    let pushed = rows.push_lms(dialect, line);
    assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
    one_row(&rows.finish())
}

fn one_row(batch: &RecordBatch) -> Vec<(String, String)> {
    assert_eq!(batch.num_rows(), 1);
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, c)| c.is_valid(0))
        .map(|(f, c)| {
            let text = match c.data_type() {
                datafusion::arrow::datatypes::DataType::Timestamp(..) => {
                    let micros = c.as_primitive::<TimestampMicrosecondType>().value(0);
                    chrono::DateTime::from_timestamp_micros(micros)
                        .unwrap()
                        .to_rfc3339()
                }
                _ => datafusion::arrow::util::display::array_value_to_string(c, 0).unwrap(),
            };
            (f.name().clone(), text)
        })
        .collect()
}

fn get<'a>(row: &'a [(String, String)], column: &str) -> Option<&'a str> {
    row.iter()
        .find(|(c, _)| c == column)
        .map(|(_, v)| v.as_str())
}

const XAPI: &str = r#"{"id":"6690e6c9-3ef0-4ed3-8b37-7f3964730bee","actor":{"objectType":"Agent","account":{"homePage":"https://lms.example.edu","name":"s001"}},"verb":{"id":"http://adlnet.gov/expapi/verbs/completed","display":{"en-US":"completed"}},"object":{"id":"https://lms.example.edu/quizzes/Q7","definition":{"type":"http://adlnet.gov/expapi/activities/assessment"}},"result":{"score":{"raw":8,"min":0,"max":10},"success":true,"duration":"PT4M30S"},"context":{"registration":"ec531277-b57b-4c15-8d91-d292c5b2b8f7","contextActivities":{"parent":[{"id":"https://lms.example.edu/courses/CS101/week/3"}],"grouping":[{"id":"https://lms.example.edu/courses/CS101","definition":{"type":"http://adlnet.gov/expapi/activities/course"}}]}},"timestamp":"2026-03-03T10:15:00.000+0000"}"#;

#[test]
fn an_xapi_statement_maps_to_an_event_and_an_attempt() {
    let row = activity(Dialect::Xapi, XAPI);
    assert_eq!(
        get(&row, "event_id"),
        Some("6690e6c9-3ef0-4ed3-8b37-7f3964730bee")
    );
    assert_eq!(get(&row, "student_id"), Some("s001"));
    assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
    assert_eq!(get(&row, "activity_category"), Some("assessment"));
    assert_eq!(
        get(&row, "course_id"),
        Some("CS101"),
        "the course-typed grouping wins"
    );
    assert_eq!(get(&row, "quiz_id"), Some("Q7"));
    assert_eq!(get(&row, "score"), Some("80.0"));
    assert_eq!(get(&row, "duration_seconds"), Some("270.0"));
    assert_eq!(
        get(&row, "session_id"),
        Some("ec531277-b57b-4c15-8d91-d292c5b2b8f7")
    );
    assert_eq!(get(&row, "timestamp"), Some("2026-03-03T10:15:00+00:00"));
    assert_eq!(get(&row, "success"), Some("true"));

    let mut attempts = rows(Kind::Attempts);
    let pushed = attempts.push_lms(Dialect::Xapi, XAPI);
    assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
    let row = one_row(&attempts.finish());
    assert_eq!(
        get(&row, "attempt_id"),
        Some("6690e6c9-3ef0-4ed3-8b37-7f3964730bee")
    );
    assert_eq!(get(&row, "assessment_id"), Some("Q7"));
    assert_eq!(get(&row, "course_id"), Some("CS101"));
    assert_eq!(get(&row, "score"), Some("80.0"));
    assert_eq!(get(&row, "points_earned"), Some("8.0"));
    assert_eq!(get(&row, "points_possible"), Some("10.0"));
    assert_eq!(get(&row, "passed"), Some("true"));
    assert_eq!(get(&row, "started_at"), Some("2026-03-03T10:10:30+00:00"));
}

#[test]
fn xapi_mailboxes_become_one_keyed_hash_and_never_the_address() {
    let with = |actor: &str| {
        XAPI.replace(
            r#"{"objectType":"Agent","account":{"homePage":"https://lms.example.edu","name":"s001"}}"#,
            actor,
        )
    };
    let mbox = activity(Dialect::Xapi, &with(r#"{"mbox":"mailto:ann@example.edu"}"#));
    let sha1 = hex::encode(sha1::Sha1::digest(b"mailto:ann@example.edu"));
    let summed = activity(
        Dialect::Xapi,
        &with(&format!(r#"{{"mbox_sha1sum":"{sha1}"}}"#)),
    );
    let id = get(&mbox, "student_id").unwrap();
    assert!(id.starts_with("mbox-") && !id.contains("ann"), "{id}");
    assert_eq!(Some(id), get(&summed, "student_id"));

    let mut keyless = Rows::new(Kind::Activity, None);
    let pushed = keyless.push_lms(Dialect::Xapi, &with(r#"{"mbox":"mailto:ann@example.edu"}"#));
    assert!(
        pushed.rejected[0].contains("LEARNLAKE_HASH_KEY"),
        "{:?}",
        pushed.rejected
    );

    let mut mapped = Rows::new(Kind::Activity, None).with_mapping(Arc::new(Mapping {
        actors: Arc::new(HashMap::from([(
            "mailto:ann@example.edu".to_string(),
            "s042".to_string(),
        )])),
        ..Mapping::default()
    }));
    let pushed = mapped.push_lms(Dialect::Xapi, &with(r#"{"mbox":"mailto:ann@example.edu"}"#));
    assert!(pushed.rejected.is_empty());
    assert_eq!(get(&one_row(&mapped.finish()), "student_id"), Some("s042"));
}

#[test]
fn a_group_statement_is_each_members() {
    let group = XAPI.replace(
        r#"{"objectType":"Agent","account":{"homePage":"https://lms.example.edu","name":"s001"}}"#,
        r#"{"objectType":"Group","name":"team","member":[{"account":{"homePage":"h","name":"s002"}},{"account":{"homePage":"h","name":"s003"}}]}"#,
    );
    let mut rows = rows(Kind::Activity);
    assert!(rows.push_lms(Dialect::Xapi, &group).rejected.is_empty());
    let batch = rows.finish();
    let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>();
    let students = batch
        .column_by_name("student_id")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(ids.value(1), "6690e6c9-3ef0-4ed3-8b37-7f3964730bee#1");
    assert_eq!((students.value(0), students.value(1)), ("s002", "s003"));
    let empty = group.replace(r#","member":[{"account":{"homePage":"h","name":"s002"}},{"account":{"homePage":"h","name":"s003"}}]"#, "");
    let mut rows = super::tests::rows(Kind::Activity);
    assert!(rows.push_lms(Dialect::Xapi, &empty).rejected[0].contains("without members"));
}

#[test]
fn xapi_course_comes_from_the_configured_place() {
    let course = |setting: XapiCourse| {
        let mut rows = Rows::new(Kind::Activity, None).with_mapping(Arc::new(Mapping {
            xapi_course: setting,
            ids: IdStyle::Iri,
            ..Mapping::default()
        }));
        let line = XAPI.replace(
            r#""registration""#,
            r#""extensions":{"https://example.edu/x/course":{"id":"urn:course:ENG2"}},"registration""#,
        );
        assert!(rows.push_lms(Dialect::Xapi, &line).rejected.is_empty());
        get(&one_row(&rows.finish()), "course_id").map(str::to_string)
    };
    assert_eq!(
        course(XapiCourse::Auto).as_deref(),
        Some("https://lms.example.edu/courses/CS101")
    );
    assert_eq!(
        course(XapiCourse::Parent).as_deref(),
        Some("https://lms.example.edu/courses/CS101/week/3")
    );
    assert_eq!(
        course(XapiCourse::Extension("https://example.edu/x/course".into())).as_deref(),
        Some("urn:course:ENG2")
    );
    assert_eq!(
        XapiCourse::parse("extension:https://x/y"),
        Ok(XapiCourse::Extension("https://x/y".into()))
    );
    assert!(XapiCourse::parse("nowhere").is_err());
}

#[test]
fn voiding_statements_name_their_target_and_bad_ones_say_why() {
    let void = r#"{"id":"v1","actor":{"account":{"homePage":"h","name":"admin"}},"verb":{"id":"http://adlnet.gov/expapi/verbs/voided"},"object":{"objectType":"StatementRef","id":"6690e6c9-3ef0-4ed3-8b37-7f3964730bee"},"timestamp":"2026-03-04T00:00:00Z"}"#;
    for kind in [Kind::Activity, Kind::Attempts] {
        let mut rows = rows(kind);
        let pushed = rows.push_lms(Dialect::Xapi, void);
        assert_eq!(pushed.voids, ["6690e6c9-3ef0-4ed3-8b37-7f3964730bee"]);
        assert_eq!(rows.len(), 0);
    }
    let reason = |line: &str| {
        let mut rows = rows(Kind::Activity);
        let mut pushed = rows.push_lms(Dialect::Xapi, line);
        assert_eq!(rows.len(), 0, "{line}");
        pushed.rejected.pop().unwrap_or_default()
    };
    assert!(reason(&XAPI.replace(r#""raw":8"#, r#""raw":12"#)).contains("outside its range 0–10"));
    assert!(
        reason(
            &XAPI
                .replace(r#""result":{"#, r#""result":{"x":1,"#)
                .replace(r#""raw":8,"min":0,"max":10"#, r#""scaled":-0.5"#)
        )
        .contains("outside 0–1")
    );
    assert!(
        reason(&XAPI.replace("\"timestamp\"", "\"time\"")).contains("neither timestamp nor stored")
    );
    assert!(reason(&XAPI.replace("PT4M30S", "four minutes")).contains("ISO 8601"));
    assert!(reason(&XAPI[..200]).contains("malformed JSON"));
    assert!(
        reason(
            r#"{"id":"x","verb":{"id":"v"},"object":{"id":"o"},"timestamp":"2026-03-04T00:00:00Z"}"#
        )
        .contains("no actor")
    );
    assert!(reason(&void.replace("StatementRef", "Activity")).contains("StatementRef"));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(
        reason(&deep).contains("expected a JSON object"),
        "{}",
        reason(&deep)
    );
    let big = XAPI.replace("CS101/week/3", &"x".repeat(MAX_RECORD_BYTES));
    assert!(reason(&big).contains("MiB are refused"));
}

#[test]
fn arrays_and_statement_results_hold_several_statements() {
    let second = XAPI.replace("6690e6c9", "7790e6c9");
    let mut rows = rows(Kind::Activity);
    let pushed = rows.push_lms(Dialect::Xapi, &format!("[{XAPI},{second},{{\"id\":1}}]"));
    assert_eq!(rows.len(), 2);
    assert_eq!(pushed.rejected.len(), 1);
    assert!(
        pushed.rejected[0].starts_with("record 2 of the line"),
        "{:?}",
        pushed.rejected
    );
    let mut rows = super::tests::rows(Kind::Activity);
    let pushed = rows.push_lms(
        Dialect::Xapi,
        &format!(r#"{{"statements":[{XAPI},{second}],"more":""}}"#),
    );
    assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
    assert_eq!(rows.len(), 2);
}

#[test]
fn unknown_verbs_keep_their_last_segment() {
    use xapi::{Role, activity_type};
    assert_eq!(
        activity_type("http://example.com/verbs/shared", Role::Other).0,
        "shared"
    );
    assert_eq!(
        activity_type("https://w3id.org/xapi/video/verbs/played", Role::Media).0,
        "video_play"
    );
    assert_eq!(
        activity_type("http://adlnet.gov/expapi/verbs/completed", Role::Media).0,
        "video_complete"
    );
    assert_eq!(
        activity_type("http://adlnet.gov/expapi/verbs/experienced", Role::Other).0,
        "content_view"
    );
    assert_eq!(
        activity_type("https://w3id.org/xapi/adl/verbs/logged-in", Role::Other).0,
        "login"
    );
    assert_eq!(
        last_segment("https://lms.example.edu/courses/CS101/"),
        "CS101"
    );
    assert_eq!(
        last_segment("urn:uuid:ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f"),
        "ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f"
    );
    assert_eq!(
        last_segment("http://purl.imsglobal.org/vocab/caliper/v1/action#Viewed"),
        "Viewed"
    );
}

#[test]
fn durations_and_timestamps_in_the_forms_systems_write() {
    assert_eq!(iso_duration("PT4M30S"), Some(270.0));
    assert_eq!(iso_duration("P1DT2H"), Some(93_600.0));
    assert_eq!(iso_duration("PT0.5S"), Some(0.5));
    assert_eq!(iso_duration("P2W"), Some(1_209_600.0));
    assert_eq!(iso_duration("PT"), None);
    assert_eq!(iso_duration("4M"), None);
    assert_eq!(iso_duration("PT4X"), None);
    assert_eq!(
        rfc3339("2026-03-03T10:15:00+0000"),
        "2026-03-03T10:15:00+00:00"
    );
    assert_eq!(
        rfc3339("2026-03-03T10:15:00.584523"),
        "2026-03-03T10:15:00.584523Z"
    );
    assert_eq!(
        rfc3339("2026-03-03T10:15:00-05:00"),
        "2026-03-03T10:15:00-05:00"
    );
}

const CALIPER_SUBMITTED: &str = r#"{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:dad88464-0c20-4a19-a1ba-ddf2f9c3ff33","type":"AssessmentEvent","actor":{"id":"https://example.edu/users/554433","type":"Person"},"action":"Submitted","object":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1","type":"Assessment"},"generated":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1/users/554433/attempts/1","type":"Attempt","duration":"PT23M"},"eventTime":"2018-11-15T10:25:30.000Z","group":{"id":"https://example.edu/terms/201801/courses/7/sections/1","type":"CourseSection"},"session":{"id":"https://example.edu/sessions/1f6442a482de72ea6ad134943812bff564a76259","type":"Session"}}"#;
const CALIPER_GRADED: &str = r#"{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:a50ca17f-5971-47bb-8fca-4e6e6879001d","type":"GradeEvent","actor":{"id":"https://example.edu/autograder","type":"SoftwareApplication"},"action":"Graded","object":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1/users/554433/attempts/1","type":"Attempt","assignee":{"id":"https://example.edu/users/554433","type":"Person"},"assignable":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1","type":"Assessment"},"count":1,"startedAtTime":"2018-11-15T10:05:00.000Z","endedAtTime":"2018-11-15T10:55:12.000Z"},"eventTime":"2018-11-15T10:57:06.000Z","generated":{"id":"https://example.edu/.../scores/1","type":"Score","scoreGiven":15,"maxScore":15},"group":{"id":"https://example.edu/terms/201801/courses/7/sections/1","type":"CourseSection"}}"#;

#[test]
fn caliper_events_map_and_grades_are_attempts_only() {
    let row = activity(Dialect::Caliper, CALIPER_SUBMITTED);
    assert_eq!(
        get(&row, "event_id"),
        Some("urn:uuid:dad88464-0c20-4a19-a1ba-ddf2f9c3ff33")
    );
    assert_eq!(get(&row, "student_id"), Some("554433"));
    assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
    assert_eq!(
        get(&row, "course_id"),
        Some("1"),
        "the section's last segment"
    );
    assert_eq!(get(&row, "quiz_id"), Some("1"));
    assert_eq!(get(&row, "duration_seconds"), Some("1380.0"));

    let mut activity_rows = rows(Kind::Activity);
    let pushed = activity_rows.push_lms(Dialect::Caliper, CALIPER_GRADED);
    assert_eq!(
        (activity_rows.len(), pushed.skipped),
        (0, 1),
        "the grader's act is no student activity"
    );
    let mut attempts = rows(Kind::Attempts);
    let envelope = format!(
        r#"{{"sensor":"https://example.edu/sensors/1","sendTime":"2018-11-15T11:05:01.000Z","dataVersion":"http://purl.imsglobal.org/ctx/caliper/v1p2","data":[{CALIPER_SUBMITTED},{CALIPER_GRADED}]}}"#
    );
    let pushed = attempts.push_lms(Dialect::Caliper, &envelope);
    assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
    let row = one_row(&attempts.finish());
    assert_eq!(get(&row, "student_id"), Some("554433"));
    assert_eq!(get(&row, "assessment_id"), Some("1"));
    assert_eq!(get(&row, "score"), Some("100.0"));
    assert_eq!(get(&row, "attempt_number"), Some("1"));
    assert_eq!(get(&row, "submitted_at"), Some("2018-11-15T10:55:12+00:00"));
}

#[test]
fn open_edx_problem_checks_are_attempts_and_ids_come_from_the_line() {
    let line = r#"{"username":"ann","event_type":"problem_check","event_source":"server","time":"2026-03-03T10:15:00.123456+00:00","context":{"user_id":42,"course_id":"course-v1:edX+DemoX+Demo_Course","org_id":"edX"},"event":{"problem_id":"block-v1:edX+DemoX+Demo_Course+type@problem+block@p1","grade":2,"max_grade":4,"attempts":1,"success":"incorrect"},"session":"abc","ip":"10.0.0.1"}"#;
    let row = activity(Dialect::OpenEdx, line);
    assert_eq!(get(&row, "student_id"), Some("42"));
    assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
    assert_eq!(
        get(&row, "course_id"),
        Some("course-v1:edX+DemoX+Demo_Course")
    );
    assert_eq!(get(&row, "score"), Some("50.0"));
    assert!(get(&row, "event_id").unwrap().starts_with("openedx-"));
    assert_ne!(get(&row, "ip_address"), Some("10.0.0.1"), "hashed");
    let mut attempts = rows(Kind::Attempts);
    assert!(
        attempts
            .push_lms(Dialect::OpenEdx, line)
            .rejected
            .is_empty()
    );
    let attempt = one_row(&attempts.finish());
    assert_eq!(get(&attempt, "passed"), Some("false"));
    assert_eq!(get(&attempt, "attempt_id"), get(&row, "event_id"));

    let anonymous = r#"{"username":"","event_type":"/courses/x/about","time":"2026-03-03T10:15:00Z","context":{"user_id":""}}"#;
    let mut rows = rows(Kind::Activity);
    assert_eq!(rows.push_lms(Dialect::OpenEdx, anonymous).skipped, 1);
    assert!(
        rows.push_lms(
            Dialect::OpenEdx,
            r#"{"event_type":"play_video","time":"2026-03-03T10:15:00Z"}"#
        )
        .rejected[0]
            .contains("no user")
    );
}

#[test]
fn moodle_log_rows_map_and_the_report_download_is_explained() {
    let headers = csv::StringRecord::from(vec![
        "id",
        "eventname",
        "component",
        "action",
        "target",
        "crud",
        "edulevel",
        "contextlevel",
        "contextinstanceid",
        "userid",
        "courseid",
        "timecreated",
        "ip",
    ]);
    let record = csv::StringRecord::from(vec![
        "9001",
        "\\mod_quiz\\event\\attempt_submitted",
        "mod_quiz",
        "submitted",
        "attempt",
        "u",
        "2",
        "70",
        "55",
        "17",
        "4",
        "1772532900",
        "10.1.1.1",
    ]);
    let mut rows = rows(Kind::Activity);
    assert!(rows.push_lms_csv(&record, &headers).rejected.is_empty());
    let row = one_row(&rows.finish());
    assert_eq!(get(&row, "event_id"), Some("moodle-9001"));
    assert_eq!(get(&row, "student_id"), Some("17"));
    assert_eq!(get(&row, "course_id"), Some("4"));
    assert_eq!(get(&row, "quiz_id"), Some("55"));
    assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
    assert_eq!(get(&row, "timestamp"), Some("2026-03-03T10:15:00+00:00"));

    let report = csv::StringRecord::from(vec![
        "Time",
        "User full name",
        "Affected user",
        "Event context",
        "Component",
        "Event name",
        "Description",
        "Origin",
        "IP address",
    ]);
    let line = csv::StringRecord::from(vec![
        "3/03/26, 10:15",
        "Ann Lee",
        "-",
        "Quiz: Q1",
        "Quiz",
        "Quiz attempt submitted",
        "…",
        "web",
        "10.1.1.1",
    ]);
    let mut rows = super::tests::rows(Kind::Activity);
    assert!(rows.push_lms_csv(&line, &report).rejected[0].contains("logstore_standard_log"));
    assert_eq!(
        moodle::activity_type("\\mod_wiki\\event\\page_viewed", "").0,
        "page_viewed"
    );
}
