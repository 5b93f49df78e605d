//! Synthetic landing data for demos, tests and benchmarks (`learnlake generate`).
//!
//! Writes a landing folder that follows the raw input contract (PRODUCT.md §3):
//!
//! ```text
//! out/activity/activity-00001.jsonl[.gz] …   NDJSON events, 250 000 per file
//! out/attempts/attempts-00001.jsonl[.gz] …   NDJSON assessment attempts
//! out/students.csv  out/courses.csv  out/enrollments.csv  out/assessments.jsonl
//! out/GENERATED.json                         options and counts (not landing data)
//! ```
//!
//! The data is shaped to exercise every analytics and risk rule: courses that
//! finished inside the window (enrollments with a `final_result`, the model's
//! training history) and courses still running; student archetypes (steady,
//! crammer, fading, struggling, excellent, never started) whose outcomes follow
//! their behaviour, with noise; weekly rhythms in local time across zones with
//! DST changes; late work, practice attempts, retries, mid-course enrollments
//! and students in several courses. Both field spellings the contract accepts
//! appear (`quiz_id`/`completed_at` aliases, flat or nested device, local
//! offset or `Z`, optional fields present or absent).
//!
//! Output is a pure function of [`GenerateOptions`] (no clock, no hash-map
//! order): each student has their own PCG stream derived from the seed, so the
//! same options give byte-identical files. Students are generated and written
//! one at a time, so memory does not grow with the number of events.
//!
//! This crate owns only the files it writes under `out`; it never reads the
//! lake or any configuration. It is a crate of its own so the production
//! library does not carry the random-number crates.

mod catalog;
mod error;
mod json;
mod population;
mod simulate;
mod sink;
mod xapi;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::Serialize;

use catalog::Course;
use json::{JsonLine, Stamp};
use population::{Population, Student, ZONES};
use simulate::{Simulator, Streams, StudentIds, Window};

pub use simulate::Profile;
use sink::{OutputFile, SplitNdjson};
pub use xapi::{Format as OtherFormat, XapiSummary, to_format, to_xapi};

pub use error::{Error, Result};

/// Events per activity file; the last file holds the rest.
pub const EVENTS_PER_FILE: u64 = 250_000;
/// Attempts per attempts file.
pub const ATTEMPTS_PER_FILE: u64 = 250_000;

/// How often (in events) the progress callback is called at most.
const PROGRESS_EVERY: u64 = 16_384;

/// What to generate. Same options, same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Landing folder to write (created if missing). Files the generator
    /// names (`activity/activity-*.jsonl*`, `attempts/attempts-*.jsonl*`, the
    /// reference files, `GENERATED.json`) are replaced; nothing else is touched.
    pub out: PathBuf,
    /// Number of students.
    pub students: usize,
    /// Number of courses; the first half finish inside the window, the rest are still running.
    pub courses: usize,
    /// Length of the generated period in weeks.
    pub weeks: u32,
    /// First day of the period (00:00 UTC); a Monday lines weeks up with the analytics weeks.
    pub start: NaiveDate,
    /// Random seed.
    pub seed: u64,
    /// Write `.jsonl.gz` instead of `.jsonl` for activity and attempts.
    pub gzip: bool,
    /// The shape of the activity events: rich client events, or the narrow
    /// daily click counts of real LMS exports.
    pub profile: Profile,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("./landing"),
            students: 200,
            courses: 4,
            weeks: 12,
            start: NaiveDate::from_ymd_opt(2026, 2, 2).unwrap_or_default(),
            seed: 42,
            gzip: false,
            profile: Profile::Rich,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GenerateSummary {
    /// Landing files written (activity, attempts and the four reference files;
    /// `GENERATED.json` not included).
    pub files: usize,
    /// Students (rows of `students.csv`).
    pub students: usize,
    /// Courses (rows of `courses.csv`).
    pub courses: usize,
    /// Enrollments (rows of `enrollments.csv`).
    pub enrollments: usize,
    /// Assessments (lines of `assessments.jsonl`).
    pub assessments: usize,
    /// Activity events (lines in `activity/`).
    pub events: u64,
    /// Assessment attempts (lines in `attempts/`), practice attempts included.
    pub attempts: u64,
    /// Bytes on disk of the landing files (compressed size with gzip).
    pub bytes: u64,
}

/// Generates a landing folder per `opts`, calling `progress(n)` with the
/// number of events written since the previous call (every few thousand events).
pub fn generate(
    opts: &GenerateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<GenerateSummary> {
    validate(opts)?;
    let out = &opts.out;
    let activity_dir = out.join("activity");
    let attempts_dir = out.join("attempts");
    for dir in [out, &activity_dir, &attempts_dir] {
        fs::create_dir_all(dir).map_err(|source| write_error(dir, source))?;
    }
    remove_stale(&activity_dir, "activity")?;
    remove_stale(&attempts_dir, "attempts")?;
    // Statements an earlier `--format xapi` run wrote tell another history.
    let xapi_dir = out.join("xapi");
    if xapi_dir.is_dir() {
        remove_stale(&xapi_dir, "statements")?;
    }

    let window = Window {
        start_day: opts
            .start
            .signed_duration_since(NaiveDate::default())
            .num_days(),
        days: i64::from(opts.weeks) * 7,
        start_weekday: i64::from(opts.start.weekday().num_days_from_monday()),
    };
    let mut rng = Pcg64::seed_from_u64(opts.seed);
    let courses = catalog::plan_courses(opts.courses, opts.weeks, window.start_day, &mut rng);
    let population = Population::new(opts.students, &mut rng);
    let offsets = simulate::zone_offsets(&window);

    let mut summary = GenerateSummary {
        students: opts.students,
        courses: courses.len(),
        assessments: courses.iter().map(|c| c.assessments.len()).sum(),
        ..GenerateSummary::default()
    };
    summary.bytes += write_courses(&out.join("courses.csv"), &courses, &window)?;
    summary.bytes += write_assessments(&out.join("assessments.jsonl"), &courses)?;

    let mut students_csv = CsvFile::create(out.join("students.csv"))?;
    students_csv.row([
        "student_id",
        "name",
        "email",
        "guardian_email",
        "timezone",
        "locale",
        "notify_reminders",
        "notify_achievements",
        "notify_deadlines",
        "advisor_email",
    ])?;
    let mut enrollments_csv = CsvFile::create(out.join("enrollments.csv"))?;
    enrollments_csv.row([
        "student_id",
        "course_id",
        "enrolled_at",
        "status",
        "withdrawn_at",
        "final_result",
    ])?;

    let mut streams = Streams {
        activity: SplitNdjson::new(activity_dir, "activity", opts.gzip, EVENTS_PER_FILE),
        attempts: SplitNdjson::new(attempts_dir, "attempts", opts.gzip, ATTEMPTS_PER_FILE),
    };
    let mut simulator = Simulator::new(&courses, window, &offsets).with_profile(opts.profile);
    let mut archetypes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut unreported = 0;
    for index in 0..opts.students {
        let mut rng = Pcg64::seed_from_u64(student_seed(opts.seed, index as u64));
        let (student, plans) = population.student(index, &courses, window.start_secs(), &mut rng);
        *archetypes.entry(student.archetype.as_str()).or_default() += 1;
        students_csv.row(student_row(&student))?;
        let mut ids = StudentIds::default();
        for plan in &plans {
            let outcome = simulator.enrollment(&student, plan, &mut ids, &mut rng, &mut streams)?;
            enrollments_csv.row([
                student.id().as_str(),
                courses[plan.course].id.as_str(),
                rfc3339_utc(plan.enrolled_at).as_str(),
                outcome.status,
                outcome
                    .withdrawn_at
                    .map(rfc3339_utc)
                    .unwrap_or_default()
                    .as_str(),
                outcome.final_result.unwrap_or_default(),
            ])?;
            summary.enrollments += 1;
            summary.events += outcome.events;
            summary.attempts += outcome.attempts;
            unreported += outcome.events;
        }
        if unreported >= PROGRESS_EVERY {
            progress(unreported);
            unreported = 0;
        }
    }
    if unreported > 0 {
        progress(unreported);
    }

    summary.bytes += students_csv.finish()?;
    summary.bytes += enrollments_csv.finish()?;
    streams.activity.finish()?;
    streams.attempts.finish()?;
    summary.bytes += streams.activity.bytes + streams.attempts.bytes;
    summary.files = 4 + streams.activity.files + streams.attempts.files;

    write_manifest(
        &out.join("GENERATED.json"),
        opts,
        &window,
        &courses,
        &archetypes,
        &summary,
    )?;
    tracing::info!(
        events = summary.events,
        attempts = summary.attempts,
        files = summary.files,
        bytes = summary.bytes,
        "generated landing data"
    );
    Ok(summary)
}

fn validate(opts: &GenerateOptions) -> Result<()> {
    let mut problems = Vec::new();
    if opts.students == 0 {
        problems.push("students must be at least 1".to_owned());
    }
    if opts.courses == 0 {
        problems.push("courses must be at least 1".to_owned());
    }
    if !(1..=520).contains(&opts.weeks) {
        problems.push(format!(
            "weeks must be between 1 and 520, got {}",
            opts.weeks
        ));
    }
    if !(1971..=9000).contains(&opts.start.year()) {
        problems.push(format!(
            "start {} is outside the years 1971–9000",
            opts.start
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidOptions(problems.join("; ")))
    }
}

fn write_error(path: &Path, source: io::Error) -> Error {
    Error::WriteFile {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes files a previous run named `<stem>-NNNNN.jsonl[.gz]`, so a smaller
/// run does not leave old files behind. Other files are left alone.
fn remove_stale(dir: &Path, stem: &str) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|source| Error::ReadFile {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadFile {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let generated = name
            .strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| {
                rest.strip_suffix(".jsonl")
                    .or_else(|| rest.strip_suffix(".jsonl.gz"))
            })
            .is_some_and(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()));
        if generated {
            let path = entry.path();
            fs::remove_file(&path).map_err(|source| write_error(&path, source))?;
        }
    }
    Ok(())
}

/// Seed of student `index`'s own random stream (SplitMix64 finaliser).
fn student_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ 0x5851_f42d_4c95_7f2d;
    z = z.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn rfc3339_utc(seconds: i64) -> String {
    let mut buf = Vec::with_capacity(20);
    json::push_timestamp(
        &mut buf,
        Stamp {
            utc_seconds: seconds,
            millis: None,
            offset_seconds: None,
        },
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// `YYYY-MM-DD` of a day index from the window start.
fn date(window: &Window, day: i64) -> String {
    let (y, m, d) = json::civil_from_days(window.start_day + day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn bool_text(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    }
}

fn student_row(student: &Student) -> [String; 10] {
    [
        student.id(),
        student.name.clone(),
        student.email.clone(),
        student.guardian_email.clone().unwrap_or_default(),
        ZONES[student.zone].name.to_owned(),
        student.locale.to_owned(),
        bool_text(student.notify[0]).to_owned(),
        bool_text(student.notify[1]).to_owned(),
        bool_text(student.notify[2]).to_owned(),
        student.advisor_email.clone(),
    ]
}

/// A CSV reference file.
struct CsvFile {
    path: PathBuf,
    writer: csv::Writer<OutputFile>,
}

impl CsvFile {
    fn create(path: PathBuf) -> Result<Self> {
        let file = OutputFile::create(path.clone(), false)?;
        Ok(Self {
            path,
            writer: csv::Writer::from_writer(file),
        })
    }

    fn row<I, T>(&mut self, fields: I) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.writer
            .write_record(fields)
            .map_err(|e| write_error(&self.path, e.into()))
    }

    fn finish(self) -> Result<u64> {
        let path = self.path;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| write_error(&path, e.into_error()))?;
        file.finish()
    }
}

fn write_courses(path: &Path, courses: &[Course], window: &Window) -> Result<u64> {
    let mut csv = CsvFile::create(path.to_path_buf())?;
    csv.row([
        "course_id",
        "title",
        "start_date",
        "end_date",
        "total_lessons",
        "passing_score",
        "instructor_email",
    ])?;
    for course in courses {
        csv.row([
            course.id.clone(),
            course.title.clone(),
            date(window, course.start_day),
            date(window, course.end_day),
            course.lessons.len().to_string(),
            course.passing_score.to_string(),
            course.instructor_email.clone(),
        ])?;
    }
    csv.finish()
}

fn write_assessments(path: &Path, courses: &[Course]) -> Result<u64> {
    let mut file = OutputFile::create(path.to_path_buf(), false)?;
    let mut line = JsonLine::default();
    for course in courses {
        for a in &course.assessments {
            line.begin();
            line.str("assessment_id", &a.id);
            line.str("course_id", &course.id);
            line.str("assessment_type", a.kind.as_str());
            line.str("title", &a.title);
            line.timestamp(
                "due_at",
                Stamp {
                    utc_seconds: a.due,
                    millis: None,
                    offset_seconds: None,
                },
            );
            line.hundredths("weight", u64::from(a.weight_pct));
            file.write_all(line.finish())
                .map_err(|source| write_error(path, source))?;
        }
    }
    file.finish()
}

#[derive(Serialize)]
struct Manifest<'a> {
    generator: &'static str,
    format_version: u32,
    options: ManifestOptions,
    window: ManifestWindow,
    counts: &'a GenerateSummary,
    archetypes: &'a BTreeMap<&'static str, usize>,
    courses: Vec<ManifestCourse<'a>>,
}

#[derive(Serialize)]
struct ManifestOptions {
    students: usize,
    courses: usize,
    weeks: u32,
    start: String,
    seed: u64,
    gzip: bool,
    /// Absent for the rich profile (manifests from before profiles existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'static str>,
}

#[derive(Serialize)]
struct ManifestWindow {
    start: String,
    end: String,
}

#[derive(Serialize)]
struct ManifestCourse<'a> {
    course_id: &'a str,
    start_date: String,
    end_date: String,
    finished: bool,
    assessments: usize,
}

fn write_manifest(
    path: &Path,
    opts: &GenerateOptions,
    window: &Window,
    courses: &[Course],
    archetypes: &BTreeMap<&'static str, usize>,
    summary: &GenerateSummary,
) -> Result<()> {
    // The output folder is deliberately left out: the manifest is part of the
    // byte-identical output, wherever it is written.
    let manifest = Manifest {
        generator: "learnlake generate",
        format_version: 1,
        options: ManifestOptions {
            students: opts.students,
            courses: opts.courses,
            weeks: opts.weeks,
            start: opts.start.to_string(),
            seed: opts.seed,
            gzip: opts.gzip,
            profile: match opts.profile {
                Profile::Rich => None,
                Profile::DailyClicks => Some("daily-clicks"),
            },
        },
        window: ManifestWindow {
            start: rfc3339_utc(window.start_secs()),
            end: rfc3339_utc(window.end_secs()),
        },
        counts: summary,
        archetypes,
        courses: courses
            .iter()
            .map(|c| ManifestCourse {
                course_id: &c.id,
                start_date: date(window, c.start_day),
                end_date: date(window, c.end_day),
                finished: c.finished,
                assessments: c.assessments.len(),
            })
            .collect(),
    };
    let mut file = OutputFile::create(path.to_path_buf(), false)?;
    serde_json::to_writer_pretty(&mut file, &manifest)
        .map_err(|e| write_error(path, io::Error::other(e)))?;
    file.write_all(b"\n")
        .map_err(|source| write_error(path, source))?;
    file.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests;
