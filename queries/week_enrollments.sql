-- week_enrollments: the enrollments active during the week, with their
-- start day (docs/ANALYTICS.md, "Which rows"). `learnlake analyze` runs it
-- before student_week for each week and keeps the result as the table
-- `week_enrollments`, which student_week reads twice.
--
-- An enrollment of a course missing from `courses` is kept: its course is
-- taken as running (no start_date, end_date or total_lessons), so the
-- student still gets rows while the reference data is fixed; the list of
-- such enrollments is queries/unknown_references.sql.
--
-- Parameters (bound by the engine):
--   $zone                   institution time zone (IANA name)
--   $period_start           the week's Monday, local date (DATE)
--   $week_start, $week_end  the week's bounds as UTC instants (TIMESTAMP)

SELECT
    e.student_id,
    e.course_id,
    c.start_date,
    c.end_date,
    c.total_lessons,
    local_date(e.enrolled_at, $zone) AS enrolled_local,
    COALESCE(local_date(e.enrolled_at, $zone), c.start_date) AS enrolled_day,
    CASE
        WHEN e.enrolled_at IS NULL THEN c.start_date
        WHEN c.start_date IS NULL THEN local_date(e.enrolled_at, $zone)
        ELSE GREATEST(c.start_date, local_date(e.enrolled_at, $zone))
    END AS start_day
FROM enrollments e
LEFT JOIN courses c ON c.course_id = e.course_id
WHERE (e.enrolled_at IS NULL OR e.enrolled_at < $week_end)
  -- never active after the withdrawal; a withdrawal without a date (ingest
  -- normally fills it in) is taken as being from the start
  AND (e.withdrawn_at >= $week_start
       OR (e.withdrawn_at IS NULL AND e.status IS DISTINCT FROM 'withdrawn'))
  AND (c.start_date IS NULL OR c.start_date <= $period_start + INTERVAL '6 days')
  AND (c.end_date IS NULL OR c.end_date >= $period_start)
