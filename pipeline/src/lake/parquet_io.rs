//! Encoding record batches as Parquet files and reading them back.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;

use crate::Result;

/// Unique ids, sorted within a student: prefix-shared (DELTA_BYTE_ARRAY)
/// instead of a dictionary that overflows and falls back to plain.
const ID_COLUMNS: [&str; 2] = ["event_id", "attempt_id"];
/// Times, increasing within a student: delta-encoded (DELTA_BINARY_PACKED).
const TIME_COLUMNS: [&str; 3] = ["timestamp", "submitted_at", "started_at"];

/// The writer settings of every lake file: zstd level 1 (same size as the
/// default level 3 on our data, ~1.6× faster to write), row-group statistics,
/// and delta encodings for the event tables' ids and times (narrow events:
/// 11.3 → 8.8 bytes per row; every Parquet reader of PRODUCT §4 reads them).
pub fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(1024 * 1024))
        .set_created_by("learnlake".to_string());
    for (columns, encoding) in [
        (&ID_COLUMNS[..], Encoding::DELTA_BYTE_ARRAY),
        (&TIME_COLUMNS[..], Encoding::DELTA_BINARY_PACKED),
    ] {
        for column in columns {
            let path = ColumnPath::from(*column);
            builder = builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, encoding);
        }
    }
    builder.build()
}

/// Encodes batches (all of `schema`) into one Parquet file in memory.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(writer_properties()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(Bytes::from(buffer))
}

/// Decodes a whole Parquet file, optionally only some top-level columns.
pub fn decode(data: Bytes, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)?;
    let builder = match columns {
        Some(names) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.with_batch_size(64 * 1024).build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}
