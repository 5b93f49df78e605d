//! The library's one error type. Variants are named after the action that
//! failed and carry what a user needs to fix it.

use std::path::PathBuf;

/// Result with learnlake's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),

    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("could not read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("object store {location}: {source}")]
    ObjectStore {
        location: String,
        #[source]
        source: object_store::Error,
    },

    #[error("could not write table {table}: {source}")]
    WriteTable {
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A Delta Lake operation (load, commit, time travel) on a lake table.
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: Box<deltalake_core::DeltaTableError>,
    },

    #[error("could not read table {table}: {source}")]
    ReadTable {
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("invalid partition value {value:?} for {column}: {reason}")]
    InvalidPartitionValue {
        column: String,
        value: String,
        reason: String,
    },

    #[error("query {name}: {source}")]
    Query {
        name: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error("engine setting {key} = {value:?}: {source}")]
    EngineSetting {
        key: String,
        value: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    /// The weeks asked of `analyze` do not name weeks (the CLI's usage error).
    #[error("cannot analyze: {0}")]
    InvalidWeeks(String),

    /// There is nothing to analyze yet (a failed run, not a usage error).
    #[error("nothing to analyze: {0}")]
    NothingToAnalyze(String),

    #[error("Ballista cluster: {0}")]
    Cluster(String),

    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),

    #[error("internal: {0}")]
    Worker(String),

    /// A landing file turned out corrupt while it was read (its head was
    /// fine). Ingest quarantines it whole and runs its kind again without it.
    #[error("{path}: {reason}")]
    CorruptSource { path: String, reason: String },

    /// A saved model cannot be read or used.
    #[error("model: {0}")]
    Model(String),

    /// Training cannot start or fit (a failed run, with what to fix).
    #[error("cannot train: {0}")]
    CannotTrain(String),

    #[error(
        "ingest was interrupted on purpose after {0} batch(es) (LEARNLAKE_TEST_CRASH_AFTER_BATCHES)"
    )]
    TestCrash(usize),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// What a user reads: the message names the thing and, once, why.
    #[test]
    fn messages_users_see() {
        let read = Error::ReadFile {
            path: PathBuf::from("/landing/courses.csv"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            read.to_string(),
            "could not read /landing/courses.csv: entity not found"
        );
        // The source is also the next link of the chain (the binary prints
        // each cause once, see jobs/src/main.rs).
        assert_eq!(read.source().unwrap().to_string(), "entity not found");
        assert_eq!(
            Error::Config("timezone: \"Mars/Base\" is not an IANA time zone".into()).to_string(),
            "config: timezone: \"Mars/Base\" is not an IANA time zone"
        );
        assert_eq!(
            Error::InvalidUrl {
                url: "./lake".into(),
                reason: "the folder /x/lake does not exist".into()
            }
            .to_string(),
            "invalid URL \"./lake\": the folder /x/lake does not exist"
        );
        assert_eq!(
            Error::NothingToAnalyze("the lake has no activity".into()).to_string(),
            "nothing to analyze: the lake has no activity"
        );
    }
}
