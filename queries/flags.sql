-- flags: the at-risk flags `learnlake flags` exports (PRODUCT §8),
-- oldest first. Parameters: $since (DATE: as_of_date on or after it),
-- $min_rank (1 every level, 2 medium and high, 3 high only), $changed_only
-- (BOOLEAN: only flags whose level differs from the week before).

SELECT
    flag_id,
    student_id,
    course_id,
    as_of_date,
    risk_level,
    previous_level,
    changed,
    success_probability,
    indicators,
    factors,
    model_version
FROM risk_flags
WHERE as_of_date >= $since
  AND CASE risk_level WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END >= $min_rank
  AND (changed OR NOT $changed_only)
ORDER BY as_of_date, course_id, student_id
