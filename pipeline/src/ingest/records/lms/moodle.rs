//! Moodle's standard log (`logstore_standard_log`, as CSV with its
//! column names or as JSON objects): `userid` → student_id, `courseid`
//! → course_id, `timecreated` → timestamp, `eventname` →
//! activity_type, `<site>-<id>` → event_id, `ip` → the keyed hash. The
//! log holds no scores: Moodle grades come in as native attempts.

use super::*;

pub(super) fn json_record(line: &str, rows: &mut Rows) -> Result<Mapped, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("not a Moodle log row: expected a JSON object".into());
    };
    let texts: Vec<(String, String)> = object
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    let fields: HashMap<&str, &str> = texts
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    record(&fields, rows)
}

pub(super) fn record(fields: &HashMap<&str, &str>, rows: &mut Rows) -> Result<Mapped, String> {
    let get = |k: &str| {
        fields
            .get(k)
            .copied()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if get("eventname").is_none()
        && (fields.contains_key("Event name") || fields.contains_key("User full name"))
    {
        return Err("this is Moodle's Logs report download (names, not ids, and local times); export the standard log table (logstore_standard_log: id, eventname, userid, courseid, timecreated, …) instead".into());
    }
    let mapping = rows.mapping.clone();
    let id = get("id").ok_or("missing required field \"id\" (the log row's id)")?;
    let eventname = get("eventname").ok_or("missing required field \"eventname\"")?;
    let userid = get("userid").ok_or("missing required field \"userid\"")?;
    if userid == "0" || userid.starts_with('-') {
        // A guest or the system, not a student.
        return Ok(Mapped::default());
    }
    let student_id = mapping
        .actors
        .get(userid)
        .cloned()
        .unwrap_or_else(|| userid.to_string());
    let created = get("timecreated").ok_or("missing required field \"timecreated\"")?;
    let seconds: i64 = created
        .parse()
        .map_err(|_| format!("timecreated {:?} is not Unix seconds", clip(created)))?;
    let timestamp = chrono::DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| format!("timecreated {seconds} is out of range"))?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let component = get("component").unwrap_or_default();
    let (activity_type, category) = activity_type(eventname, component);
    let course_id = get("courseid")
        .filter(|c| !matches!(*c, "0" | "1"))
        .map(str::to_string);
    let module = get("contextinstanceid")
        .filter(|_| get("contextlevel") == Some("70"))
        .map(str::to_string);
    let mut event = Event {
        event_id: format!("{}-{id}", mapping.moodle_site),
        student_id,
        timestamp,
        activity_type: activity_type.to_string(),
        activity_category: category,
        course_id,
        ip_address: get("ip").map(str::to_string),
        details: serde_json::json!({
            "source": "moodle",
            "eventname": eventname,
            "component": component,
            "crud": get("crud"),
            "edulevel": get("edulevel"),
        })
        .to_string(),
        ..Event::default()
    };
    match component {
        "mod_quiz" => event.quiz_id = module,
        "mod_assign" => event.assignment_id = module,
        "mod_lesson" => event.lesson_id = module,
        _ => event.resource_id = module,
    }
    Ok(Mapped {
        event: Some(event),
        attempt: None,
        void: None,
    })
}

/// The contract's activity_type for an event name
/// (`\mod_quiz\event\attempt_submitted`); unknown ones keep the name's
/// last part.
pub(super) fn activity_type<'a>(
    eventname: &'a str,
    component: &str,
) -> (&'a str, Option<&'static str>) {
    let name = eventname.rsplit('\\').next().unwrap_or(eventname);
    let component = if component.is_empty() {
        eventname
            .trim_start_matches('\\')
            .split('\\')
            .next()
            .unwrap_or("")
    } else {
        component
    };
    let known = match (name, component) {
        ("user_loggedin", _) => "login",
        ("user_loggedout", _) => "logout",
        ("course_viewed", _) => "content_view",
        ("course_module_viewed", "mod_resource" | "mod_url" | "mod_folder") => "resource_view",
        ("course_module_viewed", _) => "content_view",
        ("attempt_started", "mod_quiz") => "quiz_start",
        ("attempt_submitted", "mod_quiz") => "quiz_submit",
        ("assessable_submitted", _) => "assignment_submit",
        ("post_created" | "discussion_created", _) => "forum_post",
        ("badge_awarded", _) => "achievement_earned",
        ("lesson_started", _) => "lesson_start",
        ("lesson_ended" | "course_module_completion_updated", _) => "lesson_complete",
        _ => return (name, None),
    };
    (known, None)
}
