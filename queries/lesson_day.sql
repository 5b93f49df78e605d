-- lesson_day: one row per (student, course, lesson, local day) on which the
-- student completed the lesson, from the course's start_date on. Like
-- student_day, `learnlake analyze` runs it once over the history window and
-- keeps the result as the table `lesson_day`; student_week counts distinct
-- lessons from it.
--
-- Parameters (bound by the engine, see docs/ANALYTICS.md):
--   $zone          institution time zone (IANA name)
--   $history_from  first UTC date partition to read (DATE)
--   $history_to    last UTC date partition to read (DATE)
--   $week_end      nothing at or after this instant is read (TIMESTAMP)

SELECT l.*
FROM (
    SELECT
        student_id,
        course_id,
        lesson_id,
        local_date("timestamp", $zone) AS day
    FROM activity
    WHERE event_date BETWEEN $history_from AND $history_to
      AND "timestamp" < $week_end
      AND activity_type = 'lesson_complete'
      AND lesson_id IS NOT NULL
      AND course_id IS NOT NULL
    GROUP BY student_id, course_id, lesson_id, local_date("timestamp", $zone)
) l
LEFT JOIN courses c ON c.course_id = l.course_id
-- only days from the course's start on count
WHERE c.start_date IS NULL OR l.day >= c.start_date
