-- The administrator report's course figures: course_week for the report
-- week and the seven weeks before it (for the trend charts), with each
-- course's title, instructor and the risk model that scored the week.
-- Columns are described in docs/REPORTS.md.
--
-- Reads: course_week, student_week (the report week only), courses.
-- Parameters: $period_start (the report week's Monday), $first_start (the
-- Monday seven weeks earlier).

WITH model AS (
    SELECT course_id, MAX(model_version) AS model_version
    FROM student_week
    WHERE period_start = $period_start
    GROUP BY course_id
)

SELECT
    cw.course_id,
    COALESCE(c.title, cw.course_id) AS title,
    c.instructor_email,
    cw.period_start,
    cw.enrolled,
    cw.active,
    cw.mean_minutes,
    cw.mean_score_to_date,
    cw.completion_rate,
    cw.grade_a,
    cw.grade_b,
    cw.grade_c,
    cw.grade_d,
    cw.grade_f,
    cw.grade_none,
    cw.risk_high,
    cw.risk_medium,
    cw.risk_low,
    m.model_version
FROM course_week cw
LEFT JOIN courses c ON c.course_id = cw.course_id
LEFT JOIN model m ON m.course_id = cw.course_id AND cw.period_start = $period_start
WHERE cw.period_start >= $first_start AND cw.period_start <= $period_start
ORDER BY cw.course_id, cw.period_start
