//! The lake's tables: names, folders, partition columns and Arrow schemas.
//! docs/LAKE.md is the user-facing description of the same contract.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The folder below the lake root that holds each table's rejected input.
pub const QUARANTINE: &str = "_quarantine";

/// The folder of the `job_runs` table, with the lake's other metadata.
pub const JOB_RUNS_FOLDER: &str = "_meta/job_runs";

/// The Hive partition column (a `DATE`) of the quarantine folders.
pub const QUARANTINE_PARTITION: &str = "ingest_date";

/// A table of the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LakeTable {
    Activity,
    Attempts,
    Students,
    Courses,
    Enrollments,
    Assessments,
    StudentWeek,
    CourseWeek,
    /// The at-risk feed (PRODUCT §8), derived per week with student_week.
    RiskFlags,
    /// The saved risk models (`_meta/models/models.parquet`).
    Models,
    /// The scheduler's record of job runs (PRODUCT §9), `_meta/job_runs`.
    JobRuns,
}

impl LakeTable {
    /// Every table, raw ones first.
    pub const ALL: [LakeTable; 11] = [
        LakeTable::Activity,
        LakeTable::Attempts,
        LakeTable::Students,
        LakeTable::Courses,
        LakeTable::Enrollments,
        LakeTable::Assessments,
        LakeTable::StudentWeek,
        LakeTable::CourseWeek,
        LakeTable::RiskFlags,
        LakeTable::Models,
        LakeTable::JobRuns,
    ];

    /// The table's name, which is also its folder below the lake root.
    pub fn name(self) -> &'static str {
        match self {
            LakeTable::Activity => "activity",
            LakeTable::Attempts => "attempts",
            LakeTable::Students => "students",
            LakeTable::Courses => "courses",
            LakeTable::Enrollments => "enrollments",
            LakeTable::Assessments => "assessments",
            LakeTable::StudentWeek => "student_week",
            LakeTable::CourseWeek => "course_week",
            LakeTable::RiskFlags => "risk_flags",
            LakeTable::Models => "models",
            LakeTable::JobRuns => "job_runs",
        }
    }

    /// The table's folder below the lake root: its name, but for the
    /// models, which live with the lake's metadata.
    pub fn folder(self) -> &'static str {
        match self {
            LakeTable::Models => crate::predict::MODELS_FOLDER,
            LakeTable::JobRuns => JOB_RUNS_FOLDER,
            _ => self.name(),
        }
    }

    /// The Hive partition column (always a `DATE`), if the table has one.
    pub fn partition_column(self) -> Option<&'static str> {
        match self {
            LakeTable::Activity => Some("event_date"),
            LakeTable::Attempts => Some("submitted_date"),
            LakeTable::StudentWeek | LakeTable::CourseWeek => Some("period_start"),
            LakeTable::RiskFlags => Some("as_of_date"),
            _ => None,
        }
    }

    /// The schema of the table's files (without the partition column), for
    /// the tables ingest and the scheduler write. Derived tables take their schema from their
    /// query.
    pub fn file_schema(self) -> Option<SchemaRef> {
        let schema = match self {
            LakeTable::Activity => activity_schema(),
            LakeTable::Attempts => attempts_schema(),
            LakeTable::Students => students_schema(),
            LakeTable::Courses => courses_schema(),
            LakeTable::Enrollments => enrollments_schema(),
            LakeTable::Assessments => assessments_schema(),
            LakeTable::JobRuns => job_runs_schema(),
            LakeTable::StudentWeek
            | LakeTable::CourseWeek
            | LakeTable::RiskFlags
            | LakeTable::Models => return None,
        };
        Some(Arc::new(schema))
    }

    /// The schema of the Delta table (file columns, then the partition
    /// column as a `Date32`), for the tables ingest writes.
    pub fn table_schema(self) -> Option<Schema> {
        let file = self.file_schema()?;
        Some(with_partition(&file, self.partition_column()))
    }

    /// The folder of the table's quarantine, `_quarantine/<table>`, for the
    /// tables ingest writes (partitioned by [`QUARANTINE_PARTITION`]).
    pub fn quarantine_folder(self) -> Option<String> {
        match self {
            LakeTable::StudentWeek
            | LakeTable::CourseWeek
            | LakeTable::RiskFlags
            | LakeTable::Models
            | LakeTable::JobRuns => None,
            _ => Some(format!("{QUARANTINE}/{}", self.name())),
        }
    }
}

/// Every table of the lake by name, each kind's quarantine included
/// (`quarantine_<kind>`): (name, folder).
pub fn folders() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = LakeTable::ALL
        .iter()
        .map(|t| (t.name().to_string(), t.folder().to_string()))
        .collect();
    all.extend(LakeTable::ALL.iter().filter_map(|t| {
        t.quarantine_folder()
            .map(|f| (format!("quarantine_{}", t.name()), f))
    }));
    all
}

/// `schema` with `partition` (a non-null `Date32`) appended, if any.
pub fn with_partition(schema: &Schema, partition: Option<&str>) -> Schema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    if let Some(column) = partition {
        fields.push(Field::new(column, DataType::Date32, false));
    }
    Schema::new(fields)
}

/// `Timestamp(Microsecond, "UTC")`, the lake's one timestamp type.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn f64(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

fn ts(name: &str, nullable: bool) -> Field {
    Field::new(name, timestamp_type(), nullable)
}

fn activity_schema() -> Schema {
    Schema::new(vec![
        utf8("event_id", false),
        utf8("student_id", false),
        ts("timestamp", false),
        utf8("activity_type", false),
        utf8("activity_category", false),
        utf8("course_id", true),
        utf8("lesson_id", true),
        utf8("quiz_id", true),
        utf8("assignment_id", true),
        utf8("resource_id", true),
        utf8("session_id", true),
        f64("duration_seconds"),
        Field::new("interaction_count", DataType::Int64, false),
        f64("progress"),
        f64("score"),
        utf8("device_type", true),
        utf8("browser", true),
        utf8("os", true),
        utf8("ip_address", true),
        Field::new("success", DataType::Boolean, true),
        utf8("details", true),
    ])
}

/// `job_runs`: one row per finished run of a job (PRODUCT §9).
fn job_runs_schema() -> Schema {
    Schema::new(vec![
        utf8("job", false),
        utf8("run_id", false),
        ts("scheduled_for", false),
        utf8("trigger", false),
        utf8("host", false),
        ts("started_at", false),
        ts("finished_at", false),
        utf8("status", false),
        Field::new("steps_total", DataType::Int32, false),
        Field::new("steps_succeeded", DataType::Int32, false),
        Field::new("attempts", DataType::Int32, false),
        utf8("step_counts", false),
        utf8("error", true),
    ])
}

/// The struct of one element of `attempts.answers`.
pub fn answer_fields() -> Fields {
    Fields::from(vec![
        utf8("question_id", true),
        utf8("question_type", true),
        Field::new("is_correct", DataType::Boolean, true),
        f64("points_earned"),
        f64("points_possible"),
        f64("time_spent_seconds"),
        utf8("skill", true),
    ])
}

/// The struct of one element of `attempts.integrity_flags`.
pub fn integrity_flag_fields() -> Fields {
    Fields::from(vec![
        utf8("type", true),
        ts("timestamp", true),
        utf8("details", true),
    ])
}

fn list_of(name: &str, fields: Fields) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true))),
        true,
    )
}

fn attempts_schema() -> Schema {
    Schema::new(vec![
        utf8("attempt_id", false),
        utf8("student_id", false),
        utf8("course_id", false),
        utf8("assessment_id", false),
        utf8("assessment_type", true),
        ts("started_at", true),
        ts("submitted_at", false),
        Field::new("score", DataType::Float64, false),
        f64("points_earned"),
        f64("points_possible"),
        f64("passing_score"),
        Field::new("passed", DataType::Boolean, true),
        Field::new("attempt_number", DataType::Int64, true),
        Field::new("is_practice", DataType::Boolean, false),
        utf8("skill", true),
        list_of("answers", answer_fields()),
        list_of("integrity_flags", integrity_flag_fields()),
    ])
}

fn students_schema() -> Schema {
    Schema::new(vec![
        utf8("student_id", false),
        utf8("name", true),
        utf8("email", true),
        utf8("guardian_email", true),
        utf8("timezone", true),
        utf8("locale", true),
        Field::new("notify_reminders", DataType::Boolean, false),
        Field::new("notify_achievements", DataType::Boolean, false),
        Field::new("notify_deadlines", DataType::Boolean, false),
        utf8("advisor_email", true),
    ])
}

fn courses_schema() -> Schema {
    Schema::new(vec![
        utf8("course_id", false),
        utf8("title", true),
        Field::new("start_date", DataType::Date32, true),
        Field::new("end_date", DataType::Date32, true),
        Field::new("total_lessons", DataType::Int64, true),
        f64("passing_score"),
        utf8("instructor_email", true),
    ])
}

fn enrollments_schema() -> Schema {
    Schema::new(vec![
        utf8("student_id", false),
        utf8("course_id", false),
        ts("enrolled_at", true),
        utf8("status", true),
        ts("withdrawn_at", true),
        utf8("final_result", true),
    ])
}

fn assessments_schema() -> Schema {
    Schema::new(vec![
        utf8("assessment_id", false),
        utf8("course_id", false),
        utf8("assessment_type", true),
        utf8("title", true),
        ts("due_at", true),
        f64("weight"),
    ])
}

/// The schema of `_quarantine/<kind>` files.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("source_file", false),
        Field::new("line_number", DataType::Int64, true),
        utf8("raw", false),
        utf8("reason", false),
        ts("ingested_at", false),
    ]))
}
