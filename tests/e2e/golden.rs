//! Golden `.slt` files (tests/slt/*.slt) over a lake built from
//! data-samples: ingest + analyze in Europe/London (the sample spans the
//! March DST change). Regenerate the expected results after an intended
//! change with `LEARNLAKE_COMPLETE=1 scripts/test -E 'test(golden)'` and
//! review the diff.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use learnlake_pipeline::engine::{self, EngineOptions};
use learnlake_pipeline::lake::Store;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::{ingest_ok, learnlake_ok, scratch};

struct Lake {
    ctx: SessionContext,
}

#[derive(Debug)]
struct QueryError(String);

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Lake {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let err = |e: datafusion::error::DataFusionError| QueryError(e.to_string());
        let df = self.ctx.sql(sql).await.map_err(err)?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await.map_err(err)?;
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                    DefaultColumnType::Integer
                }
                DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    DefaultColumnType::Text
                }
                _ => DefaultColumnType::Any,
            })
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: batches.iter().flat_map(rows_of).collect(),
        })
    }

    async fn shutdown(&mut self) {}
}

/// Values as text; floats rounded to 6 decimals so that summation order
/// cannot change a golden file.
fn rows_of(batch: &RecordBatch) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(
                    |(column, f)| match column.as_any().downcast_ref::<Float64Array>() {
                        Some(floats) if floats.is_valid(row) => format!("{:.6}", floats.value(row)),
                        _ => f.value(row).to_string(),
                    },
                )
                .collect()
        })
        .collect()
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/landing")
}

#[tokio::test(flavor = "multi_thread")]
async fn golden_slt_files_over_data_samples() {
    let (_tmp, dir) = scratch();
    let lake = dir.join("lake");
    let lake_s = lake.to_str().unwrap();
    let env = [("LEARNLAKE_HASH_KEY", "golden")];
    ingest_ok(&dir, &lake, &samples(), &env);
    learnlake_ok(
        &dir,
        &["--lake", lake_s, "--timezone", "Europe/London", "analyze"],
        &env,
    );
    let store = Store::open(lake_s, false).unwrap();
    let ctx = engine::session(&store, &EngineOptions::default())
        .await
        .unwrap();

    let slt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&slt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", slt_dir.display());
    let complete = std::env::var("LEARNLAKE_COMPLETE").is_ok_and(|v| v == "1");
    let failures = run_slt_files(&ctx, &files, complete).await;
    assert!(
        failures.is_empty(),
        "{} .slt file(s) failed (regenerate with LEARNLAKE_COMPLETE=1 after an intended change, and review the diff):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Runs (or, with `complete`, rewrites) every file; returns one message per
/// failing file, so that all of them are reported, not only the first.
async fn run_slt_files(ctx: &SessionContext, files: &[PathBuf], complete: bool) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let ctx = ctx.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let ctx = ctx.clone();
            async move { Ok::<_, QueryError>(Lake { ctx }) }
        });
        // The `query TTI` letters are checked, not only the values.
        runner.with_column_validator(sqllogictest::strict_column_validator);
        let result = if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner
                .run_file_async(file)
                .await
                .map_err(|e| e.display(false).to_string())
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    failures
}

/// The runner itself can fail: a wrong column type fails a file whose
/// values are right, and every failing file is reported.
#[tokio::test]
async fn the_slt_runner_checks_types_and_reports_every_failing_file() {
    let (_tmp, dir) = scratch();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = [
        write("a_right.slt", "query TI\nSELECT 'x', 1\n----\nx 1\n"),
        write("b_wrong_type.slt", "query II\nSELECT 'x', 1\n----\nx 1\n"),
        write("c_wrong_value.slt", "query TI\nSELECT 'x', 2\n----\nx 1\n"),
    ];
    let failures = run_slt_files(&SessionContext::new(), &files, false).await;
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(failures[0].contains("b_wrong_type.slt"), "{failures:#?}");
    assert!(failures[1].contains("c_wrong_value.slt"), "{failures:#?}");
}
