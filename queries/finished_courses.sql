-- finished_courses: the course presentations the risk model can learn from
-- (docs/PREDICTIONS.md): courses with enrollments that have a final_result
-- (pass and distinction are successes; fail and withdrawn are not), with
-- their dates, oldest first. `learnlake train` holds out the newest ones.
-- A course missing from `courses` or without a start_date has no course
-- weeks and is listed with a null start_date (train reports and skips it).

SELECT
    e.course_id,
    MIN(c.start_date) AS start_date,
    MIN(c.end_date)   AS end_date,
    COUNT(*)          AS enrollments,
    SUM(CASE WHEN LOWER(e.final_result) IN ('pass', 'distinction') THEN 1 ELSE 0 END) AS successes
FROM enrollments e
LEFT JOIN courses c ON c.course_id = e.course_id
WHERE LOWER(e.final_result) IN ('pass', 'distinction', 'fail', 'withdrawn')
GROUP BY e.course_id
ORDER BY start_date NULLS LAST, course_id
