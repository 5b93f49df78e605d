//! Query results as the templates see them: Arrow rows as JSON objects,
//! and the readers of their fields that reports and notifications share.

use std::collections::BTreeMap;

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use serde_json::{Map, Value as Json};

/// One result row: column name → value.
pub type Row = Map<String, Json>;

/// Arrow rows as JSON objects (nulls kept, so strict templates see every
/// field), every text on one line.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(Vec::new());
        writer.write(batch)?;
        writer.finish()?;
        let mut rows: Vec<Row> = serde_json::from_slice(&writer.into_inner())?;
        for row in &mut rows {
            row.values_mut().for_each(one_line_strings);
        }
        out.extend(rows);
    }
    Ok(out)
}

/// Every text a report shows is one line: a name or title with CR/LF (or
/// another control character) from a source system reads as spaces, in the
/// HTML, the plain text and the headers alike.
fn one_line_strings(value: &mut Json) {
    match value {
        Json::String(s) if s.chars().any(char::is_control) => *s = crate::mail::one_line(s),
        Json::Array(items) => items.iter_mut().for_each(one_line_strings),
        Json::Object(map) => map.values_mut().for_each(one_line_strings),
        _ => {}
    }
}

/// The rows of each value of the text column `key`, in their order.
pub fn group_by(rows: Vec<Row>, key: &str) -> BTreeMap<String, Vec<Row>> {
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in rows {
        groups
            .entry(text(&row, key).to_string())
            .or_default()
            .push(row);
    }
    groups
}

/// A text field ("" when null or absent).
pub fn text<'a>(row: &'a Row, key: &str) -> &'a str {
    row.get(key).and_then(Json::as_str).unwrap_or("")
}

/// A number field (None when null or absent).
pub fn num(row: &Row, key: &str) -> Option<f64> {
    row.get(key).and_then(Json::as_f64)
}

/// A count field (0 when null or absent).
pub fn count(row: &Row, key: &str) -> f64 {
    num(row, key).unwrap_or(0.0)
}

/// A list-of-texts field (empty when null or absent).
pub fn strings(row: &Row, key: &str) -> Vec<String> {
    row.get(key)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Risk levels in order, for "did it rise" (unknown below low).
pub fn level_rank(level: &str) -> u8 {
    match level {
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}
