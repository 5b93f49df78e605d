//! `learnlake sql --pseudonymise`: every table is seen through a view whose
//! personal columns are replaced by keyed hashes (hex HMAC-SHA256 under
//! `LEARNLAKE_HASH_KEY`, the key ingest hashes IP addresses with), so any
//! query — joins and aliases included — returns pseudonyms only. The same
//! value gives the same pseudonym in every table and every export under the
//! same key, so exports still join; without the key nobody can reverse or
//! recompute them.
//!
//! Replaced: `student_id`, `flag_id` (derived from the student id), `name`,
//! and every column whose name contains `email`; a quarantine's `raw` text
//! (which may hold anything) becomes null.
//!
//! Small groups are suppressed as in the reports: a course_week row of a
//! course with fewer than `privacy.min_group_size` enrolled students keeps
//! its course and week, and every figure (enrolled included) is null.

use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, PartialEq, Eq, Hash)]
struct Pseudonym {
    key: Vec<u8>,
    signature: Signature,
}

impl ScalarUDFImpl for Pseudonym {
    fn name(&self) -> &str {
        "pseudonym"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return exec_err!("pseudonym takes one text value");
        };
        let array = value.to_array(args.number_rows)?;
        let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
        let text = array.as_string::<i32>();
        let mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        let mut out = StringBuilder::with_capacity(text.len(), text.len() * 64);
        for value in text.iter() {
            match value {
                Some(v) => {
                    let mut mac = mac.clone();
                    mac.update(v.as_bytes());
                    out.append_value(hex::encode(mac.finalize().into_bytes()));
                }
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn personal(column: &str) -> bool {
    matches!(column, "student_id" | "flag_id" | "name") || column.contains("email")
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The columns of an aggregate table that say which group and week a row
/// is; every other column is a figure about the group.
fn group_key(table: &str, column: &str) -> Option<bool> {
    match table {
        "course_week" => Some(matches!(
            column,
            "course_id" | "period_start" | "period_end"
        )),
        _ => None,
    }
}

/// Replaces every registered table of `ctx` by its pseudonymised view, with
/// the figures of groups under `min_group_size` members nulled.
pub async fn pseudonymise(ctx: &SessionContext, key: &[u8], min_group_size: usize) -> Result<()> {
    let enough =
        datafusion::prelude::col("enrolled").gt_eq(datafusion::prelude::lit(min_group_size as i64));
    let udf = ScalarUDF::from(Pseudonym {
        key: key.to_vec(),
        signature: Signature::any(1, Volatility::Immutable),
    });
    let names = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    for name in names {
        let df = ctx.table(name.as_str()).await?;
        let mut changed = false;
        let exprs: Vec<Expr> = df
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let column = Expr::Column(Column::from_name(f.name()));
                if personal(f.name()) && is_text(f.data_type()) {
                    changed = true;
                    udf.call(vec![column]).alias(f.name())
                } else if group_key(&name, f.name()) == Some(false) {
                    changed = true;
                    datafusion::logical_expr::when(enough.clone(), column)
                        .end()
                        .expect("a CASE with one branch")
                        .alias(f.name())
                } else if f.name() == "raw" && name.starts_with("quarantine_") {
                    changed = true;
                    Expr::Literal(ScalarValue::Utf8(None), None).alias(f.name())
                } else {
                    column
                }
            })
            .collect();
        if changed {
            let view = df.select(exprs)?.into_view();
            ctx.deregister_table(name.as_str())?;
            ctx.register_table(name.as_str(), view)?;
        }
    }
    Ok(())
}
