//! The analytics SQL: `queries/*.sql`, compiled into the library so the
//! binary runs anywhere, and optionally overridden by the files of a
//! configured folder, by file name.
//!
//! `queries/` stays the one place the SQL lives: the texts below are
//! `include_str!` of those files, never copies.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Every query file the library runs, by name (the file stem).
pub const EMBEDDED: [(&str, &str); 18] = [
    ("data_span", include_str!("../../../queries/data_span.sql")),
    (
        "history_start",
        include_str!("../../../queries/history_start.sql"),
    ),
    (
        "student_day",
        include_str!("../../../queries/student_day.sql"),
    ),
    (
        "counted_attempts",
        include_str!("../../../queries/counted_attempts.sql"),
    ),
    (
        "week_enrollments",
        include_str!("../../../queries/week_enrollments.sql"),
    ),
    (
        "student_week",
        include_str!("../../../queries/student_week.sql"),
    ),
    (
        "course_week",
        include_str!("../../../queries/course_week.sql"),
    ),
    (
        "unknown_references",
        include_str!("../../../queries/unknown_references.sql"),
    ),
    (
        "risk_flags",
        include_str!("../../../queries/risk_flags.sql"),
    ),
    (
        "finished_courses",
        include_str!("../../../queries/finished_courses.sql"),
    ),
    (
        "training_rows",
        include_str!("../../../queries/training_rows.sql"),
    ),
    ("flags", include_str!("../../../queries/flags.sql")),
    (
        "stale_student_weeks",
        include_str!("../../../queries/stale_student_weeks.sql"),
    ),
    (
        "report_courses",
        include_str!("../../../queries/report_courses.sql"),
    ),
    (
        "report_at_risk",
        include_str!("../../../queries/report_at_risk.sql"),
    ),
    (
        "student_reports",
        include_str!("../../../queries/student_reports.sql"),
    ),
    (
        "student_assessments",
        include_str!("../../../queries/student_assessments.sql"),
    ),
    (
        "student_upcoming",
        include_str!("../../../queries/student_upcoming.sql"),
    ),
];

/// The built-in text of `<name>.sql`, if there is such a query.
pub fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED
        .iter()
        .find_map(|(n, text)| (*n == name).then_some(*text))
}

/// Where query texts come from: the built-in files, each replaced by
/// `<dir>/<name>.sql` when an override folder is given and holds that file.
#[derive(Clone, Debug, Default)]
pub struct Queries {
    /// The override folder (`[analytics] queries`, `LEARNLAKE_QUERIES`).
    pub dir: Option<PathBuf>,
}

impl Queries {
    /// The built-in queries, overridden by the files in `dir` (if any).
    /// A folder that does not exist is an error, never silently ignored.
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(Error::Config(format!(
                "analytics.queries: {} is not a folder; point it at a folder of <query>.sql files \
                 that override the built-in ones, or remove the setting",
                dir.display()
            )));
        }
        Ok(Self {
            dir: dir.map(Path::to_path_buf),
        })
    }

    /// The text of `<name>.sql`: the override file if there is one, else the
    /// built-in text.
    pub fn load(&self, name: &str) -> Result<String> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{name}.sql"));
            if path.is_file() {
                return std::fs::read_to_string(&path)
                    .map_err(|source| Error::ReadFile { path, source });
            }
        }
        embedded(name).map(str::to_string).ok_or_else(|| {
            Error::Config(format!(
                "there is no query named {name:?} (the queries are {})",
                EMBEDDED.map(|(n, _)| n).join(", ")
            ))
        })
    }

    /// The override files in the folder that match no query (a typo in a
    /// file name would otherwise be ignored); for `learnlake validate`.
    pub fn unused_overrides(&self) -> Result<Vec<PathBuf>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadFile {
            path: dir.clone(),
            source,
        })?;
        let mut unused = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| Error::ReadFile {
                    path: dir.clone(),
                    source,
                })?
                .path();
            let is_sql = path.extension().is_some_and(|e| e == "sql");
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if is_sql && embedded(stem).is_none() {
                unused.push(path);
            }
        }
        unused.sort();
        Ok(unused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_queries_are_the_files_of_queries() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
            .collect();
        files.sort();
        let mut names: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(
            files, names,
            "every queries/*.sql is built in, and only those"
        );
        let queries = Queries::new(None).unwrap();
        for name in names {
            let on_disk = std::fs::read_to_string(dir.join(format!("{name}.sql"))).unwrap();
            assert_eq!(queries.load(&name).unwrap(), on_disk);
        }
    }

    #[test]
    fn a_folder_overrides_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("course_week.sql"), "SELECT 1 AS mine").unwrap();
        std::fs::write(dir.path().join("studentweek.sql"), "SELECT 2").unwrap();
        let queries = Queries::new(Some(dir.path())).unwrap();
        assert_eq!(queries.load("course_week").unwrap(), "SELECT 1 AS mine");
        assert_eq!(
            queries.load("student_week").unwrap(),
            embedded("student_week").unwrap()
        );
        assert_eq!(
            queries.unused_overrides().unwrap(),
            [dir.path().join("studentweek.sql")]
        );
        let err = queries.load("nope").unwrap_err().to_string();
        assert!(err.contains("no query named \"nope\""), "{err}");
        let err = Queries::new(Some(&dir.path().join("missing")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a folder"), "{err}");
    }
}
