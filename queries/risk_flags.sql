-- risk_flags: the at-risk feed for other systems (PRODUCT §8,
-- docs/PREDICTIONS.md): one row per student_week row scored, partitioned
-- by as_of_date, the week's last local day (the flag uses data up to the
-- end of that day).
--
-- flag_id is deterministic from (student_id, course_id, as_of_date), so a
-- re-run of the week gives the same ids and a consumer acts on a flag once;
-- previous_level is the same enrollment's level the week before (null when
-- it had no row then), `changed` says whether the level differs from it.
--
-- Reads: student_week (this week's and the previous week's partitions).
-- Parameters: $period_start (the week's Monday), $previous_start (the Monday before).

WITH
this_week AS (
    SELECT * FROM student_week WHERE period_start = $period_start
),

previous AS (
    SELECT student_id, course_id, risk_level
    FROM student_week
    WHERE period_start = $previous_start
)

SELECT
    -- 128 bits of SHA-256 over the key; ids never hold the separator (0x1f)
    substr(encode(sha256(t.student_id || chr(31) || t.course_id || chr(31)
                         || CAST(CAST($period_start + INTERVAL '6 days' AS DATE) AS VARCHAR)), 'hex'), 1, 32) AS flag_id,
    t.student_id,
    t.course_id,
    CAST($period_start + INTERVAL '6 days' AS DATE) AS as_of_date,
    t.period_start,
    t.risk_level,
    p.risk_level AS previous_level,
    p.risk_level IS DISTINCT FROM t.risk_level AS changed,
    t.success_probability,
    t.risk_indicators AS indicators,
    t.risk_factors AS factors,
    t.model_version
FROM this_week t
LEFT JOIN previous p ON p.student_id = t.student_id AND p.course_id = t.course_id
ORDER BY t.course_id, t.student_id
