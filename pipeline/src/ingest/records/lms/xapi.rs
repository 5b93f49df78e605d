//! xAPI statements (IEEE 9274.1.1): `actor` → student_id, `verb.id` →
//! activity_type, the course's context activity → course_id,
//! `result.score` → score (and an attempt), `result.duration` →
//! duration_seconds, `id` → event_id; `verb` voided removes a statement.

use super::*;

#[derive(Deserialize)]
pub(super) struct Statement<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor: Option<Agent<'a>>,
    #[serde(borrow, default)]
    verb: Option<Verb<'a>>,
    #[serde(borrow, default)]
    object: Option<Object<'a>>,
    #[serde(borrow, default)]
    result: Option<Outcome<'a>>,
    #[serde(borrow, default)]
    context: Option<Context<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stored: Option<Cow<'a, str>>,
    /// A StatementResult (`{"statements": […], "more": …}`) holds statements.
    #[serde(borrow, default)]
    statements: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize, Default)]
struct Agent<'a> {
    #[serde(borrow, default, rename = "objectType")]
    object_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    mbox: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    mbox_sha1sum: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    openid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    account: Option<Account<'a>>,
    /// A Group's members.
    #[serde(borrow, default)]
    member: Option<Vec<Agent<'a>>>,
}

#[derive(Deserialize, Default)]
struct Account<'a> {
    #[serde(borrow, default, rename = "homePage")]
    home_page: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Verb<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default, rename = "objectType")]
    object_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    definition: Option<Definition<'a>>,
}

#[derive(Deserialize, Clone)]
struct Definition<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Outcome<'a> {
    #[serde(default)]
    score: Option<Score>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(borrow, default)]
    duration: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Score {
    #[serde(default)]
    scaled: Option<f64>,
    #[serde(default)]
    raw: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

#[derive(Deserialize)]
struct Context<'a> {
    #[serde(borrow, default)]
    registration: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "contextActivities")]
    activities: Option<ContextActivities<'a>>,
    #[serde(borrow, default)]
    extensions: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ContextActivities<'a> {
    #[serde(borrow, default, deserialize_with = "one_or_many")]
    parent: Vec<ActivityRef<'a>>,
    #[serde(borrow, default, deserialize_with = "one_or_many")]
    grouping: Vec<ActivityRef<'a>>,
}

/// xAPI 1.0 allowed one object where 1.0.3 asks for an array; read
/// either without buffering (serde's untagged enums allocate).
fn one_or_many<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<ActivityRef<'a>>, D::Error> {
    struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
        type Value = Vec<ActivityRef<'a>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an activity or an array of activities")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let one = ActivityRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            Ok(vec![one])
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    de.deserialize_any(Visitor(std::marker::PhantomData))
}

/// The context extensions learnlake reads by default.
#[derive(Deserialize)]
struct Extensions<'a> {
    #[serde(
        borrow,
        default,
        rename = "https://w3id.org/xapi/cmi5/context/extensions/sessionid"
    )]
    session: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ActivityRef<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    definition: Option<Definition<'a>>,
}

impl ActivityRef<'_> {
    fn type_segment(&self) -> Option<&str> {
        self.definition
            .as_ref()
            .and_then(|d| d.kind.as_deref())
            .map(last_segment)
    }
}

const CMI5_SESSION: &str = "https://w3id.org/xapi/cmi5/context/extensions/sessionid";

/// The statements of one line: a statement, an array of them or a
/// StatementResult.
pub(super) fn records(line: &str, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
    let text = line.trim_start();
    if text.starts_with('[') {
        return match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => items
                .iter()
                .flat_map(|s| statement(s.get(), rows))
                .collect(),
            Err(e) => vec![Err(format!("malformed JSON: {e}"))],
        };
    }
    match serde_json::from_str::<Statement>(text) {
        Ok(s) if s.statements.is_some() && s.actor.is_none() => s
            .statements
            .unwrap_or_default()
            .iter()
            .flat_map(|s| statement(s.get(), rows))
            .collect(),
        Ok(s) => by_member(s, rows),
        Err(e) => vec![Err(reason(text, e))],
    }
}

fn statement(text: &str, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
    if !text.trim_start().starts_with('{') {
        return vec![Err(format!(
            "not an xAPI statement: expected a JSON object, found {}",
            clip(text.trim_start())
        ))];
    }
    match serde_json::from_str::<Statement>(text) {
        Ok(s) => by_member(s, rows),
        Err(e) => vec![Err(reason(text, e))],
    }
}

/// A statement whose actor is a Group with members is each member's
/// (event and attempt ids get `#<member>`): learnlake's rows are one
/// person's. A Group without members is refused.
fn by_member(mut s: Statement, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
    let members = match s.actor.as_mut() {
        Some(actor) if actor.object_type.as_deref() == Some("Group") => {
            match actor.member.take().filter(|m| !m.is_empty()) {
                Some(members) => members,
                None => {
                    return vec![Err(
                        "actor is a Group without members; learnlake needs the people a statement is about"
                            .into(),
                    )];
                }
            }
        }
        _ => return vec![map(&s, rows)],
    };
    members
        .into_iter()
        .enumerate()
        .map(|(i, member)| {
            s.actor = Some(member);
            let mut mapped = map(&s, rows)?;
            if let Some(event) = &mut mapped.event {
                event.event_id = format!("{}#{i}", event.event_id);
            }
            if let Some(Ok(attempt)) = &mut mapped.attempt {
                attempt.attempt_id = format!("{}#{i}", attempt.attempt_id);
            }
            Ok(mapped)
        })
        .collect()
}

/// Why a statement could not be read, naming the field when serde can.
fn reason(text: &str, e: serde_json::Error) -> String {
    if e.is_syntax() || e.is_eof() {
        return format!("malformed JSON: {e}");
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Statement>(&mut de) {
        Err(e) => format!("statement field {}: {}", e.path(), e.inner()),
        Ok(_) => format!("not an xAPI statement: {e}"),
    }
}

fn map(s: &Statement, rows: &mut Rows) -> Result<Mapped, String> {
    let mapping = rows.mapping.clone();
    let verb = s
        .verb
        .as_ref()
        .and_then(|v| v.id.as_deref())
        .filter(|v| !v.is_empty())
        .ok_or("statement has no verb.id")?;
    let object = s.object.as_ref().ok_or("statement has no object")?;
    let object_type = object.object_type.as_deref().unwrap_or("Activity");
    if last_segment(verb) == "voided" {
        if object_type != "StatementRef" {
            return Err(
                "voiding statement's object is not a StatementRef naming the statement it voids"
                    .into(),
            );
        }
        let target = object
            .id
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or("voiding statement's StatementRef has no id")?;
        return Ok(Mapped {
            void: Some(target.to_string()),
            ..Mapped::default()
        });
    }
    let student_id = student(s.actor.as_ref(), rows)?;
    let timestamp = s
        .timestamp
        .as_deref()
        .or(s.stored.as_deref())
        .filter(|t| !t.is_empty())
        .ok_or("statement has neither timestamp nor stored")?;
    let timestamp = rfc3339(timestamp).into_owned();
    let event_id = match s.id.as_deref().filter(|i| !i.is_empty()) {
        Some(id) => id.to_string(),
        None => return Err("statement has no id (an LRS gives every statement one)".into()),
    };
    let role = Role::of(
        object
            .definition
            .as_ref()
            .and_then(|d| d.kind.as_deref())
            .map(last_segment),
    );
    let object_id = object.id.as_deref().filter(|i| !i.is_empty());
    let course_id = course(s.context.as_ref(), &mapping)?.or_else(|| {
        (role == Role::Course)
            .then_some(object_id)
            .flatten()
            .map(|id| mapping.id(id))
    });
    let (activity_type, category) = activity_type(verb, role);
    let result = s.result.as_ref();
    let duration_seconds = match result.and_then(|r| r.duration.as_deref()) {
        None => None,
        Some(d) => Some(iso_duration(d).ok_or_else(|| {
            format!(
                "result.duration {:?} is not an ISO 8601 duration like PT4M30S",
                clip(d)
            )
        })?),
    };
    let score = match result.and_then(|r| r.score.as_ref()) {
        None => None,
        Some(score) => Some(percentage(score)?),
    };
    let session_id = s.context.as_ref().and_then(|c| {
        c.extensions
            .filter(|e| e.get().contains(CMI5_SESSION))
            .and_then(|e| serde_json::from_str::<Extensions>(e.get()).ok())
            .and_then(|e| e.session.map(Cow::into_owned))
            .or_else(|| c.registration.as_deref().map(str::to_string))
    });
    let object_short = object_id.map(|id| mapping.id(id));
    let mut event = Event {
        event_id,
        student_id,
        timestamp,
        activity_type: activity_type.into_owned(),
        activity_category: category,
        course_id,
        session_id,
        duration_seconds,
        score,
        success: result.and_then(|r| r.success),
        details: format!(
            r#"{{"source":"xapi","verb":{},"object":{}}}"#,
            json_text(Some(verb)),
            json_text(object_id)
        ),
        ..Event::default()
    };
    match role {
        Role::Assessment | Role::Exam | Role::Practice => event.quiz_id = object_short.clone(),
        Role::Assignment => event.assignment_id = object_short.clone(),
        Role::Lesson => event.lesson_id = object_short.clone(),
        Role::Course | Role::Question => {}
        Role::Media | Role::Resource | Role::Other => event.resource_id = object_short.clone(),
    }
    let scored_attempt = score.is_some()
        && last_segment(verb) != "answered"
        && role != Role::Question
        && object_type == "Activity";
    let attempt = scored_attempt.then(|| {
        let raw = result.and_then(|r| r.score.as_ref());
        Ok(Attempt {
            attempt_id: event.event_id.clone(),
            student_id: event.student_id.clone(),
            course_id: event.course_id.clone(),
            assessment_id: object_short
                .clone()
                .ok_or("a scored statement's object has no id")?,
            assessment_type: match role {
                Role::Assignment => "assignment",
                Role::Exam => "exam",
                Role::Practice => "practice",
                _ => "quiz",
            },
            started_at: started_at(&event.timestamp, duration_seconds),
            submitted_at: event.timestamp.clone(),
            score: score.unwrap_or_default(),
            points_earned: raw.and_then(|s| s.raw),
            points_possible: raw.and_then(|s| s.raw.and(s.max)),
            passed: event.success,
            attempt_number: None,
        })
    });
    Ok(Mapped {
        event: Some(event),
        attempt,
        void: None,
    })
}

/// The submission time less the time it took, when both are known.
fn started_at(submitted: &str, seconds: Option<f64>) -> Option<String> {
    let end = chrono::DateTime::parse_from_rfc3339(submitted).ok()?;
    let took = chrono::Duration::milliseconds((seconds? * 1000.0) as i64);
    Some((end - took).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// `result.score` as 0–100: `scaled` × 100, else `raw` within
/// `min`–`max`, else `raw` when it is already 0–100.
fn percentage(score: &Score) -> Result<f64, String> {
    if let Some(scaled) = score.scaled {
        if !(0.0..=1.0).contains(&scaled) {
            return Err(format!(
                "result.score.scaled {scaled} is outside 0–1 (learnlake keeps scores as 0–100)"
            ));
        }
        return Ok(scaled * 100.0);
    }
    match (score.raw, score.max) {
        (Some(raw), Some(max)) => percent(raw, score.min.unwrap_or(0.0), max, "result.score.raw"),
        (Some(raw), None) if (0.0..=100.0).contains(&raw) => Ok(raw),
        (Some(raw), None) => Err(format!(
            "result.score.raw {raw} has no max, so it cannot be read as a percentage"
        )),
        (None, _) => Err("result.score has neither scaled nor raw".into()),
    }
}

/// The student an actor is: the configured lookup, else an account's
/// name, else a keyed hash of the mailbox (mbox and mbox_sha1sum give
/// the same id) or openid. Raw addresses are never kept.
fn student(actor: Option<&Agent>, rows: &mut Rows) -> Result<String, String> {
    let actor = actor.ok_or("statement has no actor")?;
    let lookup = &rows.mapping.actors;
    if !lookup.is_empty() {
        let account = actor.account.as_ref().map(|a| {
            format!(
                "{}|{}",
                a.home_page.as_deref().unwrap_or_default(),
                a.name.as_deref().unwrap_or_default()
            )
        });
        let keys = [
            actor.mbox.as_deref(),
            actor.mbox_sha1sum.as_deref(),
            actor.openid.as_deref(),
            account.as_deref(),
            actor.account.as_ref().and_then(|a| a.name.as_deref()),
        ];
        if let Some(id) = keys.into_iter().flatten().find_map(|k| lookup.get(k)) {
            return Ok(id.clone());
        }
    }
    if let Some(name) = actor
        .account
        .as_ref()
        .and_then(|a| a.name.as_deref())
        .filter(|n| !n.is_empty())
    {
        return Ok(name.to_string());
    }
    let hashed = if let Some(mbox) = actor.mbox.as_deref().filter(|m| !m.is_empty()) {
        Some(hex::encode(sha1::Sha1::digest(mbox.as_bytes())))
    } else {
        actor
            .mbox_sha1sum
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(str::to_ascii_lowercase)
    };
    let (prefix, secret) = match (hashed, actor.openid.as_deref().filter(|o| !o.is_empty())) {
        (Some(sha1), _) => ("mbox", format!("xapi-mbox:{sha1}")),
        (None, Some(openid)) => ("openid", format!("xapi-openid:{openid}")),
        (None, None) => {
            return Err(
                "statement has no actor identifier (account, mbox, mbox_sha1sum or openid)".into(),
            );
        }
    };
    let hasher = rows.hasher.as_mut().ok_or(
        "actor is known only by an e-mail address or openid, which learnlake stores only as a keyed hash: set LEARNLAKE_HASH_KEY (or map actors to student ids in [inputs] actors)",
    )?;
    Ok(format!("{prefix}-{}", &hasher.hash(&secret)[..32]))
}

fn course(context: Option<&Context>, mapping: &Mapping) -> Result<Option<String>, String> {
    let Some(context) = context else {
        return Ok(None);
    };
    let empty: &[ActivityRef] = &[];
    let activities = context.activities.as_ref();
    let parent = activities.map_or(empty, |a| a.parent.as_slice());
    let grouping = activities.map_or(empty, |a| a.grouping.as_slice());
    let id = |a: &ActivityRef| {
        a.id.as_deref()
            .filter(|i| !i.is_empty())
            .map(|i| mapping.id(i))
    };
    Ok(match &mapping.xapi_course {
        XapiCourse::Auto => parent
            .iter()
            .chain(grouping)
            .find(|a| a.type_segment() == Some("course"))
            .or(grouping.first())
            .or(parent.first())
            .and_then(id),
        XapiCourse::Parent => parent.first().and_then(id),
        XapiCourse::Grouping => grouping.first().and_then(id),
        XapiCourse::Extension(key) => match context.extensions {
            None => None,
            Some(e) => {
                let extensions: HashMap<&str, Value> = serde_json::from_str(e.get())
                    .map_err(|e| format!("context.extensions is not an object: {e}"))?;
                extensions
                    .get(key.as_str())
                    .and_then(id_of)
                    .map(|i| mapping.id(i))
            }
        },
    })
}

/// What the statement's object is, from its activity type's last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Assessment,
    /// A practice quiz: its attempts never count (PRODUCT §3).
    Practice,
    Exam,
    Assignment,
    Question,
    Lesson,
    Course,
    Media,
    Resource,
    Other,
}

impl Role {
    pub(super) fn of(segment: Option<&str>) -> Role {
        match segment.map(str::to_ascii_lowercase).as_deref() {
            Some("assessment" | "quiz" | "test") => Role::Assessment,
            Some("practice" | "self-assessment") => Role::Practice,
            Some("exam") => Role::Exam,
            Some("assignment") => Role::Assignment,
            Some("cmi.interaction" | "question" | "interaction") => Role::Question,
            Some("lesson" | "module" | "unit" | "chapter" | "section" | "simulation") => {
                Role::Lesson
            }
            Some("course") => Role::Course,
            Some("video" | "audio" | "media") => Role::Media,
            Some("file" | "link" | "document" | "resource" | "book" | "page" | "webpage") => {
                Role::Resource
            }
            _ => Role::Other,
        }
    }
}

/// The contract's activity_type for a verb (by its IRI's last segment)
/// on an object of `role`; unknown verbs keep their last segment.
pub(super) fn activity_type(verb: &str, role: Role) -> (Cow<'_, str>, Option<&'static str>) {
    let segment = last_segment(verb);
    let known = match (segment, role) {
        (
            "launched" | "initialized" | "attempted",
            Role::Assessment | Role::Exam | Role::Practice,
        ) => "quiz_start",
        ("launched" | "initialized" | "attempted", _) => "lesson_start",
        ("completed", Role::Assessment | Role::Exam | Role::Practice) => "quiz_submit",
        ("completed", Role::Assignment) => "assignment_submit",
        ("completed", Role::Media) => "video_complete",
        ("completed", _) => "lesson_complete",
        ("passed" | "failed" | "scored" | "submitted", Role::Assignment) => "assignment_submit",
        ("passed" | "failed" | "scored" | "submitted", _) => "quiz_submit",
        ("experienced" | "viewed" | "accessed" | "read" | "visited", Role::Resource) => {
            "resource_view"
        }
        ("experienced" | "viewed" | "accessed" | "read" | "visited", _) => "content_view",
        ("downloaded", _) => "resource_download",
        ("played", _) => "video_play",
        ("logged-in" | "loggedin" | "logged_in" | "login", _) => "login",
        ("logged-out" | "loggedout" | "logged_out" | "logout", _) => "logout",
        ("commented" | "posted" | "replied" | "responded", _) => "forum_post",
        ("asked", _) => "help_requested",
        ("earned" | "achieved" | "awarded", _) => "achievement_earned",
        ("answered", _) => return (Cow::Borrowed("answered"), Some("assessment")),
        ("paused" | "seeked" | "resumed", Role::Media) => {
            return (Cow::Borrowed(segment), Some("learning"));
        }
        _ => return (Cow::Borrowed(segment), None),
    };
    (Cow::Borrowed(known), None)
}
