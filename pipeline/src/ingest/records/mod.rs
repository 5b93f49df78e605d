//! One row of each raw kind: how it is read (NDJSON line or CSV record),
//! checked against the input contract (PRODUCT.md §3) and appended to Arrow
//! builders. A row that breaks the contract yields a reason a person can act
//! on, and nothing is appended.
//!
//! This file owns the kinds themselves; `raw` the serde shapes rows are read
//! into, `checks` the contract's checks of single values, `columns` the
//! Arrow builders a checked row is appended to ([`Rows`]) and [`lms`] the
//! mapping of other systems' records (xAPI, Caliper, Open edX, Moodle) to
//! those rows.

mod checks;
mod columns;
pub mod lms;
mod raw;

use crate::lake::tables::LakeTable;

pub use self::checks::{category_of, local_day_start, parse_timestamp};
pub use self::columns::Rows;

/// The raw kinds of the landing area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Activity,
    Attempts,
    Students,
    Courses,
    Enrollments,
    Assessments,
}

impl Kind {
    /// Every kind, in ingest order (reference kinds first, so a run's events
    /// land next to the reference rows they name).
    pub const ALL: [Kind; 6] = [
        Kind::Students,
        Kind::Courses,
        Kind::Enrollments,
        Kind::Assessments,
        Kind::Activity,
        Kind::Attempts,
    ];

    /// The kind's name (its landing folder or file stem, its quarantine folder).
    pub fn name(self) -> &'static str {
        self.table().name()
    }

    /// The lake table the kind lands in.
    pub fn table(self) -> LakeTable {
        match self {
            Kind::Activity => LakeTable::Activity,
            Kind::Attempts => LakeTable::Attempts,
            Kind::Students => LakeTable::Students,
            Kind::Courses => LakeTable::Courses,
            Kind::Enrollments => LakeTable::Enrollments,
            Kind::Assessments => LakeTable::Assessments,
        }
    }

    /// Events are partitioned by date and deduplicated by id; the others are
    /// keyed snapshots.
    pub fn is_event(self) -> bool {
        matches!(self, Kind::Activity | Kind::Attempts)
    }

    /// Whether CSV is part of this kind's contract.
    pub fn accepts_csv(self) -> bool {
        self != Kind::Attempts
    }
}

/// The column that keys a kind's rows (with course_id for enrollments).
pub(super) fn key_column(kind: Kind) -> &'static str {
    match kind {
        Kind::Activity => "event_id",
        Kind::Attempts => "attempt_id",
        Kind::Students => "student_id",
        Kind::Courses => "course_id",
        Kind::Enrollments => "student_id",
        Kind::Assessments => "assessment_id",
    }
}
