-- One row per student and course of the report week, for the student
-- performance reports and the notifications (docs/REPORTS.md): the week's
-- student_week row, the previous week's level, streak and completion (to
-- tell what changed), and the student's addresses and preferences.
--
-- Reads: student_week (the week and the week before), students, courses.
-- Parameters: $period_start, $previous_start (the Monday before).

SELECT
    sw.student_id,
    sw.course_id,
    COALESCE(c.title, sw.course_id) AS course_title,
    c.instructor_email,
    COALESCE(s.name, sw.student_id) AS name,
    s.email,
    s.guardian_email,
    s.advisor_email,
    s.timezone AS student_timezone,
    COALESCE(s.notify_reminders, TRUE)    AS notify_reminders,
    COALESCE(s.notify_achievements, TRUE) AS notify_achievements,
    COALESCE(s.notify_deadlines, TRUE)    AS notify_deadlines,
    sw.active_days,
    sw.minutes,
    sw.interactions,
    sw.attempts,
    sw.score_to_date,
    sw.grade_band,
    sw.completion_rate,
    sw.estimated_completion_date,
    sw.current_streak_days,
    sw.longest_streak_days,
    sw.engagement_percentile,
    sw.score_percentile,
    sw.vs_class_average,
    sw.engagement_trend,
    sw.assessments_due_to_date,
    sw.submitted_to_date,
    sw.late_to_date,
    sw.days_since_last_activity,
    sw.risk_level,
    sw.success_probability,
    sw.risk_indicators,
    sw.risk_factors,
    sw.mastery,
    sw.readiness_level,
    sw.skill_levels,
    p.risk_level          AS previous_level,
    p.current_streak_days AS previous_streak_days,
    p.completion_rate     AS previous_completion_rate
FROM student_week sw
LEFT JOIN student_week p
    ON p.period_start = $previous_start
   AND p.student_id = sw.student_id
   AND p.course_id = sw.course_id
LEFT JOIN students s ON s.student_id = sw.student_id
LEFT JOIN courses c ON c.course_id = sw.course_id
WHERE sw.period_start = $period_start
ORDER BY sw.student_id, sw.course_id
