-- The assessments each student attempted before the report week's end, for
-- the performance report's "assessments with trend": best non-practice
-- score, attempts, first submission, and whether any attempt was late.
--
-- Reads: attempts, assessments.
-- Parameters: $period_end (the week's end, a UTC timestamp).

SELECT
    t.student_id,
    t.course_id,
    t.assessment_id,
    COALESCE(MAX(x.title), t.assessment_id) AS title,
    MAX(x.due_at)                           AS due_at,
    MAX(t.score)                            AS best_score,
    COUNT(*)                                AS attempts,
    MIN(t.submitted_at)                     AS first_submitted_at,
    BOOL_OR(x.due_at IS NOT NULL AND t.submitted_at > x.due_at) AS late
FROM attempts t
LEFT JOIN assessments x ON x.assessment_id = t.assessment_id
WHERE NOT t.is_practice
  AND t.submitted_at < $period_end
GROUP BY t.student_id, t.course_id, t.assessment_id
ORDER BY t.student_id, t.course_id, first_submitted_at, t.assessment_id
