-- student_day: one row per (student, course, local day) with activity of an
-- enrollment, from the enrollment's history start on (the earlier of the
-- course's start_date and the day of enrolled_at: work done before the
-- course starts counts). The daily building block of student_week;
-- `learnlake analyze` runs it once over the history window and keeps the
-- result as the table `student_day`.
--
-- Parameters (bound by the engine, see docs/ANALYTICS.md):
--   $zone                 institution time zone (IANA name)
--   $history_from         first UTC date partition to read (DATE)
--   $history_to           last UTC date partition to read (DATE)
--   $week_end             nothing at or after this instant is read (TIMESTAMP)
--   $session_gap_seconds  gap that ends an inferred session

WITH events AS (
    SELECT
        student_id,
        course_id,
        session_id,
        CASE WHEN activity_type = 'lesson_complete' THEN lesson_id END AS lesson_completed,
        "timestamp",
        local_date("timestamp", $zone) AS day,
        local_hour("timestamp", $zone) AS hour,
        activity_category,
        interaction_count,
        COALESCE(duration_seconds, 0) AS seconds
    FROM activity
    WHERE event_date BETWEEN $history_from AND $history_to
      AND "timestamp" < $week_end
      AND course_id IS NOT NULL
),

-- Each enrollment's history start (NULL: no bound). Activity of a student
-- in a course they are not enrolled in is nobody's row.
history AS (
    SELECT
        e.student_id,
        e.course_id,
        LEAST(c.start_date, local_date(e.enrolled_at, $zone)) AS history_start
    FROM enrollments e
    LEFT JOIN courses c ON c.course_id = e.course_id
),

-- The events of one named session on one day, or (session_id NULL) a day's
-- events without a session, with lesson completions apart (one piece per
-- lesson completed); only days from the enrollment's history start on count.
pieces AS (
    SELECT p.*
    FROM (
        SELECT
            student_id,
            course_id,
            day,
            session_id,
            lesson_completed,
            COUNT(*)                                                         AS events,
            SUM(interaction_count)                                           AS interactions,
            SUM(seconds)                                                     AS seconds,
            SUM(CASE WHEN activity_category = 'learning'   THEN seconds ELSE 0 END) AS seconds_learning,
            SUM(CASE WHEN activity_category = 'assessment' THEN seconds ELSE 0 END) AS seconds_assessment,
            SUM(CASE WHEN activity_category = 'social'     THEN seconds ELSE 0 END) AS seconds_social,
            SUM(CASE WHEN activity_category = 'system'     THEN seconds ELSE 0 END) AS seconds_system,
            SUM(CASE WHEN hour BETWEEN 6 AND 11  THEN 1 ELSE 0 END)          AS events_morning,
            SUM(CASE WHEN hour BETWEEN 12 AND 17 THEN 1 ELSE 0 END)          AS events_afternoon,
            SUM(CASE WHEN hour >= 18             THEN 1 ELSE 0 END)          AS events_evening,
            SUM(CASE WHEN hour < 6               THEN 1 ELSE 0 END)          AS events_night
        FROM events
        GROUP BY student_id, course_id, day, session_id, lesson_completed
    ) p
    JOIN history h ON h.student_id = p.student_id AND h.course_id = p.course_id
    WHERE h.history_start IS NULL OR p.day >= h.history_start
),

-- A named session counts once in each week it has events: on its first day
-- of that week (its previous day, if any, lies before the week's Monday).
-- A lesson counts as completed on the first day it was.
-- (Each window spans a student's course, ordered by session or lesson: a
-- window per session would be one per row, which DataFusion runs slowly.)
firsts AS (
    SELECT
        *,
        CASE WHEN session_id IS NOT NULL
                  AND (previous_session IS NULL
                       OR previous_session <> session_id
                       OR previous_session_day < CAST(date_trunc('week', day) AS DATE))
             THEN 1 ELSE 0 END AS sessions_starting,
        CASE WHEN lesson_completed IS NOT NULL
                  AND (previous_lesson IS NULL OR previous_lesson <> lesson_completed)
             THEN 1 ELSE 0 END AS lessons_first_completed
    FROM (
        SELECT
            pieces.*,
            LAG(session_id) OVER by_session     AS previous_session,
            LAG(day) OVER by_session            AS previous_session_day,
            LAG(lesson_completed) OVER by_lesson AS previous_lesson
        FROM pieces
        WINDOW by_session AS (PARTITION BY student_id, course_id ORDER BY session_id, day),
               by_lesson  AS (PARTITION BY student_id, course_id ORDER BY lesson_completed, day)
    ) ordered
),

-- Inferred sessions, for events without a session_id: ordered by time, one
-- starts at an event with no earlier event in its week (from the history
-- start on) and after every gap over $session_gap_seconds.
inferred AS (
    SELECT student_id, course_id, day, COUNT(*) AS sessions_starting
    FROM (
        SELECT
            e.student_id,
            e.course_id,
            e.day,
            e."timestamp",
            LAG(e."timestamp") OVER (PARTITION BY e.student_id, e.course_id ORDER BY e."timestamp") AS previous
        FROM events e
        JOIN history h ON h.student_id = e.student_id AND h.course_id = e.course_id
        WHERE e.session_id IS NULL
          AND (h.history_start IS NULL OR e.day >= h.history_start)
    ) ordered
    WHERE previous IS NULL
       OR CAST("timestamp" AS BIGINT) - CAST(previous AS BIGINT) > $session_gap_seconds * 1000000
       OR local_date(previous, $zone) < CAST(date_trunc('week', day) AS DATE)
    GROUP BY student_id, course_id, day
),

daily AS (
    SELECT
        student_id,
        course_id,
        day,
        SUM(events)                   AS events,
        SUM(interactions)             AS interactions,
        SUM(seconds) / 60.0           AS minutes,
        SUM(seconds_learning) / 60.0   AS minutes_learning,
        SUM(seconds_assessment) / 60.0 AS minutes_assessment,
        SUM(seconds_social) / 60.0     AS minutes_social,
        SUM(seconds_system) / 60.0     AS minutes_system,
        SUM(events_morning)           AS events_morning,
        SUM(events_afternoon)         AS events_afternoon,
        SUM(events_evening)           AS events_evening,
        SUM(events_night)             AS events_night,
        SUM(sessions_starting)        AS named_sessions,
        SUM(lessons_first_completed)  AS lessons_first_completed
    FROM firsts
    GROUP BY student_id, course_id, day
)

SELECT
    d.student_id,
    d.course_id,
    d.day,
    d.events,
    d.interactions,
    d.minutes,
    d.minutes_learning,
    d.minutes_assessment,
    d.minutes_social,
    d.minutes_system,
    d.events_morning,
    d.events_afternoon,
    d.events_evening,
    d.events_night,
    -- sessions that start on this day for the week's count (a week's sum is
    -- its sessions)
    d.named_sessions + COALESCE(i.sessions_starting, 0) AS sessions,
    -- lessons first completed on this day (their count up to a day is the
    -- lessons completed by then)
    d.lessons_first_completed,
    -- Gaps and islands: consecutive active days share a run_key. Dropping
    -- a student's last days (a week's end) leaves the keys of the other
    -- days' runs intact.
    CAST(CAST(d.day AS INT) AS BIGINT)
      - ROW_NUMBER() OVER (PARTITION BY d.student_id, d.course_id ORDER BY d.day) AS run_key
FROM daily d
LEFT JOIN inferred i
       ON i.student_id = d.student_id AND i.course_id = d.course_id AND i.day = d.day
