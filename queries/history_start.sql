-- The first day of the history window for the weeks $from..$to: the earliest
-- start_date of the courses running in those weeks (1970-01-01 when one of
-- them has none). Analysis reads activity and attempts from here on.
SELECT MIN(COALESCE(start_date, DATE '1970-01-01'))
FROM courses
WHERE (start_date IS NULL OR start_date <= $to)
  AND (end_date IS NULL OR end_date >= $from)
