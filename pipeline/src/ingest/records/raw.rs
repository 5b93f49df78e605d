//! The serde shapes of raw rows, as the contract spells them (aliases and
//! lenient CSV booleans included), and how one NDJSON line or CSV record is
//! read into them with a reason that names the field when it cannot be.
//! Strings borrow from the input where they can. No checks beyond types.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

#[derive(Deserialize, Default)]
pub(super) struct RawActivity<'a> {
    #[serde(borrow, default)]
    pub(super) event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) activity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) activity_category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) lesson_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) quiz_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assignment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) duration_seconds: Option<f64>,
    #[serde(default)]
    pub(super) interaction_count: Option<i64>,
    #[serde(default)]
    pub(super) progress: Option<f64>,
    #[serde(default)]
    pub(super) score: Option<f64>,
    #[serde(borrow, default)]
    pub(super) device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) browser: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) os: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) device: Option<RawDevice<'a>>,
    #[serde(borrow, default)]
    pub(super) ip_address: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) success: Option<bool>,
    #[serde(borrow, default)]
    pub(super) details: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawDevice<'a> {
    #[serde(borrow, default, alias = "type")]
    pub(super) device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) browser: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) os: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawAttempt<'a> {
    #[serde(borrow, default)]
    pub(super) attempt_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assessment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) quiz_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assessment_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) started_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) submitted_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) completed_at: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) score: Option<f64>,
    #[serde(default)]
    pub(super) points_earned: Option<f64>,
    #[serde(default)]
    pub(super) points_possible: Option<f64>,
    #[serde(default)]
    pub(super) passing_score: Option<f64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) passed: Option<bool>,
    #[serde(default)]
    pub(super) attempt_number: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) is_practice: Option<bool>,
    #[serde(borrow, default)]
    pub(super) skill: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) answers: Option<Vec<RawAnswer<'a>>>,
    #[serde(borrow, default)]
    pub(super) integrity_flags: Option<Vec<RawIntegrityFlag<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct RawAnswer<'a> {
    #[serde(borrow, default)]
    pub(super) question_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) question_type: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) is_correct: Option<bool>,
    #[serde(default)]
    pub(super) points_earned: Option<f64>,
    #[serde(default)]
    pub(super) points_possible: Option<f64>,
    #[serde(default)]
    pub(super) time_spent_seconds: Option<f64>,
    #[serde(borrow, default)]
    pub(super) skill: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawIntegrityFlag<'a> {
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
    #[serde(borrow, default)]
    pub(super) timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) details: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct RawStudent<'a> {
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) guardian_email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) timezone: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) locale: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) notify_reminders: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) notify_achievements: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) notify_deadlines: Option<bool>,
    #[serde(borrow, default)]
    pub(super) advisor_email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawCourse<'a> {
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) start_date: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) end_date: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) total_lessons: Option<i64>,
    #[serde(default)]
    pub(super) passing_score: Option<f64>,
    #[serde(borrow, default)]
    pub(super) instructor_email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawEnrollment<'a> {
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) enrolled_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) withdrawn_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) final_result: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawAssessment<'a> {
    #[serde(borrow, default)]
    pub(super) assessment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assessment_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) due_at: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) weight: Option<f64>,
}

/// Parses one JSON object. Valid lines take the plain serde_json path; only
/// a line that fails is parsed again with path tracking, for a reason that
/// names the field.
/// The fields of an activity line [`flat_activity`] reads itself.
const FLAT_FIELDS: [&str; 22] = [
    "event_id",
    "student_id",
    "timestamp",
    "activity_type",
    "activity_category",
    "course_id",
    "lesson_id",
    "quiz_id",
    "assignment_id",
    "resource_id",
    "session_id",
    "device_type",
    "browser",
    "os",
    "ip_address",
    "interaction_count",
    "duration_seconds",
    "progress",
    "score",
    "success",
    "device",
    "details",
];

/// An activity line as most exports write it, read without serde: one
/// object whose members are the contract's text fields (strings without
/// escapes, or null), numeric fields (integers, or decimals of at most 15
/// digits without exponent, or null), `success` (true, false or null),
/// `device` (an object of such strings under `device_type`/`type`, `browser`
/// and `os`, or null) and `details` (an object, kept as its text), each once.
/// `None` for anything else — an escape, an exponent, another member, a
/// duplicate, bad JSON — which [`from_json`] reads (or explains) as before;
/// whenever this returns a row, serde returns the same (a property test
/// holds them to it). serde's generic field visitors were a fifth of a
/// narrow ingest; rich exports' devices, details and fractional durations
/// sent half their lines to serde.
pub(super) fn flat_activity(line: &str) -> Option<RawActivity<'_>> {
    let b = line.as_bytes();
    let mut raw = RawActivity::default();
    let mut seen = 0u32;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(raw);
    }
    loop {
        let (key, next) = member_key(line, i)?;
        i = next;
        let field = flat_field(key)?;
        if seen & (1 << field) != 0 {
            return None;
        }
        seen |= 1 << field;
        if field < 15 {
            let (value, next) = nullable(line, i, plain_string)?;
            i = next;
            let value = value.map(Cow::Borrowed);
            let slot = match field {
                0 => &mut raw.event_id,
                1 => &mut raw.student_id,
                2 => &mut raw.timestamp,
                3 => &mut raw.activity_type,
                4 => &mut raw.activity_category,
                5 => &mut raw.course_id,
                6 => &mut raw.lesson_id,
                7 => &mut raw.quiz_id,
                8 => &mut raw.assignment_id,
                9 => &mut raw.resource_id,
                10 => &mut raw.session_id,
                11 => &mut raw.device_type,
                12 => &mut raw.browser,
                13 => &mut raw.os,
                _ => &mut raw.ip_address,
            };
            *slot = value;
        } else if field == 15 {
            let (value, next) = nullable(line, i, plain_integer)?;
            i = next;
            raw.interaction_count = value;
        } else if field < 19 {
            let (value, next) = nullable(line, i, plain_number)?;
            i = next;
            match field {
                16 => raw.duration_seconds = value,
                17 => raw.progress = value,
                _ => raw.score = value,
            }
        } else if field == 19 {
            let (value, next) = nullable(line, i, plain_bool)?;
            i = next;
            raw.success = value;
        } else if field == 20 {
            let (value, next) = nullable(line, i, plain_device)?;
            i = next;
            raw.device = value;
        } else {
            let (value, next) = nullable(line, i, json_object)?;
            i = next;
            raw.details = value;
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(raw),
            _ => return None,
        }
    }
}

/// The position of `key` in [`FLAT_FIELDS`] (a match, not a search: a
/// string comparison per field was 3 % of a narrow ingest).
fn flat_field(key: &str) -> Option<usize> {
    let field = match key {
        "event_id" => 0,
        "student_id" => 1,
        "timestamp" => 2,
        "activity_type" => 3,
        "activity_category" => 4,
        "course_id" => 5,
        "lesson_id" => 6,
        "quiz_id" => 7,
        "assignment_id" => 8,
        "resource_id" => 9,
        "session_id" => 10,
        "device_type" => 11,
        "browser" => 12,
        "os" => 13,
        "ip_address" => 14,
        "interaction_count" => 15,
        "duration_seconds" => 16,
        "progress" => 17,
        "score" => 18,
        "success" => 19,
        "device" => 20,
        "details" => 21,
        _ => return None,
    };
    debug_assert_eq!(FLAT_FIELDS[field], key);
    Some(field)
}

/// An object member's key (a string without escapes) at `i`, and the index
/// of its value (after the colon and white space).
fn member_key(line: &str, i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    let (key, next) = plain_string(line, i)?;
    let colon = skip_ws(b, next);
    if b.get(colon) != Some(&b':') {
        return None;
    }
    Some((key, skip_ws(b, colon + 1)))
}

/// The index of the first byte at or after `i` that is not JSON white space.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `null` at `i`, or the value `read` reads there; and the index after it.
fn nullable<'a, T>(
    line: &'a str,
    i: usize,
    read: impl FnOnce(&'a str, usize) -> Option<(T, usize)>,
) -> Option<(Option<T>, usize)> {
    if line.as_bytes()[i..].starts_with(b"null") {
        return Some((None, i + 4));
    }
    read(line, i).map(|(value, next)| (Some(value), next))
}

/// The JSON `true` or `false` at `i`, and the index after it.
fn plain_bool(line: &str, i: usize) -> Option<(bool, usize)> {
    let rest = &line.as_bytes()[i..];
    if rest.starts_with(b"true") {
        Some((true, i + 4))
    } else if rest.starts_with(b"false") {
        Some((false, i + 5))
    } else {
        None
    }
}

/// The JSON string starting at `i`, when it has no escape and no control
/// character, and the index after its closing quote.
fn plain_string(line: &str, i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = i + 1 + string_end(&b[i + 1..])?;
    if b[end] != b'"' {
        return None;
    }
    // Cut at two ASCII quotes: char boundaries.
    Some((&line[i + 1..end], end + 1))
}

/// The index of the first quote, backslash or control character in `b`:
/// eight bytes at a time (a string's few bytes cost less than a call to
/// memchr and a second pass for control characters).
fn string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = b.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte's high bit is set where it is zero after the xor (a quote
        // or a backslash) or below 0x20; a false mark can only follow a
        // true one, so the lowest is exact.
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        let marks = (zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | x.wrapping_sub(ONES * 0x20) & !x)
            & HIGH;
        if marks != 0 {
            return Some(at + (marks.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    b[at..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|n| at + n)
}

/// The JSON integer starting at `i` (no fraction, exponent, leading zero or
/// minus zero; within i64), and the index after it.
fn plain_integer(line: &str, i: usize) -> Option<(i64, usize)> {
    let b = line.as_bytes();
    let digits = i + usize::from(b.get(i) == Some(&b'-'));
    let end = digits
        + b[digits..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
    let token = &line[i..end];
    if end == digits || (b[digits] == b'0' && end - digits > 1) || token == "-0" {
        return None;
    }
    if matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((token.parse().ok()?, end))
}

/// The JSON number starting at `i` as serde reads it into an f64: an
/// integer as [`plain_integer`] reads it, converted with `as` (as serde
/// does), or a decimal with a fraction, no exponent and at most 15 digits,
/// whose value both round correctly — the digits as an integer below 2^53
/// divided by a power of ten of at most 10^15, both exact in an f64 — and
/// the index after it.
fn plain_number(line: &str, i: usize) -> Option<(f64, usize)> {
    let b = line.as_bytes();
    let digits = i + usize::from(b.get(i) == Some(&b'-'));
    let whole = b[digits..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if b.get(digits + whole) != Some(&b'.') {
        return plain_integer(line, i).map(|(n, end)| (n as f64, end));
    }
    if whole == 0 || (b[digits] == b'0' && whole > 1) {
        return None;
    }
    let fraction = b[digits + whole + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let end = digits + whole + 1 + fraction;
    if fraction == 0 || whole + fraction > 15 || matches!(b.get(end), Some(b'e' | b'E')) {
        return None;
    }
    Some((line[i..end].parse().ok()?, end))
}

/// The flat object at `i` that `device` holds — `device_type` (or its alias
/// `type`), `browser` and `os`, each a string without escapes or null, once
/// — and the index after it.
fn plain_device(line: &str, i: usize) -> Option<(RawDevice<'_>, usize)> {
    let b = line.as_bytes();
    let mut device = RawDevice::default();
    let mut seen = 0u8;
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some((device, i + 1));
    }
    loop {
        let (key, next) = member_key(line, i)?;
        i = next;
        let (bit, slot) = match key {
            "device_type" | "type" => (1, &mut device.device_type),
            "browser" => (2, &mut device.browser),
            "os" => (4, &mut device.os),
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        let (value, next) = nullable(line, i, plain_string)?;
        *slot = value.map(Cow::Borrowed);
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some((device, i + 1)),
            _ => return None,
        }
    }
}

/// The JSON object at `i` as serde's `RawValue` holds it (its exact text,
/// read and checked by serde), and the index after it.
fn json_object(line: &str, i: usize) -> Option<(&RawValue, usize)> {
    if line.as_bytes().get(i) != Some(&b'{') {
        return None;
    }
    let mut values = serde_json::Deserializer::from_str(&line[i..]).into_iter::<&RawValue>();
    let value = values.next()?.ok()?;
    Some((value, i + values.byte_offset()))
}

pub(super) fn from_json<'de, T: Deserialize<'de>>(line: &'de str) -> Result<T, String> {
    if let Ok(value) = serde_json::from_str(line) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." || path.is_empty() || path.starts_with('[') {
            format!("not a JSON object: {inner}")
        } else {
            format!("field {path:?}: {}", strip_position(&inner.to_string()))
        }
    })?;
    de.end()
        .map_err(|e| format!("malformed JSON: trailing data after the object ({e})"))?;
    Ok(value)
}

pub(super) fn from_csv<'de, T: Deserialize<'de>>(
    record: &'de csv::StringRecord,
    headers: &'de csv::StringRecord,
) -> Result<T, String> {
    record
        .deserialize(Some(headers))
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                Some(i) => format!(
                    "field {:?}: {}",
                    headers.get(i as usize).unwrap_or("?"),
                    err.kind()
                ),
                None => err.kind().to_string(),
            },
            other => format!("{other:?}"),
        })
}

/// serde_json appends "at line 1 column 57", which means nothing to a
/// reader who is told the file's own line number.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Accepts JSON booleans and the strings true/false/1/0/yes/no (CSV).
fn lenient_bool<'de, D: Deserializer<'de>>(de: D) -> Result<Option<bool>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a boolean (true/false)")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_any(self)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" | "yes" | "y" | "t" => Ok(Some(true)),
                "false" | "0" | "no" | "n" | "f" => Ok(Some(false)),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
    }
    de.deserialize_option(Visitor)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{FLAT_FIELDS, RawActivity, flat_activity, from_json, string_end};

    /// Everything a row is made of, to compare two readings.
    fn shown(r: &RawActivity) -> String {
        format!(
            "{:?} {:?} {:?}",
            (
                &r.event_id,
                &r.student_id,
                &r.timestamp,
                &r.activity_type,
                &r.activity_category,
                &r.course_id,
                &r.lesson_id,
                &r.quiz_id,
                &r.assignment_id,
                &r.resource_id,
                &r.session_id,
            ),
            (
                &r.device_type,
                &r.browser,
                &r.os,
                &r.ip_address,
                r.interaction_count,
                r.duration_seconds.map(f64::to_bits),
                r.progress.map(f64::to_bits),
                r.score.map(f64::to_bits),
            ),
            (
                r.device
                    .as_ref()
                    .map(|d| (&d.device_type, &d.browser, &d.os)),
                r.success,
                r.details.map(|d| d.get().to_string()),
            ),
        )
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z0-9:T .é-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            1 => Just("\"a\\\"b\"".to_string()),
            1 => Just("\"\\u00e9\"".to_string()),
            1 => Just("\"tab\there\"".to_string()),
            2 => Just("null".to_string()),
            3 => any::<i64>().prop_map(|n| n.to_string()),
            1 => prop_oneof![
                Just("-0"), Just("01"), Just("1.5"), Just("1e3"), Just("-0.0"),
                Just("0.1"), Just("1."), Just(".5"), Just("01.5"), Just("-1.25E2"),
                Just("1234567890.123456"), Just("123456789012.345"), Just("0.30000000000000004"),
                Just("{\"a\":[1,{\"b\":\"}\"}]}"), Just("{\"a\":\"\\\"}\"}"), Just("{\"a\":1"),
                Just("{\"device_type\":\"x\",\"type\":\"y\"}"), Just("{\"os\":null}"),
                Just("18446744073709551615"), Just("true"), Just("false"),
                Just("{}"), Just("[1]"), Just("nul"), Just("\"open"),
            ]
            .prop_map(str::to_string),
        ]
    }

    /// A member: mostly a flat field with a value of its type (so that
    /// most lines are read flat and compared), sometimes anything.
    fn member() -> impl Strategy<Value = String> {
        let flat = proptest::sample::select(FLAT_FIELDS.to_vec()).prop_flat_map(|name| {
            let fitting = if name == "success" {
                prop_oneof![Just("true"), Just("false")]
                    .prop_map(str::to_string)
                    .boxed()
            } else if name == "interaction_count" {
                prop_oneof![-100_000i64..100_000, any::<i64>()]
                    .prop_map(|n| n.to_string())
                    .boxed()
            } else if FLAT_FIELDS[16..19].contains(&name) {
                prop_oneof![
                    2 => -100_000i64..100_000,
                    1 => any::<i64>(),
                ]
                .prop_flat_map(|n| (Just(n), "[0-9]{1,9}"))
                .prop_map(|(n, fraction)| format!("{n}.{fraction}"))
                .boxed()
                .prop_union("-?0?[0-9]{0,2}\\.?[0-9]{0,3}([eE][+-]?[0-9])?".boxed())
                .boxed()
            } else if name == "device" {
                proptest::collection::vec(
                    (
                        proptest::sample::select(vec!["device_type", "type", "browser", "os"]),
                        prop_oneof![
                            4 => "[a-z]{0,8}".prop_map(|s| format!("\"{s}\"")),
                            1 => value(),
                        ],
                    )
                        .prop_map(|(k, v)| format!("\"{k}\": {v}")),
                    0..4,
                )
                .prop_map(|members| format!("{{{}}}", members.join(",")))
                .boxed()
            } else if name == "details" {
                proptest::collection::vec(
                    ("[a-z\"\\\\{}]{1,6}", value()).prop_map(|(k, v)| format!("\"{k}\":{v}")),
                    0..3,
                )
                .prop_map(|members| format!("{{ {} }}", members.join(" , ")))
                .boxed()
            } else {
                "[a-z0-9:T .é-]{0,12}"
                    .prop_map(|s| format!("\"{s}\""))
                    .boxed()
            };
            let value = prop_oneof![8 => fitting, 1 => Just("null".to_string()), 1 => value()];
            (Just(name), value)
        });
        let other = (
            proptest::sample::select(vec!["device", "details", "other", "type"]),
            value(),
        );
        // `device` and `details` are flat fields now: `other` still sends
        // them anything.
        let member = prop_oneof![12 => flat, 1 => other];
        (member, " {0,2}", " {0,2}").prop_map(|((n, v), a, b)| format!("\"{n}\"{a}:{b}{v}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the flat reader takes a line, serde takes it too and
        /// reads the same row.
        #[test]
        fn the_flat_reader_reads_what_serde_reads(
            members in proptest::collection::vec(member(), 0..6),
            sep in prop_oneof![Just(","), Just(" , "), Just(",\t")],
            (open, close) in prop_oneof![
                8 => Just(("{", "}")), 1 => Just((" { ", " } ")), 1 => Just(("{", "")),
                1 => Just(("{", "}x")), 1 => Just(("[", "]")),
            ],
        ) {
            let line = format!("{open}{}{close}", members.join(sep));
            if let Some(flat) = flat_activity(&line) {
                let serde: RawActivity = from_json(&line)
                    .map_err(|e| TestCaseError::fail(format!("{line}: serde says {e}")))?;
                prop_assert_eq!(shown(&flat), shown(&serde), "{}", line);
            }
        }
    }

    proptest! {
        /// Eight bytes at a time finds what a byte at a time finds.
        #[test]
        fn string_ends_are_found_by_words_as_by_bytes(
            text in proptest::collection::vec(
                prop_oneof![
                    8 => 0x20u8..0x7f,
                    1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20, 1 => 0x7fu8..=0xff,
                ],
                0..40,
            ),
        ) {
            let expected = text.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(string_end(&text), expected);
        }
    }

    #[test]
    fn plain_lines_are_read_flat_and_the_rest_by_serde() {
        let line = r#"{"event_id":"ev-1","student_id":"s1","course_id":"c02-biology","resource_id":"r","timestamp":"2026-02-21T05:12:41Z","activity_type":"login","interaction_count":2}"#;
        let flat = flat_activity(line).expect("a plain line is read flat");
        assert_eq!(flat.interaction_count, Some(2));
        assert_eq!(flat.course_id.as_deref(), Some("c02-biology"));
        assert!(flat_activity(r#" { "event_id" : null , "score": 80 } "#).is_some());
        let rich = flat_activity(r#"{"event_id":"e","os":"chromeos","success":false}"#);
        assert_eq!(rich.and_then(|r| r.success), Some(false));
        let nested = flat_activity(
            r#"{"duration_seconds":12.5,"device":{"type":"tablet","os":null},"details":{"method":"sso","n":[1,{"x":"}"}]}}"#,
        )
        .expect("a device, details and a fraction are read flat");
        assert_eq!(nested.duration_seconds, Some(12.5));
        let device = nested.device.expect("the device is read");
        assert_eq!(device.device_type.as_deref(), Some("tablet"));
        assert_eq!(device.os, None);
        assert_eq!(
            nested.details.map(|d| d.get()),
            Some(r#"{"method":"sso","n":[1,{"x":"}"}]}"#)
        );
        for other in [
            r#"{"event_id":"a\"b"}"#,
            r#"{"score":8.05e1}"#,
            r#"{"score":01.5}"#,
            r#"{"score":1.}"#,
            r#"{"score":-.5}"#,
            r#"{"score":1234567890.1234567}"#,
            r#"{"device":{"model":"x"}}"#,
            r#"{"details":"text"}"#,
            r#"{"details":{"a":}}"#,
            r#"{"event_id":"a","event_id":"b"}"#,
            r#"{"event_id":"a","extra":1}"#,
            r#"{"success":"yes"}"#,
            r#"{"success":truest}"#,
            r#"{"event_id":"a"} trailing"#,
            r#"{"event_id":"a",}"#,
            r#"{"interaction_count":-0}"#,
            r#"{"interaction_count":007}"#,
        ] {
            assert!(flat_activity(other).is_none(), "{other}");
        }
    }
}
