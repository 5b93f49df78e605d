//! IMS Caliper 1.1/1.2 events, alone, in arrays or in envelopes
//! (`{"sensor", "sendTime", "dataVersion", "data": […]}`): `actor` →
//! student_id, `action` (and the object's type) → activity_type,
//! `eventTime` → timestamp, `group` / `membership.organization` →
//! course_id, `session` → session_id, `id` → event_id. A GradeEvent's
//! `generated` Score (`scoreGiven` / `maxScore`) is an attempt of the
//! Attempt it grades (its assignee and assignable).

use super::*;

pub(super) fn records(line: &str, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return vec![Err(format!("malformed JSON: {e}"))],
    };
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) if o.get("data").is_some_and(Value::is_array) => o["data"]
            .as_array()
            .map(|d| d.iter().collect())
            .unwrap_or_default(),
        other => vec![other],
    };
    items.into_iter().map(|e| event(e, rows)).collect()
}

fn is_event(value: &Value) -> bool {
    value.get("action").is_some()
        || str_of(value, "type").is_some_and(|t| last_segment(t).ends_with("Event"))
}

fn event(e: &Value, rows: &mut Rows) -> Result<Mapped, String> {
    if !e.is_object() {
        return Err("not a Caliper event: expected a JSON object".into());
    }
    if !is_event(e) {
        // An envelope's described entity (a Person, a CourseSection).
        return Ok(Mapped::default());
    }
    let mapping = rows.mapping.clone();
    let kind = str_of(e, "type").map(last_segment).unwrap_or("Event");
    let action = str_of(e, "action")
        .map(last_segment)
        .ok_or("event has no action")?;
    let timestamp = str_of(e, "eventTime").ok_or("event has no eventTime")?;
    let timestamp = rfc3339(timestamp).into_owned();
    let event_id = match str_of(e, "id") {
        Some(id) => id.to_string(),
        None => text_id("caliper", &e.to_string()),
    };
    let object = e.get("object").unwrap_or(&Value::Null);
    let object_type = str_of(object, "type").map(last_segment).unwrap_or("");
    let course_id = e
        .get("group")
        .and_then(id_of)
        .or_else(|| {
            e.get("membership")
                .and_then(|m| m.get("organization"))
                .and_then(id_of)
        })
        .map(|c| mapping.id(c));
    let session_id = mapping.id_in(e, "session");
    let generated = e.get("generated").unwrap_or(&Value::Null);

    if kind == "GradeEvent" || action == "Graded" {
        let student = object
            .get("assignee")
            .and_then(id_of)
            .ok_or("grade event's object (the Attempt) has no assignee")?;
        let student_id = actor_student(student, &mapping);
        let attempt = (|| {
            let assessment = object
                .get("assignable")
                .and_then(id_of)
                .ok_or("grade event's Attempt has no assignable (the assessment)")?;
            let given = number(generated.get("scoreGiven"))
                .ok_or("grade event has no generated.scoreGiven")?;
            let max =
                number(generated.get("maxScore")).ok_or("grade event has no generated.maxScore")?;
            let assignable_type = object
                .get("assignable")
                .and_then(|a| str_of(a, "type"))
                .unwrap_or("");
            Ok(Attempt {
                attempt_id: id_of(object).map_or_else(|| event_id.clone(), str::to_string),
                student_id: student_id.clone(),
                course_id: course_id.clone(),
                assessment_id: mapping.id(assessment),
                assessment_type: if assignable_type == "AssignableDigitalResource" {
                    "assignment"
                } else {
                    "quiz"
                },
                started_at: str_of(object, "startedAtTime").map(|t| rfc3339(t).into_owned()),
                submitted_at: str_of(object, "endedAtTime")
                    .map_or_else(|| timestamp.clone(), |t| rfc3339(t).into_owned()),
                score: percent(given, 0.0, max, "generated.scoreGiven")?,
                points_earned: Some(given),
                points_possible: Some(max),
                passed: None,
                attempt_number: number(object.get("count")).map(|n| n as i64),
            })
        })();
        return Ok(Mapped {
            event: None,
            attempt: Some(attempt),
            void: None,
        });
    }

    let actor = e.get("actor").and_then(id_of).ok_or("event has no actor")?;
    let student_id = actor_student(actor, &mapping);
    let (activity_type, category) = activity_type(action, object_type);
    let object_id = id_of(object).map(|o| mapping.id(o));
    let mut event = Event {
        event_id,
        student_id,
        timestamp,
        activity_type: activity_type.into_owned(),
        activity_category: category,
        course_id,
        session_id,
        // The Attempt's time taken (an object's own `duration` is a
        // video's length, not time spent).
        duration_seconds: str_of(generated, "duration").and_then(iso_duration),
        details: serde_json::json!({
            "source": "caliper",
            "type": kind,
            "action": action,
            "object": id_of(object),
        })
        .to_string(),
        ..Event::default()
    };
    match object_type {
        "Assessment" => event.quiz_id = object_id,
        "AssessmentItem" => event.quiz_id = mapping.id_in(object, "isPartOf").or(object_id),
        "AssignableDigitalResource" => event.assignment_id = object_id,
        "Attempt" => event.quiz_id = mapping.id_in(object, "assignable"),
        "CourseSection"
        | "CourseOffering"
        | "Group"
        | "Organization"
        | "SoftwareApplication"
        | "Person" => {}
        _ if event.activity_type.starts_with("lesson_") => event.lesson_id = object_id,
        _ => event.resource_id = object_id,
    }
    Ok(Mapped {
        event: Some(event),
        attempt: None,
        void: None,
    })
}

/// A Caliper actor (an IRI) as a student id: the configured lookup,
/// else the IRI in the configured id style.
fn actor_student(actor: &str, mapping: &Mapping) -> String {
    match mapping.actors.get(actor) {
        Some(id) => id.clone(),
        None => mapping.id(actor),
    }
}

/// The contract's activity_type for an action on an object type;
/// unknown actions keep their name.
pub(super) fn activity_type<'a>(
    action: &'a str,
    object_type: &str,
) -> (Cow<'a, str>, Option<&'static str>) {
    let media = matches!(
        object_type,
        "MediaObject" | "VideoObject" | "AudioObject" | "MediaLocation"
    );
    let known = match action {
        "LoggedIn" => "login",
        "LoggedOut" => "logout",
        "NavigatedTo" | "Viewed" => "content_view",
        "Started" | "Restarted" if object_type == "Assessment" => "quiz_start",
        "Started" | "Resumed" if media => "video_play",
        "Started" => "lesson_start",
        "Submitted" if object_type == "AssignableDigitalResource" => "assignment_submit",
        "Submitted" => "quiz_submit",
        "Completed" if object_type == "AssessmentItem" => {
            return (Cow::Borrowed("answered"), Some("assessment"));
        }
        "Completed" if object_type == "Assessment" => "quiz_submit",
        "Ended" | "Completed" if media => "video_complete",
        "Completed" => "lesson_complete",
        "Posted" | "Commented" | "Replied" => "forum_post",
        "Downloaded" => "resource_download",
        "Paused" | "Resumed" | "JumpedTo" | "ForwardedTo" if media => {
            return (Cow::Borrowed(action), Some("learning"));
        }
        _ => return (Cow::Borrowed(action), None),
    };
    (Cow::Borrowed(known), None)
}
