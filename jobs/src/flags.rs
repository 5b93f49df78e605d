//! `learnlake flags`: the at-risk feed (risk_flags) exported as NDJSON, CSV
//! or Parquet, streamed batch by batch (never the whole table in memory;
//! see `output.rs`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use learnlake_pipeline::analytics::{self, Queries};
use learnlake_pipeline::lake::LakeTable;

use crate::cli::{FlagFormat, RiskLevel};
use crate::output::StreamFormat;

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

/// Streams the flags matching `filter` to `output` (stdout without one);
/// returns how many were written.
pub async fn export(
    ctx: &SessionContext,
    queries: &Queries,
    filter: &Filter,
    format: FlagFormat,
    output: Option<&Path>,
) -> Result<usize> {
    if !ctx.table_exist(LakeTable::RiskFlags.name())? {
        bail!("the lake has no risk_flags yet; run `learnlake analyze` first");
    }
    let df = analytics::query_frame(ctx, queries, "flags", &filter.params()).await?;
    let format = match format {
        FlagFormat::Ndjson => StreamFormat::Ndjson,
        FlagFormat::Csv => StreamFormat::Csv,
        FlagFormat::Parquet => StreamFormat::Parquet,
    };
    crate::output::write_stream(df, format, output)
        .await
        .context("running the flags query")
}
