//! Job schedules: six-field cron expressions (`sec min hour day month
//! weekday`) read on the institution's wall clock, with the two nights a
//! year when that clock is not a straight line:
//!
//! - **Clocks go forward** (a wall-clock time that does not exist, e.g.
//!   02:30 in New York on the second Sunday of March): the slot fires once,
//!   at the first instant after the gap (03:00 local).
//! - **Clocks go back** (a wall-clock time that happens twice, e.g. 01:30 in
//!   London on the last Sunday of October): a job at a fixed hour fires
//!   once, at the first occurrence; a job whose hour field is `*` (every 15
//!   minutes, hourly) fires at both, so it keeps its rhythm in real time.
//!
//! The next fire time is computed here on each call from the zone's rules,
//! never from an offset fixed when the schedule was built (the drift of
//! tokio-cron-scheduler's issue #107). A slot is named by its UTC instant.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The widest shift of a zone's UTC offset at one transition, with margin
/// (real zones shift by at most 2 hours).
const MAX_SHIFT: Duration = Duration::hours(3);

/// A parsed, valid schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: cron::Schedule,
    /// The hour field is `*`: the job runs through the repeated hour too.
    every_hour: bool,
}

impl Schedule {
    /// Parses a six-field expression; the error says what to write instead.
    /// Weekdays must be names (`Mon`, `Mon-Fri`): numbers mean different
    /// days in different cron dialects (0 or 7 is Sunday in crontab, 1 is
    /// Sunday in Quartz), so they are refused rather than guessed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "{text:?} has {} fields, expected 6 (sec min hour day month weekday), e.g. \"0 0 7 * * Mon\"",
                fields.len()
            ));
        }
        let weekday = fields[5];
        if weekday.split([',', '-', '/']).enumerate().any(|(i, part)| {
            // A step (`*/2`) may be a number; a day may not.
            !(part.is_empty() || part == "*" || part == "?")
                && part.chars().all(|c| c.is_ascii_digit())
                && !(i > 0 && weekday.contains('/') && weekday.ends_with(part))
        }) {
            return Err(format!(
                "{text:?}: write weekdays as names (Mon, Mon-Fri, Sat,Sun), not {weekday:?}: numbers mean different days in different cron dialects"
            ));
        }
        let cron = cron::Schedule::from_str(&fields.join(" "))
            .map_err(|e| format!("{text:?} is not a cron expression: {e}"))?;
        let schedule = Self {
            text: text.to_string(),
            cron,
            every_hour: matches!(fields[2], "*" | "*/1"),
        };
        // February 30th and the like parse but never fire.
        let probe = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single();
        if probe.is_none_or(|t| schedule.cron.after(&t).next().is_none()) {
            return Err(format!(
                "{text:?} never fires (no such date); check the day and month fields"
            ));
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire instant strictly after `after`, on `tz`'s wall clock.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        // Wall-clock candidates from a little before `after`'s own wall
        // time: after the clocks went back, the next slot's wall time can
        // be earlier than `after`'s.
        let from = Utc.from_utc_datetime(&(local - MAX_SHIFT));
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        for candidate in self.cron.after(&from) {
            let wall = candidate.naive_utc();
            if let Some((_, best_wall)) = best
                && wall > best_wall + MAX_SHIFT
            {
                break;
            }
            for instant in self.instants(wall, tz) {
                if instant > after && best.is_none_or(|(b, _)| instant < b) {
                    best = Some((instant, wall));
                }
            }
        }
        best.map(|(instant, _)| instant)
    }

    /// The latest fire instant at or before `at` (within 8 years).
    pub fn latest_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        for back in [
            Duration::hours(1),
            Duration::days(2),
            Duration::days(40),
            Duration::days(400),
            Duration::days(8 * 366),
        ] {
            let mut cursor = at - back;
            let mut latest = None;
            while let Some(next) = self.next_after(cursor, tz) {
                if next > at {
                    break;
                }
                latest = Some(next);
                cursor = next;
            }
            if latest.is_some() {
                return latest;
            }
        }
        None
    }

    /// The slots in `(after, until]`, oldest first (at most `limit`; the
    /// newest `limit` when there are more).
    pub fn slots_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        tz: Tz,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut slots = std::collections::VecDeque::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor, tz) {
            if next > until {
                break;
            }
            if slots.len() == limit {
                slots.pop_front();
            }
            slots.push_back(next);
            cursor = next;
        }
        slots.into()
    }

    /// The instants a wall-clock fire time stands for in `tz`.
    fn instants(&self, wall: NaiveDateTime, tz: Tz) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                if self.every_hour {
                    vec![a.min(b), a.max(b)]
                } else {
                    vec![a.min(b)]
                }
            }
            // In the gap: the first instant after it, which is the
            // transition itself (the first valid minute on the wall clock).
            LocalResult::None => {
                let mut probe = wall.with_second(0).unwrap_or(wall);
                for _ in 0..(24 * 60) {
                    probe += Duration::minutes(1);
                    if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                        return vec![t.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Datelike, NaiveDate, NaiveTime};

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Every fire of `schedule` over 2026 in `tz`, stepping a simulated
    /// clock from one fire to the next as the daemon does.
    fn year(schedule: &str, tz: Tz) -> Vec<DateTime<Utc>> {
        let schedule = Schedule::parse(schedule).unwrap();
        let start = tz
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let end = tz
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let mut clock = start;
        let mut fires = Vec::new();
        while let Some(next) = schedule.next_after(clock, tz) {
            assert!(next > clock, "time went backwards at {clock}");
            if next >= end {
                break;
            }
            fires.push(next);
            clock = next;
        }
        assert_eq!(schedule.slots_between(start, end, tz, usize::MAX), fires);
        fires
    }

    fn wall(t: DateTime<Utc>, tz: Tz) -> (NaiveDate, NaiveTime) {
        let local = t.with_timezone(&tz).naive_local();
        (local.date(), local.time())
    }

    #[test]
    fn a_daily_job_runs_once_a_day_at_its_wall_time_all_year_across_both_dst_nights() {
        let london = chrono_tz::Europe::London;
        let new_york = chrono_tz::America::New_York;
        // (zone, hour of the 00:30-past job, the night the clocks go
        // forward, where the job then fires, the night they go back)
        for (tz, hour, forward, gap_fire, back) in [
            // London: 01:00 → 02:00 BST on 29 March; 02:00 → 01:00 on 25 October.
            (
                london,
                1,
                "2026-03-29",
                Some("2026-03-29T01:00:00Z"),
                "2026-10-25",
            ),
            // New York: 02:00 → 03:00 EDT on 8 March; 02:00 → 01:00 on 1 November.
            (
                new_york,
                2,
                "2026-03-08",
                Some("2026-03-08T07:00:00Z"),
                "2026-11-01",
            ),
            (new_york, 1, "2026-03-08", None, "2026-11-01"),
        ] {
            let fires = year(&format!("0 30 {hour} * * *"), tz);
            let mut per_day = BTreeMap::new();
            for &f in &fires {
                *per_day.entry(wall(f, tz).0).or_insert(0) += 1;
            }
            assert_eq!(per_day.len(), 365, "{tz} {hour}:30");
            assert!(per_day.values().all(|&n| n == 1), "{tz} {hour}:30");
            let expected = NaiveTime::from_hms_opt(hour, 30, 0).unwrap();
            let mut ambiguous_nights = 0;
            for &f in &fires {
                let (day, at) = wall(f, tz);
                match gap_fire {
                    // That wall time does not exist that night: the first
                    // instant after the gap.
                    Some(gap_fire) if day.to_string() == forward => {
                        assert_eq!(f, utc(gap_fire), "{tz} {hour}:30")
                    }
                    _ => assert_eq!(at, expected, "{tz} {hour}:30 on {day}"),
                }
                if day.to_string() == back
                    && let LocalResult::Ambiguous(first, _) =
                        tz.from_local_datetime(&day.and_time(expected))
                {
                    // The repeated hour: once, at the first occurrence.
                    assert_eq!(f, first.with_timezone(&Utc), "{tz} {hour}:30");
                    ambiguous_nights += 1;
                }
            }
            // 01:30 happens twice on the night back in both zones; 02:30
            // in New York does not.
            assert_eq!(ambiguous_nights, usize::from(hour == 1), "{tz} {hour}:30");
        }
    }

    #[test]
    fn the_repeated_hour_runs_a_fixed_time_job_once_and_a_quarter_hourly_job_through_it() {
        let london = chrono_tz::Europe::London;
        let fixed = Schedule::parse("0 30 1 * * *").unwrap();
        let fires = fixed.slots_between(
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-26T12:00:00Z"),
            london,
            100,
        );
        // 01:30 BST on the 25th (00:30 UTC), not again at 01:30 GMT.
        assert_eq!(
            fires,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );

        let quarter = Schedule::parse("0 */15 * * * *").unwrap();
        let fires = quarter.slots_between(
            utc("2026-10-24T23:50:00Z"),
            utc("2026-10-25T02:10:00Z"),
            london,
            100,
        );
        // Every 15 minutes of real time, the repeated hour included.
        let expected: Vec<_> = (0..9)
            .map(|i| utc("2026-10-25T00:00:00Z") + Duration::minutes(15 * i))
            .collect();
        assert_eq!(fires, expected);
    }

    #[test]
    fn the_skipped_hour_fires_once_at_the_end_of_the_gap() {
        let new_york = chrono_tz::America::New_York;
        let quarter = Schedule::parse("0 */15 * * * *").unwrap();
        let fires = quarter.slots_between(
            utc("2026-03-08T06:40:00Z"),
            utc("2026-03-08T07:20:00Z"),
            new_york,
            100,
        );
        // 01:45 EST, then 03:00 EDT (02:00-02:45 do not exist), 03:15 EDT.
        assert_eq!(
            fires,
            vec![
                utc("2026-03-08T06:45:00Z"),
                utc("2026-03-08T07:00:00Z"),
                utc("2026-03-08T07:15:00Z")
            ]
        );
    }

    #[test]
    fn a_weekly_job_keeps_its_local_time_across_the_offset_change() {
        let london = chrono_tz::Europe::London;
        let fires = year("0 0 7 * * Mon", london);
        assert_eq!(fires.len(), 52);
        for f in fires {
            let local = f.with_timezone(&london);
            assert_eq!(
                (local.weekday(), local.hour(), local.minute()),
                (chrono::Weekday::Mon, 7, 0)
            );
        }
    }

    #[test]
    fn latest_at_or_before_finds_the_slot_a_cron_started_run_belongs_to() {
        let london = chrono_tz::Europe::London;
        let weekly = Schedule::parse("0 0 7 * * Mon").unwrap();
        // Wednesday 2 December 2026 → Monday 30 November, 07:00 GMT.
        assert_eq!(
            weekly.latest_at_or_before(utc("2026-12-02T10:00:00Z"), london),
            Some(utc("2026-11-30T07:00:00Z"))
        );
        assert_eq!(
            weekly.latest_at_or_before(utc("2026-11-30T07:00:00Z"), london),
            Some(utc("2026-11-30T07:00:00Z"))
        );
    }

    #[test]
    fn mistakes_are_refused_with_what_to_write() {
        for (text, says) in [
            ("0 0 7 * *", "has 5 fields"),
            ("0 0 7 * * 1", "write weekdays as names"),
            ("0 0 7 * * 1-5", "write weekdays as names"),
            ("0 0 25 * * Mon", "is not a cron expression"),
            ("0 0 0 30 Feb *", "never fires"),
        ] {
            let err = Schedule::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        Schedule::parse("0 0 7 * * Mon-Fri").unwrap();
        Schedule::parse("*/5 * * * * *").unwrap();
        Schedule::parse("0 0 0 29 Feb *").unwrap();
    }
}
