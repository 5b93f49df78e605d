//! The course catalogue: courses with their dates, lessons and assessments.
//!
//! The first half of the courses run early in the window and finish before it
//! ends (their enrollments get a `final_result`: the history the risk model is
//! trained on); the others start later and are still running at the end.

use rand::Rng;
use rand_pcg::Pcg64;

/// One teaching subject: slug for ids, title, and four skill areas.
struct Subject {
    slug: &'static str,
    title: &'static str,
    skills: [&'static str; 4],
}

const SUBJECTS: [Subject; 12] = [
    Subject {
        slug: "algebra",
        title: "Algebra I",
        skills: ["equations", "inequalities", "functions", "polynomials"],
    },
    Subject {
        slug: "biology",
        title: "Introduction to Biology",
        skills: ["cells", "genetics", "evolution", "ecology"],
    },
    Subject {
        slug: "chemistry",
        title: "General Chemistry",
        skills: ["atoms", "bonding", "reactions", "stoichiometry"],
    },
    Subject {
        slug: "data-science",
        title: "Data Science Foundations",
        skills: ["statistics", "visualisation", "sql", "modelling"],
    },
    Subject {
        slug: "economics",
        title: "Principles of Economics",
        skills: ["supply-demand", "markets", "macroeconomics", "trade"],
    },
    Subject {
        slug: "french",
        title: "French for Beginners",
        skills: ["vocabulary", "grammar", "listening", "writing"],
    },
    Subject {
        slug: "geometry",
        title: "Geometry",
        skills: ["angles", "triangles", "circles", "proofs"],
    },
    Subject {
        slug: "history",
        title: "Modern World History",
        skills: [
            "industrialisation",
            "world-wars",
            "cold-war",
            "globalisation",
        ],
    },
    Subject {
        slug: "physics",
        title: "Physics: Mechanics",
        skills: ["kinematics", "forces", "energy", "momentum"],
    },
    Subject {
        slug: "programming",
        title: "Programming in Python",
        skills: ["variables", "control-flow", "functions", "data-structures"],
    },
    Subject {
        slug: "literature",
        title: "English Literature",
        skills: ["poetry", "drama", "the-novel", "essay-writing"],
    },
    Subject {
        slug: "statistics",
        title: "Applied Statistics",
        skills: ["probability", "distributions", "inference", "regression"],
    },
];

const INSTRUCTORS: [&str; 12] = [
    "a.nakamura",
    "b.osei",
    "c.lindqvist",
    "d.moreau",
    "e.fernandes",
    "f.kowalski",
    "g.adeyemi",
    "h.schmidt",
    "i.rossi",
    "j.chen",
    "k.murphy",
    "l.haddad",
];

/// Kind of a graded assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssessmentKind {
    Quiz,
    Assignment,
    Exam,
}

impl AssessmentKind {
    /// The `assessment_type` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Quiz => "quiz",
            Self::Assignment => "assignment",
            Self::Exam => "exam",
        }
    }

    /// Number of questions (or tasks) in one attempt.
    pub(crate) fn questions(self) -> u32 {
        match self {
            Self::Quiz => 8,
            Self::Assignment => 3,
            Self::Exam => 15,
        }
    }
}

/// A graded assessment of a course.
#[derive(Debug, Clone)]
pub(crate) struct Assessment {
    pub(crate) id: String,
    pub(crate) kind: AssessmentKind,
    pub(crate) title: String,
    /// Due instant, seconds since the Unix epoch.
    pub(crate) due: i64,
    /// Due day, as a day index from the window start.
    pub(crate) due_day: i64,
    /// Weight in percent of the course grade; a course's weights sum to 100.
    pub(crate) weight_pct: u32,
    /// Index into the course's skills of the main skill assessed.
    pub(crate) skill: usize,
    /// Added to the chance of a wrong answer (negative: easier).
    pub(crate) difficulty: f64,
}

/// A lesson: when it is released and what it contains.
#[derive(Debug, Clone)]
pub(crate) struct Lesson {
    /// `<course>-l07`.
    pub(crate) id: String,
    /// Release day, as a day index from the window start.
    pub(crate) release_day: i64,
    pub(crate) has_video: bool,
    /// Downloadable resources (0–2): `<lesson>-r1`, `<lesson>-r2`.
    pub(crate) resource_ids: Vec<String>,
}

/// A course and everything the simulation needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct Course {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) skills: [&'static str; 4],
    /// First and last day (inclusive), as day indexes from the window start.
    pub(crate) start_day: i64,
    pub(crate) end_day: i64,
    /// The course ended before the window's end: its enrollments have results.
    pub(crate) finished: bool,
    pub(crate) passing_score: u32,
    pub(crate) instructor_email: String,
    pub(crate) lessons: Vec<Lesson>,
    pub(crate) assessments: Vec<Assessment>,
}

/// Plans `count` courses over a window of `weeks` weeks starting on epoch day
/// `window_start_day`.
pub(crate) fn plan_courses(
    count: usize,
    weeks: u32,
    window_start_day: i64,
    rng: &mut Pcg64,
) -> Vec<Course> {
    let weeks = i64::from(weeks);
    let finished_count = if count >= 2 && weeks >= 3 {
        count / 2
    } else {
        0
    };
    (0..count)
        .map(|index| {
            let (start_week, len_weeks, finished) = if index < finished_count {
                let start = if weeks >= 6 { (index % 2) as i64 } else { 0 };
                let len = (weeks / 2).max(3).min(weeks - 1 - start);
                (start, len, true)
            } else {
                let j = index - finished_count;
                let start = if weeks >= 6 {
                    [weeks / 3, 1, weeks / 4, 2][j % 4]
                } else {
                    0
                };
                (start, weeks - start + 2 + 2 * (j % 3) as i64, false)
            };
            plan_course(
                index,
                start_week,
                len_weeks,
                finished,
                window_start_day,
                rng,
            )
        })
        .collect()
}

fn plan_course(
    index: usize,
    start_week: i64,
    len_weeks: i64,
    finished: bool,
    window_start_day: i64,
    rng: &mut Pcg64,
) -> Course {
    let subject = &SUBJECTS[index % SUBJECTS.len()];
    let section = index / SUBJECTS.len();
    let (id, title) = if section == 0 {
        (
            format!("c{:02}-{}", index + 1, subject.slug),
            subject.title.to_owned(),
        )
    } else {
        (
            format!("c{:02}-{}-{}", index + 1, subject.slug, section + 1),
            format!("{} (section {})", subject.title, section + 1),
        )
    };
    let start_day = start_week * 7;
    // Courses end on the Friday of their last week.
    let end_day = start_day + len_weeks * 7 - 3;

    let per_week = 2 + (index % 2) as i64;
    let lessons = (0..len_weeks * per_week)
        .map(|i| {
            let lesson_id = format!("{id}-l{:02}", i + 1);
            let resources = rng.random_range(0..=2);
            Lesson {
                resource_ids: (1..=resources)
                    .map(|r| format!("{lesson_id}-r{r}"))
                    .collect(),
                id: lesson_id,
                release_day: start_day + (i / per_week) * 7 + (i % per_week) * 2,
                has_video: rng.random_bool(0.6),
            }
        })
        .collect();

    let count = (2 + len_weeks / 2 + rng.random_range(0..=1)).clamp(4, 8) as usize;
    let span = end_day - start_day;
    let mut raw_weights = Vec::with_capacity(count);
    let mut assessments: Vec<Assessment> = Vec::with_capacity(count);
    let (mut quizzes, mut assignments) = (0, 0);
    for i in 0..count {
        let (kind, due_day, due_hour) = if i + 1 == count {
            (AssessmentKind::Exam, end_day, 17)
        } else {
            let kind = if i % 3 == 2 {
                AssessmentKind::Assignment
            } else {
                AssessmentKind::Quiz
            };
            // Spread the graded work evenly before the exam week.
            let due = start_day + ((i as i64 + 1) * (span - 4)) / (count as i64 - 1) + 2;
            (kind, due.min(end_day - 1), 22)
        };
        let skill = i % 4;
        let (id, title, weight) = match kind {
            AssessmentKind::Quiz => {
                quizzes += 1;
                (
                    format!("{id}-q{quizzes}"),
                    format!("Quiz {quizzes}: {}", subject.skills[skill]),
                    10,
                )
            }
            AssessmentKind::Assignment => {
                assignments += 1;
                (
                    format!("{id}-a{assignments}"),
                    format!("Assignment {assignments}: {}", subject.skills[skill]),
                    20,
                )
            }
            AssessmentKind::Exam => (format!("{id}-exam"), "Final exam".to_owned(), 35),
        };
        raw_weights.push(weight);
        assessments.push(Assessment {
            id,
            kind,
            title,
            due: (window_start_day + due_day) * 86_400 + due_hour * 3600,
            due_day,
            weight_pct: 0,
            skill,
            difficulty: rng.random_range(-0.08..0.1),
        });
    }
    // Integer percentages summing to exactly 100; the rounding rest goes to the exam.
    let total: u32 = raw_weights.iter().sum();
    let mut assigned = 0;
    for (a, w) in assessments.iter_mut().zip(&raw_weights) {
        a.weight_pct = w * 100 / total;
        assigned += a.weight_pct;
    }
    if let Some(exam) = assessments.last_mut() {
        exam.weight_pct += 100 - assigned;
    }

    Course {
        id,
        title,
        skills: subject.skills,
        start_day,
        end_day,
        finished,
        passing_score: [50, 60, 60, 60, 65, 70][rng.random_range(0..6)],
        instructor_email: format!(
            "{}@faculty.example.edu",
            INSTRUCTORS[index % INSTRUCTORS.len()]
        ),
        lessons,
        assessments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn finished_and_running_courses() {
        let mut rng = Pcg64::seed_from_u64(1);
        for weeks in [3, 6, 10, 12, 52] {
            let courses = plan_courses(4, weeks, 20_000, &mut rng);
            let window_days = i64::from(weeks) * 7;
            assert!(courses.iter().any(|c| c.finished), "weeks {weeks}");
            assert!(courses.iter().any(|c| !c.finished), "weeks {weeks}");
            for c in &courses {
                assert!(c.start_day >= 0 && c.start_day < c.end_day, "{c:?}");
                assert_eq!(c.finished, c.end_day < window_days, "{}", c.id);
                assert!((4..=8).contains(&c.assessments.len()));
                assert_eq!(c.assessments.iter().map(|a| a.weight_pct).sum::<u32>(), 100);
                assert_eq!(
                    c.assessments.last().map(|a| a.kind),
                    Some(AssessmentKind::Exam)
                );
                for a in &c.assessments {
                    assert!(a.due_day > c.start_day && a.due_day <= c.end_day, "{a:?}");
                }
            }
        }
    }

    #[test]
    fn ids_are_unique_beyond_the_subject_list() {
        let mut rng = Pcg64::seed_from_u64(1);
        let courses = plan_courses(30, 12, 20_000, &mut rng);
        let mut ids: Vec<_> = courses.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 30);
        assert_eq!(courses[0].id, "c01-algebra");
        assert_eq!(courses[12].id, "c13-algebra-2");
    }
}
