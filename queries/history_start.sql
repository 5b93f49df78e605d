-- history_start: the first local day of the history window for the weeks
-- $from..$to. Each enrollment counts activity and attempts from its own
-- history start, the earlier of its course's start_date and the day of its
-- enrolled_at (docs/ANALYTICS.md, "History"); the window is the earliest of
-- those over the enrollments that can be active in these weeks, so
-- analysis reads activity and attempts partitions from there on only.
-- NULL (no such enrollment) lets analysis start at the first week; an
-- enrollment with neither date has no bound (1970-01-01).
--
-- Parameters: $zone (IANA name), $from (the first week's Monday), $to (the
-- last week's last day).

SELECT MIN(COALESCE(LEAST(c.start_date, local_date(e.enrolled_at, $zone)), DATE '1970-01-01')) AS history_start
FROM enrollments e
LEFT JOIN courses c ON c.course_id = e.course_id
WHERE (c.start_date IS NULL OR c.start_date <= $to)
  AND (c.end_date IS NULL OR c.end_date >= $from)
  AND (e.enrolled_at IS NULL OR local_date(e.enrolled_at, $zone) <= $to)
  AND (local_date(e.withdrawn_at, $zone) >= $from
       OR (e.withdrawn_at IS NULL AND e.status IS DISTINCT FROM 'withdrawn'))
