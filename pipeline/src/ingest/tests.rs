//! Properties of the input parser: whatever bytes or JSON arrive, nothing
//! panics and every line is accounted for, as an accepted row or a
//! quarantined one with a reason.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

use super::records::Kind;
use super::{Batch, IngestOptions, Unit, parse_batch};

/// Parses `lines` as one NDJSON unit of `kind`; returns (accepted, rejected,
/// lines that should have been looked at).
fn parse_lines(kind: Kind, lines: &[Vec<u8>]) -> (usize, usize, usize) {
    let mut buf = Vec::new();
    for line in lines {
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
    let mut batch = Batch::new(kind);
    batch.units.push(Unit::Lines {
        source: 0,
        first_line: 1,
        start: 0,
        end: buf.len(),
    });
    let expected = buf[..buf.len().saturating_sub(1)]
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(i, line)| {
            let mut text = *line;
            if *i == 0 && text.starts_with(b"\xEF\xBB\xBF") {
                text = &text[3..];
            }
            if text.last() == Some(&b'\r') {
                text = &text[..text.len() - 1];
            }
            !text.iter().all(u8::is_ascii_whitespace)
        })
        .count();
    batch.buf = buf;
    let options = IngestOptions {
        threads: 2,
        hash_key: Some(b"k".to_vec()),
        ..IngestOptions::default()
    };
    let parsed = parse_batch(&batch, &options);
    let accepted: usize = parsed.iter().map(|p| p.keys.len()).sum();
    let rejected: usize = parsed.iter().map(|p| p.rejected.len()).sum();
    for p in &parsed {
        assert_eq!(p.rows.num_rows(), p.keys.len(), "one key per accepted row");
        assert_eq!(
            p.dates.len(),
            if kind.is_event() { p.keys.len() } else { 0 }
        );
        for r in &p.rejected {
            assert!(!r.reason.is_empty(), "every quarantined line has a reason");
        }
    }
    (accepted, rejected, expected)
}

/// JSON values of every type, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9:+T .-]{0,30}".prop_map(Value::String),
        Just(Value::String("2026-03-02T10:00:00Z".into())),
        Just(Value::String("2026-03-02".into())),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects with the contract's field names (and others) holding any JSON.
fn json_record() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("event_id"),
        Just("attempt_id"),
        Just("student_id"),
        Just("course_id"),
        Just("assessment_id"),
        Just("timestamp"),
        Just("submitted_at"),
        Just("activity_type"),
        Just("duration_seconds"),
        Just("interaction_count"),
        Just("score"),
        Just("progress"),
        Just("device"),
        Just("details"),
        Just("answers"),
        Just("status"),
        Just("enrolled_at"),
        Just("due_at"),
        Just("start_date"),
        Just("timezone"),
        Just("other"),
    ];
    btree_map(field, json_value(), 0..10)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_line_is_accounted_for(
        lines in vec(vec(any::<u8>(), 0..120), 0..40)
    ) {
        for kind in Kind::ALL {
            let (accepted, rejected, expected) = parse_lines(kind, &lines);
            prop_assert_eq!(accepted + rejected, expected, "{:?}", kind);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_every_line_is_accounted_for(
        records in vec(json_record(), 0..30)
    ) {
        let lines: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap())
            .collect();
        for kind in Kind::ALL {
            let (accepted, rejected, expected) = parse_lines(kind, &lines);
            prop_assert_eq!(accepted + rejected, expected, "{:?}", kind);
        }
    }
}
