-- counted_attempts: the assessment attempts that count (is_practice = false,
-- of an enrollment, submitted from the enrollment's history start on: the
-- earlier of the course's start_date and the day of enrolled_at) in the
-- history window, with their local day. An attempt of an assessment missing
-- from `assessments` counts too (it is never due, so never late; listed by
-- queries/unknown_references.sql). `learnlake analyze` runs it once and keeps the result as
-- the table `counted_attempts`, which every week of student_week then reads
-- instead of the attempts partitions.
--
-- Parameters (bound by the engine, see docs/ANALYTICS.md):
--   $zone          institution time zone (IANA name)
--   $history_from  first UTC date partition to read (DATE)
--   $history_to    last UTC date partition to read (DATE)
--   $week_end      nothing at or after this instant is read (TIMESTAMP)

SELECT
    t.attempt_id,
    t.student_id,
    t.course_id,
    t.assessment_id,
    t.score,
    t.submitted_at,
    t.skill,
    local_date(t.submitted_at, $zone) AS day
FROM attempts t
JOIN enrollments e ON e.student_id = t.student_id AND e.course_id = t.course_id
LEFT JOIN courses c ON c.course_id = t.course_id
WHERE t.submitted_date BETWEEN $history_from AND $history_to
  AND t.submitted_at < $week_end
  AND NOT t.is_practice
  AND (LEAST(c.start_date, local_date(e.enrolled_at, $zone)) IS NULL
       OR local_date(t.submitted_at, $zone) >= LEAST(c.start_date, local_date(e.enrolled_at, $zone)))
