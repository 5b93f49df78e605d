//! Open edX tracking-log events (one JSON object per line): the user →
//! student_id, `event_type` → activity_type, `context.course_id` →
//! course_id, `time` → timestamp, `session` → session_id; a server
//! `problem_check` with a grade is an attempt. Tracking logs carry no
//! event id: a hash of the line is it.

use super::*;

pub(super) fn record(line: &str, rows: &mut Rows) -> Result<Mapped, String> {
    let e: Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    if !e.is_object() {
        return Err("not an Open edX event: expected a JSON object".into());
    }
    let mapping = rows.mapping.clone();
    let context = e.get("context").unwrap_or(&Value::Null);
    // Classic tracking logs put these at the top; the newer shape (the
    // event bus's, with `name`, `timestamp` and `data`) in `context`.
    let top_or_context = |key: &str| str_of(&e, key).or_else(|| str_of(context, key));
    let username = e
        .get("username")
        .and_then(Value::as_str)
        .or_else(|| context.get("username").and_then(Value::as_str));
    let user_id = match context.get("user_id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    if username.is_none() && user_id.is_none() {
        return Err("event has no user (username or context.user_id)".into());
    }
    let looked_up = username.and_then(|u| mapping.actors.get(u)).cloned();
    let student_id = match (looked_up, mapping.openedx_student) {
        (Some(id), _) => id,
        (None, OpenEdxStudent::UserId) => match user_id {
            Some(id) => id,
            None => username.unwrap_or_default().to_string(),
        },
        (None, OpenEdxStudent::Username) => username.unwrap_or_default().to_string(),
    };
    if student_id.is_empty() {
        // A visitor who is not logged in: not a student's activity.
        return Ok(Mapped::default());
    }
    let event_type = str_of(&e, "event_type")
        .or_else(|| str_of(&e, "name"))
        .ok_or("event has no event_type")?;
    let time = str_of(&e, "time")
        .or_else(|| str_of(&e, "timestamp"))
        .ok_or("event has no time")?;
    let timestamp = rfc3339(time).into_owned();
    // Browser events carry their data as a JSON string.
    let data: Value = match e.get("event").or_else(|| e.get("data")) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(other) => other.clone(),
        None => Value::Null,
    };
    let server = top_or_context("event_source") == Some("server");
    let course_id = str_of(context, "course_id").map(str::to_string);
    let (activity_type, category) = activity_type(event_type, server);
    let mut event = Event {
        event_id: text_id("openedx", line.trim()),
        student_id,
        timestamp,
        activity_type: activity_type.to_string(),
        activity_category: category,
        course_id,
        session_id: top_or_context("session").map(str::to_string),
        ip_address: top_or_context("ip").map(str::to_string),
        details: serde_json::json!({
            "source": "openedx",
            "event_type": event_type,
            "event_source": top_or_context("event_source"),
        })
        .to_string(),
        ..Event::default()
    };
    let problem = str_of(&data, "problem_id").map(str::to_string);
    match activity_type {
        "quiz_submit" | "help_requested" if problem.is_some() => event.quiz_id = problem.clone(),
        "video_play" | "video_complete" | "pause_video" | "seek_video" => {
            event.resource_id = str_of(&data, "id").map(str::to_string)
        }
        "content_view" => {
            event.resource_id = str_of(&data, "id")
                .or(str_of(&data, "target_name"))
                .map(str::to_string)
                .or_else(|| event_type.starts_with('/').then(|| event_type.to_string()))
        }
        _ => {}
    }
    let graded = event_type == "problem_check" && server && data.get("max_grade").is_some();
    let attempt = graded.then(|| -> Result<Attempt, String> {
        let max = number(data.get("max_grade")).ok_or("event.max_grade is not a number")?;
        let given = number(data.get("grade")).ok_or("graded problem has no grade")?;
        let score = percent(given, 0.0, max, "event.grade")?;
        event.score = Some(score);
        Ok(Attempt {
            attempt_id: event.event_id.clone(),
            student_id: event.student_id.clone(),
            course_id: event.course_id.clone(),
            assessment_id: problem.clone().ok_or("graded problem has no problem_id")?,
            assessment_type: "quiz",
            started_at: None,
            submitted_at: event.timestamp.clone(),
            score,
            points_earned: Some(given),
            points_possible: Some(max),
            passed: match str_of(&data, "success") {
                Some("correct") => Some(true),
                Some("incorrect") => Some(false),
                _ => None,
            },
            attempt_number: number(data.get("attempts")).map(|n| n as i64),
        })
    });
    if let Some(Err(reason)) = &attempt {
        return Err(reason.clone());
    }
    Ok(Mapped {
        event: Some(event),
        attempt,
        void: None,
    })
}

/// The contract's activity_type for an event type; unknown types are
/// kept as they are (Open edX's names are not IRIs).
pub(super) fn activity_type(event_type: &str, server: bool) -> (&str, Option<&'static str>) {
    let known = match event_type {
        "problem_check" if server => "quiz_submit",
        // The browser's copy of a check, and the grades service's
        // record of the same submission: the server's check is the one.
        "problem_check" | "edx.grades.problem.submitted" => {
            return (event_type, Some("assessment"));
        }
        "play_video" | "edx.video.played" => "video_play",
        "complete_video" | "edx.video.completed" | "stop_video" | "edx.video.stopped" => {
            "video_complete"
        }
        "pause_video" | "edx.video.paused" | "seek_video" | "edx.video.position.changed" => {
            return (event_type, Some("learning"));
        }
        "seq_goto" | "seq_next" | "seq_prev" | "page_close" => "content_view",
        t if t.starts_with("edx.ui.lms.sequence.") || t.starts_with("edx.ui.lms.link_clicked") => {
            "content_view"
        }
        t if t.starts_with("textbook.pdf.") => "resource_view",
        t if t.starts_with("edx.forum.") && t.ends_with(".created") => "forum_post",
        "showanswer" | "edx.problem.hint.demandhint_displayed" | "edx.problem.hint.displayed" => {
            "help_requested"
        }
        "edx.badge.assertion.created" | "edx.certificate.created" => "achievement_earned",
        "edx.user.login" | "login" => "login",
        "edx.user.logout" | "logout" => "logout",
        t if t.starts_with('/') => "content_view",
        _ => return (event_type, None),
    };
    (known, None)
}
