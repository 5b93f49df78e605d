//! `top_factors(n, below, name1, value1, name2, value2, …) -> List(Utf8)`:
//! the (at most) `n` names whose value is below `below`, lowest first, each
//! as `name: value` with the value rounded to two decimals.
//!
//! student_week.sql lists a student's risk factors with it (the features
//! whose pull lowers the probability most, docs/PREDICTIONS.md). In SQL
//! that took 17 CASE / lpad / ROUND / CAST chains, a sorted array and a
//! regular expression per row, which cost more to plan and run than the rest
//! of the model together.
//!
//! The order is exactly the one the SQL had: by `1 + value` in millionths,
//! rounded, then by name.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The function, to register on a session.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(TopFactors {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TopFactors {
    signature: Signature,
}

const USAGE: &str = "top_factors takes (n, below, name, value, name, value, …)";

impl ScalarUDFImpl for TopFactors {
    fn name(&self) -> &str {
        "top_factors"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if args.len() < 2 || args.len() % 2 != 0 {
            return plan_err!("{USAGE}: got {} arguments", args.len());
        }
        Ok((0..args.len())
            .map(|i| match i {
                0 => DataType::Int64,
                1 => DataType::Float64,
                i if i % 2 == 0 => DataType::Utf8,
                _ => DataType::Float64,
            })
            .collect())
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item_field()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (n, below) = match (&args.args[0], &args.args[1]) {
            (
                ColumnarValue::Scalar(ScalarValue::Int64(Some(n))),
                ColumnarValue::Scalar(ScalarValue::Float64(Some(below))),
            ) => (usize::try_from(*n).unwrap_or(0), *below),
            _ => return exec_err!("{USAGE}: n and below must be constants"),
        };
        let mut names = Vec::new();
        let mut values = Vec::new();
        for pair in args.args[2..].chunks(2) {
            match &pair[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => names.push(name.as_str()),
                _ => return exec_err!("{USAGE}: each name must be a constant string"),
            }
            values.push(pair[1].to_array(rows)?);
        }
        let values: Vec<_> = values
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let mut out = ListBuilder::new(StringBuilder::new()).with_field(item_field());
        let mut candidates: Vec<(i64, &str, f64)> = Vec::with_capacity(names.len());
        let mut text = String::new();
        for row in 0..rows {
            candidates.clear();
            for (name, column) in names.iter().zip(&values) {
                if column.is_valid(row) {
                    let value = column.value(row);
                    if value < below {
                        candidates.push((sort_key(value), name, value));
                    }
                }
            }
            candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            for (_, name, value) in candidates.iter().take(n) {
                text.clear();
                text.push_str(name);
                text.push_str(": ");
                write_decimal(&mut text, round2(*value));
                out.values().append_value(&text);
            }
            out.append(true);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// The item of `List(Utf8)` as `arrow_cast(…, 'List(Utf8)')` makes it:
/// `item`, nullable.
fn item_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Utf8, true))
}

/// `1 + value` in millionths, rounded half away from zero (SQL's ROUND).
fn sort_key(value: f64) -> i64 {
    ((1.0 + value) * 1_000_000.0).round() as i64
}

/// SQL's `ROUND(value, 2)`.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Appends a double as SQL's `CAST(… AS VARCHAR)` writes it: the shortest
/// text that reads back as the same number, with `.0` on whole numbers.
fn write_decimal(text: &mut String, value: f64) {
    use std::fmt::Write;
    let start = text.len();
    write!(text, "{value}").expect("writing to a String");
    if !text[start..].contains(['.', 'e', 'E', 'N', 'i']) {
        text.push_str(".0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ListArray;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn lists_the_lowest_values_below_the_cut_lowest_first() {
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        let frame = ctx
            .sql(
                "SELECT top_factors(3, -0.01, 'a', a, 'b', b, 'c', c, 'd', d) AS f FROM (VALUES \
                 (-0.2, -0.005, -0.5, -1.0), \
                 (-0.3, -0.3, NULL, -0.02), \
                 (0.1, 0.2, 0.3, -0.01), \
                 (-0.123, -0.456, -0.789, -0.0151)) AS t(a, b, c, d)",
            )
            .await
            .unwrap();
        let batches = frame.collect().await.unwrap();
        let list = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        let rows: Vec<Vec<String>> = (0..list.len())
            .map(|i| {
                let items = list.value(i);
                let items = items.as_string::<i32>();
                items.iter().map(|s| s.unwrap().to_string()).collect()
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                vec!["d: -1.0", "c: -0.5", "a: -0.2"],
                // a tie: by name
                vec!["a: -0.3", "b: -0.3", "d: -0.02"],
                vec![],
                vec!["c: -0.79", "b: -0.46", "a: -0.12"],
            ]
        );
    }

    #[test]
    fn whole_numbers_keep_a_decimal_as_sql_writes_them() {
        let text = |v: f64| {
            let mut t = String::from("x: ");
            write_decimal(&mut t, v);
            t
        };
        assert_eq!(text(-1.0), "x: -1.0");
        assert_eq!(text(-0.21), "x: -0.21");
        assert_eq!(text(round2(-0.30000000000000004)), "x: -0.3");
    }

    /// The SQL top_factors replaced, for four features.
    const SQL_SPELLING: &str = "regexp_replace(array_to_string(array_slice(array_sort(make_array(
        CASE WHEN a < -0.01 THEN lpad(CAST(CAST(ROUND((1.0 + a) * 1000000) AS BIGINT) AS VARCHAR), 7, '0') || '#a: ' || CAST(ROUND(a, 2) AS VARCHAR) END,
        CASE WHEN ab < -0.01 THEN lpad(CAST(CAST(ROUND((1.0 + ab) * 1000000) AS BIGINT) AS VARCHAR), 7, '0') || '#ab: ' || CAST(ROUND(ab, 2) AS VARCHAR) END,
        CASE WHEN b < -0.01 THEN lpad(CAST(CAST(ROUND((1.0 + b) * 1000000) AS BIGINT) AS VARCHAR), 7, '0') || '#b: ' || CAST(ROUND(b, 2) AS VARCHAR) END,
        CASE WHEN c < -0.01 THEN lpad(CAST(CAST(ROUND((1.0 + c) * 1000000) AS BIGINT) AS VARCHAR), 7, '0') || '#c: ' || CAST(ROUND(c, 2) AS VARCHAR) END
    ), 'ASC', 'NULLS LAST'), 1, 3), '|'), '[0-9]{7}#', '', 'g')";

    #[tokio::test]
    async fn gives_what_the_sql_spelling_gave() {
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        // Values over (-1, 0.1) on a coarse and a fine grid (ties, whole
        // hundredths, halves that round either way), plus nulls.
        let mut rows = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |coarse: bool| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            if coarse {
                format!("{:.3}", unit * 1.1 - 1.0)
            } else {
                format!("{:e}", unit * 1.1 - 1.0)
            }
        };
        for i in 0..3000 {
            let mut v: Vec<String> = (0..4).map(|k| next((i + k) % 3 == 0)).collect();
            if i % 17 == 0 {
                v[i % 4] = "NULL".into();
            }
            if i % 5 == 0 {
                v[1] = v[0].clone();
            }
            rows.push(format!("({})", v.join(", ")));
        }
        let sql = format!(
            "SELECT array_to_string(top_factors(3, -0.01, 'a', a, 'ab', ab, 'b', b, 'c', c), '|') AS udf, \
                    {SQL_SPELLING} AS spelled \
             FROM (VALUES {}) AS t(a, ab, b, c)",
            rows.join(", ")
        );
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let mut compared = 0;
        for batch in batches {
            let udf = batch.column(0).as_string::<i32>();
            let spelled = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                assert_eq!(udf.value(i), spelled.value(i), "row {i}");
                compared += 1;
            }
        }
        assert_eq!(compared, 3000);
    }
}
