//! What students, guardians and advisors receive (docs/REPORTS.md): the
//! weekly student performance report in three role versions, and the
//! notifications of `learnlake notify` (at-risk alerts, inactivity and
//! deadline reminders, achievements).
//!
//! Visibility is enforced in the data, not in the templates: a guardian's
//! data has no peer comparison and no model output in it, so no template
//! (built in or overridden) can show them.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use datafusion::prelude::SessionContext;
use learnlake_pipeline::analytics::{self, Queries, Week};
use serde_json::{Value as Json, json};

use crate::mail::Draft;
use crate::report::{factor, reason};
use crate::rows::{Row, group_by, json_rows, level_rank, num, strings, text};
use crate::templates::Templates;

/// Days after the week's end that "next steps" and deadline reminders look at.
pub const LOOK_AHEAD_DAYS: i64 = 14;
/// Deadline reminders cover assessments due within this many days.
pub const DEADLINE_DAYS: i64 = 7;
/// Days without activity before a student is reminded.
pub const INACTIVE_DAYS: i64 = 7;
/// Streak lengths that earn an achievement message.
pub const STREAKS: [i64; 2] = [7, 30];

/// The week's rows, per student.
pub struct StudentWeekData {
    pub week: Week,
    pub zone: Tz,
    /// student_id → their course rows (student_reports.sql).
    pub students: BTreeMap<String, Vec<Row>>,
    /// (student_id, course_id) → attempted assessments, oldest first.
    pub assessments: BTreeMap<(String, String), Vec<Row>>,
    /// student_id → unsubmitted assessments due soon, soonest first.
    pub upcoming: BTreeMap<String, Vec<Row>>,
    /// When the figures were read, in the institution zone.
    pub generated_at: String,
    pub min_group_size: usize,
}

fn address(row: &Row, key: &str) -> Option<String> {
    row.get(key)
        .and_then(Json::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl StudentWeekData {
    /// Reads the week's rows (student_reports.sql, student_assessments.sql,
    /// student_upcoming.sql).
    pub async fn load(
        ctx: &SessionContext,
        queries: &Queries,
        week: Week,
        zone: Tz,
        generated_at: String,
        min_group_size: usize,
    ) -> Result<Self> {
        let previous = week.period_start - Duration::days(7);
        let (_, batches) = analytics::run_query(
            ctx,
            queries,
            "student_reports",
            &[
                ("period_start", analytics::date(week.period_start)),
                ("previous_start", analytics::date(previous)),
            ],
        )
        .await?;
        let students = group_by(json_rows(&batches)?, "student_id");
        let (_, batches) = analytics::run_query(
            ctx,
            queries,
            "student_assessments",
            &[("period_end", analytics::ts(week.end))],
        )
        .await?;
        let mut assessments: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
        for row in json_rows(&batches)? {
            let key = (
                text(&row, "student_id").to_string(),
                text(&row, "course_id").to_string(),
            );
            if students.contains_key(&key.0) {
                assessments.entry(key).or_default().push(row);
            }
        }
        let (_, batches) = analytics::run_query(
            ctx,
            queries,
            "student_upcoming",
            &[
                ("period_start", analytics::date(week.period_start)),
                ("period_end", analytics::ts(week.end)),
                (
                    "horizon_end",
                    analytics::ts(week.end + Duration::days(LOOK_AHEAD_DAYS)),
                ),
            ],
        )
        .await?;
        let upcoming = group_by(json_rows(&batches)?, "student_id");
        Ok(Self {
            week,
            zone,
            students,
            assessments,
            upcoming,
            generated_at,
            min_group_size,
        })
    }

    /// The fields every template gets.
    fn common(&self, reader_zone: &str) -> Json {
        json!({
            "period_start": self.week.period_start.to_string(),
            "period_last_day": self.week.last_day().to_string(),
            "zone": self.zone.name(),
            "reader_zone": reader_zone,
            "generated_at": self.generated_at,
            "min_group_size": self.min_group_size,
        })
    }

    /// The student's own zone if it is a valid IANA name, else the institution's.
    fn reader_zone(&self, rows: &[Row]) -> String {
        rows.first()
            .and_then(|r| r.get("student_timezone"))
            .and_then(Json::as_str)
            .filter(|z| z.parse::<Tz>().is_ok())
            .unwrap_or(self.zone.name())
            .to_string()
    }
}

/// Who reads a performance report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Student,
    Guardian,
    Advisor,
}

/// A risk reason as the student reads it: about what to do, not a verdict.
pub fn helpful(code: &str, detail: &str, role: Role) -> String {
    let you = role == Role::Student;
    match code {
        "never_started" if you => {
            "You have not started this course yet: opening the first lesson is the best next step.".into()
        }
        "never_started" => "Has not started this course yet.".into(),
        "inactive_7d" if you => format!(
            "It has been a while since you were last active ({detail}); even a short session this week helps you keep up."
        ),
        "inactive_7d" => format!("Has not been active recently ({detail})."),
        "missed_assessment" if you => format!(
            "Some assessments that are due have not been submitted yet ({detail}); catching up on them will lift your standing."
        ),
        "missed_assessment" => format!("Some assessments that are due are not submitted ({detail})."),
        "low_scores" if you => {
            "Your scores so far are lower than they could be; revisiting your weakest topics below will help.".into()
        }
        "low_scores" => "Scores so far are low; the areas to improve below show where.".into(),
        "late_submissions" if you => format!(
            "Some work was handed in after its due date ({detail}); planning a little ahead will help."
        ),
        "late_submissions" => format!("Some work was handed in late ({detail})."),
        "declining_engagement" if you => {
            "You have been less active than in your previous weeks.".into()
        }
        "declining_engagement" => "Less active than in previous weeks.".into(),
        // "low_engagement" compares with classmates: the student may see it
        // about themselves, a guardian does not see comparisons.
        "low_engagement" if you => {
            "You have been less active than most of your classmates.".into()
        }
        "low_engagement" => String::new(),
        _ => detail.to_string(),
    }
}

fn skills_of(row: &Row) -> Vec<Json> {
    row.get("skill_levels")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let score = s.get("score")?.as_f64()?;
                    Some(json!({
                        "skill": s.get("skill")?.as_str()?,
                        "score": score,
                        "assessments": s.get("assessments").cloned().unwrap_or(Json::Null),
                        "level": if score >= 80.0 { "strong" } else if score >= 60.0 { "steady" } else { "needs work" },
                    }))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl StudentWeekData {
    /// One course of a performance report, as `role` may see it.
    fn course_view(&self, row: &Row, role: Role) -> Json {
        let student = text(row, "student_id").to_string();
        let course = text(row, "course_id").to_string();
        let mut previous_score: Option<f64> = None;
        let assessments: Vec<Json> = self
            .assessments
            .get(&(student.clone(), course.clone()))
            .map(|list| {
                list.iter()
                    .map(|a| {
                        let best = num(a, "best_score");
                        let change = match (best, previous_score) {
                            (Some(b), Some(p)) => json!(b - p),
                            _ => Json::Null,
                        };
                        if best.is_some() {
                            previous_score = best;
                        }
                        json!({
                            "title": text(a, "title"),
                            "best_score": best,
                            "attempts": a.get("attempts").cloned().unwrap_or(Json::Null),
                            "late": a.get("late").and_then(Json::as_bool).unwrap_or(false),
                            "change": change,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let skills = skills_of(row);
        let mut strengths: Vec<String> = skills
            .iter()
            .filter(|s| s["score"].as_f64().unwrap_or(0.0) >= 80.0)
            .map(|s| {
                format!(
                    "{} (score {:.0})",
                    s["skill"].as_str().unwrap_or(""),
                    s["score"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        let streak = num(row, "current_streak_days").unwrap_or(0.0);
        if streak >= 3.0 {
            strengths.push(format!("a {streak:.0}-day learning streak"));
        }
        let due = num(row, "assessments_due_to_date").unwrap_or(0.0);
        let submitted = num(row, "submitted_to_date").unwrap_or(0.0);
        if due > 0.0 && submitted >= due && num(row, "late_to_date").unwrap_or(0.0) == 0.0 {
            strengths.push("every assessment due so far handed in on time".into());
        }
        let mut improve: Vec<String> = skills
            .iter()
            .filter(|s| s["score"].as_f64().unwrap_or(100.0) < 60.0)
            .map(|s| {
                format!(
                    "{} (score {:.0})",
                    s["skill"].as_str().unwrap_or(""),
                    s["score"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        if submitted < due {
            improve.push(format!(
                "{:.0} of {:.0} assessments due are not submitted",
                due - submitted,
                due
            ));
        }
        let late = num(row, "late_to_date").unwrap_or(0.0);
        if late > 0.0 {
            improve.push(format!("{late:.0} late submission(s)"));
        }
        let inactive = num(row, "days_since_last_activity").unwrap_or(0.0);
        let mut next_steps: Vec<Json> = self
            .upcoming
            .get(&student)
            .map(|list| {
                list.iter()
                    .filter(|u| text(u, "course_id") == course)
                    .map(|u| {
                        json!({
                            "text": format!("Prepare and submit {}", text(u, "title")),
                            "due_at": u.get("due_at").cloned().unwrap_or(Json::Null),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if submitted < due {
            next_steps.push(
                json!({"text": "Catch up on the assessments that are past due", "due_at": null}),
            );
        }
        if inactive >= INACTIVE_DAYS as f64 {
            next_steps.push(json!({"text": "Plan a study session this week to get back on track", "due_at": null}));
        }
        if let Some(weakest) = skills
            .iter()
            .filter(|s| s["score"].as_f64().unwrap_or(100.0) < 70.0)
            .min_by(|a, b| {
                a["score"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&b["score"].as_f64().unwrap_or(0.0))
            })
        {
            next_steps.push(json!({
                "text": format!("Practise {}", weakest["skill"].as_str().unwrap_or("")),
                "due_at": null,
            }));
        }
        let reasons: Vec<String> = strings(row, "risk_indicators")
            .iter()
            .map(|s| {
                let (code, detail) = s.split_once(": ").unwrap_or((s, ""));
                helpful(code, detail, role)
            })
            .filter(|s| !s.is_empty())
            .collect();
        let mut view = json!({
            "course_id": course,
            "course_title": text(row, "course_title"),
            "summary": {
                "active_days": row.get("active_days").cloned().unwrap_or(Json::Null),
                "minutes": row.get("minutes").cloned().unwrap_or(Json::Null),
                "attempts": row.get("attempts").cloned().unwrap_or(Json::Null),
                "score_to_date": row.get("score_to_date").cloned().unwrap_or(Json::Null),
                "grade_band": row.get("grade_band").cloned().unwrap_or(Json::Null),
                "completion_rate": row.get("completion_rate").cloned().unwrap_or(Json::Null),
                "estimated_completion_date": row.get("estimated_completion_date").cloned().unwrap_or(Json::Null),
                "current_streak_days": row.get("current_streak_days").cloned().unwrap_or(Json::Null),
                "submitted_to_date": submitted,
                "assessments_due_to_date": due,
                "days_since_last_activity": row.get("days_since_last_activity").cloned().unwrap_or(Json::Null),
                "readiness_level": row.get("readiness_level").cloned().unwrap_or(Json::Null),
            },
            "assessments": assessments,
            "skills": skills,
            "strengths": strengths,
            "improve": improve,
            "next_steps": next_steps,
            "reasons": reasons,
            "needs_support": level_rank(text(row, "risk_level")) >= 2,
            "peer": null,
            "risk": null,
        });
        // Peer comparison: the student about themselves, and the advisor.
        if role != Role::Guardian {
            view["peer"] = json!({
                "engagement_percentile": row.get("engagement_percentile").cloned().unwrap_or(Json::Null),
                "score_percentile": row.get("score_percentile").cloned().unwrap_or(Json::Null),
                "vs_class_average": row.get("vs_class_average").cloned().unwrap_or(Json::Null),
            });
        }
        // The model's output: the advisor only.
        if role == Role::Advisor {
            view["risk"] = json!({
                "level": text(row, "risk_level"),
                "previous_level": row.get("previous_level").cloned().unwrap_or(Json::Null),
                "probability": row.get("success_probability").cloned().unwrap_or(Json::Null),
                "indicators": strings(row, "risk_indicators").iter().map(|s| reason(s)).collect::<Vec<_>>(),
                "factors": strings(row, "risk_factors").iter().map(|s| factor(s)).collect::<Vec<_>>(),
            });
        }
        view
    }

    /// Renders `<template>.subject.txt` and the bodies `<body>.txt` / `<body>.html`.
    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        templates: &Templates,
        template: &str,
        body: &str,
        kind: String,
        to: String,
        to_name: Option<String>,
        data: Json,
    ) -> Result<Draft> {
        let mut data = data;
        let subject = templates
            .render(&format!("{template}.subject.txt"), &data)?
            .trim()
            .to_string();
        data["title"] = json!(subject);
        Ok(Draft {
            kind,
            period: self.week.period_start.to_string(),
            to,
            to_name,
            text: templates.render(&format!("{body}.txt"), &data)?,
            html: templates.render(&format!("{body}.html"), &data)?,
            subject,
            images: Vec::new(),
        })
    }

    /// The performance reports: to each student, each guardian (one per
    /// student), and one digest per advisor.
    pub fn performance_reports(&self, templates: &Templates) -> Result<Vec<Draft>> {
        let mut drafts = Vec::new();
        let mut advisees: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for (student, rows) in &self.students {
            let name = text(&rows[0], "name").to_string();
            let zone = self.reader_zone(rows);
            for (role, key) in [(Role::Student, "email"), (Role::Guardian, "guardian_email")] {
                let Some(to) = address(&rows[0], key) else {
                    continue;
                };
                let mut data = self.common(&zone);
                data["role"] = json!(match role {
                    Role::Student => "student",
                    Role::Guardian => "guardian",
                    Role::Advisor => "advisor",
                });
                data["is_student"] = json!(role == Role::Student);
                data["student_name"] = json!(name);
                data["courses"] = json!(
                    rows.iter()
                        .map(|r| self.course_view(r, role))
                        .collect::<Vec<_>>()
                );
                let (kind, to_name) = match role {
                    Role::Student => ("student_report".to_string(), Some(name.clone())),
                    _ => (format!("guardian_report:{student}"), None),
                };
                drafts.push(self.render(
                    templates,
                    "student_report",
                    "student_report",
                    kind,
                    to,
                    to_name,
                    data,
                )?);
            }
            if let Some(advisor) = address(&rows[0], "advisor_email") {
                let courses: Vec<Json> = rows
                    .iter()
                    .map(|r| self.course_view(r, Role::Advisor))
                    .collect();
                advisees.entry(advisor).or_default().push(json!({
                    "student_id": student,
                    "name": name,
                    "courses": courses,
                }));
            }
        }
        for (advisor, mut list) in advisees {
            // Most in need first: any course at high, then medium risk.
            list.sort_by_key(|s| {
                std::cmp::Reverse(
                    s["courses"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .map(|v| level_rank(v["risk"]["level"].as_str().unwrap_or("")))
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0),
                )
            });
            let mut data = self.common(self.zone.name());
            data["students"] = json!(list);
            drafts.push(self.render(
                templates,
                "advisor_report",
                "advisor_report",
                "advisor_report".into(),
                advisor,
                None,
                data,
            )?);
        }
        Ok(drafts)
    }

    /// The notifications of the week (docs/REPORTS.md, "Notifications").
    pub fn notifications(&self, templates: &Templates) -> Result<Vec<Draft>> {
        let mut drafts = Vec::new();
        let mut alerts: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for (student, rows) in &self.students {
            let first = &rows[0];
            let name = text(first, "name").to_string();
            let zone = self.reader_zone(rows);
            let flag = |k: &str| first.get(k).and_then(Json::as_bool).unwrap_or(true);
            let mut inactive = Vec::new();
            let mut achievements = Vec::new();
            for row in rows {
                let level = text(row, "risk_level");
                let previous = row.get("previous_level").and_then(Json::as_str);
                let rose = match previous {
                    Some(p) => level_rank(level) > level_rank(p),
                    None => level == "high",
                };
                if rose && level_rank(level) >= 2 {
                    let alert = json!({
                        "student_id": student,
                        "name": name,
                        "course_title": text(row, "course_title"),
                        "level": level,
                        "previous_level": previous,
                        "probability": row.get("success_probability").cloned().unwrap_or(Json::Null),
                        "reasons": strings(row, "risk_indicators").iter().map(|s| reason(s)).collect::<Vec<_>>(),
                    });
                    let mut to: Vec<String> = [
                        address(row, "instructor_email"),
                        address(row, "advisor_email"),
                    ]
                    .into_iter()
                    .flatten()
                    .map(|a| a.to_lowercase())
                    .collect();
                    to.dedup();
                    for recipient in to {
                        alerts.entry(recipient).or_default().push(alert.clone());
                    }
                }
                let days = num(row, "days_since_last_activity").unwrap_or(0.0);
                if days >= INACTIVE_DAYS as f64 {
                    inactive.push(json!({"course_title": text(row, "course_title"), "days": days}));
                }
                let streak = num(row, "current_streak_days").unwrap_or(0.0);
                let before = num(row, "previous_streak_days").unwrap_or(0.0);
                for n in STREAKS {
                    if streak >= n as f64 && before < n as f64 {
                        achievements.push(json!({
                            "title": format!("{n}-day learning streak"),
                            "detail": format!("{streak:.0} days in a row in {}", text(row, "course_title")),
                        }));
                    }
                }
                let done = num(row, "completion_rate").unwrap_or(0.0) >= 1.0;
                let was = num(row, "previous_completion_rate").unwrap_or(0.0) >= 1.0;
                if done && !was {
                    achievements.push(json!({
                        "title": format!("{} completed", text(row, "course_title")),
                        "detail": "every lesson of the course done",
                    }));
                }
            }
            let upcoming: Vec<Json> = self
                .upcoming
                .get(student)
                .map(|list| {
                    list.iter()
                        .filter(|u| {
                            u.get("due_at")
                                .and_then(Json::as_str)
                                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                                .is_some_and(|d| d.with_timezone(&Utc) < self.week.end + Duration::days(DEADLINE_DAYS))
                        })
                        .map(|u| {
                            let course = rows
                                .iter()
                                .find(|r| text(r, "course_id") == text(u, "course_id"))
                                .map(|r| text(r, "course_title"))
                                .unwrap_or("");
                            json!({"title": text(u, "title"), "course_title": course, "due_at": u["due_at"].clone()})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let Some(email) = address(first, "email") else {
                continue;
            };
            let mut base = self.common(&zone);
            base["student_name"] = json!(name);
            for (kind, wanted, items) in [
                ("inactivity_reminder", flag("notify_reminders"), inactive),
                ("deadline_reminder", flag("notify_deadlines"), upcoming),
                ("achievement", flag("notify_achievements"), achievements),
            ] {
                if !wanted || items.is_empty() {
                    continue;
                }
                let mut data = base.clone();
                data["kind"] = json!(kind);
                data["items"] = json!(items);
                drafts.push(self.render(
                    templates,
                    kind,
                    "notification",
                    kind.to_string(),
                    email.clone(),
                    Some(name.clone()),
                    data,
                )?);
            }
        }
        for (recipient, list) in alerts {
            let mut data = self.common(self.zone.name());
            data["kind"] = json!("at_risk_alert");
            data["items"] = json!(list);
            drafts.push(self.render(
                templates,
                "at_risk_alert",
                "notification",
                "at_risk_alert".into(),
                recipient,
                None,
                data,
            )?);
        }
        Ok(drafts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guardians_see_no_comparison_with_classmates() {
        assert_eq!(helpful("low_engagement", "", Role::Guardian), "");
        assert!(helpful("low_engagement", "", Role::Student).contains("classmates"));
        assert!(
            helpful("inactive_7d", "no activity for 9 days", Role::Student)
                .starts_with("It has been")
        );
    }
}
