-- student_week: one row per enrollment active during the week, with or
-- without activity. Every column is defined in docs/ANALYTICS.md.
--
-- Reads: assessments, the tables that `learnlake analyze` computes once per
-- run over the history window (student_day, counted_attempts) and the
-- week's week_enrollments, each from queries/<name>.sql.
-- Parameters (bound by the engine, never spliced into this text):
--   $period_start               the week's Monday, local date (DATE)
--   $week_start, $week_end      the week's bounds as UTC instants (TIMESTAMP)
--   $high_below, $medium_below  risk level thresholds on success_probability
--   $model_version, $model_intercept, $w_<feature>
--                               the risk model (docs/PREDICTIONS.md): its
--                               weight per feature, scales folded in

WITH
-- Enrollments active during the week (queries/week_enrollments.sql).
enr AS (
    SELECT * FROM week_enrollments
),

-- Active days in the history window, up to the week's end (student_day
-- holds only days from each enrollment's history start on, which may be
-- before the course's start). Rows of enrollments not
-- active this week fall away at the final join with enr.
days AS (
    SELECT d.*, CAST(CAST(d.day AS INT) AS BIGINT) AS day_number
    FROM student_day d
    WHERE d.day < $period_start + INTERVAL '7 days'
),

this_week AS (
    SELECT
        student_id,
        course_id,
        COUNT(*)                AS active_days,
        SUM(events)             AS events,
        SUM(interactions)       AS interactions,
        SUM(minutes)            AS minutes,
        SUM(minutes_learning)   AS minutes_learning,
        SUM(minutes_assessment) AS minutes_assessment,
        SUM(minutes_social)     AS minutes_social,
        SUM(minutes_system)     AS minutes_system,
        SUM(events_morning)     AS events_morning,
        SUM(events_afternoon)   AS events_afternoon,
        SUM(events_evening)     AS events_evening,
        SUM(events_night)       AS events_night,
        SUM(sessions)           AS sessions
    FROM days
    WHERE day >= $period_start
    GROUP BY student_id, course_id
),

to_date AS (
    SELECT
        student_id,
        course_id,
        SUM(interactions) AS interactions_to_date,
        COUNT(*)          AS active_days_to_date,
        SUM(lessons_first_completed) AS lessons_completed_to_date,
        MAX(day_number)   AS last_active_day,
        -- interactions of each of the three previous weeks
        SUM(CASE WHEN day >= $period_start - INTERVAL '7 days'  AND day < $period_start                      THEN interactions ELSE 0 END) AS prev_1,
        SUM(CASE WHEN day >= $period_start - INTERVAL '14 days' AND day < $period_start - INTERVAL '7 days'  THEN interactions ELSE 0 END) AS prev_2,
        SUM(CASE WHEN day >= $period_start - INTERVAL '21 days' AND day < $period_start - INTERVAL '14 days' THEN interactions ELSE 0 END) AS prev_3
    FROM days
    GROUP BY student_id, course_id
),

-- Runs of consecutive active days: student_day's run_key is the same for
-- the days of one run (gaps and islands, numbered once per analysis).
runs AS (
    SELECT student_id, course_id, MAX(day_number) AS run_end, COUNT(*) AS run_length
    FROM days
    GROUP BY student_id, course_id, run_key
),

streaks AS (
    SELECT
        student_id,
        course_id,
        MAX(run_length) AS longest_streak_days,
        MAX(CASE WHEN run_end = CAST(CAST($period_start AS INT) AS BIGINT) + 6 THEN run_length ELSE 0 END) AS current_streak_days
    FROM runs
    GROUP BY student_id, course_id
),

-- Attempts that count, up to the week's end.
att AS (
    SELECT attempt_id, student_id, course_id, assessment_id, score, submitted_at, skill
    FROM counted_attempts
    WHERE submitted_at < $week_end
),

best AS (
    SELECT student_id, course_id, assessment_id, MAX(score) AS best_score
    FROM att
    GROUP BY student_id, course_id, assessment_id
),

-- Means are rounded to 9 decimals: summation order varies with parallelism,
-- and a last-bit difference must not break a tie in the ranks or cross a
-- threshold (grade bands, readiness).
scores AS (
    SELECT student_id, course_id, ROUND(AVG(best_score), 9) AS score_to_date
    FROM best
    GROUP BY student_id, course_id
),

week_attempts AS (
    SELECT student_id, course_id, COUNT(*) AS attempts
    FROM att
    WHERE submitted_at >= $week_start
    GROUP BY student_id, course_id
),

-- The course's assessments per enrollment: those due before the week's
-- end and, of them, the ones the student submitted; and all of them with
-- the ones attempted (the pace of a course without lessons).
due AS (
    SELECT e.student_id, e.course_id,
           COUNT(CASE WHEN s.due_at < $week_end THEN 1 END)               AS assessments_due_to_date,
           COUNT(CASE WHEN s.due_at < $week_end THEN b.assessment_id END) AS submitted_to_date,
           COUNT(*)                                                       AS assessments_total,
           COUNT(b.assessment_id)                                         AS assessments_attempted
    FROM enr e
    JOIN assessments s ON s.course_id = e.course_id
    LEFT JOIN best b
           ON b.student_id = e.student_id AND b.course_id = e.course_id AND b.assessment_id = s.assessment_id
    GROUP BY e.student_id, e.course_id
),

late AS (
    SELECT a.student_id, a.course_id, COUNT(*) AS late_to_date
    FROM att a
    JOIN assessments s ON s.assessment_id = a.assessment_id
    WHERE s.due_at IS NOT NULL AND a.submitted_at > s.due_at
    GROUP BY a.student_id, a.course_id
),

mastery AS (
    SELECT student_id, course_id, SUM(score * w) / SUM(w) AS mastery
    FROM (
        SELECT student_id, course_id, score,
               POWER(0.5, (CAST($week_end AS BIGINT) - CAST(submitted_at AS BIGINT)) / (14.0 * 86400000000.0)) AS w
        FROM att
    ) weighted
    GROUP BY student_id, course_id
),

recent AS (
    SELECT student_id, course_id, ROUND(AVG(score), 9) AS recent_mean, ROUND(VAR_POP(score), 9) AS recent_variance
    FROM (
        SELECT student_id, course_id, score,
               ROW_NUMBER() OVER (PARTITION BY student_id, course_id
                                  ORDER BY submitted_at DESC, attempt_id DESC) AS newest
        FROM att
    ) ordered
    WHERE newest <= 5
    GROUP BY student_id, course_id
),

skills AS (
    SELECT student_id, course_id,
           -- skills are unique per row, so sorting the structs sorts by skill
           array_sort(array_agg(named_struct('skill', skill, 'score', score, 'assessments', assessments))) AS skill_levels
    FROM (
        SELECT student_id, course_id, skill, AVG(best) AS score, COUNT(*) AS assessments
        FROM (
            SELECT student_id, course_id, skill, assessment_id, MAX(score) AS best
            FROM att
            WHERE skill IS NOT NULL
            GROUP BY student_id, course_id, skill, assessment_id
        ) per_assessment
        GROUP BY student_id, course_id, skill
    ) per_skill
    GROUP BY student_id, course_id
),

-- One row per enrollment with every per-student measure.
base AS (
    SELECT
        e.student_id,
        e.course_id,
        e.total_lessons,
        CAST(CAST(e.start_day AS INT) AS BIGINT) AS start_day_number,
        CAST(CAST(e.start_date AS INT) AS BIGINT) AS course_start_number,
        CAST(CAST(e.end_date AS INT) AS BIGINT) AS course_end_number,
        CAST(CAST(e.enrolled_day AS INT) AS BIGINT) AS enrolled_day_number,
        CAST(CAST($period_start AS INT) AS BIGINT) + 6 AS last_day_number,
        COALESCE(w.active_days, 0)          AS active_days,
        COALESCE(w.events, 0)               AS events,
        COALESCE(w.interactions, 0)         AS interactions,
        COALESCE(w.minutes, 0.0)            AS minutes,
        COALESCE(t.interactions_to_date, 0) AS interactions_to_date,
        COALESCE(wa.attempts, 0)            AS attempts,
        s.score_to_date,
        COALESCE(d.assessments_due_to_date, 0) AS assessments_due_to_date,
        COALESCE(d.submitted_to_date, 0)       AS submitted_to_date,
        COALESCE(l.late_to_date, 0)            AS late_to_date,
        COALESCE(d.assessments_total, 0)       AS assessments_total,
        COALESCE(d.assessments_attempted, 0)   AS assessments_attempted,
        CASE
            WHEN t.last_active_day IS NOT NULL
                THEN CAST(CAST($period_start AS INT) AS BIGINT) + 6 - t.last_active_day
            ELSE CAST(CAST($period_start AS INT) AS BIGINT) + 6 - CAST(CAST(e.enrolled_day AS INT) AS BIGINT)
        END AS days_since_last_activity,
        COALESCE(k.current_streak_days, 0) AS current_streak_days,
        COALESCE(k.longest_streak_days, 0) AS longest_streak_days,
        -- previous weeks in which the enrollment was active, and their interactions
        (CASE WHEN (e.enrolled_local IS NULL OR e.enrolled_local < $period_start)
                   AND (e.start_date IS NULL OR e.start_date <= $period_start - INTERVAL '1 day') THEN 1 ELSE 0 END)
      + (CASE WHEN (e.enrolled_local IS NULL OR e.enrolled_local < $period_start - INTERVAL '7 days')
                   AND (e.start_date IS NULL OR e.start_date <= $period_start - INTERVAL '8 days') THEN 1 ELSE 0 END)
      + (CASE WHEN (e.enrolled_local IS NULL OR e.enrolled_local < $period_start - INTERVAL '14 days')
                   AND (e.start_date IS NULL OR e.start_date <= $period_start - INTERVAL '15 days') THEN 1 ELSE 0 END)
            AS previous_weeks,
        (CASE WHEN (e.enrolled_local IS NULL OR e.enrolled_local < $period_start)
                   AND (e.start_date IS NULL OR e.start_date <= $period_start - INTERVAL '1 day') THEN COALESCE(t.prev_1, 0) ELSE 0 END)
      + (CASE WHEN (e.enrolled_local IS NULL OR e.enrolled_local < $period_start - INTERVAL '7 days')
                   AND (e.start_date IS NULL OR e.start_date <= $period_start - INTERVAL '8 days') THEN COALESCE(t.prev_2, 0) ELSE 0 END)
      + (CASE WHEN (e.enrolled_local IS NULL OR e.enrolled_local < $period_start - INTERVAL '14 days')
                   AND (e.start_date IS NULL OR e.start_date <= $period_start - INTERVAL '15 days') THEN COALESCE(t.prev_3, 0) ELSE 0 END)
            AS previous_interactions,
        COALESCE(w.minutes_learning, 0.0)   AS minutes_learning,
        COALESCE(w.minutes_assessment, 0.0) AS minutes_assessment,
        COALESCE(w.minutes_social, 0.0)     AS minutes_social,
        COALESCE(w.minutes_system, 0.0)     AS minutes_system,
        COALESCE(w.events_morning, 0)       AS events_morning,
        COALESCE(w.events_afternoon, 0)     AS events_afternoon,
        COALESCE(w.events_evening, 0)       AS events_evening,
        COALESCE(w.events_night, 0)         AS events_night,
        COALESCE(w.sessions, 0)             AS sessions,
        COALESCE(t.active_days_to_date, 0)  AS active_days_to_date,
        COALESCE(t.lessons_completed_to_date, 0) AS lessons_completed_to_date,
        m.mastery,
        r.recent_mean,
        r.recent_variance,
        sk.skill_levels,
        (t.last_active_day IS NULL AND s.score_to_date IS NULL) AS never_started
    FROM enr e
    LEFT JOIN this_week w          ON w.student_id = e.student_id  AND w.course_id = e.course_id
    LEFT JOIN to_date t            ON t.student_id = e.student_id  AND t.course_id = e.course_id
    LEFT JOIN streaks k            ON k.student_id = e.student_id  AND k.course_id = e.course_id
    LEFT JOIN week_attempts wa     ON wa.student_id = e.student_id AND wa.course_id = e.course_id
    LEFT JOIN scores s             ON s.student_id = e.student_id  AND s.course_id = e.course_id
    LEFT JOIN due d                ON d.student_id = e.student_id  AND d.course_id = e.course_id
    LEFT JOIN late l               ON l.student_id = e.student_id  AND l.course_id = e.course_id
    LEFT JOIN mastery m            ON m.student_id = e.student_id  AND m.course_id = e.course_id
    LEFT JOIN recent r             ON r.student_id = e.student_id  AND r.course_id = e.course_id
    LEFT JOIN skills sk            ON sk.student_id = e.student_id AND sk.course_id = e.course_id
),

-- Ranks within the course's rows of the week (a small, per-course window).
ranked AS (
    SELECT
        b.*,
        100.0 * PERCENT_RANK() OVER (PARTITION BY course_id ORDER BY interactions_to_date) AS engagement_percentile,
        CASE WHEN score_to_date IS NULL THEN NULL
             ELSE 100.0 * PERCENT_RANK() OVER (PARTITION BY course_id, score_to_date IS NULL ORDER BY score_to_date)
        END AS score_percentile,
        score_to_date - AVG(score_to_date) OVER (PARTITION BY course_id) AS vs_class_average,
        COUNT(*) OVER (PARTITION BY course_id) AS course_rows,
        -- the course-week medians the risk model's relative features compare with
        MEDIAN(CAST(interactions_to_date AS DOUBLE)) OVER (PARTITION BY course_id)                 AS median_interactions_to_date,
        MEDIAN(CAST(interactions AS DOUBLE)) OVER (PARTITION BY course_id)                         AS median_interactions,
        MEDIAN(CAST(interactions + previous_interactions AS DOUBLE)) OVER (PARTITION BY course_id) AS median_recent_interactions
    FROM base b
),

derived AS (
    SELECT
        r.*,
        CASE
            WHEN previous_weeks = 0 THEN 'stable'
            WHEN previous_interactions = 0 THEN CASE WHEN interactions > 0 THEN 'increasing' ELSE 'stable' END
            -- above 1.2 × / below 0.8 × the mean, in exact integer arithmetic
            WHEN 5 * interactions * previous_weeks > 6 * previous_interactions THEN 'increasing'
            WHEN 5 * interactions * previous_weeks < 4 * previous_interactions THEN 'decreasing'
            ELSE 'stable'
        END AS engagement_trend,
        CASE WHEN total_lessons IS NULL OR total_lessons = 0 THEN NULL
             ELSE LEAST(1.0, CAST(lessons_completed_to_date AS DOUBLE) / total_lessons)
        END AS completion_rate,
        CASE WHEN start_day_number IS NULL OR start_day_number > last_day_number THEN NULL
             ELSE lessons_completed_to_date / ((last_day_number - start_day_number + 1) / 7.0)
        END AS learning_pace,
        CASE WHEN start_day_number IS NULL OR start_day_number > last_day_number THEN NULL
             ELSE LEAST(1.0, CAST(active_days_to_date AS DOUBLE) / (last_day_number - start_day_number + 1))
        END AS consistency
    FROM ranked r
),

-- The risk model's features (docs/PREDICTIONS.md): from this week's row and
-- earlier weeks only, made comparable across courses, never null. They are
-- stored in student_week, where `learnlake train` reads them.
features AS (
    SELECT
        d.*,
        COALESCE(score_to_date, 0.0) / 100.0                                   AS feature_score,
        CASE WHEN score_to_date IS NULL THEN 0.0 ELSE 1.0 END                   AS feature_has_score,
        CASE WHEN assessments_due_to_date = 0 THEN 0.0
             ELSE CAST(submitted_to_date AS DOUBLE) / assessments_due_to_date END AS feature_submitted_ratio,
        CASE WHEN assessments_due_to_date = 0 THEN 0.0 ELSE 1.0 END              AS feature_has_due,
        CAST(LEAST(assessments_due_to_date - submitted_to_date, 5) AS DOUBLE)   AS feature_missed_assessments,
        CAST(LEAST(COALESCE(days_since_last_activity, 0), 28) AS DOUBLE)        AS feature_days_inactive,
        engagement_percentile / 100.0                                          AS feature_engagement_rank,
        CAST(LEAST(late_to_date, 6) AS DOUBLE)                                 AS feature_late_submissions,
        CASE WHEN never_started THEN 1.0 ELSE 0.0 END                           AS feature_never_started,
        LN((1.0 + interactions_to_date) / (1.0 + median_interactions_to_date)) AS feature_interactions_vs_course,
        LN((1.0 + interactions) / (1.0 + median_interactions))               AS feature_week_vs_course,
        LN((1.0 + interactions + previous_interactions) / (1.0 + median_recent_interactions))
                                                                               AS feature_recent_vs_course,
        CASE WHEN previous_weeks = 0 THEN 0.0
             ELSE LN((1.0 + interactions) / (1.0 + CAST(previous_interactions AS DOUBLE) / previous_weeks))
        END                                                                    AS feature_trend,
        COALESCE(consistency, 0.0)                                             AS feature_active_days_ratio,
        CASE WHEN course_start_number IS NULL THEN 0.5
             WHEN course_end_number IS NULL OR course_end_number <= course_start_number
                 THEN LEAST(1.0, (last_day_number - course_start_number + 1) / 140.0)
             ELSE GREATEST(0.0, LEAST(1.0, (last_day_number - course_start_number + 1)
                                            / (course_end_number - course_start_number + 1.0)))
        END                                                                    AS feature_course_elapsed,
        CASE WHEN enrolled_day_number IS NULL THEN 0.0
             ELSE GREATEST(0.0, LEAST(52.0, (last_day_number - enrolled_day_number) / 7.0))
        END                                                                    AS feature_weeks_enrolled,
        COALESCE(vs_class_average, 0.0) / 100.0                                AS feature_score_vs_course
    FROM derived d
),

-- The model's log-odds of success.
scored AS (
    SELECT
        f.*,
        $model_intercept
          + $w_score * feature_score
          + $w_has_score * feature_has_score
          + $w_submitted_ratio * feature_submitted_ratio
          + $w_has_due * feature_has_due
          + $w_missed_assessments * feature_missed_assessments
          + $w_days_inactive * feature_days_inactive
          + $w_engagement_rank * feature_engagement_rank
          + $w_late_submissions * feature_late_submissions
          + $w_never_started * feature_never_started
          + $w_interactions_vs_course * feature_interactions_vs_course
          + $w_week_vs_course * feature_week_vs_course
          + $w_recent_vs_course * feature_recent_vs_course
          + $w_trend * feature_trend
          + $w_active_days_ratio * feature_active_days_ratio
          + $w_course_elapsed * feature_course_elapsed
          + $w_weeks_enrolled * feature_weeks_enrolled
          + $w_score_vs_course * feature_score_vs_course
          AS risk_score
    FROM features f
),

-- Each feature's pull on the log-odds relative to the course-week average
-- of that feature: what explains this student's probability.
contributions AS (
    SELECT
        s.*,
        1.0 / (1.0 + EXP(-risk_score)) AS success_probability,
        $w_score * (feature_score - AVG(feature_score) OVER w)                                     AS c_score,
        $w_has_score * (feature_has_score - AVG(feature_has_score) OVER w)                         AS c_has_score,
        $w_submitted_ratio * (feature_submitted_ratio - AVG(feature_submitted_ratio) OVER w)       AS c_submitted_ratio,
        $w_has_due * (feature_has_due - AVG(feature_has_due) OVER w)                               AS c_has_due,
        $w_missed_assessments * (feature_missed_assessments - AVG(feature_missed_assessments) OVER w) AS c_missed_assessments,
        $w_days_inactive * (feature_days_inactive - AVG(feature_days_inactive) OVER w)             AS c_days_inactive,
        $w_engagement_rank * (feature_engagement_rank - AVG(feature_engagement_rank) OVER w)       AS c_engagement_rank,
        $w_late_submissions * (feature_late_submissions - AVG(feature_late_submissions) OVER w)    AS c_late_submissions,
        $w_never_started * (feature_never_started - AVG(feature_never_started) OVER w)             AS c_never_started,
        $w_interactions_vs_course * (feature_interactions_vs_course - AVG(feature_interactions_vs_course) OVER w) AS c_interactions_vs_course,
        $w_week_vs_course * (feature_week_vs_course - AVG(feature_week_vs_course) OVER w)          AS c_week_vs_course,
        $w_recent_vs_course * (feature_recent_vs_course - AVG(feature_recent_vs_course) OVER w)    AS c_recent_vs_course,
        $w_trend * (feature_trend - AVG(feature_trend) OVER w)                                     AS c_trend,
        $w_active_days_ratio * (feature_active_days_ratio - AVG(feature_active_days_ratio) OVER w) AS c_active_days_ratio,
        $w_course_elapsed * (feature_course_elapsed - AVG(feature_course_elapsed) OVER w)          AS c_course_elapsed,
        $w_weeks_enrolled * (feature_weeks_enrolled - AVG(feature_weeks_enrolled) OVER w)          AS c_weeks_enrolled,
        $w_score_vs_course * (feature_score_vs_course - AVG(feature_score_vs_course) OVER w)       AS c_score_vs_course
    FROM scored s
    WINDOW w AS (PARTITION BY course_id)
),

-- Each feature's pull as a change in probability: how much higher the
-- probability would be with that feature at the course-week average.
deltas AS (
    SELECT
        c.*,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_score))) AS d_score,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_has_score))) AS d_has_score,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_submitted_ratio))) AS d_submitted_ratio,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_has_due))) AS d_has_due,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_missed_assessments))) AS d_missed_assessments,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_days_inactive))) AS d_days_inactive,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_engagement_rank))) AS d_engagement_rank,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_late_submissions))) AS d_late_submissions,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_never_started))) AS d_never_started,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_interactions_vs_course))) AS d_interactions_vs_course,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_week_vs_course))) AS d_week_vs_course,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_recent_vs_course))) AS d_recent_vs_course,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_trend))) AS d_trend,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_active_days_ratio))) AS d_active_days_ratio,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_course_elapsed))) AS d_course_elapsed,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_weeks_enrolled))) AS d_weeks_enrolled,
        success_probability - 1.0 / (1.0 + EXP(-(risk_score - c_score_vs_course))) AS d_score_vs_course
    FROM contributions c
),

-- The (at most) three features that lower the probability by more than
-- one point, most first, as `name: -0.21` (top_factors: a learnlake
-- function, pipeline/src/engine/factors.rs).
factors AS (
    SELECT
        d.*,
        top_factors(3, -0.01,
            'score', d_score,
            'has_score', d_has_score,
            'submitted_ratio', d_submitted_ratio,
            'has_due', d_has_due,
            'missed_assessments', d_missed_assessments,
            'days_inactive', d_days_inactive,
            'engagement_rank', d_engagement_rank,
            'late_submissions', d_late_submissions,
            'never_started', d_never_started,
            'interactions_vs_course', d_interactions_vs_course,
            'week_vs_course', d_week_vs_course,
            'recent_vs_course', d_recent_vs_course,
            'trend', d_trend,
            'active_days_ratio', d_active_days_ratio,
            'course_elapsed', d_course_elapsed,
            'weeks_enrolled', d_weeks_enrolled,
            'score_vs_course', d_score_vs_course
        ) AS factor_list
    FROM deltas d
),

final AS (
    SELECT
        d.*,
        CASE
            -- the pace on lessons
            WHEN total_lessons > 0 THEN
                CASE WHEN learning_pace IS NULL OR learning_pace = 0 THEN NULL
                     WHEN lessons_completed_to_date >= total_lessons THEN last_day_number
                     -- 7 × remaining / pace = remaining × days so far / lessons so far, rounded up exactly
                     ELSE last_day_number
                          + ((total_lessons - lessons_completed_to_date) * (last_day_number - start_day_number + 1)
                             + lessons_completed_to_date - 1) / lessons_completed_to_date
                END
            -- a course without lessons: the pace on its assessments
            WHEN assessments_total > 0 THEN
                CASE WHEN start_day_number IS NULL OR start_day_number > last_day_number THEN NULL
                     WHEN assessments_attempted >= assessments_total THEN last_day_number
                     WHEN assessments_attempted = 0 THEN NULL
                     ELSE last_day_number
                          + ((assessments_total - assessments_attempted) * (last_day_number - start_day_number + 1)
                             + assessments_attempted - 1) / assessments_attempted
                END
        END AS completion_day_number,
        concat_ws('|',
            CASE WHEN never_started THEN 'never_started: no activity or attempt since enrolling' END,
            CASE WHEN NOT never_started AND days_since_last_activity >= 7
                 THEN 'inactive_7d: no activity for ' || CAST(days_since_last_activity AS VARCHAR) || ' days' END,
            CASE WHEN submitted_to_date < assessments_due_to_date
                 THEN 'missed_assessment: submitted ' || CAST(submitted_to_date AS VARCHAR) || ' of '
                      || CAST(assessments_due_to_date AS VARCHAR) || ' assessments due' END,
            CASE WHEN score_to_date < 60
                 THEN 'low_scores: average best score ' || CAST(ROUND(score_to_date, 1) AS VARCHAR) END,
            CASE WHEN late_to_date >= 2
                 THEN 'late_submissions: ' || CAST(late_to_date AS VARCHAR) || ' late attempts' END,
            CASE WHEN engagement_trend = 'decreasing'
                 THEN 'declining_engagement: ' || CAST(interactions AS VARCHAR) || ' interactions this week vs '
                      || CAST(ROUND(previous_interactions / previous_weeks, 1) AS VARCHAR) || ' a week before' END,
            CASE WHEN engagement_percentile < 25 AND course_rows >= 4
                 THEN 'low_engagement: bottom quarter of the course by interactions' END
        ) AS indicator_text
    FROM factors d
)

SELECT
    student_id,
    course_id,
    $period_start AS period_start,
    CAST($period_start + INTERVAL '7 days' AS DATE) AS period_end,
    active_days,
    events,
    interactions,
    minutes,
    interactions_to_date,
    attempts,
    score_to_date,
    assessments_due_to_date,
    submitted_to_date,
    late_to_date,
    days_since_last_activity,
    current_streak_days,
    longest_streak_days,
    engagement_percentile,
    score_percentile,
    vs_class_average,
    engagement_trend,
    CASE WHEN score_to_date IS NULL THEN NULL
         WHEN score_to_date >= 90 THEN 'A'
         WHEN score_to_date >= 80 THEN 'B'
         WHEN score_to_date >= 70 THEN 'C'
         WHEN score_to_date >= 60 THEN 'D'
         ELSE 'F'
    END AS grade_band,
    success_probability,
    CASE WHEN success_probability < $high_below THEN 'high'
         WHEN success_probability < $medium_below THEN 'medium'
         ELSE 'low'
    END AS risk_level,
    CASE WHEN indicator_text = '' THEN arrow_cast(make_array(), 'List(Utf8)')
         ELSE arrow_cast(string_to_array(indicator_text, '|'), 'List(Utf8)')
    END AS risk_indicators,
    factor_list AS risk_factors,
    $model_version AS model_version,
    CAST(CAST(completion_day_number AS INT) AS DATE) AS estimated_completion_date,
    minutes_learning,
    minutes_assessment,
    minutes_social,
    minutes_system,
    events_morning,
    events_afternoon,
    events_evening,
    events_night,
    CASE WHEN events = 0 THEN NULL
         WHEN events_morning >= events_afternoon AND events_morning >= events_evening AND events_morning >= events_night THEN 'morning'
         WHEN events_afternoon >= events_evening AND events_afternoon >= events_night THEN 'afternoon'
         WHEN events_evening >= events_night THEN 'evening'
         ELSE 'night'
    END AS peak_period,
    sessions,
    active_days_to_date,
    lessons_completed_to_date,
    completion_rate,
    learning_pace,
    consistency,
    mastery,
    CASE WHEN recent_mean IS NULL THEN NULL
         -- spread s ≤ 10 and s ≤ 20, compared as variances to stay exact
         WHEN recent_mean >= 85 AND recent_variance <= 100 THEN 'advanced'
         WHEN recent_mean >= 70 AND recent_variance <= 400 THEN 'proficient'
         WHEN recent_mean >= 50 THEN 'developing'
         ELSE 'beginner'
    END AS readiness_level,
    skill_levels,
    feature_score,
    feature_has_score,
    feature_submitted_ratio,
    feature_has_due,
    feature_missed_assessments,
    feature_days_inactive,
    feature_engagement_rank,
    feature_late_submissions,
    feature_never_started,
    feature_interactions_vs_course,
    feature_week_vs_course,
    feature_recent_vs_course,
    feature_trend,
    feature_active_days_ratio,
    feature_course_elapsed,
    feature_weeks_enrolled,
    feature_score_vs_course
FROM final
ORDER BY course_id, student_id
