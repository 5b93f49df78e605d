//! Checks and conversions of single values against the input contract:
//! ids, required text, percentages, e-mail addresses, RFC 3339 timestamps
//! and plain dates (a date-only value names a day in the institution zone),
//! the activity category and the keyed hash of IP addresses. Each check
//! returns the reason a person can act on.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(super) fn nonempty<'a>(value: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    value.as_deref().filter(|v| !v.is_empty())
}

pub(super) fn clip(text: &str) -> String {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text.to_string()
    }
}

pub(super) fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.len() > 256 {
        return Err(format!("{field} is longer than 256 bytes"));
    }
    // Ids are ASCII nearly always: bytes checked without decoding chars.
    let control = if value.is_ascii() {
        value.bytes().any(|b| b.is_ascii_control())
    } else {
        value.chars().any(char::is_control)
    };
    if control {
        return Err(format!(
            "{field} {:?} contains control characters",
            clip(value)
        ));
    }
    if value.trim().len() != value.len() {
        return Err(format!("{field} {value:?} has leading or trailing spaces"));
    }
    Ok(())
}

pub(super) fn required_id<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    let value = required_text(field, value)?;
    check_id(field, value)?;
    Ok(value)
}

pub(super) fn optional_id<'a>(
    field: &str,
    value: Option<&'a str>,
) -> Result<Option<&'a str>, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => check_id(field, v).map(|()| Some(v)),
    }
}

pub(super) fn required_text<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(format!("required field {field:?} is empty")),
        None => Err(format!("missing required field {field:?}")),
    }
}

pub(super) fn check_percent(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(v) if !(0.0..=100.0).contains(&v) => Err(format!("{field} {v} is outside 0–100")),
        _ => Ok(()),
    }
}

pub(super) fn check_non_negative(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(format!("{field} {v} is negative")),
        _ => Ok(()),
    }
}

pub(super) fn check_email(field: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if !v.contains('@') || v.chars().any(char::is_whitespace) => {
            Err(format!("{field} {:?} is not an e-mail address", clip(v)))
        }
        _ => Ok(()),
    }
}

/// Earliest and latest accepted instants: 1970-01-01 and 2100-01-01 UTC.
const MIN_MICROS: i64 = 0;
const MAX_MICROS: i64 = 4_102_444_800_000_000;

/// Parses an RFC 3339 timestamp with an offset into UTC microseconds.
pub fn parse_timestamp(field: &str, text: &str) -> Result<i64, String> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!(
            "{field} {:?} is not an RFC 3339 timestamp with an offset, like 2026-03-02T09:30:00Z ({e})",
            clip(text)
        )
    })?;
    let micros = parsed.timestamp_micros();
    if !(MIN_MICROS..MAX_MICROS).contains(&micros) {
        return Err(format!("{field} {text:?} is outside 1970–2099"));
    }
    Ok(micros)
}

pub(super) fn required_timestamp(field: &str, text: Option<&str>) -> Result<i64, String> {
    parse_timestamp(field, required_text(field, text)?)
}

pub(super) fn optional_timestamp(field: &str, text: Option<&str>) -> Result<Option<i64>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => parse_timestamp(field, t).map(Some),
    }
}

/// Which instant of a local day a date-only value stands for.
#[derive(Clone, Copy)]
pub(super) enum DayPart {
    /// The day's first instant (local midnight).
    Start,
    /// The day's end: the next day's first instant.
    End,
}

/// A timestamp, or a plain date meaning a day in the institution `zone`.
pub(super) fn optional_instant(
    field: &str,
    text: Option<&str>,
    zone: chrono_tz::Tz,
    part: DayPart,
) -> Result<Option<i64>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.len() == 10 => {
            let days = parse_date(field, t)?;
            let date = crate::lake::from_date32(days);
            let day = match part {
                DayPart::Start => date,
                DayPart::End => date.succ_opt().unwrap_or(date),
            };
            Ok(Some(local_day_start(zone, day)))
        }
        Some(t) => parse_timestamp(field, t).map(Some),
    }
}

/// The first instant of a local day in `zone`, in UTC microseconds: local
/// midnight, or the first valid local time after it when a DST change skips
/// midnight (e.g. America/Santiago), the earlier one when it repeats.
pub fn local_day_start(zone: chrono_tz::Tz, day: NaiveDate) -> i64 {
    use chrono::TimeZone;
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..=180)
        .step_by(15)
        .find_map(|m| {
            zone.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                .earliest()
        })
        .map_or_else(
            || midnight.and_utc().timestamp_micros(),
            |t| t.timestamp_micros(),
        )
}

pub(super) fn parse_date(field: &str, text: &str) -> Result<i32, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| {
        format!(
            "{field} {:?} is not a date like 2026-03-02 ({e})",
            clip(text)
        )
    })?;
    let days = date.signed_duration_since(NaiveDate::default()).num_days();
    if !(0..47_482).contains(&days) {
        return Err(format!("{field} {text:?} is outside 1970–2099"));
    }
    Ok(days as i32)
}

pub(super) fn optional_date(field: &str, text: Option<&str>) -> Result<Option<i32>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => parse_date(field, t).map(Some),
    }
}

pub(super) fn utc_days(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

/// activity_category for a known activity_type (`other` for unknown ones).
pub fn category_of(activity_type: &str) -> &'static str {
    match activity_type {
        "lesson_start" | "lesson_complete" | "content_view" | "resource_view"
        | "resource_download" | "video_play" | "video_complete" => "learning",
        "quiz_start" | "quiz_submit" | "assignment_submit" => "assessment",
        "forum_post" | "help_requested" => "social",
        "login" | "logout" | "achievement_earned" => "system",
        _ => "other",
    }
}

/// Keyed hash of IP addresses. Keeps a small cache: the same student sends
/// many events from the same address.
pub(super) struct IpHasher {
    mac: Hmac<Sha256>,
    cache: HashMap<String, String>,
}

impl IpHasher {
    pub(super) fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length"),
            cache: HashMap::new(),
        }
    }

    pub(super) fn hash(&mut self, ip: &str) -> String {
        if let Some(hit) = self.cache.get(ip) {
            return hit.clone();
        }
        let mut mac = self.mac.clone();
        mac.update(ip.as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        if self.cache.len() > 65_536 {
            self.cache.clear();
        }
        self.cache.insert(ip.to_string(), digest.clone());
        digest
    }
}
