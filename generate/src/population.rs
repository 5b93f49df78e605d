//! Students: who they are (reference fields), where they live (time zone),
//! how they behave (archetype and its parameters) and what they enrol in.

use chrono_tz::Tz;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::catalog::Course;

/// Behaviour pattern of a student; drives activity, scores and outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Archetype {
    /// Regular sessions through the week, on-time work, solid scores.
    Steady,
    /// Little activity except bursts in the days before each due date; some late work.
    Crammer,
    /// Starts normally, activity decays week by week; most withdraw.
    Fading,
    /// Active but low scores, many retries, help requests, late work.
    Struggling,
    /// High engagement, early submissions, high scores.
    Excellent,
    /// Enrolled but never logs in: no activity and no attempts.
    NeverStarted,
}

impl Archetype {
    /// Every archetype, in a fixed order.
    pub(crate) const ALL: [Archetype; 6] = [
        Self::Steady,
        Self::Crammer,
        Self::Fading,
        Self::Struggling,
        Self::Excellent,
        Self::NeverStarted,
    ];

    /// Relative frequency in the population (percent).
    const WEIGHTS: [u32; 6] = [34, 18, 14, 16, 12, 6];

    /// Lower-case name, as written to `GENERATED.json`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Crammer => "crammer",
            Self::Fading => "fading",
            Self::Struggling => "struggling",
            Self::Excellent => "excellent",
            Self::NeverStarted => "never_started",
        }
    }

    fn random(rng: &mut Pcg64) -> Self {
        let mut roll = rng.random_range(0..Self::WEIGHTS.iter().sum::<u32>());
        for (archetype, weight) in Self::ALL.into_iter().zip(Self::WEIGHTS) {
            if roll < weight {
                return archetype;
            }
            roll -= weight;
        }
        Self::Steady
    }
}

/// A time zone students live in, with the locales seen there.
pub(crate) struct Zone {
    pub(crate) name: &'static str,
    pub(crate) tz: Tz,
    locales: &'static [&'static str],
    weight: u32,
}

/// The zones students are drawn from. London, Berlin, New York, Los Angeles
/// and Sydney change their offset inside the default window (US 2026-03-08,
/// EU 2026-03-29, Sydney 2026-04-05); Kolkata has a half-hour offset.
pub(crate) const ZONES: [Zone; 8] = [
    Zone {
        name: "Europe/London",
        tz: Tz::Europe__London,
        locales: &["en-GB"],
        weight: 24,
    },
    Zone {
        name: "America/New_York",
        tz: Tz::America__New_York,
        locales: &["en-US", "es-US"],
        weight: 20,
    },
    Zone {
        name: "Asia/Tokyo",
        tz: Tz::Asia__Tokyo,
        locales: &["ja-JP"],
        weight: 10,
    },
    Zone {
        name: "Australia/Sydney",
        tz: Tz::Australia__Sydney,
        locales: &["en-AU"],
        weight: 10,
    },
    Zone {
        name: "UTC",
        tz: Tz::UTC,
        locales: &["en", "fr-FR"],
        weight: 9,
    },
    Zone {
        name: "Europe/Berlin",
        tz: Tz::Europe__Berlin,
        locales: &["de-DE", "en-GB"],
        weight: 11,
    },
    Zone {
        name: "America/Los_Angeles",
        tz: Tz::America__Los_Angeles,
        locales: &["en-US"],
        weight: 8,
    },
    Zone {
        name: "Asia/Kolkata",
        tz: Tz::Asia__Kolkata,
        locales: &["en-IN", "hi-IN"],
        weight: 8,
    },
];

const FIRST_NAMES: [&str; 40] = [
    "Amara", "Ben", "Chloé", "Daniel", "Elif", "Finn", "Grace", "Hiro", "Isabel", "Jonas", "Kavya",
    "Liam", "Maya", "Noah", "Olivia", "Pedro", "Qin", "Rosa", "Sami", "Tariq", "Uma", "Viktor",
    "Wen", "Ximena", "Yusuf", "Zoë", "Aiko", "Bruno", "Chidi", "Dana", "Emil", "Fatima", "Gabriel",
    "Hannah", "Ivan", "Jia", "Kofi", "Lena", "Mateo", "Nia",
];

const LAST_NAMES: [&str; 40] = [
    "Okafor",
    "Smith",
    "García",
    "Müller",
    "Tanaka",
    "O'Brien",
    "Nguyen",
    "Rossi",
    "Kowalski",
    "Haddad",
    "Johnson",
    "Silva",
    "Sato",
    "Brown",
    "Patel",
    "Dubois",
    "Andersen",
    "Kim",
    "Novak",
    "Mensah",
    "Williams",
    "Fernández",
    "Ito",
    "Jones",
    "Sharma",
    "Martin",
    "Larsen",
    "Park",
    "Horvat",
    "Owusu",
    "Taylor",
    "López",
    "Suzuki",
    "Davies",
    "Gupta",
    "Bernard",
    "Nielsen",
    "Choi",
    "Kovač",
    "Adeyemi",
];

/// A device profile: `(device_type, browser, os)`.
pub(crate) type Device = (&'static str, &'static str, &'static str);

/// Browser devices (web sessions).
pub(crate) const WEB_DEVICES: [Device; 6] = [
    ("desktop", "chrome", "windows"),
    ("laptop", "safari", "macos"),
    ("laptop", "firefox", "linux"),
    ("desktop", "edge", "windows"),
    ("laptop", "chrome", "chromeos"),
    ("mobile", "chrome", "android"),
];

/// App devices (mobile app sessions).
pub(crate) const APP_DEVICES: [Device; 4] = [
    ("mobile", "app", "ios"),
    ("mobile", "app", "android"),
    ("tablet", "app", "ipados"),
    ("tablet", "app", "android"),
];

/// A student: reference fields plus behaviour parameters.
#[derive(Debug, Clone)]
pub(crate) struct Student {
    /// 1-based number; the id is `s` + this number zero-padded to 6 digits.
    pub(crate) number: u64,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) guardian_email: Option<String>,
    /// Index into [`ZONES`].
    pub(crate) zone: usize,
    pub(crate) locale: &'static str,
    /// notify_reminders, notify_achievements, notify_deadlines (`None`: left empty).
    pub(crate) notify: [Option<bool>; 3],
    pub(crate) advisor_email: String,
    pub(crate) archetype: Archetype,
    /// Chance of answering a question right, before difficulty (0–1).
    pub(crate) ability: f64,
    /// Mean study sessions per week at full engagement.
    pub(crate) sessions_per_week: f64,
    /// Mean activity events in one study session (login and logout included).
    pub(crate) events_per_session: f64,
    /// Preferred local hour for study sessions, and its spread in hours.
    pub(crate) peak_hour: f64,
    pub(crate) hour_spread: f64,
    /// Activity on Saturday and Sunday relative to a weekday.
    pub(crate) weekend_factor: f64,
    /// Share of sessions in the browser (the rest in the mobile app).
    pub(crate) web_share: f64,
    pub(crate) web_device: Device,
    pub(crate) app_device: Device,
    pub(crate) home_ip: String,
    pub(crate) mobile_ip: String,
}

impl Student {
    /// The student id, e.g. `s000123`.
    pub(crate) fn id(&self) -> String {
        format!("s{:06}", self.number)
    }
}

/// One planned enrollment of a student in a course.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnrollmentPlan {
    /// Index into the course list.
    pub(crate) course: usize,
    /// Enrollment instant, seconds since the Unix epoch.
    pub(crate) enrolled_at: i64,
}

/// What is fixed for the whole population before students are drawn: the
/// first students cover every archetype and zone in a seed-dependent order,
/// so even small samples exercise all of them.
#[derive(Debug, Clone)]
pub(crate) struct Population {
    archetype_order: Vec<Archetype>,
    zone_order: Vec<usize>,
    advisors: u64,
}

impl Population {
    pub(crate) fn new(students: usize, rng: &mut Pcg64) -> Self {
        let mut archetype_order = Archetype::ALL.to_vec();
        archetype_order.shuffle(rng);
        let mut zone_order: Vec<usize> = (0..ZONES.len()).collect();
        zone_order.shuffle(rng);
        Self {
            archetype_order,
            zone_order,
            advisors: (students as u64 / 40).clamp(2, 99),
        }
    }

    /// Draws student `index` (0-based) and the courses they enrol in.
    pub(crate) fn student(
        &self,
        index: usize,
        courses: &[Course],
        window_start: i64,
        rng: &mut Pcg64,
    ) -> (Student, Vec<EnrollmentPlan>) {
        let number = index as u64 + 1;
        let archetype = self
            .archetype_order
            .get(index)
            .copied()
            .unwrap_or_else(|| Archetype::random(rng));
        let zone = self
            .zone_order
            .get(index)
            .copied()
            .unwrap_or_else(|| weighted_zone(rng));

        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let slug = format!("{}.{}", email_slug(first), email_slug(last));
        let guardian_email = rng
            .random_bool(0.6)
            .then(|| format!("guardian.{}{number}@mail.example.com", email_slug(last)));
        let locales = ZONES[zone].locales;
        let locale = locales[rng.random_range(0..locales.len())];
        let notify = [(); 3].map(|_| {
            let roll: f64 = rng.random();
            if roll < 0.05 {
                None
            } else {
                Some(roll >= 0.15)
            }
        });

        let (ability, ability_sd, spw, eps, peak) = match archetype {
            Archetype::Steady => (0.76, 0.07, 5.3, 9.0, 17.0),
            Archetype::Crammer => (0.70, 0.09, 7.5, 8.5, 21.0),
            Archetype::Fading => (0.62, 0.10, 6.3, 8.0, 19.0),
            Archetype::Struggling => (0.50, 0.09, 4.8, 8.5, 18.0),
            Archetype::Excellent => (0.90, 0.04, 6.9, 11.0, 15.0),
            Archetype::NeverStarted => (0.60, 0.10, 0.0, 0.0, 12.0),
        };
        let normal = |rng: &mut Pcg64| -> f64 { rng.sample(StandardNormal) };
        let student = Student {
            number,
            name: format!("{first} {last}"),
            email: format!("{slug}{number}@students.example.edu"),
            guardian_email,
            zone,
            locale,
            notify,
            advisor_email: format!(
                "advisor{:02}@example.edu",
                rng.random_range(1..=self.advisors)
            ),
            archetype,
            ability: (ability + ability_sd * normal(rng)).clamp(0.2, 0.98),
            sessions_per_week: spw * (0.3 * normal(rng)).exp(),
            events_per_session: eps * (0.15 * normal(rng)).exp(),
            peak_hour: (peak + 2.0 * normal(rng)).clamp(8.0, 21.5),
            hour_spread: rng.random_range(1.0..3.0),
            weekend_factor: rng.random_range(0.2..1.0),
            web_share: rng.random_range(0.4..0.95),
            web_device: WEB_DEVICES[rng.random_range(0..WEB_DEVICES.len())],
            app_device: APP_DEVICES[rng.random_range(0..APP_DEVICES.len())],
            home_ip: random_ip(rng),
            mobile_ip: random_ip(rng),
        };

        // Most students take one course, some two or three; the first students
        // take courses in order so that every course has someone.
        let extra = match rng.random::<f64>() {
            r if r < 0.05 => 2,
            r if r < 0.20 => 1,
            _ => usize::from(index == 0),
        }
        .min(courses.len() - 1);
        let mut picked = Vec::with_capacity(extra + 1);
        picked.push(if index < courses.len() {
            index
        } else {
            rng.random_range(0..courses.len())
        });
        while picked.len() < extra + 1 {
            let c = rng.random_range(0..courses.len());
            if !picked.contains(&c) {
                picked.push(c);
            }
        }
        let plans = picked
            .into_iter()
            .enumerate()
            .map(|(k, course_index)| {
                let course = &courses[course_index];
                let course_start = window_start + course.start_day * 86_400;
                // Student 2 always joins late, so even a small sample has a mid-course enrollment.
                let mid_course = (index == 1 && k == 0) || rng.random_bool(0.12);
                let enrolled_at = if mid_course {
                    let latest = ((course.end_day - course.start_day) / 2).max(8);
                    course_start
                        + rng.random_range(7..latest) * 86_400
                        + rng.random_range(8 * 3600..20 * 3600)
                } else {
                    course_start - rng.random_range(1..15) * 86_400
                        + rng.random_range(8 * 3600..20 * 3600)
                };
                EnrollmentPlan {
                    course: course_index,
                    enrolled_at,
                }
            })
            .collect();
        (student, plans)
    }
}

fn weighted_zone(rng: &mut Pcg64) -> usize {
    let mut roll = rng.random_range(0..ZONES.iter().map(|z| z.weight).sum::<u32>());
    for (i, zone) in ZONES.iter().enumerate() {
        if roll < zone.weight {
            return i;
        }
        roll -= zone.weight;
    }
    0
}

/// Addresses from the documentation ranges (RFC 5737, RFC 3849).
fn random_ip(rng: &mut Pcg64) -> String {
    if rng.random_bool(0.8) {
        let net = ["192.0.2", "198.51.100", "203.0.113"][rng.random_range(0..3)];
        format!("{net}.{}", rng.random_range(1..255))
    } else {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.random_range(0..0xffff),
            rng.random_range(0..0xffff),
            rng.random_range(1..0xff)
        )
    }
}

/// Lower-case ASCII letters of a name, for e-mail addresses (`García` → `garcia`).
fn email_slug(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'á' | 'à' | 'ä' => Some('a'),
            'é' | 'è' | 'ë' => Some('e'),
            'í' => Some('i'),
            'ó' | 'ö' => Some('o'),
            'ú' | 'ü' => Some('u'),
            'č' => Some('c'),
            c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::plan_courses;
    use rand::SeedableRng;

    #[test]
    fn first_students_cover_every_archetype_and_zone() {
        let mut rng = Pcg64::seed_from_u64(3);
        let courses = plan_courses(3, 10, 20_486, &mut rng);
        let population = Population::new(10, &mut rng);
        let students: Vec<_> = (0..8)
            .map(|i| population.student(i, &courses, 20_486 * 86_400, &mut rng).0)
            .collect();
        let mut archetypes: Vec<_> = students.iter().map(|s| s.archetype).collect();
        archetypes.sort();
        archetypes.dedup();
        assert_eq!(archetypes.len(), Archetype::ALL.len());
        let mut zones: Vec<_> = students.iter().map(|s| s.zone).collect();
        zones.sort_unstable();
        zones.dedup();
        assert_eq!(zones.len(), ZONES.len());
    }

    #[test]
    fn zone_names_match_chrono_tz() {
        for zone in &ZONES {
            assert_eq!(zone.tz.name(), zone.name);
        }
        assert_eq!(email_slug("O'Brien"), "obrien");
        assert_eq!(email_slug("Zoë"), "zoe");
    }
}
