-- data_span: the first and the last instant of the lake's activity and
-- attempts. `learnlake analyze` without weeks analyzes every week between.

SELECT MIN(first_at) AS first_at, MAX(last_at) AS last_at
FROM (
    SELECT MIN("timestamp") AS first_at, MAX("timestamp") AS last_at FROM activity
    UNION ALL
    SELECT MIN(submitted_at) AS first_at, MAX(submitted_at) AS last_at FROM attempts
) bounds
