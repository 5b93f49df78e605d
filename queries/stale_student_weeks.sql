-- stale_student_weeks: weeks of student_week written before the risk
-- model's features existed (their feature columns read as null), which
-- `learnlake train` computes again before it reads the features.

SELECT DISTINCT period_start
FROM student_week
WHERE feature_score IS NULL
ORDER BY period_start
