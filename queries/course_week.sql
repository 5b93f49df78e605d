-- course_week: one row per course with student_week rows in the week.
-- Columns are defined in docs/ANALYTICS.md.
--
-- Reads: student_week (this week's and the previous week's partitions).
-- Parameters: $period_start (the week's Monday), $previous_start (the Monday before).

WITH
this_week AS (
    SELECT * FROM student_week WHERE period_start = $period_start
),

previous AS (
    SELECT
        course_id,
        SUM(CASE WHEN risk_level = 'high'   THEN 1 ELSE 0 END) AS risk_high,
        SUM(CASE WHEN risk_level = 'medium' THEN 1 ELSE 0 END) AS risk_medium,
        SUM(CASE WHEN risk_level = 'low'    THEN 1 ELSE 0 END) AS risk_low
    FROM student_week
    WHERE period_start = $previous_start
    GROUP BY course_id
),

now AS (
    SELECT
        course_id,
        COUNT(*)                                              AS enrolled,
        SUM(CASE WHEN events > 0 THEN 1 ELSE 0 END)           AS active,
        AVG(minutes)                                          AS mean_minutes,
        MEDIAN(minutes)                                       AS median_minutes,
        AVG(CAST(interactions AS DOUBLE))                     AS mean_interactions,
        MEDIAN(CAST(interactions AS DOUBLE))                  AS median_interactions,
        AVG(score_to_date)                                    AS mean_score_to_date,
        SUM(CASE WHEN grade_band = 'A' THEN 1 ELSE 0 END)     AS grade_a,
        SUM(CASE WHEN grade_band = 'B' THEN 1 ELSE 0 END)     AS grade_b,
        SUM(CASE WHEN grade_band = 'C' THEN 1 ELSE 0 END)     AS grade_c,
        SUM(CASE WHEN grade_band = 'D' THEN 1 ELSE 0 END)     AS grade_d,
        SUM(CASE WHEN grade_band = 'F' THEN 1 ELSE 0 END)     AS grade_f,
        SUM(CASE WHEN grade_band IS NULL THEN 1 ELSE 0 END)   AS grade_none,
        SUM(CASE WHEN risk_level = 'high'   THEN 1 ELSE 0 END) AS risk_high,
        SUM(CASE WHEN risk_level = 'medium' THEN 1 ELSE 0 END) AS risk_medium,
        SUM(CASE WHEN risk_level = 'low'    THEN 1 ELSE 0 END) AS risk_low,
        AVG(completion_rate)                                  AS completion_rate
    FROM this_week
    GROUP BY course_id
)

SELECT
    n.course_id,
    $period_start AS period_start,
    CAST($period_start + INTERVAL '7 days' AS DATE) AS period_end,
    n.enrolled,
    n.active,
    n.mean_minutes,
    n.median_minutes,
    n.mean_interactions,
    n.median_interactions,
    n.mean_score_to_date,
    n.grade_a,
    n.grade_b,
    n.grade_c,
    n.grade_d,
    n.grade_f,
    n.grade_none,
    n.risk_high,
    n.risk_medium,
    n.risk_low,
    n.risk_high   - p.risk_high   AS risk_high_change,
    n.risk_medium - p.risk_medium AS risk_medium_change,
    n.risk_low    - p.risk_low    AS risk_low_change,
    n.completion_rate
FROM now n
LEFT JOIN previous p ON p.course_id = n.course_id
ORDER BY n.course_id
