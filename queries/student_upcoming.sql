-- Assessments due in the days after the report week that a student of the
-- course has not submitted yet: the "next steps" of the performance report
-- and the deadline reminders.
--
-- Reads: assessments, student_week (the report week), attempts.
-- Parameters: $period_start, $period_end (the week's end, UTC),
-- $horizon_end (the end of the look-ahead, UTC).

SELECT
    sw.student_id,
    x.course_id,
    x.assessment_id,
    COALESCE(x.title, x.assessment_id) AS title,
    x.assessment_type,
    x.due_at
FROM assessments x
JOIN student_week sw
    ON sw.course_id = x.course_id
   AND sw.period_start = $period_start
WHERE x.due_at >= $period_end
  AND x.due_at < $horizon_end
  AND NOT EXISTS (
      SELECT 1 FROM attempts t
      WHERE t.student_id = sw.student_id
        AND t.assessment_id = x.assessment_id
        AND NOT t.is_practice
        AND t.submitted_at < $period_end
  )
ORDER BY sw.student_id, x.due_at, x.assessment_id
