#!/usr/bin/env python3
"""Independent reference implementation of the `student_week` table defined in
docs/ANALYTICS.md (all columns except the model outputs success_probability,
risk_level, risk_indicators and model_version), written in Python + DuckDB to
cross-check learnlake's own SQL. It deliberately does not read queries/*.sql.

    python3 tests/reference_analytics.py LAKE_DIR TIMEZONE WEEK [WEEK ...] --out OUT.parquet
        [--landing LANDING_DIR --ingest-time ISO] [--require-edge-cases]

WEEK is a Monday (YYYY-MM-DD, local date in TIMEZONE). DuckDB reads the lake's
Parquet and converts timestamps to local dates/hours; the per-enrollment logic
is plain Python over the rows (clear rather than clever), with exact
(rational) arithmetic where a threshold or a ceiling is involved.

It implements PRODUCT.md §3 and §5 itself, not the SQL's choices:
  * which enrollments count and their dates: with --landing, the enrollments'
    and assessments' dates are read from the raw landing files (the lake only
    says which rows were accepted) and a date without a time is a day in
    TIMEZONE: a date-only due_at is due at the next local midnight, a
    date-only enrolled_at / withdrawn_at is that day's local midnight; a
    `withdrawn` enrollment without a withdrawn_at is withdrawn at the ingest
    (--ingest-time: when the ingest began; every week checked ends long
    before). Without --landing the lake's instants are used, and a withdrawn
    enrollment without a date is withdrawn from the start;
  * an enrollment is active in a week when enrolled before the week's end,
    not withdrawn before its start, and its course runs; an enrollment of a
    course missing from `courses` is kept, its course taken as running;
  * "to date" counts everything of the course before the week's end,
    including work before the course's start_date; the only lower bound is
    the enrollment's history start (the earlier of the course start and the
    day of enrolled_at, docs/ANALYTICS.md), which keeps pruning possible;
  * an attempt of an assessment missing from `assessments` counts (it is
    never due, so never late).
With --require-edge-cases the run fails unless the input exercises each of
these (unknown courses with activity, counted pre-start work, work before the
history start, withdrawn-without-date, date-only due dates that decide
lateness, date-only enrolled_at).

Interpretation notes (the literal readings chosen where ANALYTICS.md is open):
  * sums over no rows (events, interactions, minutes, minutes_*, attempts,
    interactions_to_date, ...) are 0, not null;
  * an enrollment whose course is missing from `courses` is treated like a
    course with null start_date/end_date/total_lessons;
  * days_since_last_activity falls back to the day of enrolled_at, then the
    course's start_date;
  * submitted_to_date / late_to_date use the row's Attempts (non-practice,
    history window, submitted before the week's end); late = submitted_at
    strictly after due_at; attempts whose assessment is unknown or has no
    due_at are never late;
  * engagement_trend: previous week k is used when (enrolled_at is null or
    before that week's end) and (course start_date is null or <= that week's
    last day) — only the two conditions in the parenthesis; its interactions
    are those of the row's Activity in that week (0 if none); the 1.2/0.8
    thresholds are compared exactly (rational arithmetic);
  * consistency is capped at 1 (docs/ANALYTICS.md);
  * readiness_level: "last 5 attempts" ordered by submitted_at, ties broken by
    attempt_id (both descending); s <= t compared exactly as variance <= t^2;
  * estimated_completion_date: ceil computed exactly as
    ceil(remaining * (last - start + 1) / lessons); a course without lessons
    (total_lessons null or 0) uses its assessments instead: remaining = the
    course's assessments not yet attempted, pace = those attempted;
  * sessions: a session_id that is null counts as "without one"; an empty
    string is a distinct session id.
"""
import argparse
import bisect
import csv
import glob
import json
import datetime as dt
import math
import os
import sys
from collections import defaultdict
from fractions import Fraction
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
US_PER_DAY = 86_400_000_000
SESSION_GAP_US = 30 * 60 * 1_000_000
CATEGORIES = ("learning", "assessment", "social", "system")
PARTS = ("morning", "afternoon", "evening", "night")  # tie order for peak_period


# ----------------------------------------------------------------------------
# Time
# ----------------------------------------------------------------------------
def to_us(t: dt.datetime) -> int:
    d = t - EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def local_midnight_us(day: dt.date, zone: ZoneInfo) -> int:
    """UTC instant (µs) of local 00:00 of `day` in `zone` (fold=0: in a gap at
    midnight this is the instant the day begins)."""
    return to_us(dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC))


class Week:
    def __init__(self, monday: dt.date, zone: ZoneInfo):
        if monday.weekday() != 0:
            raise SystemExit(f"{monday} is not a Monday")
        self.start_date = monday
        self.end_date = monday + dt.timedelta(days=7)       # period_end (exclusive)
        self.last_day = monday + dt.timedelta(days=6)
        self.start_us = local_midnight_us(monday, zone)
        self.end_us = local_midnight_us(self.end_date, zone)


def part_of_day(hour: int) -> str:
    if 6 <= hour <= 11:
        return "morning"
    if 12 <= hour <= 17:
        return "afternoon"
    if 18 <= hour <= 23:
        return "evening"
    return "night"


def self_check_time(con):
    """Asserts on DST weeks: zoneinfo week bounds and DuckDB's local conversion."""
    lon, ny = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
    w = Week(dt.date(2026, 3, 23), lon)  # BST starts Sun 2026-03-29 01:00 UTC
    assert w.start_us == to_us(dt.datetime(2026, 3, 23, 0, 0, tzinfo=UTC))
    assert w.end_us == to_us(dt.datetime(2026, 3, 29, 23, 0, tzinfo=UTC))
    assert (w.end_us - w.start_us) // 3_600_000_000 == 167
    w = Week(dt.date(2026, 10, 19), lon)  # BST ends Sun 2026-10-25
    assert (w.end_us - w.start_us) // 3_600_000_000 == 169
    w = Week(dt.date(2026, 3, 2), ny)  # EDT starts Sun 2026-03-08 07:00 UTC
    assert w.start_us == to_us(dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC))
    assert w.end_us == to_us(dt.datetime(2026, 3, 9, 4, 0, tzinfo=UTC))
    assert (w.end_us - w.start_us) // 3_600_000_000 == 167

    cases = [
        ("Europe/London", "2026-03-29 00:59:59+00", dt.date(2026, 3, 29), 0),
        ("Europe/London", "2026-03-29 01:00:00+00", dt.date(2026, 3, 29), 2),
        ("Europe/London", "2026-03-29 23:30:00+00", dt.date(2026, 3, 30), 0),  # next week
        ("Europe/London", "2026-03-28 23:30:00+00", dt.date(2026, 3, 28), 23),
        ("America/New_York", "2026-03-08 06:59:00+00", dt.date(2026, 3, 8), 1),
        ("America/New_York", "2026-03-08 07:00:00+00", dt.date(2026, 3, 8), 3),
        ("America/New_York", "2026-03-09 03:59:00+00", dt.date(2026, 3, 8), 23),
        ("America/New_York", "2026-03-09 04:00:00+00", dt.date(2026, 3, 9), 0),
    ]
    for tz, ts, day, hour in cases:
        got = con.execute(
            "SELECT CAST(timezone(?, CAST(? AS TIMESTAMPTZ)) AS DATE),"
            " hour(timezone(?, CAST(? AS TIMESTAMPTZ)))", [tz, ts, tz, ts]).fetchone()
        assert got == (day, hour), (tz, ts, got, day, hour)
        # same through zoneinfo
        t = dt.datetime.fromisoformat(ts).astimezone(ZoneInfo(tz))
        assert (t.date(), t.hour) == (day, hour), (tz, ts, t)
    # the London week 2026-03-23 ends at 2026-03-29 23:00 UTC: an event at
    # 23:30 UTC on Sunday belongs to the next week (local Monday 00:30)
    assert to_us(dt.datetime(2026, 3, 29, 23, 30, tzinfo=UTC)) >= Week(dt.date(2026, 3, 23), lon).end_us


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------
def query(con, sql, params=()):
    try:
        return con.execute(sql, list(params)).fetchall()
    except duckdb.IOException as e:
        # A missing table is a broken lake or a broken test, never "no rows".
        raise SystemExit(f"cannot read a lake table: {e}")


EDGE = defaultdict(int)  # edge cases the input exercised, by name


def parse_instant(text, zone, end_of_day=False):
    """PRODUCT §3: RFC 3339 with an offset, or a date that is a day in the
    institution zone (end_of_day: due by the next local midnight)."""
    text = (text or "").strip()
    if not text:
        return None
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return local_midnight_us(day + dt.timedelta(days=1) if end_of_day else day, zone)
    return to_us(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC))


def raw_rows(landing, kind):
    """The raw rows of a reference kind, in load order (later files win)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(landing, f"{kind}*"))):
        if path.endswith(".csv"):
            with open(path, newline="") as f:
                rows.extend(csv.DictReader(f))
        elif path.endswith((".jsonl", ".ndjson")):
            with open(path) as f:
                rows.extend(json.loads(line) for line in f if line.strip())
        else:
            raise SystemExit(f"{path}: the reference reads only plain .csv / .jsonl reference files")
    return rows


def raw_dates(landing, zone, ingest_us):
    """Enrollment and assessment instants from the raw files, per §3."""
    enrollments = {}
    for r in raw_rows(landing, "enrollments"):
        status = (r.get("status") or "").strip().lower()
        withdrawn = parse_instant(r.get("withdrawn_at"), zone)
        if status == "withdrawn" and withdrawn is None:
            withdrawn = ingest_us
            EDGE["withdrawn_without_date"] += 1
        if len((r.get("enrolled_at") or "").strip()) == 10:
            EDGE["date_only_enrolled_at"] += 1
        enrollments[(r["student_id"], r["course_id"])] = dict(
            enrolled_us=parse_instant(r.get("enrolled_at"), zone), withdrawn_us=withdrawn, status=status)
    assessments = {}
    for r in raw_rows(landing, "assessments"):
        due = r.get("due_at")
        assessments[r["assessment_id"]] = dict(
            due_us=parse_instant(due, zone, end_of_day=True),
            date_only=len((due or "").strip()) == 10,
            utc_midnight_us=parse_instant(due, UTC) if len((due or "").strip()) == 10 else None)
    return enrollments, assessments


def load(con, lake, tz, landing=None, ingest_us=None):
    zone = ZoneInfo(tz)
    courses = {}
    for cid, sd, ed, tl in query(con, f"SELECT course_id, start_date, end_date, total_lessons "
                                      f"FROM read_parquet('{lake}/courses/*.parquet')"):
        courses[cid] = dict(start_date=sd, end_date=ed, total_lessons=tl)

    raw_enr, raw_asm = raw_dates(landing, zone, ingest_us) if landing else (None, None)
    enrollments = []
    for sid, cid, enr_us, enr_day, status, wd_us in query(con, f"""
            SELECT student_id, course_id, epoch_us(enrolled_at),
                   CAST(timezone(?, enrolled_at) AS DATE), status, epoch_us(withdrawn_at)
            FROM read_parquet('{lake}/enrollments/*.parquet')""", [tz]):
        en = dict(student_id=sid, course_id=cid, enrolled_us=enr_us,
                  enrolled_day=enr_day, withdrawn_us=wd_us, status=status)
        if raw_enr is not None:
            en.update(raw_enr[(sid, cid)])
            en["enrolled_day"] = (None if en["enrolled_us"] is None else
                                  (EPOCH + dt.timedelta(microseconds=en["enrolled_us"])).astimezone(zone).date())
        if cid not in courses:
            EDGE["enrollments_of_unknown_courses"] += 1
        enrollments.append(en)

    assessments = {}
    for aid, cid, due_us in query(con, f"SELECT assessment_id, course_id, epoch_us(due_at) "
                                       f"FROM read_parquet('{lake}/assessments/*.parquet')"):
        assessments[aid] = dict(course_id=cid, due_us=due_us)
        if raw_asm is not None:
            assessments[aid].update(raw_asm[aid])

    # activity of (student, course), sorted by timestamp
    acts = defaultdict(list)
    rows = query(con, f"""
        SELECT student_id, course_id, epoch_us(timestamp) AS ts,
               CAST(timezone(?, timestamp) AS DATE) AS day, hour(timezone(?, timestamp)) AS hr,
               activity_type, activity_category, lesson_id, session_id,
               duration_seconds, interaction_count, event_id
        FROM read_parquet('{lake}/activity/*/*.parquet', hive_partitioning = true,
                          hive_types = {{'event_date': DATE}})
        WHERE course_id IS NOT NULL""", [tz, tz])
    for r in rows:
        sid, cid, ts, day, hr, atype, cat, lesson, sess, dur, inter, eid = r
        acts[(sid, cid)].append(dict(ts=ts, day=day, hour=hr, type=atype, cat=cat, lesson=lesson,
                                     session=sess, dur=dur, inter=inter, id=eid))
    for v in acts.values():
        v.sort(key=lambda e: (e["ts"], e["id"]))

    atts = defaultdict(list)
    arows = query(con, f"""
        SELECT student_id, course_id, assessment_id, epoch_us(submitted_at) AS ts,
               CAST(timezone(?, submitted_at) AS DATE) AS day, score, skill, attempt_id
        FROM read_parquet('{lake}/attempts/*/*.parquet', hive_partitioning = true,
                          hive_types = {{'submitted_date': DATE}})
        WHERE is_practice = false""", [tz])
    for sid, cid, aid, ts, day, score, skill, atid in arows:
        atts[(sid, cid)].append(dict(ts=ts, day=day, assessment=aid, score=score, skill=skill, id=atid))
    for v in atts.values():
        v.sort(key=lambda a: (a["ts"], a["id"]))

    # cross-check DuckDB's local conversion against zoneinfo on every timestamp
    for lst in acts.values():
        for e in lst:
            t = (EPOCH + dt.timedelta(microseconds=e["ts"])).astimezone(zone)
            assert (t.date(), t.hour) == (e["day"], e["hour"]), ("tz mismatch", e)
    for lst in atts.values():
        for a in lst:
            t = (EPOCH + dt.timedelta(microseconds=a["ts"])).astimezone(zone)
            assert t.date() == a["day"], ("tz mismatch", a)
    for en in enrollments:
        if en["enrolled_us"] is not None:
            t = (EPOCH + dt.timedelta(microseconds=en["enrolled_us"])).astimezone(zone)
            assert t.date() == en["enrolled_day"], ("tz mismatch", en)

    # Each enrollment's history: from the earlier of the course's start and
    # the day it enrolled (either may be unknown); work before the course's
    # start counts.
    for en in enrollments:
        key = (en["student_id"], en["course_id"])
        known = [d for d in (courses.get(key[1], {}).get("start_date"), en["enrolled_day"]) if d is not None]
        en["history_start"] = min(known) if known else None
        if en["history_start"] is not None:
            for table, name in ((acts, "events"), (atts, "attempts")):
                kept = [x for x in table.get(key, []) if x["day"] >= en["history_start"]]
                EDGE[f"{name}_before_the_history_start"] += len(table.get(key, [])) - len(kept)
                table[key] = kept
    return courses, enrollments, assessments, acts, atts


# ----------------------------------------------------------------------------
# Per-row computation
# ----------------------------------------------------------------------------
def before(lst, end_us):
    """Items of a ts-sorted list with ts < end_us."""
    return lst[:bisect.bisect_left([x["ts"] for x in lst], end_us)]


def in_week(lst, w):
    return [x for x in lst if w.start_us <= x["ts"] < w.end_us]


def percent_rank(values):
    """100 × PERCENT_RANK() for each value (ties share the lowest rank)."""
    n = len(values)
    s = sorted(values)
    return [0.0 if n == 1 else 100.0 * bisect.bisect_left(s, v) / (n - 1) for v in values]


def grade(score):
    if score is None:
        return None
    for band, lo in (("A", 90), ("B", 80), ("C", 70), ("D", 60)):
        if score >= lo:
            return band
    return "F"


def count_sessions(week_events):
    ids = {e["session"] for e in week_events if e["session"] is not None}
    anon = sorted(e["ts"] for e in week_events if e["session"] is None)
    inferred = 0
    prev = None
    for ts in anon:
        if prev is None or ts - prev > SESSION_GAP_US:
            inferred += 1
        prev = ts
    return len(ids) + inferred


def streaks(days, last_day):
    ds = sorted(set(days))
    longest = run = 0
    prev = None
    for d in ds:
        run = run + 1 if prev is not None and (d - prev).days == 1 else 1
        longest = max(longest, run)
        prev = d
    cur = 0
    s = set(ds)
    d = last_day
    while d in s:
        cur += 1
        d -= dt.timedelta(days=1)
    return cur, longest


TREND_DIFFS = []  # rows where float and exact trend comparisons disagree
ECD_DIFFS = []    # rows where float and exact ceil disagree


def trend(key, cur_interactions, w, en, course, acts, zone):
    prev = []
    for k in (1, 2, 3):
        pw = Week(w.start_date - dt.timedelta(days=7 * k), zone)
        if en["enrolled_us"] is not None and not en["enrolled_us"] < pw.end_us:
            continue
        sd = course.get("start_date")
        if sd is not None and not sd <= pw.last_day:
            continue
        prev.append(sum(e["inter"] or 0 for e in in_week(acts, pw)))
    if not prev:
        return "stable"
    total, n = sum(prev), len(prev)
    if total == 0:
        return "increasing" if cur_interactions > 0 else "stable"
    mean = Fraction(total, n)
    exact = ("increasing" if cur_interactions > Fraction(6, 5) * mean else
             "decreasing" if cur_interactions < Fraction(4, 5) * mean else "stable")
    fmean = total / n
    flt = ("increasing" if cur_interactions > 1.2 * fmean else
           "decreasing" if cur_interactions < 0.8 * fmean else "stable")
    if flt != exact:
        TREND_DIFFS.append((key, w.start_date, cur_interactions, prev, exact, flt))
    return exact


def readiness(attempts):
    if not attempts:
        return None
    last5 = sorted(attempts, key=lambda a: (a["ts"], a["id"]), reverse=True)[:5]
    xs = [Fraction(a["score"]) for a in last5]
    m = sum(xs) / len(xs)
    var = sum((x - m) ** 2 for x in xs) / len(xs)
    if m >= 85 and var <= 100:
        return "advanced"
    if m >= 70 and var <= 400:
        return "proficient"
    if m >= 50:
        return "developing"
    return "beginner"


def compute_row(en, w, courses, assessments, acts_all, atts_all, zone):
    sid, cid = en["student_id"], en["course_id"]
    course = courses.get(cid, {})
    acts_hist = acts_all.get((sid, cid), [])
    A = before(acts_hist, w.end_us)                   # Activity of the row
    T = before(atts_all.get((sid, cid), []), w.end_us)  # Attempts of the row
    WE = [e for e in A if e["ts"] >= w.start_us]      # the week's events
    sd = course.get("start_date")
    if sd is not None and any(x["day"] < sd for x in A + T):
        EDGE["rows_counting_work_before_the_course_start"] += 1
    if cid not in courses and A:
        EDGE["rows_of_unknown_courses_with_activity"] += 1
    WT = [a for a in T if a["ts"] >= w.start_us]      # the week's attempts

    row = dict(student_id=sid, course_id=cid, period_start=w.start_date, period_end=w.end_date)
    row["active_days"] = len({e["day"] for e in WE})
    row["events"] = len(WE)
    row["interactions"] = sum(e["inter"] or 0 for e in WE)
    row["minutes"] = sum((e["dur"] or 0.0) for e in WE) / 60.0
    row["interactions_to_date"] = sum(e["inter"] or 0 for e in A)
    row["attempts"] = len(WT)

    best = {}
    for a in T:
        best[a["assessment"]] = max(best.get(a["assessment"], -math.inf), a["score"])
    row["score_to_date"] = sum(best.values()) / len(best) if best else None

    due = {aid for aid, asm in assessments.items()
           if asm["course_id"] == cid and asm["due_us"] is not None and asm["due_us"] < w.end_us}
    row["assessments_due_to_date"] = len(due)
    attempted = {a["assessment"] for a in T}
    row["submitted_to_date"] = len(due & attempted)
    late = 0
    for a in T:
        asm = assessments.get(a["assessment"])
        if asm and asm["due_us"] is not None and a["ts"] > asm["due_us"]:
            late += 1
        if asm and asm.get("date_only") and (a["ts"] > asm["utc_midnight_us"]) != (a["ts"] > asm["due_us"]):
            EDGE["attempts_on_time_only_by_the_local_day"] += 1
        if asm is None:
            EDGE["attempts_of_unknown_assessments"] += 1
    row["late_to_date"] = late

    if A:
        row["days_since_last_activity"] = (w.last_day - A[-1]["day"]).days
    elif en["enrolled_day"] is not None:
        row["days_since_last_activity"] = (w.last_day - en["enrolled_day"]).days
    elif course.get("start_date") is not None:
        row["days_since_last_activity"] = (w.last_day - course["start_date"]).days
    else:
        row["days_since_last_activity"] = None

    days = [e["day"] for e in A]
    row["current_streak_days"], row["longest_streak_days"] = streaks(days, w.last_day)

    row["engagement_trend"] = trend((sid, cid), row["interactions"], w, en, course, acts_hist, zone)
    row["grade_band"] = grade(row["score_to_date"])

    for c in CATEGORIES:
        row[f"minutes_{c}"] = sum((e["dur"] or 0.0) for e in WE if e["cat"] == c) / 60.0
    counts = {p: 0 for p in PARTS}
    for e in WE:
        counts[part_of_day(e["hour"])] += 1
    for p in PARTS:
        row[f"events_{p}"] = counts[p]
    row["peak_period"] = None if not WE else max(PARTS, key=lambda p: (counts[p], -PARTS.index(p)))
    row["sessions"] = count_sessions(WE)

    row["active_days_to_date"] = len(set(days))
    lessons = len({e["lesson"] for e in A if e["type"] == "lesson_complete" and e["lesson"] is not None})
    row["lessons_completed_to_date"] = lessons
    total = course.get("total_lessons")
    row["completion_rate"] = None if not total else min(lessons / total, 1.0)

    known = [d for d in (course.get("start_date"), en["enrolled_day"]) if d is not None]
    start_day = max(known) if known else None
    if start_day is None or start_day > w.last_day:
        row["learning_pace"] = row["consistency"] = None
        span = None
    else:
        span = (w.last_day - start_day).days + 1
        row["learning_pace"] = lessons / (span / 7)
        row["consistency"] = min(1.0, row["active_days_to_date"] / span)

    if T:
        num = den = 0.0
        for a in T:
            wgt = 0.5 ** (((w.end_us - a["ts"]) / US_PER_DAY) / 14.0)
            num += a["score"] * wgt
            den += wgt
        row["mastery"] = num / den
    else:
        row["mastery"] = None
    row["readiness_level"] = readiness(T)

    per_skill = defaultdict(dict)
    for a in T:
        if a["skill"] is not None:
            b = per_skill[a["skill"]]
            b[a["assessment"]] = max(b.get(a["assessment"], -math.inf), a["score"])
    row["skill_levels"] = [
        dict(skill=s, score=sum(per_skill[s].values()) / len(per_skill[s]), assessments=len(per_skill[s]))
        for s in sorted(per_skill)] or None

    pace = row["learning_pace"]
    course_assessments = {aid for aid, asm in assessments.items() if asm["course_id"] == cid}
    if not total:
        # a course without lessons: the pace on its assessments
        done = len(course_assessments & attempted)
        if not course_assessments or span is None or done == 0:
            row["estimated_completion_date"] = None
        elif done >= len(course_assessments):
            row["estimated_completion_date"] = w.last_day
        else:
            n_days = -((-(len(course_assessments) - done) * span) // done)
            row["estimated_completion_date"] = w.last_day + dt.timedelta(days=n_days)
    elif not pace:
        row["estimated_completion_date"] = None
    else:
        remaining = total - lessons
        if remaining <= 0:
            row["estimated_completion_date"] = w.last_day
        else:
            # 7 × remaining / pace = remaining × span / lessons, exactly
            n_days = -((-remaining * span) // lessons)
            f_days = math.ceil(7 * remaining / pace)
            if f_days != n_days:
                ECD_DIFFS.append(((sid, cid), w.start_date, remaining, pace, n_days, f_days))
            row["estimated_completion_date"] = w.last_day + dt.timedelta(days=n_days)
    return row


def active(en, w, courses):
    # an unknown course is taken as running (no dates)
    c = courses.get(en["course_id"], {})
    if en["withdrawn_us"] is not None:
        not_withdrawn = en["withdrawn_us"] >= w.start_us
    else:
        # (only without --landing: a withdrawal of unknown date is from the start)
        not_withdrawn = en["status"] != "withdrawn"
    return ((en["enrolled_us"] is None or en["enrolled_us"] < w.end_us)
            and not_withdrawn
            and (c.get("start_date") is None or c["start_date"] <= w.last_day)
            and (c.get("end_date") is None or c["end_date"] >= w.start_date))


def compute_week(w, data, zone):
    courses, enrollments, assessments, acts, atts = data
    rows = [compute_row(en, w, courses, assessments, acts, atts, zone)
            for en in enrollments if active(en, w, courses)]
    by_course = defaultdict(list)
    for r in rows:
        by_course[r["course_id"]].append(r)
    for group in by_course.values():
        for r, p in zip(group, percent_rank([r["interactions_to_date"] for r in group])):
            r["engagement_percentile"] = p
        scored = [r for r in group if r["score_to_date"] is not None]
        mean = sum(r["score_to_date"] for r in scored) / len(scored) if scored else None
        for r, p in zip(scored, percent_rank([r["score_to_date"] for r in scored])):
            r["score_percentile"] = p
            r["vs_class_average"] = r["score_to_date"] - mean
        for r in group:
            r.setdefault("score_percentile", None)
            r.setdefault("vs_class_average", None)
    return rows


SCHEMA = pa.schema([
    ("student_id", pa.string()), ("course_id", pa.string()),
    ("period_start", pa.date32()), ("period_end", pa.date32()),
    ("active_days", pa.int64()), ("events", pa.int64()), ("interactions", pa.int64()),
    ("minutes", pa.float64()), ("interactions_to_date", pa.int64()), ("attempts", pa.int64()),
    ("score_to_date", pa.float64()), ("assessments_due_to_date", pa.int64()),
    ("submitted_to_date", pa.int64()), ("late_to_date", pa.int64()),
    ("days_since_last_activity", pa.int64()), ("current_streak_days", pa.int64()),
    ("longest_streak_days", pa.int64()), ("engagement_percentile", pa.float64()),
    ("score_percentile", pa.float64()), ("vs_class_average", pa.float64()),
    ("engagement_trend", pa.string()), ("grade_band", pa.string()),
    ("minutes_learning", pa.float64()), ("minutes_assessment", pa.float64()),
    ("minutes_social", pa.float64()), ("minutes_system", pa.float64()),
    ("events_morning", pa.int64()), ("events_afternoon", pa.int64()),
    ("events_evening", pa.int64()), ("events_night", pa.int64()),
    ("peak_period", pa.string()), ("sessions", pa.int64()),
    ("active_days_to_date", pa.int64()), ("lessons_completed_to_date", pa.int64()),
    ("completion_rate", pa.float64()), ("learning_pace", pa.float64()),
    ("consistency", pa.float64()), ("mastery", pa.float64()),
    ("readiness_level", pa.string()),
    ("skill_levels", pa.list_(pa.struct([("skill", pa.string()), ("score", pa.float64()),
                                         ("assessments", pa.int64())]))),
    ("estimated_completion_date", pa.date32()),
])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lake")
    ap.add_argument("timezone")
    ap.add_argument("weeks", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--landing", help="read the reference kinds' dates from these raw files (§3)")
    ap.add_argument("--ingest-time", help="when the ingest began (RFC 3339); with --landing")
    ap.add_argument("--require-edge-cases", action="store_true",
                    help="fail unless the input exercises every edge case listed above")
    ap.add_argument("--show", action="append", default=[],
                    help="print the rows of STUDENT_ID[:COURSE_ID] (repeatable)")
    args = ap.parse_args()
    zone = ZoneInfo(args.timezone)
    lake = os.path.abspath(args.lake).replace("'", "''")

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    self_check_time(con)
    if args.landing and not args.ingest_time:
        ap.error("--landing needs --ingest-time")
    ingest_us = parse_instant(args.ingest_time, UTC) if args.ingest_time else None
    data = load(con, lake, args.timezone, args.landing, ingest_us)

    rows = []
    for ws in args.weeks:
        w = Week(dt.date.fromisoformat(ws), zone)
        wr = compute_week(w, data, zone)
        print(f"week {w.start_date}: {len(wr)} rows, UTC [{EPOCH + dt.timedelta(microseconds=w.start_us)}, "
              f"{EPOCH + dt.timedelta(microseconds=w.end_us)}) = {(w.end_us - w.start_us) / 3.6e9:g} h",
              file=sys.stderr)
        rows.extend(wr)
    rows.sort(key=lambda r: (r["period_start"], r["course_id"], r["student_id"]))
    if not rows:
        raise SystemExit("the reference has no rows for these weeks: nothing would be compared")
    if ingest_us is not None and any(local_midnight_us(r["period_end"], zone) > ingest_us for r in rows):
        raise SystemExit("a week ends after the ingest: withdrawals without a date would be ambiguous")
    print("edge cases: " + json.dumps(dict(sorted(EDGE.items()))), file=sys.stderr)
    if args.require_edge_cases:
        wanted = ["enrollments_of_unknown_courses", "rows_of_unknown_courses_with_activity",
                  "rows_counting_work_before_the_course_start", "events_before_the_history_start",
                  "withdrawn_without_date", "attempts_on_time_only_by_the_local_day",
                  "date_only_enrolled_at", "attempts_of_unknown_assessments"]
        missing = [k for k in wanted if not EDGE.get(k)]
        if missing:
            raise SystemExit(f"the input does not exercise: {', '.join(missing)}")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, args.out)
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    if TREND_DIFFS:
        print(f"note: {len(TREND_DIFFS)} engagement_trend values differ between exact and float "
              f"comparison (exact used): {TREND_DIFFS[:5]}", file=sys.stderr)
    if ECD_DIFFS:
        print(f"note: {len(ECD_DIFFS)} estimated_completion_date values differ between exact and float "
              f"ceil (exact used): {ECD_DIFFS[:5]}", file=sys.stderr)
    over = sum(1 for r in rows if r["consistency"] is not None and r["consistency"] > 1)
    if over:
        print(f"note: {over} rows have consistency > 1 (not capped)", file=sys.stderr)
    for spec in args.show:
        sid, _, cid = spec.partition(":")
        for r in rows:
            if r["student_id"] == sid and (not cid or r["course_id"] == cid):
                print({k: (str(v) if isinstance(v, dt.date) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
