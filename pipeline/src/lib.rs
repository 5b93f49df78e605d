//! learnlake's library: everything between raw files and analytics tables.
//!
//! ```text
//!  landing/            ingest/              lake/                       analytics/ (queries/*.sql)
//!  activity/*.jsonl ─▶ parse + validate ─▶ activity/event_date=D/ ─▶  student_week/period_start=D/
//!  attempts/*.jsonl    dedup + quarantine  attempts/submitted_date=D/  course_week/period_start=D/
//!  students.csv …      ledger, atomic put  students/ … _quarantine/    (engine/: DataFusion session)
//! ```
//!
//! The binary (`jobs/`) owns the CLI, scheduling and delivery; nothing here
//! reads command-line arguments or the terminal. Synthetic landing data
//! comes from a crate of its own (`generate/`, `learnlake generate`), so
//! this library carries no random-number crates.

pub mod analytics;
pub mod config;
pub mod engine;
pub mod error;
pub mod ingest;
pub mod lake;
pub mod predict;
pub mod schedule;

pub use error::{Error, Result};
