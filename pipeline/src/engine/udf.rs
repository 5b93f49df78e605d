//! SQL functions for local time in the institution zone, which DataFusion
//! does not have with a zone given at run time:
//!
//! - `local_date(ts, zone) -> DATE`: the local calendar date of a UTC instant;
//! - `local_hour(ts, zone) -> BIGINT`: its local hour, 0–23.
//!
//! `zone` is an IANA name bound as a query parameter; the offset is looked up
//! per instant, so DST changes inside a week are exact.

use std::sync::Arc;

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, Date32Array, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Which local field a function returns.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Field {
    Date,
    Hour,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct LocalTime {
    field: Field,
    signature: Signature,
}

/// `local_date`, `local_hour` and `top_factors` (see [`super::factors`]),
/// to register on a session.
pub fn functions() -> Vec<ScalarUDF> {
    let local = [Field::Date, Field::Hour].into_iter().map(|field| {
        ScalarUDF::from(LocalTime {
            field,
            signature: Signature::exact(
                vec![
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    DataType::Utf8,
                ],
                Volatility::Immutable,
            ),
        })
    });
    local.chain([super::factors::udf()]).collect()
}

/// Microseconds since the epoch, shifted by the zone's offset at that instant.
pub fn local_micros(tz: &Tz, micros: i64) -> i64 {
    let offset = DateTime::from_timestamp_micros(micros)
        .map(|utc| {
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc()
        })
        .unwrap_or(0);
    micros + i64::from(offset) * 1_000_000
}

/// A zone's UTC offsets, looked up once per UTC hour: a batch of events
/// spans few hours, and chrono-tz's search per value dominated the cost.
/// Exact as long as a zone changes its offset at most once within an hour,
/// which holds for every zone in the tz database.
struct Offsets {
    tz: Tz,
    /// Direct-mapped: (UTC hour, offset in µs) by hour modulo the size.
    slots: [(i64, i64); 64],
}

impl Offsets {
    fn new(tz: Tz) -> Self {
        Self {
            tz,
            slots: [(i64::MIN, 0); 64],
        }
    }

    fn offset_micros(&self, micros: i64) -> i64 {
        local_micros(&self.tz, micros) - micros
    }

    /// `micros` shifted to local time.
    fn local(&mut self, micros: i64) -> i64 {
        let hour = micros.div_euclid(MICROS_PER_HOUR);
        let slot = hour.rem_euclid(64) as usize;
        if self.slots[slot].0 == hour {
            return micros + self.slots[slot].1;
        }
        let first = self.offset_micros(hour * MICROS_PER_HOUR);
        let last = self.offset_micros(hour * MICROS_PER_HOUR + MICROS_PER_HOUR - 1);
        if first == last {
            self.slots[slot] = (hour, first);
            micros + first
        } else {
            // The hour of a change: per value.
            local_micros(&self.tz, micros)
        }
    }
}

impl ScalarUDFImpl for LocalTime {
    fn name(&self) -> &str {
        match self.field {
            Field::Date => "local_date",
            Field::Hour => "local_hour",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.field {
            Field::Date => DataType::Date32,
            Field::Hour => DataType::Int64,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let [ts, zone] = args.args.as_slice() else {
            return exec_err!("{} takes (timestamp, zone)", self.name());
        };
        let zone = match zone {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(z))) => z.clone(),
            _ => return exec_err!("{}: the zone must be a constant IANA name", self.name()),
        };
        let tz: Tz = zone.parse().map_err(|_| {
            DataFusionError::Execution(format!(
                "{}: {zone:?} is not an IANA time zone",
                self.name()
            ))
        })?;
        let field = self.field;
        let mut offsets = Offsets::new(tz);
        let mut convert = move |micros: i64| {
            let local = offsets.local(micros);
            match field {
                Field::Date => local.div_euclid(MICROS_PER_DAY),
                Field::Hour => local.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR,
            }
        };
        match ts {
            ColumnarValue::Scalar(s) => {
                let micros = match s {
                    ScalarValue::TimestampMicrosecond(v, _) => *v,
                    other => {
                        return exec_err!("{}: expected a timestamp, got {other:?}", self.name());
                    }
                };
                let value = micros.map(convert);
                Ok(ColumnarValue::Scalar(match field {
                    Field::Date => ScalarValue::Date32(value.map(|d| d as i32)),
                    Field::Hour => ScalarValue::Int64(value),
                }))
            }
            ColumnarValue::Array(array) => {
                let ts = array
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!("{}: expected timestamps", self.name()))
                    })?;
                let out: Arc<dyn Array> = match field {
                    Field::Date => Arc::new(
                        ts.iter()
                            .map(|v| v.map(|m| convert(m) as i32))
                            .collect::<Date32Array>(),
                    ),
                    Field::Hour => Arc::new(
                        ts.iter()
                            .map(|v| v.map(&mut convert))
                            .collect::<Int64Array>(),
                    ),
                };
                Ok(ColumnarValue::Array(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn cached_offsets_match_the_zone_around_changes() {
        for zone in [
            "Europe/London",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
        ] {
            let tz: Tz = zone.parse().unwrap();
            let mut offsets = Offsets::new(tz);
            // Every 7 minutes over 2026, through both changes of each zone;
            // then backwards, so the cache is hit from both sides.
            let start = micros("2026-01-01T00:00:00Z");
            let step = 7 * 60 * 1_000_000;
            let all: Vec<i64> = (0..75_000).map(|i| start + i * step).collect();
            for &m in all.iter().chain(all.iter().rev()) {
                assert_eq!(offsets.local(m), local_micros(&tz, m), "{zone} at {m}");
            }
        }
    }

    #[test]
    fn local_dates_follow_dst() {
        let london: Tz = "Europe/London".parse().unwrap();
        // 23:30 UTC is 00:30 the next day in London summer time (BST), not in winter.
        let summer = local_micros(&london, micros("2026-03-30T23:30:00Z"));
        assert_eq!(
            summer.div_euclid(MICROS_PER_DAY),
            micros("2026-03-31T00:00:00Z") / MICROS_PER_DAY
        );
        let winter = local_micros(&london, micros("2026-03-27T23:30:00Z"));
        assert_eq!(
            winter.div_euclid(MICROS_PER_DAY),
            micros("2026-03-27T00:00:00Z") / MICROS_PER_DAY
        );
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let hour = local_micros(&tokyo, micros("2026-03-02T20:00:00Z")).rem_euclid(MICROS_PER_DAY)
            / MICROS_PER_HOUR;
        assert_eq!(hour, 5);
    }
}
