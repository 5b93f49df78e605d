//! Query results written batch by batch as NDJSON, CSV or Parquet (never
//! the whole result in memory), to stdout or to a file written beside its
//! target and renamed when complete, so a consumer never reads half of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::functions_nested::expr_fn::array_to_string;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{DataFrame, col, lit};
use futures::StreamExt;
use learnlake_pipeline::lake::parquet_io;

/// The streamed formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFormat {
    Ndjson,
    Csv,
    Parquet,
}

/// A file written under a temporary name and renamed into place on
/// [`Output::finish`], or stdout.
enum Output {
    File {
        tmp: PathBuf,
        path: PathBuf,
        file: std::io::BufWriter<std::fs::File>,
    },
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

impl Output {
    fn open(path: Option<&Path>) -> Result<Self> {
        Ok(match path {
            None => Output::Stdout(std::io::BufWriter::new(std::io::stdout())),
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

/// Whether a column's type has other columns inside it.
fn nested(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
    )
}

/// A nested column as JSON text, one value per row (null stays null): how
/// CSV shows an attempt's answers.
fn json_text(name: &str, column: &ArrayRef) -> Result<ArrayRef> {
    let field = Field::new(name, column.data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![column.clone()])?;
    let mut buffer = Vec::new();
    {
        let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buffer);
        w.write(&batch)?;
        w.finish()?;
    }
    let mut text = StringBuilder::new();
    for line in buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let row: serde_json::Value = serde_json::from_slice(line)?;
        match row.get(name) {
            None | Some(serde_json::Value::Null) => text.append_null(),
            Some(value) => text.append_value(value.to_string()),
        }
    }
    Ok(Arc::new(text.finish()))
}

/// The batch with its nested columns as JSON text.
fn flatten(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(column, field)| {
            if nested(field.data_type()) {
                json_text(field.name(), column)
            } else {
                Ok(column.clone())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Runs `df` and writes its rows to `output` (stdout without one) as they
/// come; returns how many. CSV has no nested values: a list of plain values
/// becomes `a; b` text, any other nested value (an attempt's answers, a
/// struct) its JSON. Parquet needs a file.
pub async fn write_stream(
    mut df: DataFrame,
    format: StreamFormat,
    output: Option<&Path>,
) -> Result<usize> {
    if format == StreamFormat::Parquet && output.is_none() {
        bail!("--format parquet needs --output PATH");
    }
    if format == StreamFormat::Csv {
        let exprs: Vec<_> = df
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::List(item) | DataType::LargeList(item) if !nested(item.data_type()) => {
                    array_to_string(col(f.name()), lit("; ")).alias(f.name())
                }
                _ => col(f.name()),
            })
            .collect();
        df = df.select(exprs)?;
    }
    let schema = Arc::new(df.schema().as_arrow().clone());
    let csv_schema: SchemaRef = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if nested(f.data_type()) {
                    Field::new(f.name(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    let mut stream = df.execute_stream().await?;
    let mut out = Output::open(output)?;
    let mut rows = 0;
    match format {
        StreamFormat::Ndjson => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            while let Some(batch) = stream.next().await {
                let batch: RecordBatch = batch?;
                rows += batch.num_rows();
                w.write(&batch)?;
            }
            w.finish()?;
        }
        StreamFormat::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(&mut out);
            let mut wrote_any = false;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                w.write(&flatten(&csv_schema, &batch)?)?;
                wrote_any = true;
            }
            if !wrote_any {
                // No rows: still the header, so readers see the columns.
                w.write(&RecordBatch::new_empty(csv_schema.clone()))?;
            }
        }
        StreamFormat::Parquet => {
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
