//! The Parquet lake: where things live, what they look like, and how files
//! are published (whole, atomically, under deterministic names).

pub mod delta;
pub mod erase;
pub mod parquet_io;
pub mod retention;
pub mod store;
pub mod tables;

pub use store::Store;
pub use tables::LakeTable;

use crate::{Error, Result};

/// Days since 1970-01-01 of `date`: a `DATE` as Arrow holds it (Date32).
pub fn date32(date: chrono::NaiveDate) -> i32 {
    date.signed_duration_since(chrono::NaiveDate::default())
        .num_days() as i32
}

/// The date `days` after 1970-01-01 (a Date32 value).
pub fn from_date32(days: i32) -> chrono::NaiveDate {
    chrono::NaiveDate::default() + chrono::Duration::days(i64::from(days))
}

/// Checks a Hive partition value before it becomes part of a path: no `/`,
/// `\`, `..`, `=`, control characters, nor an empty value.
pub fn validate_partition_value(column: &str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value.contains('/') || value.contains('\\') {
        Some("contains a path separator")
    } else if value.contains("..") {
        Some("contains `..`")
    } else if value.contains('=') {
        Some("contains `=`")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else if value.len() > 128 {
        Some("longer than 128 bytes")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidPartitionValue {
            column: column.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }),
    }
}

/// The folder of one partition within its table (`event_date=2026-03-02`),
/// as Delta add actions name it.
pub fn partition_folder(column: &str, value: &str) -> Result<String> {
    validate_partition_value(column, value)?;
    Ok(format!("{column}={value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_cannot_escape_their_folder() {
        for bad in ["", "../x", "a/b", "a\\b", "x=y", "a\nb", "..", "\u{0}"] {
            assert!(
                validate_partition_value("d", bad).is_err(),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            partition_folder("event_date", "2026-03-02").unwrap(),
            "event_date=2026-03-02"
        );
        let err = validate_partition_value("event_date", "../../etc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid partition value \"../../etc\" for event_date: contains a path separator"
        );
    }
}
