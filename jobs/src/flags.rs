//! `learnlake flags`: the at-risk feed (risk_flags) exported as NDJSON, CSV
//! or Parquet, streamed batch by batch (never the whole table in memory).
//! A file output is written beside its target and renamed when complete,
//! so a consumer never reads half an export.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_nested::expr_fn::array_to_string;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{SessionContext, col, lit};
use futures::StreamExt;
use learnlake_pipeline::analytics::{self, Queries};
use learnlake_pipeline::lake::LakeTable;
use learnlake_pipeline::lake::parquet_io;

use crate::cli::{FlagFormat, RiskLevel};

/// Which flags to export.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<NaiveDate>,
    pub level: Option<RiskLevel>,
    pub changed: bool,
}

impl Filter {
    pub fn params(&self) -> Vec<(&'static str, ScalarValue)> {
        let epoch = NaiveDate::default();
        let since = self.since.map_or(i32::MIN, |d| {
            d.signed_duration_since(epoch).num_days() as i32
        });
        let min_rank = match self.level {
            None => 1,
            Some(RiskLevel::Medium) => 2,
            Some(RiskLevel::High) => 3,
        };
        vec![
            ("since", ScalarValue::Date32(Some(since))),
            ("min_rank", ScalarValue::Int64(Some(min_rank))),
            ("changed_only", ScalarValue::Boolean(Some(self.changed))),
        ]
    }
}

/// A file written under a temporary name and renamed into place on
/// [`Output::finish`], or stdout.
enum Output {
    File {
        tmp: PathBuf,
        path: PathBuf,
        file: std::io::BufWriter<std::fs::File>,
    },
    Stdout(std::io::Stdout),
}

impl Output {
    fn open(path: Option<&Path>) -> Result<Self> {
        Ok(match path {
            None => Output::Stdout(std::io::stdout()),
            Some(path) => {
                let mut name = path.file_name().unwrap_or_default().to_os_string();
                name.push(".partial");
                let tmp = path.with_file_name(name);
                let file = std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                Output::File {
                    tmp,
                    path: path.to_path_buf(),
                    file: std::io::BufWriter::new(file),
                }
            }
        })
    }

    fn finish(self) -> Result<()> {
        match self {
            Output::Stdout(mut out) => Ok(out.flush()?),
            Output::File { tmp, path, file } => {
                let file = file.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(out) => out.write(buf),
            Output::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File { file, .. } => file.flush(),
        }
    }
}

/// Streams the flags matching `filter` to `output` (stdout without one);
/// returns how many were written.
pub async fn export(
    ctx: &SessionContext,
    queries: &Queries,
    filter: &Filter,
    format: FlagFormat,
    output: Option<&Path>,
) -> Result<usize> {
    if format == FlagFormat::Parquet && output.is_none() {
        bail!("--format parquet needs --output PATH");
    }
    if !ctx.table_exist(LakeTable::RiskFlags.name())? {
        bail!("the lake has no risk_flags yet; run `learnlake analyze` first");
    }
    let mut df = analytics::query_frame(ctx, queries, "flags", &filter.params()).await?;
    if format == FlagFormat::Csv {
        // CSV has no lists: indicators and factors become "a; b" text.
        let exprs: Vec<_> = df
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::List(_) | DataType::LargeList(_) => {
                    array_to_string(col(f.name()), lit("; ")).alias(f.name())
                }
                _ => col(f.name()),
            })
            .collect();
        df = df.select(exprs)?;
    }
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let mut stream = df
        .execute_stream()
        .await
        .context("running the flags query")?;
    let mut out = Output::open(output)?;
    let mut rows = 0;
    match format {
        FlagFormat::Ndjson => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            while let Some(batch) = stream.next().await {
                let batch: RecordBatch = batch?;
                rows += batch.num_rows();
                w.write(&batch)?;
            }
            w.finish()?;
        }
        FlagFormat::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(&mut out);
            let mut wrote_any = false;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                w.write(&batch)?;
                wrote_any = true;
            }
            if !wrote_any {
                // no rows: still the header, so readers see the columns
                w.write(&RecordBatch::new_empty(schema.clone()))?;
            }
        }
        FlagFormat::Parquet => {
            let mut w = ArrowWriter::try_new(
                &mut out,
                schema.clone(),
                Some(parquet_io::writer_properties()),
            )?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                w.write(&batch)?;
            }
            w.close()?;
        }
    }
    out.finish()?;
    Ok(rows)
}
