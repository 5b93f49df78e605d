-- training_rows: the student_week rows of finished enrollments, with their
-- outcome and course week, for `learnlake train` (docs/PREDICTIONS.md).
-- The features are student_week's feature_* columns, computed from that
-- week's row and earlier weeks only; final_result is the label and nothing
-- else of the enrollment's future (status, withdrawn_at) is read.
-- course_week 1 is the week holding the course's start_date.

SELECT
    sw.course_id,
    sw.student_id,
    sw.period_start,
    (CAST(CAST(sw.period_start AS INT) AS BIGINT)
       - (CAST(CAST(c.start_date AS INT) AS BIGINT)
          - (((CAST(CAST(c.start_date AS INT) AS BIGINT) % 7) + 7 + 3) % 7))) / 7 + 1 AS course_week,
    LOWER(e.final_result) IN ('pass', 'distinction') AS success,
    sw.feature_score,
    sw.feature_has_score,
    sw.feature_submitted_ratio,
    sw.feature_has_due,
    sw.feature_missed_assessments,
    sw.feature_days_inactive,
    sw.feature_engagement_rank,
    sw.feature_late_submissions,
    sw.feature_never_started,
    sw.feature_interactions_vs_course,
    sw.feature_week_vs_course,
    sw.feature_recent_vs_course,
    sw.feature_trend,
    sw.feature_active_days_ratio,
    sw.feature_course_elapsed,
    sw.feature_weeks_enrolled,
    sw.feature_score_vs_course
FROM student_week sw
JOIN enrollments e ON e.student_id = sw.student_id AND e.course_id = sw.course_id
JOIN courses c     ON c.course_id = sw.course_id
WHERE LOWER(e.final_result) IN ('pass', 'distinction', 'fail', 'withdrawn')
  AND c.start_date IS NOT NULL
ORDER BY sw.course_id, sw.period_start, sw.student_id
