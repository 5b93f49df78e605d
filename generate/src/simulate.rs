//! The behaviour simulation: one enrollment at a time, day by day, into
//! activity events and assessment attempts, written straight to the output
//! streams. Memory is bounded by one enrollment's events.

use chrono::{DateTime, Offset, TimeZone};
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::catalog::{AssessmentKind, Course};
use super::json::{JsonLine, Stamp};
use super::population::{Archetype, EnrollmentPlan, Student, ZONES};
use super::sink::SplitNdjson;
use crate::Result;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// The generated period: `days` days from 00:00 UTC of epoch day `start_day`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Days since 1970-01-01 of the first day.
    pub(crate) start_day: i64,
    pub(crate) days: i64,
    /// Weekday of the first day, 0 = Monday.
    pub(crate) start_weekday: i64,
}

impl Window {
    pub(crate) fn start_secs(&self) -> i64 {
        self.start_day * DAY
    }

    pub(crate) fn end_secs(&self) -> i64 {
        (self.start_day + self.days) * DAY
    }
}

/// UTC offset (seconds) of every zone at local noon of every window day.
/// Study sessions start between 06:00 and 23:30 local time and last under two
/// hours, while the zones used change their offset between 01:00 and 03:00,
/// so the noon offset is the right one for every session of that day.
pub(crate) fn zone_offsets(window: &Window) -> Vec<Vec<i32>> {
    ZONES
        .iter()
        .map(|zone| {
            (0..window.days)
                .map(|d| {
                    let noon =
                        DateTime::from_timestamp((window.start_day + d) * DAY + 12 * HOUR, 0)
                            .map(|t| t.naive_utc())
                            .unwrap_or_default();
                    zone.tz
                        .offset_from_local_datetime(&noon)
                        .earliest()
                        .map(|o| o.fix().local_minus_utc())
                        .unwrap_or(0)
                })
                .collect()
        })
        .collect()
}

/// Exact UTC offset of `zone` at a UTC instant (for attempts, which happen at any hour).
fn offset_at(zone: usize, utc_seconds: i64) -> i32 {
    DateTime::from_timestamp(utc_seconds, 0)
        .map(|t| {
            ZONES[zone]
                .tz
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
        .unwrap_or(0)
}

/// Known activity types, plus one the contract does not list (kept as-is at ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Login,
    Logout,
    LessonStart,
    LessonComplete,
    ContentView,
    ResourceView,
    ResourceDownload,
    VideoPlay,
    VideoComplete,
    QuizStart,
    QuizSubmit,
    AssignmentSubmit,
    ForumPost,
    HelpRequested,
    AchievementEarned,
    BookmarkAdded,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Logout => "logout",
            Self::LessonStart => "lesson_start",
            Self::LessonComplete => "lesson_complete",
            Self::ContentView => "content_view",
            Self::ResourceView => "resource_view",
            Self::ResourceDownload => "resource_download",
            Self::VideoPlay => "video_play",
            Self::VideoComplete => "video_complete",
            Self::QuizStart => "quiz_start",
            Self::QuizSubmit => "quiz_submit",
            Self::AssignmentSubmit => "assignment_submit",
            Self::ForumPost => "forum_post",
            Self::HelpRequested => "help_requested",
            Self::AchievementEarned => "achievement_earned",
            Self::BookmarkAdded => "bookmark_added",
        }
    }

    /// The category web clients send; `None` for the type ingest does not know.
    fn category(self) -> Option<&'static str> {
        Some(match self {
            Self::Login | Self::Logout | Self::AchievementEarned => "system",
            Self::LessonStart
            | Self::LessonComplete
            | Self::ContentView
            | Self::ResourceView
            | Self::ResourceDownload
            | Self::VideoPlay
            | Self::VideoComplete => "learning",
            Self::QuizStart | Self::QuizSubmit | Self::AssignmentSubmit => "assessment",
            Self::ForumPost | Self::HelpRequested => "social",
            Self::BookmarkAdded => return None,
        })
    }

    /// Events that carry the client's IP address.
    fn has_ip(self) -> bool {
        matches!(
            self,
            Self::Login | Self::Logout | Self::QuizSubmit | Self::AssignmentSubmit
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    Lesson(u16),
    Resource(u16, u8),
    Assessment(u8),
}

#[derive(Debug, Clone, Copy)]
enum Detail {
    None,
    Login { sso: bool },
    Video { position: u32, rate: u8 },
    Download { file_type: u8, size_kb: u32 },
    Forum { thread: u32, words: u32 },
    Help { channel: u8, skill: u8 },
    Badge { lessons: u32 },
    Practice,
    Bookmark { position: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Event {
    ts: i64,
    ms: u16,
    /// Creation order, to break timestamp ties deterministically.
    seq: u32,
    session: u32,
    kind: Kind,
    target: Target,
    with_course: bool,
    duration_tenths: Option<u32>,
    interactions: Option<u32>,
    progress: Option<u32>,
    score_tenths: Option<u32>,
    success: Option<bool>,
    detail: Detail,
}

impl Event {
    fn new(ts: i64, session: u32, kind: Kind) -> Self {
        Self {
            ts,
            ms: 0,
            seq: 0,
            session,
            kind,
            target: Target::None,
            with_course: true,
            duration_tenths: None,
            interactions: None,
            progress: None,
            score_tenths: None,
            success: None,
            detail: Detail::None,
        }
    }
}

/// A session: web sessions print local offsets, flat device fields and the
/// category; app sessions print UTC with milliseconds and a nested `device`.
#[derive(Debug, Clone, Copy)]
struct Session {
    number: u64,
    web: bool,
    offset: i32,
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    question_type: &'static str,
    possible: u32,
    earned_tenths: u32,
    correct: bool,
    time_spent: u32,
    skill: u8,
}

#[derive(Debug, Clone, Copy)]
struct Integrity {
    kind: &'static str,
    ts: i64,
    value: u32,
}

#[derive(Debug, Clone)]
struct Attempt {
    assessment: u8,
    practice: bool,
    attempt_number: Option<u32>,
    started: Option<i64>,
    submitted: i64,
    session: u32,
    score_tenths: u32,
    earned_tenths: u32,
    possible: u32,
    passed: bool,
    answers: std::ops::Range<usize>,
    integrity: Option<Integrity>,
    /// Field variants seen in real feeds (aliases, omitted optional fields).
    quiz_id_alias: bool,
    completed_at_alias: bool,
    with_points: bool,
    with_passing_score: bool,
    with_passed: bool,
    /// 0: type and flag; 1: only `is_practice`; 2: only `assessment_type`.
    practice_style: u8,
    with_is_practice: bool,
}

/// Id counters of one student, shared by their enrollments.
#[derive(Debug, Default)]
pub(crate) struct StudentIds {
    event: u64,
    session: u64,
    attempt: u64,
}

/// What became of one enrollment.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: &'static str,
    pub(crate) withdrawn_at: Option<i64>,
    pub(crate) final_result: Option<&'static str>,
    pub(crate) events: u64,
    pub(crate) attempts: u64,
}

/// The output streams the simulation writes to.
pub(crate) struct Streams {
    pub(crate) activity: SplitNdjson,
    pub(crate) attempts: SplitNdjson,
}

/// Simulates enrollments; owns reusable scratch buffers.
pub(crate) struct Simulator<'a> {
    courses: &'a [Course],
    window: Window,
    offsets: &'a [Vec<i32>],
    events: Vec<Event>,
    sessions: Vec<Session>,
    attempts: Vec<Attempt>,
    answers: Vec<Answer>,
    week_factor: Vec<f64>,
    line: JsonLine,
    profile: Profile,
}

/// Per-enrollment state of the student's way through the lessons.
#[derive(Debug, Default)]
struct LessonState {
    current: usize,
    progress: u32,
    started: bool,
    completed: u32,
}

fn normal(rng: &mut Pcg64) -> f64 {
    rng.sample(StandardNormal)
}

/// Poisson sample by Knuth's method; rates here are small.
fn poisson(rng: &mut Pcg64, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda.min(30.0)).exp();
    let mut product: f64 = rng.random();
    let mut k = 0;
    while product > limit {
        product *= rng.random::<f64>();
        k += 1;
    }
    k
}

impl<'a> Simulator<'a> {
    pub(crate) fn new(courses: &'a [Course], window: Window, offsets: &'a [Vec<i32>]) -> Self {
        Self {
            courses,
            window,
            offsets,
            events: Vec::new(),
            sessions: Vec::new(),
            attempts: Vec::new(),
            answers: Vec::new(),
            week_factor: Vec::new(),
            line: JsonLine::default(),
            profile: Profile::Rich,
        }
    }

    /// Writes events in the shape of `profile` (rich by default).
    pub(crate) fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Simulates one enrollment and writes its events and attempts.
    pub(crate) fn enrollment(
        &mut self,
        student: &Student,
        plan: &EnrollmentPlan,
        ids: &mut StudentIds,
        rng: &mut Pcg64,
        out: &mut Streams,
    ) -> Result<Outcome> {
        self.events.clear();
        self.sessions.clear();
        self.attempts.clear();
        self.answers.clear();
        let courses = self.courses;
        let course = &courses[plan.course];
        let window_start = self.window.start_secs();
        let window_end = self.window.end_secs();

        if student.archetype == Archetype::NeverStarted {
            return Ok(self.never_started(course, plan, rng));
        }

        let enroll_day = (plan.enrolled_at - window_start).div_euclid(DAY);
        let first_day = course.start_day.max(enroll_day + 1);
        let active_from = plan.enrolled_at.max(window_start + course.start_day * DAY);
        let span = (course.end_day - first_day).max(1) as f64;
        // Fading students lose engagement with a time constant of 1.5–3 weeks.
        let tau_days = rng.random_range(1.5..3.0) * 7.0;
        let withdraw_chance = match student.archetype {
            Archetype::Fading => 0.75,
            Archetype::Struggling => 0.12,
            Archetype::Crammer => 0.06,
            Archetype::Steady => 0.03,
            _ => 0.01,
        };
        let withdraw_day = rng
            .random_bool(withdraw_chance)
            .then(|| {
                if student.archetype == Archetype::Fading {
                    first_day + (tau_days * rng.random_range(1.3..2.3)) as i64
                } else {
                    first_day + (span * rng.random_range(0.4..0.8)) as i64
                }
            })
            .filter(|&d| d < course.end_day - 1 && d < self.window.days);
        let withdrawn_at =
            withdraw_day.map(|d| window_start + d * DAY + rng.random_range(9 * HOUR..18 * HOUR));
        let last_day = course
            .end_day
            .min(self.window.days - 1)
            .min(withdraw_day.map_or(i64::MAX, |d| d - 1));
        let engagement = |day: i64| -> f64 {
            if student.archetype == Archetype::Fading {
                (-((day - first_day).max(0) as f64) / tau_days).exp()
            } else {
                1.0
            }
        };

        // Weekly ups and downs.
        self.week_factor.clear();
        let course_weeks = (course.end_day - course.start_day) / 7 + 1;
        for _ in 0..course_weeks {
            self.week_factor.push((0.25 * normal(rng)).exp());
        }
        let skill_bias: [f64; 4] = [(); 4].map(|_| rng.random_range(-0.08..0.08));

        // Study sessions, day by day.
        let weekend = student.weekend_factor;
        let weekday_norm = 7.0 / (5.0 + 2.0 * weekend);
        let mut lessons = LessonState::default();
        let all_offsets = self.offsets;
        let offsets = &all_offsets[student.zone];
        for day in first_day..=last_day {
            let weekday = (self.window.start_weekday + day).rem_euclid(7);
            let dow = if weekday >= 5 {
                weekend * weekday_norm
            } else {
                weekday_norm
            };
            let week = ((day - course.start_day) / 7).clamp(0, course_weeks - 1) as usize;
            let days_to_due = course
                .assessments
                .iter()
                .map(|a| a.due_day - day)
                .filter(|&d| d >= 0)
                .min()
                .unwrap_or(99) as f64;
            let modulation = match student.archetype {
                Archetype::Crammer => 0.3 + 5.0 * (-days_to_due / 0.9).exp(),
                Archetype::Fading => engagement(day) * (1.0 + 0.5 * (-days_to_due / 1.5).exp()),
                _ => 1.0 + 0.6 * (-days_to_due / 1.5).exp(),
            };
            let rate = student.sessions_per_week / 7.0 * dow * self.week_factor[week] * modulation;
            let count = poisson(rng, rate).min(6) as usize;
            if count == 0 {
                continue;
            }
            let mut starts = [0i64; 6];
            for start in starts.iter_mut().take(count) {
                let hour = (student.peak_hour + student.hour_spread * normal(rng)).clamp(6.0, 22.5);
                *start = (hour * HOUR as f64) as i64;
            }
            starts[..count].sort_unstable();
            let offset = offsets[day.clamp(0, self.window.days - 1) as usize];
            let midnight = (self.window.start_day + day) * DAY - i64::from(offset);
            let mut free_from = 0;
            for &start in &starts[..count] {
                let start = start.max(free_from + 600);
                if start > 23 * HOUR {
                    break;
                }
                let released = course.lessons.partition_point(|l| l.release_day <= day);
                let end = self.study_session(
                    student,
                    course,
                    midnight + start,
                    offset,
                    released,
                    &mut lessons,
                    ids,
                    rng,
                );
                free_from = end - midnight;
            }
        }

        // Assessment attempts.
        let mut best = [None::<u32>; 8];
        for (index, assessment) in course.assessments.iter().enumerate() {
            let due = assessment.due;
            let missed_before_joining = due < active_from;
            let first_submit = if missed_before_joining {
                if !rng.random_bool(0.35) {
                    continue;
                }
                active_from + rng.random_range(DAY..6 * DAY)
            } else {
                let submit_chance = match student.archetype {
                    Archetype::Excellent => 0.99,
                    Archetype::Steady => 0.94,
                    Archetype::Crammer => 0.9,
                    Archetype::Struggling => 0.82,
                    _ => 0.9 * (0.25 + 0.75 * engagement(assessment.due_day)),
                };
                if !rng.random_bool(submit_chance) {
                    continue;
                }
                let late_chance = match student.archetype {
                    Archetype::Excellent => 0.01,
                    Archetype::Steady => 0.05,
                    Archetype::Crammer => 0.14,
                    Archetype::Struggling => 0.22,
                    _ => 0.2,
                };
                if rng.random_bool(late_chance) {
                    let max_late = if assessment.kind == AssessmentKind::Exam {
                        6 * HOUR
                    } else {
                        3 * DAY
                    };
                    due + rng.random_range(1800..max_late)
                } else {
                    let (lo, hi) = match student.archetype {
                        Archetype::Excellent => (20.0, 100.0),
                        Archetype::Steady => (3.0, 72.0),
                        Archetype::Crammer => (0.1, 10.0),
                        _ => (0.5, 48.0),
                    };
                    due - (rng.random_range(lo..hi) * HOUR as f64) as i64
                }
            };
            let first_submit = first_submit.max(active_from + rng.random_range(HOUR..DAY));
            let stopped = |t: i64| t >= window_end || withdrawn_at.is_some_and(|w| t >= w);
            if stopped(first_submit) {
                continue;
            }
            let base_ability = student.ability + skill_bias[assessment.skill];

            if assessment.kind != AssessmentKind::Assignment {
                let practice_chance = match student.archetype {
                    Archetype::Excellent => 0.5,
                    Archetype::Struggling => 0.45,
                    Archetype::Steady => 0.3,
                    Archetype::Crammer => 0.2,
                    _ => 0.1,
                };
                if rng.random_bool(practice_chance) {
                    let at = first_submit - rng.random_range(6 * HOUR..48 * HOUR);
                    if at > active_from {
                        self.attempt(
                            student,
                            course,
                            index,
                            true,
                            None,
                            base_ability - 0.05,
                            at,
                            ids,
                            rng,
                        );
                    }
                }
            }

            let retry_chance = match student.archetype {
                Archetype::Struggling => 0.65,
                Archetype::Excellent => 0.8,
                Archetype::Steady => 0.5,
                Archetype::Crammer => 0.35,
                _ => 0.25,
            };
            let mut ability = base_ability;
            let mut submit = first_submit;
            let mut number = 1;
            loop {
                let (score, passed) = self.attempt(
                    student,
                    course,
                    index,
                    false,
                    Some(number),
                    ability,
                    submit,
                    ids,
                    rng,
                );
                best[index] = best[index].max(Some(score));
                if assessment.kind == AssessmentKind::Exam || number >= 3 {
                    break;
                }
                let chance = if !passed {
                    retry_chance
                } else if student.archetype == Archetype::Excellent && score < 850 {
                    0.3
                } else {
                    0.0
                };
                let chance = if assessment.kind == AssessmentKind::Assignment {
                    chance / 2.0
                } else {
                    chance
                };
                if !rng.random_bool(chance) {
                    break;
                }
                submit += rng.random_range(6 * HOUR..72 * HOUR);
                ability += rng.random_range(0.04..0.15);
                number += 1;
                if stopped(submit) {
                    break;
                }
            }
        }

        // Outcome.
        let (status, final_result) = if course.finished {
            if withdrawn_at.is_some() {
                ("withdrawn", Some("withdrawn"))
            } else {
                let grade: f64 = course
                    .assessments
                    .iter()
                    .zip(best)
                    .map(|(a, b)| f64::from(a.weight_pct) * f64::from(b.unwrap_or(0)) / 1000.0)
                    .sum();
                let noisy = grade + 7.0 * normal(rng);
                let passing = f64::from(course.passing_score);
                let mut result = if noisy >= 85.0 && noisy >= passing {
                    "distinction"
                } else if noisy >= passing {
                    "pass"
                } else {
                    "fail"
                };
                if rng.random_bool(0.05) {
                    result = match result {
                        "fail" => "pass",
                        "pass" => "fail",
                        _ => "pass",
                    };
                }
                ("completed", Some(result))
            }
        } else if withdrawn_at.is_some() {
            ("withdrawn", None)
        } else if engagement(self.window.days) < 0.3 && rng.random_bool(0.5) {
            ("paused", None)
        } else {
            ("active", None)
        };

        let (events, attempts) = self.write(student, course, ids, out)?;
        Ok(Outcome {
            status,
            withdrawn_at,
            final_result,
            events,
            attempts,
        })
    }

    fn never_started(&self, course: &Course, plan: &EnrollmentPlan, rng: &mut Pcg64) -> Outcome {
        let window_start = self.window.start_secs();
        let course_start = window_start + course.start_day * DAY;
        let withdraw_at = plan.enrolled_at.max(course_start) + rng.random_range(7 * DAY..21 * DAY);
        let (status, withdrawn_at, final_result) = if course.finished {
            if rng.random_bool(0.75) {
                ("withdrawn", Some(withdraw_at), Some("withdrawn"))
            } else {
                ("completed", None, Some("fail"))
            }
        } else if withdraw_at < self.window.end_secs() && rng.random_bool(0.3) {
            ("withdrawn", Some(withdraw_at), None)
        } else if rng.random_bool(0.2) {
            ("paused", None, None)
        } else {
            ("active", None, None)
        };
        Outcome {
            status,
            withdrawn_at,
            final_result,
            events: 0,
            attempts: 0,
        }
    }

    fn new_session(
        &mut self,
        student: &Student,
        offset: i32,
        ids: &mut StudentIds,
        rng: &mut Pcg64,
    ) -> u32 {
        ids.session += 1;
        self.sessions.push(Session {
            number: ids.session,
            web: rng.random_bool(student.web_share),
            offset,
        });
        (self.sessions.len() - 1) as u32
    }

    fn push(&mut self, mut event: Event, rng: &mut Pcg64) {
        event.seq = self.events.len() as u32;
        event.ms = rng.random_range(0..1000);
        self.events.push(event);
    }

    /// One study session starting at `start` (UTC seconds); returns its end.
    #[allow(clippy::too_many_arguments)]
    fn study_session(
        &mut self,
        student: &Student,
        course: &Course,
        start: i64,
        offset: i32,
        released: usize,
        lessons: &mut LessonState,
        ids: &mut StudentIds,
        rng: &mut Pcg64,
    ) -> i64 {
        let session = self.new_session(student, offset, ids, rng);
        let web = self.sessions[session as usize].web;
        let mut t = start;
        if web && rng.random_bool(0.02) {
            let mut failed = Event::new(t, session, Kind::Login);
            failed.success = Some(false);
            self.push(failed, rng);
            t += rng.random_range(5..40);
        }
        let mut login = Event::new(t, session, Kind::Login);
        login.success = Some(true);
        login.with_course = rng.random_bool(0.9);
        if web && rng.random_bool(0.4) {
            login.detail = Detail::Login {
                sso: rng.random_bool(0.6),
            };
        }
        self.push(login, rng);
        t += rng.random_range(2..15);

        let help_chance = match student.archetype {
            Archetype::Struggling => 0.06,
            Archetype::Fading => 0.03,
            _ => 0.015,
        };
        let content_events = poisson(rng, student.events_per_session - 2.5).max(1);
        for _ in 0..content_events {
            let roll: f64 = rng.random();
            let lesson_target = if released > 0 {
                Target::Lesson(lessons.current.min(released - 1) as u16)
            } else {
                Target::None
            };
            if roll < help_chance {
                let mut e = Event::new(t, session, Kind::HelpRequested);
                e.target = lesson_target;
                e.detail = Detail::Help {
                    channel: rng.random_range(0..3),
                    skill: rng.random_range(0..4),
                };
                self.push(e, rng);
                t += rng.random_range(20..90);
                continue;
            }
            if roll < help_chance + 0.035 {
                let mut e = Event::new(t, session, Kind::ForumPost);
                let secs = rng.random_range(60..600);
                e.duration_tenths = Some(secs * 10);
                e.interactions = Some(rng.random_range(1..4));
                e.detail = Detail::Forum {
                    thread: rng.random_range(1..60),
                    words: rng.random_range(12..400),
                };
                self.push(e, rng);
                t += i64::from(secs) + rng.random_range(2..20);
                continue;
            }
            if roll < help_chance + 0.039 {
                let mut e = Event::new(t, session, Kind::BookmarkAdded);
                e.target = lesson_target;
                e.detail = Detail::Bookmark {
                    position: rng.random_range(0..100),
                };
                self.push(e, rng);
                t += rng.random_range(2..10);
                continue;
            }

            if lessons.current < released {
                let index = lessons.current;
                let lesson = &course.lessons[index];
                let target = Target::Lesson(index as u16);
                if !lessons.started {
                    lessons.started = true;
                    let mut e = Event::new(t, session, Kind::LessonStart);
                    e.target = target;
                    e.progress = Some(0);
                    self.push(e, rng);
                    t += rng.random_range(2..10);
                    continue;
                }
                let pick: f64 = rng.random();
                if lesson.has_video && pick < 0.3 {
                    let secs: u32 = rng.random_range(60..900);
                    let mut e = Event::new(t, session, Kind::VideoPlay);
                    e.target = target;
                    e.duration_tenths = Some(secs * 10 + rng.random_range(0..10));
                    e.interactions = Some(rng.random_range(1..7));
                    e.detail = Detail::Video {
                        position: rng.random_range(0..30),
                        rate: rng.random_range(0..4),
                    };
                    self.push(e, rng);
                    t += i64::from(secs);
                    lessons.progress += 15;
                    if rng.random_bool(0.7) {
                        lessons.progress += 15;
                        let mut e = Event::new(t, session, Kind::VideoComplete);
                        e.target = target;
                        e.progress = Some(lessons.progress.min(99));
                        self.push(e, rng);
                    }
                    t += rng.random_range(2..20);
                } else if !lesson.resource_ids.is_empty() && pick < 0.45 {
                    let resource = rng.random_range(0..lesson.resource_ids.len()) as u8;
                    let download = rng.random_bool(0.3);
                    let mut e = Event::new(
                        t,
                        session,
                        if download {
                            Kind::ResourceDownload
                        } else {
                            Kind::ResourceView
                        },
                    );
                    e.target = Target::Resource(index as u16, resource);
                    e.interactions = Some(if download { 1 } else { rng.random_range(1..6) });
                    if download {
                        e.detail = Detail::Download {
                            file_type: rng.random_range(0..3),
                            size_kb: rng.random_range(40..9000),
                        };
                        t += rng.random_range(3..30);
                    } else {
                        let secs: u32 = rng.random_range(30..400);
                        e.duration_tenths = Some(secs * 10 + rng.random_range(0..10));
                        t += i64::from(secs) + rng.random_range(2..20);
                    }
                    lessons.progress += 5;
                    self.push(e, rng);
                } else {
                    let secs =
                        (rng.random::<f64>().max(1e-9).ln() * -170.0).clamp(5.0, 1800.0) as u32;
                    lessons.progress += rng.random_range(10..30);
                    let mut e = Event::new(t, session, Kind::ContentView);
                    e.target = target;
                    e.duration_tenths = Some(secs * 10 + rng.random_range(0..10));
                    e.interactions = Some(rng.random_range(1..16));
                    e.progress = Some(lessons.progress.min(100));
                    self.push(e, rng);
                    t += i64::from(secs) + rng.random_range(2..20);
                }
                if lessons.progress >= 100 {
                    let mut e = Event::new(t, session, Kind::LessonComplete);
                    e.target = target;
                    e.progress = Some(100);
                    e.success = Some(true);
                    self.push(e, rng);
                    t += rng.random_range(1..5);
                    lessons.completed += 1;
                    if lessons.completed.is_multiple_of(5) && rng.random_bool(0.7) {
                        let mut e = Event::new(t, session, Kind::AchievementEarned);
                        e.detail = Detail::Badge {
                            lessons: lessons.completed,
                        };
                        self.push(e, rng);
                    }
                    lessons.current += 1;
                    lessons.progress = 0;
                    lessons.started = false;
                }
            } else {
                // Caught up: review released material (or the course page).
                let secs = (rng.random::<f64>().max(1e-9).ln() * -120.0).clamp(5.0, 1200.0) as u32;
                let mut e = Event::new(t, session, Kind::ContentView);
                if released > 0 {
                    e.target = Target::Lesson(rng.random_range(0..released) as u16);
                }
                e.duration_tenths = Some(secs * 10 + rng.random_range(0..10));
                e.interactions = Some(rng.random_range(1..10));
                self.push(e, rng);
                t += i64::from(secs) + rng.random_range(2..20);
            }
        }
        if rng.random_bool(0.88) {
            let logout = Event::new(t, session, Kind::Logout);
            self.push(logout, rng);
        }
        t
    }

    /// One attempt at assessment `index`, submitted at `submitted`, with its
    /// activity events. Returns the score (tenths) and whether it passed.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &mut self,
        student: &Student,
        course: &Course,
        index: usize,
        practice: bool,
        attempt_number: Option<u32>,
        ability: f64,
        submitted: i64,
        ids: &mut StudentIds,
        rng: &mut Pcg64,
    ) -> (u32, bool) {
        let assessment = &course.assessments[index];
        let kind = assessment.kind;
        let first_answer = self.answers.len();
        let (mut earned_tenths, mut possible, mut time_spent) = (0, 0, 0);
        for q in 0..kind.questions() as usize {
            let question_type = match kind {
                AssessmentKind::Quiz => [
                    "multiple_choice",
                    "multiple_choice",
                    "true_false",
                    "numeric",
                ][q % 4],
                AssessmentKind::Assignment => ["short_answer", "essay", "essay"][q % 3],
                AssessmentKind::Exam => [
                    "multiple_choice",
                    "true_false",
                    "multiple_choice",
                    "numeric",
                    "short_answer",
                ][q % 5],
            };
            let skill = if q.is_multiple_of(2) {
                assessment.skill
            } else {
                (assessment.skill + q / 2) % 4
            };
            let mut p = ability - assessment.difficulty + 0.06 * normal(rng);
            if question_type == "true_false" {
                p = 0.5 + p / 2.0;
            }
            let p = p.clamp(0.03, 0.99);
            let points = match question_type {
                "short_answer" => 2,
                "essay" => 5,
                _ => 1,
            };
            let (correct, earned) = if points == 1 {
                let correct = rng.random_bool(p);
                (correct, if correct { 10 } else { 0 })
            } else {
                let fraction = (p + 0.15 * normal(rng)).clamp(0.0, 1.0);
                let earned = (fraction * f64::from(points) * 10.0).round() as u32;
                (fraction >= 0.6, earned)
            };
            let secs = match kind {
                AssessmentKind::Quiz => rng.random_range(15..150),
                AssessmentKind::Exam => rng.random_range(30..300),
                AssessmentKind::Assignment => rng.random_range(600..5400),
            };
            earned_tenths += earned;
            possible += points;
            time_spent += secs;
            self.answers.push(Answer {
                question_type,
                possible: points,
                earned_tenths: earned,
                correct,
                time_spent: secs,
                skill: skill as u8,
            });
        }
        let score_tenths = (f64::from(earned_tenths) * 100.0 / f64::from(possible)).round() as u32;
        let passed = score_tenths >= course.passing_score * 10;

        let started = match kind {
            AssessmentKind::Assignment => rng
                .random_bool(0.6)
                .then(|| submitted - rng.random_range(HOUR..72 * HOUR)),
            _ => (!rng.random_bool(0.03))
                .then(|| submitted - i64::from(time_spent) - rng.random_range(5..60)),
        };
        let integrity_chance = match (practice, student.archetype) {
            (true, _) => 0.0,
            (_, Archetype::Struggling) => 0.07,
            _ => 0.02,
        };
        let integrity = rng.random_bool(integrity_chance).then(|| {
            let from = started.unwrap_or(submitted - 600);
            Integrity {
                kind: ["tab_switch", "copy_paste", "fast_completion", "ip_change"]
                    [rng.random_range(0..4)],
                ts: from + rng.random_range(0..(submitted - from).max(1)),
                value: rng.random_range(2..12),
            }
        });

        // Activity of the attempt: its own short session.
        let offset = offset_at(student.zone, submitted);
        let session = self.new_session(student, offset, ids, rng);
        let activity_start = started
            .filter(|_| kind != AssessmentKind::Assignment)
            .unwrap_or(submitted - rng.random_range(60..600));
        let mut login = Event::new(
            activity_start - rng.random_range(10..90),
            session,
            Kind::Login,
        );
        login.success = Some(true);
        self.push(login, rng);
        let target = Target::Assessment(index as u8);
        if kind == AssessmentKind::Assignment {
            let mut e = Event::new(submitted, session, Kind::AssignmentSubmit);
            e.target = target;
            e.success = Some(true);
            self.push(e, rng);
        } else {
            let mut start = Event::new(activity_start, session, Kind::QuizStart);
            start.target = target;
            if practice {
                start.detail = Detail::Practice;
            }
            self.push(start, rng);
            let mut submit = Event::new(submitted, session, Kind::QuizSubmit);
            submit.target = target;
            submit.duration_tenths = Some(((submitted - activity_start).max(0) * 10) as u32);
            submit.interactions = Some(kind.questions());
            submit.score_tenths = Some(score_tenths);
            submit.success = Some(passed);
            if practice {
                submit.detail = Detail::Practice;
            }
            self.push(submit, rng);
        }
        if rng.random_bool(0.7) {
            let logout = Event::new(submitted + rng.random_range(10..180), session, Kind::Logout);
            self.push(logout, rng);
        }

        let web = self.sessions[session as usize].web;
        self.attempts.push(Attempt {
            assessment: index as u8,
            practice,
            attempt_number,
            started,
            submitted,
            session,
            score_tenths,
            earned_tenths,
            possible,
            passed,
            answers: first_answer..self.answers.len(),
            integrity,
            quiz_id_alias: rng.random_bool(0.04),
            completed_at_alias: !web && rng.random_bool(0.08),
            with_points: rng.random_bool(0.85),
            with_passing_score: rng.random_bool(0.95),
            with_passed: rng.random_bool(0.9),
            practice_style: rng.random_range(0..10).min(2),
            with_is_practice: rng.random_bool(0.7),
        });
        (score_tenths, passed)
    }

    /// Sorts the enrollment's events and attempts by time, gives them ids and
    /// writes them. Returns (events, attempts) written.
    fn write(
        &mut self,
        student: &Student,
        course: &Course,
        ids: &mut StudentIds,
        out: &mut Streams,
    ) -> Result<(u64, u64)> {
        self.events.sort_unstable_by_key(|e| (e.ts, e.seq));
        self.attempts.sort_by_key(|a| a.submitted);
        let n = student.number;
        let events = match self.profile {
            Profile::Rich => self.events.len() as u64,
            Profile::DailyClicks => self.write_daily_clicks(student, course, ids, out)?,
        };
        let line = &mut self.line;
        let rich = if self.profile == Profile::Rich {
            &self.events[..]
        } else {
            &[]
        };
        for event in rich {
            ids.event += 1;
            let session = self.sessions[event.session as usize];
            line.begin();
            line.id2("event_id", "ev-", n, 6, ids.event);
            line.id("student_id", "s", n, 6);
            line.timestamp(
                "timestamp",
                Stamp {
                    utc_seconds: event.ts,
                    millis: (!session.web).then_some(event.ms),
                    offset_seconds: session.web.then_some(session.offset),
                },
            );
            line.str("activity_type", event.kind.name());
            if session.web
                && let Some(category) = event.kind.category()
            {
                line.str("activity_category", category);
            }
            if event.with_course {
                line.str("course_id", &course.id);
            }
            match event.target {
                Target::None => {}
                Target::Lesson(l) => line.str("lesson_id", &course.lessons[usize::from(l)].id),
                Target::Resource(l, r) => {
                    let lesson = &course.lessons[usize::from(l)];
                    line.str("lesson_id", &lesson.id);
                    line.str("resource_id", &lesson.resource_ids[usize::from(r)]);
                }
                Target::Assessment(a) => {
                    let assessment = &course.assessments[usize::from(a)];
                    let key = if assessment.kind == AssessmentKind::Assignment {
                        "assignment_id"
                    } else {
                        "quiz_id"
                    };
                    line.str(key, &assessment.id);
                }
            }
            line.id2("session_id", "ss-", n, 6, session.number);
            if let Some(d) = event.duration_tenths {
                if session.web {
                    line.uint("duration_seconds", u64::from((d + 5) / 10));
                } else {
                    line.tenths("duration_seconds", u64::from(d));
                }
            }
            if let Some(i) = event.interactions {
                line.uint("interaction_count", u64::from(i));
            }
            if let Some(p) = event.progress {
                line.uint("progress", u64::from(p));
            }
            if let Some(s) = event.score_tenths {
                line.tenths("score", u64::from(s));
            }
            let (device_type, browser, os) = if session.web {
                student.web_device
            } else {
                student.app_device
            };
            if session.web {
                line.str("device_type", device_type);
                line.str("browser", browser);
                line.str("os", os);
            } else {
                line.open_object("device");
                line.str("device_type", device_type);
                line.str("browser", browser);
                line.str("os", os);
                line.close_object();
            }
            if event.kind.has_ip() {
                line.str(
                    "ip_address",
                    if session.web {
                        &student.home_ip
                    } else {
                        &student.mobile_ip
                    },
                );
            }
            if let Some(s) = event.success {
                line.bool("success", s);
            }
            write_details(line, event.detail, course);
            out.activity.write_line(line.finish())?;
        }

        for attempt in &self.attempts {
            ids.attempt += 1;
            let assessment = &course.assessments[usize::from(attempt.assessment)];
            let session = self.sessions[attempt.session as usize];
            let stamp = |t: i64| Stamp {
                utc_seconds: t,
                millis: None,
                offset_seconds: session.web.then_some(session.offset),
            };
            line.begin();
            line.id2("attempt_id", "at-", n, 6, ids.attempt);
            line.id("student_id", "s", n, 6);
            line.str("course_id", &course.id);
            line.str(
                if attempt.quiz_id_alias {
                    "quiz_id"
                } else {
                    "assessment_id"
                },
                &assessment.id,
            );
            let assessment_type = if attempt.practice && attempt.practice_style != 1 {
                "practice"
            } else {
                assessment.kind.as_str()
            };
            line.str("assessment_type", assessment_type);
            if let Some(s) = attempt.started {
                line.timestamp("started_at", stamp(s));
            }
            line.timestamp(
                if attempt.completed_at_alias {
                    "completed_at"
                } else {
                    "submitted_at"
                },
                stamp(attempt.submitted),
            );
            line.tenths("score", u64::from(attempt.score_tenths));
            if attempt.with_points {
                line.tenths("points_earned", u64::from(attempt.earned_tenths));
                line.uint("points_possible", u64::from(attempt.possible));
            }
            if attempt.with_passing_score {
                line.uint("passing_score", u64::from(course.passing_score));
            }
            if attempt.with_passed {
                line.bool("passed", attempt.passed);
            }
            if let Some(number) = attempt.attempt_number {
                line.uint("attempt_number", u64::from(number));
            }
            if attempt.practice {
                if attempt.practice_style != 2 {
                    line.bool("is_practice", true);
                }
            } else if attempt.with_is_practice {
                line.bool("is_practice", false);
            }
            line.str("skill", course.skills[assessment.skill]);
            line.open_array("answers");
            for (q, answer) in self.answers[attempt.answers.clone()].iter().enumerate() {
                line.open_element();
                line.sub_id("question_id", &assessment.id, "-q", q as u64 + 1, 2);
                line.str("question_type", answer.question_type);
                line.bool("is_correct", answer.correct);
                line.tenths("points_earned", u64::from(answer.earned_tenths));
                line.uint("points_possible", u64::from(answer.possible));
                line.uint("time_spent_seconds", u64::from(answer.time_spent));
                line.str("skill", course.skills[usize::from(answer.skill)]);
                line.close_object();
            }
            line.close_array();
            if let Some(flag) = attempt.integrity {
                line.open_array("integrity_flags");
                line.open_element();
                line.str("type", flag.kind);
                line.timestamp("timestamp", stamp(flag.ts));
                let details = match flag.kind {
                    "tab_switch" => format!("left the assessment window {} times", flag.value),
                    "copy_paste" => format!("pasted {} characters", flag.value * 37),
                    "fast_completion" => {
                        format!("answered {} questions in under 5 seconds", flag.value)
                    }
                    _ => format!("IP address changed {} times", flag.value / 4 + 1),
                };
                line.str("details", &details);
                line.close_object();
                line.close_array();
            }
            out.attempts.write_line(line.finish())?;
        }
        Ok((events, self.attempts.len() as u64))
    }

    /// The narrow shape of real LMS click exports: one event per student ×
    /// site × UTC day, seven fields, the day's clicks in `interaction_count`
    /// (the first event of the day on that site gives the time and type).
    /// Returns the number of events written.
    fn write_daily_clicks(
        &mut self,
        student: &Student,
        course: &Course,
        ids: &mut StudentIds,
        out: &mut Streams,
    ) -> Result<u64> {
        // (day, site) → (first event, clicks), in order of first appearance.
        let mut groups: Vec<((i64, Target), usize, u64)> = Vec::new();
        let mut at: std::collections::HashMap<(i64, SiteKey), usize> =
            std::collections::HashMap::new();
        for (i, event) in self.events.iter().enumerate() {
            let key = (event.ts.div_euclid(DAY), site_key(event.target, event.kind));
            let clicks = u64::from(event.interactions.unwrap_or(1).max(1));
            match at.get(&key) {
                Some(&g) => groups[g].2 += clicks,
                None => {
                    at.insert(key, groups.len());
                    groups.push(((key.0, event.target), i, clicks));
                }
            }
        }
        let n = student.number;
        let line = &mut self.line;
        for &((_, target), first, clicks) in &groups {
            let event = &self.events[first];
            ids.event += 1;
            line.begin();
            line.id2("event_id", "ev-", n, 6, ids.event);
            line.id("student_id", "s", n, 6);
            line.str("course_id", &course.id);
            let site = match target {
                Target::None => format!("{}-home", course.id),
                Target::Lesson(l) => course.lessons[usize::from(l)].id.clone(),
                Target::Resource(l, r) => {
                    course.lessons[usize::from(l)].resource_ids[usize::from(r)].clone()
                }
                Target::Assessment(a) => course.assessments[usize::from(a)].id.clone(),
            };
            line.str("resource_id", &site);
            line.timestamp(
                "timestamp",
                Stamp {
                    utc_seconds: event.ts,
                    millis: None,
                    offset_seconds: None,
                },
            );
            line.str("activity_type", event.kind.name());
            line.uint("interaction_count", clicks);
            out.activity.write_line(line.finish())?;
        }
        Ok(groups.len() as u64)
    }
}

/// The site an event happened on, for the daily-clicks profile: its
/// target, or its type when it has none (login, forum, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SiteKey {
    Kind(Kind),
    Lesson(u16),
    Resource(u16, u8),
    Assessment(u8),
}

fn site_key(target: Target, kind: Kind) -> SiteKey {
    match target {
        Target::None => SiteKey::Kind(kind),
        Target::Lesson(l) => SiteKey::Lesson(l),
        Target::Resource(l, r) => SiteKey::Resource(l, r),
        Target::Assessment(a) => SiteKey::Assessment(a),
    }
}

/// The shape of the generated activity events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Every event as a client sends it: sessions, devices, details,
    /// durations (the generator's original shape).
    #[default]
    Rich,
    /// Narrow daily click counts as real LMS exports have them (e.g. a VLE
    /// log): one event per student × site × day, seven fields.
    DailyClicks,
}

fn write_details(line: &mut JsonLine, detail: Detail, course: &Course) {
    match detail {
        Detail::None => return,
        Detail::Login { sso } => {
            line.open_object("details");
            line.str("method", if sso { "sso" } else { "password" });
        }
        Detail::Video { position, rate } => {
            line.open_object("details");
            line.uint("start_position_seconds", u64::from(position) * 10);
            line.tenths("playback_rate", [10, 10, 12, 15][usize::from(rate)]);
        }
        Detail::Download { file_type, size_kb } => {
            line.open_object("details");
            line.str("file_type", ["pdf", "pptx", "zip"][usize::from(file_type)]);
            line.uint("size_kb", u64::from(size_kb));
        }
        Detail::Forum { thread, words } => {
            line.open_object("details");
            line.sub_id("thread_id", &course.id, "-t", u64::from(thread), 3);
            line.uint("word_count", u64::from(words));
        }
        Detail::Help { channel, skill } => {
            line.open_object("details");
            line.str(
                "channel",
                ["chat", "forum", "office_hours"][usize::from(channel)],
            );
            line.str("topic", course.skills[usize::from(skill)]);
        }
        Detail::Badge { lessons } => {
            line.open_object("details");
            line.str("badge", "lessons_completed");
            line.uint("lessons", u64::from(lessons));
        }
        Detail::Practice => {
            line.open_object("details");
            line.bool("practice", true);
        }
        Detail::Bookmark { position } => {
            line.open_object("details");
            line.uint("position_percent", u64::from(position));
        }
    }
    line.close_object();
}
