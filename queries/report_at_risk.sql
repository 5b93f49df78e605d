-- The administrator report's at-risk lists: the report week's students at
-- high or medium risk, with last week's level (to show who rose), their
-- reasons (risk_indicators) and the features that lowered their
-- probability most (risk_factors). Most at risk first within each course.
--
-- Reads: student_week (the report week and the week before), students.
-- Parameters: $period_start, $previous_start (the Monday before).

SELECT
    sw.course_id,
    sw.student_id,
    COALESCE(s.name, sw.student_id) AS name,
    sw.risk_level,
    p.risk_level AS previous_level,
    sw.success_probability,
    sw.risk_indicators,
    sw.risk_factors
FROM student_week sw
LEFT JOIN student_week p
    ON p.period_start = $previous_start
   AND p.student_id = sw.student_id
   AND p.course_id = sw.course_id
LEFT JOIN students s ON s.student_id = sw.student_id
WHERE sw.period_start = $period_start
  AND sw.risk_level IN ('high', 'medium')
ORDER BY sw.course_id,
         CASE sw.risk_level WHEN 'high' THEN 0 ELSE 1 END,
         sw.success_probability,
         sw.student_id
