-- student_day: one row per (student, course, local day) with activity.
-- The daily building block of student_week; `learnlake analyze` runs it once
-- over the history window and keeps the result as the table `student_day`.
--
-- Parameters (bound by the engine, see docs/ANALYTICS.md):
--   $zone          institution time zone (IANA name)
--   $history_from  first UTC date partition to read (DATE)
--   $history_to    last UTC date partition to read (DATE)
--   $week_end      nothing at or after this instant is read (TIMESTAMP)

WITH events AS (
    SELECT
        student_id,
        course_id,
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
daily AS (
    SELECT
        student_id,
        course_id,
        day,
        COUNT(*)                                                              AS events,
        SUM(interaction_count)                                                AS interactions,
        SUM(seconds) / 60.0                                                   AS minutes,
        SUM(CASE WHEN activity_category = 'learning'   THEN seconds ELSE 0 END) / 60.0 AS minutes_learning,
        SUM(CASE WHEN activity_category = 'assessment' THEN seconds ELSE 0 END) / 60.0 AS minutes_assessment,
        SUM(CASE WHEN activity_category = 'social'     THEN seconds ELSE 0 END) / 60.0 AS minutes_social,
        SUM(CASE WHEN activity_category = 'system'     THEN seconds ELSE 0 END) / 60.0 AS minutes_system,
        SUM(CASE WHEN hour BETWEEN 6 AND 11  THEN 1 ELSE 0 END)               AS events_morning,
        SUM(CASE WHEN hour BETWEEN 12 AND 17 THEN 1 ELSE 0 END)               AS events_afternoon,
        SUM(CASE WHEN hour >= 18             THEN 1 ELSE 0 END)               AS events_evening,
        SUM(CASE WHEN hour < 6               THEN 1 ELSE 0 END)               AS events_night
    FROM events
    GROUP BY student_id, course_id, day
)
SELECT
    daily.*,
    -- Gaps and islands: consecutive active days share a run_key. Dropping
    -- a student's first or last days (a week's end, a course start) leaves
    -- the keys of the other days' runs intact.
    CAST(CAST(day AS INT) AS BIGINT)
      - ROW_NUMBER() OVER (PARTITION BY student_id, course_id ORDER BY day) AS run_key
FROM daily
