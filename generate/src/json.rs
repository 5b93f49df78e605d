//! A minimal NDJSON line builder for the generator's hot path.
//!
//! Activity events are written at millions per second, so each line is built
//! by appending bytes to one reused buffer instead of going through serde's
//! data model. Keys are `'static` literals chosen by the generator; string
//! values are escaped, so any text is safe. Reference files, which are small,
//! go through serde_json and csv instead.

/// Builds one JSON object (optionally nested objects and arrays) in a reused buffer.
#[derive(Debug, Default)]
pub(crate) struct JsonLine {
    buf: Vec<u8>,
    /// True right after an opening `{` or `[`: the next member needs no comma.
    first: bool,
}

impl JsonLine {
    /// Clears the buffer and opens the top-level object.
    pub(crate) fn begin(&mut self) {
        self.buf.clear();
        self.buf.push(b'{');
        self.first = true;
    }

    /// Closes the top-level object and ends the line.
    pub(crate) fn finish(&mut self) -> &[u8] {
        self.buf.extend_from_slice(b"}\n");
        &self.buf
    }

    fn comma(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    fn key(&mut self, key: &str) {
        self.comma();
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// `"key":"value"` with the value escaped.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_string(&mut self.buf, value);
    }

    /// `"key":"<prefix><number zero-padded to width>"`, e.g. `s000123`.
    pub(crate) fn id(&mut self, key: &str, prefix: &str, number: u64, width: usize) {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(prefix.as_bytes());
        push_padded(&mut self.buf, number, width);
        self.buf.push(b'"');
    }

    /// `"key":"<prefix><a zero-padded to width>-<b>"`, e.g. `ev-000123-42`.
    pub(crate) fn id2(&mut self, key: &str, prefix: &str, a: u64, width: usize, b: u64) {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(prefix.as_bytes());
        push_padded(&mut self.buf, a, width);
        self.buf.push(b'-');
        push_u64(&mut self.buf, b);
        self.buf.push(b'"');
    }

    /// `"key":"<base><suffix><number>"`, e.g. `c01-algebra-l07`.
    pub(crate) fn sub_id(
        &mut self,
        key: &str,
        base: &str,
        suffix: &str,
        number: u64,
        width: usize,
    ) {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(base.as_bytes());
        self.buf.extend_from_slice(suffix.as_bytes());
        push_padded(&mut self.buf, number, width);
        self.buf.push(b'"');
    }

    /// `"key":123`.
    pub(crate) fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        push_u64(&mut self.buf, value);
    }

    /// `"key":72.5` from a value in tenths (725); whole numbers print without a fraction.
    pub(crate) fn tenths(&mut self, key: &str, tenths: u64) {
        self.key(key);
        push_tenths(&mut self.buf, tenths);
    }

    /// `"key":0.25` from a value in hundredths (25).
    pub(crate) fn hundredths(&mut self, key: &str, hundredths: u64) {
        self.key(key);
        push_u64(&mut self.buf, hundredths / 100);
        let frac = hundredths % 100;
        if frac != 0 {
            self.buf.push(b'.');
            self.buf.push(b'0' + (frac / 10) as u8);
            if !frac.is_multiple_of(10) {
                self.buf.push(b'0' + (frac % 10) as u8);
            }
        }
    }

    /// `"key":true` / `"key":false`.
    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.buf.extend_from_slice(text);
    }

    /// `"key":"<RFC 3339>"`; see [`push_timestamp`].
    pub(crate) fn timestamp(&mut self, key: &str, stamp: Stamp) {
        self.key(key);
        self.buf.push(b'"');
        push_timestamp(&mut self.buf, stamp);
        self.buf.push(b'"');
    }

    /// Opens a nested object member `"key":{`.
    pub(crate) fn open_object(&mut self, key: &str) {
        self.key(key);
        self.buf.push(b'{');
        self.first = true;
    }

    /// Opens an object as an array element.
    pub(crate) fn open_element(&mut self) {
        self.comma();
        self.buf.push(b'{');
        self.first = true;
    }

    /// Closes a nested object.
    pub(crate) fn close_object(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }

    /// Opens an array member `"key":[`.
    pub(crate) fn open_array(&mut self, key: &str) {
        self.key(key);
        self.buf.push(b'[');
        self.first = true;
    }

    /// Closes an array.
    pub(crate) fn close_array(&mut self) {
        self.buf.push(b']');
        self.first = false;
    }
}

/// An instant to print: seconds since the Unix epoch (UTC), milliseconds, and
/// how to show the offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) utc_seconds: i64,
    /// Printed as `.mmm` when `Some`.
    pub(crate) millis: Option<u16>,
    /// `Some(seconds east of UTC)` prints local time with `+hh:mm`; `None` prints UTC with `Z`.
    pub(crate) offset_seconds: Option<i32>,
}

/// Appends an RFC 3339 timestamp such as `2026-03-09T08:15:02+09:00` or
/// `2026-03-08T23:15:02.417Z`.
pub(crate) fn push_timestamp(buf: &mut Vec<u8>, stamp: Stamp) {
    let offset = stamp.offset_seconds.unwrap_or(0);
    let local = stamp.utc_seconds + i64::from(offset);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    push_padded(buf, year.max(0) as u64, 4);
    buf.push(b'-');
    push_2(buf, month);
    buf.push(b'-');
    push_2(buf, day);
    buf.push(b'T');
    push_2(buf, (secs / 3600) as u32);
    buf.push(b':');
    push_2(buf, (secs % 3600 / 60) as u32);
    buf.push(b':');
    push_2(buf, (secs % 60) as u32);
    if let Some(ms) = stamp.millis {
        buf.push(b'.');
        push_padded(buf, u64::from(ms), 3);
    }
    match stamp.offset_seconds {
        None => buf.push(b'Z'),
        Some(off) => {
            buf.push(if off < 0 { b'-' } else { b'+' });
            let off = off.unsigned_abs();
            push_2(buf, off / 3600);
            buf.push(b':');
            push_2(buf, off % 3600 / 60);
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10 % 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `v` left-padded with zeros to at least `width` digits.
pub(crate) fn push_padded(buf: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut n = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(tmp.len().saturating_sub(width));
    buf.extend_from_slice(&tmp[start..]);
}

/// Appends `tenths / 10` with one decimal when it has a fraction.
pub(crate) fn push_tenths(buf: &mut Vec<u8>, tenths: u64) {
    push_u64(buf, tenths / 10);
    if !tenths.is_multiple_of(10) {
        buf.push(b'.');
        buf.push(b'0' + (tenths % 10) as u8);
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        buf.extend_from_slice(bytes);
    } else {
        for ch in s.chars() {
            match ch {
                '"' => buf.extend_from_slice(b"\\\""),
                '\\' => buf.extend_from_slice(b"\\\\"),
                '\n' => buf.extend_from_slice(b"\\n"),
                '\r' => buf.extend_from_slice(b"\\r"),
                '\t' => buf.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    buf.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
                }
                c => {
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset, Utc};

    fn stamp_text(stamp: Stamp) -> String {
        let mut buf = Vec::new();
        push_timestamp(&mut buf, stamp);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn timestamps_match_chrono() {
        for &secs in &[
            0_i64,
            951_782_400,
            1_770_000_000,
            1_772_934_400,
            4_102_444_799,
        ] {
            for &off in &[0_i32, 3600, -18_000, 19_800, 36_000] {
                let text = stamp_text(Stamp {
                    utc_seconds: secs,
                    millis: None,
                    offset_seconds: Some(off),
                });
                let parsed = DateTime::parse_from_rfc3339(&text).unwrap();
                assert_eq!(parsed.timestamp(), secs, "{text}");
                let expected = DateTime::<Utc>::from_timestamp(secs, 0)
                    .unwrap()
                    .with_timezone(&FixedOffset::east_opt(off).unwrap())
                    .to_rfc3339();
                assert_eq!(text, expected);
            }
            let z = stamp_text(Stamp {
                utc_seconds: secs,
                millis: Some(7),
                offset_seconds: None,
            });
            assert!(z.ends_with(".007Z"), "{z}");
            assert_eq!(DateTime::parse_from_rfc3339(&z).unwrap().timestamp(), secs);
        }
    }

    #[test]
    fn line_is_valid_json() {
        let mut line = JsonLine::default();
        line.begin();
        line.str("name", "Zoë \"Z\" O'Neil\\\n");
        line.id2("event_id", "ev-", 123, 6, 42);
        line.tenths("score", 725);
        line.tenths("whole", 700);
        line.hundredths("weight", 5);
        line.open_object("device");
        line.str("os", "ios");
        line.close_object();
        line.open_array("answers");
        line.open_element();
        line.bool("is_correct", true);
        line.close_object();
        line.open_element();
        line.bool("is_correct", false);
        line.close_object();
        line.close_array();
        let text = std::str::from_utf8(line.finish()).unwrap().to_owned();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["name"], "Zoë \"Z\" O'Neil\\\n");
        assert_eq!(value["event_id"], "ev-000123-42");
        assert_eq!(value["score"], 72.5);
        assert_eq!(value["whole"], 70);
        assert_eq!(value["weight"], 0.05);
        assert_eq!(value["device"]["os"], "ios");
        assert_eq!(value["answers"][1]["is_correct"], false);
    }
}
