-- counted_attempts: the assessment attempts that count (is_practice = false)
-- in the history window, with their local day. `learnlake analyze` runs it
-- once and keeps the result as the table `counted_attempts`, which every
-- week of student_week then reads instead of the attempts partitions.
--
-- Parameters (bound by the engine, see docs/ANALYTICS.md):
--   $zone          institution time zone (IANA name)
--   $history_from  first UTC date partition to read (DATE)
--   $history_to    last UTC date partition to read (DATE)
--   $week_end      nothing at or after this instant is read (TIMESTAMP)

SELECT
    attempt_id,
    student_id,
    course_id,
    assessment_id,
    score,
    submitted_at,
    skill,
    local_date(submitted_at, $zone) AS day
FROM attempts
WHERE submitted_date BETWEEN $history_from AND $history_to
  AND submitted_at < $week_end
  AND NOT is_practice
