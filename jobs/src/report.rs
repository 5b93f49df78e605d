//! `learnlake report`: the weekly administrator report (one per
//! institution, a section per course) and each instructor's report of
//! their course, rendered from the templates with inline charts
//! (docs/REPORTS.md).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::prelude::SessionContext;
use learnlake_pipeline::analytics::{self, Queries};
use serde_json::{Value as Json, json};

use crate::charts::{self, Bar, Palette};
use crate::mail::{Draft, Image};
use crate::rows::{Row, count, group_by, json_rows, level_rank, num, strings, text};
use crate::templates::Templates;

/// Students shown per course in an at-risk list; the rest are counted.
pub const AT_RISK_SHOWN: usize = 25;
/// Weeks of history in the trend charts (the report week included).
pub const TREND_WEEKS: i64 = 8;

/// What a report is about.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    /// The report week's Monday.
    pub period_start: NaiveDate,
    /// Only this course (`--course`).
    pub course: Option<String>,
    pub zone: Tz,
    pub min_group_size: usize,
    /// When the figures were read, as the reader sees it.
    pub generated_at: String,
}

/// A rendered report before it is addressed: kind, subject, bodies and
/// the chart images.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub kind: String,
    pub subject: String,
    pub text: String,
    /// The HTML with `cid:` image sources, for e-mail.
    pub html: String,
    /// The same HTML with the images inline as data: URIs, to open in a
    /// browser (`--html DIR`, `learnlake demo`).
    pub html_standalone: String,
    pub images: Vec<Image>,
    pub recipients: Vec<String>,
}

impl Rendered {
    /// One draft per recipient (each has its own id and ledger entry).
    pub fn drafts(&self, period: NaiveDate) -> Vec<Draft> {
        self.recipients
            .iter()
            .map(|to| Draft {
                kind: self.kind.clone(),
                period: period.to_string(),
                to: to.clone(),
                to_name: None,
                subject: self.subject.clone(),
                text: self.text.clone(),
                html: self.html.clone(),
                images: self.images.clone(),
            })
            .collect()
    }
}

/// The figures of one group (a course, or the institution) in one week.
#[derive(Clone, Debug, Default)]
struct Figures {
    enrolled: f64,
    active: f64,
    /// Σ mean_minutes × enrolled, to weight the mean.
    minutes: f64,
    /// Σ mean_score × students with a score.
    score_sum: f64,
    scored: f64,
    completion_sum: f64,
    grades: [f64; 6],
    risk: [f64; 3],
}

impl Figures {
    fn add(&mut self, row: &Row) {
        let enrolled = count(row, "enrolled");
        self.enrolled += enrolled;
        self.active += count(row, "active");
        self.minutes += count(row, "mean_minutes") * enrolled;
        let scored = enrolled - count(row, "grade_none");
        if let Some(s) = num(row, "mean_score_to_date") {
            self.score_sum += s * scored;
            self.scored += scored;
        }
        self.completion_sum += count(row, "completion_rate") * enrolled;
        for (i, k) in [
            "grade_a",
            "grade_b",
            "grade_c",
            "grade_d",
            "grade_f",
            "grade_none",
        ]
        .iter()
        .enumerate()
        {
            self.grades[i] += count(row, k);
        }
        for (i, k) in ["risk_high", "risk_medium", "risk_low"].iter().enumerate() {
            self.risk[i] += count(row, k);
        }
    }

    fn mean_minutes(&self) -> Option<f64> {
        (self.enrolled > 0.0).then(|| self.minutes / self.enrolled)
    }
    fn mean_score(&self) -> Option<f64> {
        (self.scored > 0.0).then(|| self.score_sum / self.scored)
    }
    fn completion(&self) -> Option<f64> {
        (self.enrolled > 0.0).then(|| self.completion_sum / self.enrolled)
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Json {
    match (a, b) {
        (Some(a), Some(b)) => json!(a - b),
        _ => Json::Null,
    }
}

/// The KPI block: this week's figures and the change since the week before.
fn kpis(now: &Figures, before: Option<&Figures>, min_group: usize) -> Json {
    let b = before;
    let change = |f: &dyn Fn(&Figures) -> Option<f64>| diff(f(now), b.and_then(f));
    json!({
        "suppressed": now.enrolled < min_group as f64,
        "enrolled": now.enrolled,
        "enrolled_change": change(&|f| Some(f.enrolled)),
        "active": now.active,
        "active_rate": if now.enrolled > 0.0 { json!(now.active / now.enrolled) } else { Json::Null },
        "active_change": change(&|f| Some(f.active)),
        "mean_minutes": now.mean_minutes(),
        "minutes_change": change(&|f| f.mean_minutes()),
        "mean_score": now.mean_score(),
        "score_change": change(&|f| f.mean_score()),
        "completion_rate": now.completion(),
        "completion_change": change(&|f| f.completion()),
        "completion_change_points": match change(&|f| f.completion()) {
            Json::Null => Json::Null,
            v => json!(v.as_f64().unwrap_or(0.0) * 100.0),
        },
        "risk_high": now.risk[0],
        "risk_high_change": change(&|f| Some(f.risk[0])),
        "risk_medium": now.risk[1],
        "risk_medium_change": change(&|f| Some(f.risk[1])),
        "risk_low": now.risk[2],
        "risk_low_change": change(&|f| Some(f.risk[2])),
    })
}

/// Why a course needs attention this week (empty: it does not). The
/// rules are in docs/REPORTS.md.
fn attention(now: &Figures, before: Option<&Figures>) -> Vec<String> {
    let mut reasons = Vec::new();
    if now.enrolled <= 0.0 {
        return reasons;
    }
    let high_share = now.risk[0] / now.enrolled;
    if high_share >= 0.2 {
        reasons.push(format!(
            "{:.0}% of students at high risk",
            high_share * 100.0
        ));
    }
    if let Some(b) = before {
        let rise = now.risk[0] - b.risk[0];
        if rise >= (0.05 * now.enrolled).max(3.0) {
            reasons.push(format!(
                "{rise:.0} more students at high risk than last week"
            ));
        }
    }
    let active_share = now.active / now.enrolled;
    if active_share < 0.5 {
        reasons.push(format!(
            "only {:.0}% of students active",
            active_share * 100.0
        ));
    }
    reasons
}

/// "inactive_7d: no activity for 9 days" → code and a sentence.
pub fn reason(indicator: &str) -> Json {
    let (code, detail) = indicator.split_once(": ").unwrap_or((indicator, ""));
    let mut text = if detail.is_empty() {
        code.replace('_', " ")
    } else {
        detail.to_string()
    };
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    json!({"code": code, "text": text})
}

/// "days_inactive: -0.14" → "days inactive −14 pts".
pub fn factor(text: &str) -> String {
    let (name, value) = text.split_once(": ").unwrap_or((text, ""));
    let name = name.replace('_', " ");
    match value.trim().parse::<f64>() {
        Ok(v) => format!(
            "{name} {}{:.0} pts",
            if v < 0.0 { "−" } else { "+" },
            v.abs() * 100.0
        ),
        Err(_) => name,
    }
}

/// Reads the figures and renders the administrator report and each
/// instructor's course report. Fails with what to run when the week has
/// not been analyzed.
pub async fn render(
    ctx: &SessionContext,
    queries: &Queries,
    templates: &Templates,
    request: &ReportRequest,
    admins: &[String],
) -> Result<Vec<Rendered>> {
    let week = request.period_start;
    let first = week - chrono::Duration::days(7 * (TREND_WEEKS - 1));
    let previous = week - chrono::Duration::days(7);
    let (_, batches) = analytics::run_query(
        ctx,
        queries,
        "report_courses",
        &[
            ("period_start", analytics::date(week)),
            ("first_start", analytics::date(first)),
        ],
    )
    .await?;
    let mut rows = json_rows(&batches)?;
    if let Some(only) = &request.course {
        rows.retain(|r| text(r, "course_id") == only);
    }
    let weeks: Vec<NaiveDate> = (0..TREND_WEEKS)
        .map(|i| first + chrono::Duration::days(7 * i))
        .collect();
    let week_text = week.to_string();
    if !rows.iter().any(|r| text(r, "period_start") == week_text) {
        match &request.course {
            Some(c) => bail!(
                "course {c} has no course_week row for the week of {week}; check the id with `learnlake sql \"SELECT DISTINCT course_id FROM course_week\"`"
            ),
            None => bail!(
                "the week of {week} has not been analyzed; run `learnlake analyze --week {week}` first"
            ),
        }
    }
    let (_, risk_batches) = analytics::run_query(
        ctx,
        queries,
        "report_at_risk",
        &[
            ("period_start", analytics::date(week)),
            ("previous_start", analytics::date(previous)),
        ],
    )
    .await?;
    let at_risk = group_by(json_rows(&risk_batches)?, "course_id");

    // Per course: figures by week, title, instructor, model.
    struct Course {
        id: String,
        title: String,
        instructor: Option<String>,
        by_week: BTreeMap<NaiveDate, Figures>,
        model: Option<String>,
    }
    let mut courses: BTreeMap<String, Course> = BTreeMap::new();
    for row in &rows {
        let id = text(row, "course_id").to_string();
        let Ok(period) = NaiveDate::parse_from_str(text(row, "period_start"), "%Y-%m-%d") else {
            continue;
        };
        let course = courses.entry(id.clone()).or_insert_with(|| Course {
            id: id.clone(),
            title: text(row, "title").to_string(),
            instructor: row
                .get("instructor_email")
                .and_then(Json::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string),
            by_week: BTreeMap::new(),
            model: None,
        });
        if let Some(m) = row.get("model_version").and_then(Json::as_str) {
            course.model = Some(m.to_string());
        }
        course.by_week.entry(period).or_default().add(row);
    }
    courses.retain(|_, c| c.by_week.contains_key(&week));

    let model_version = courses
        .values()
        .filter_map(|c| c.model.clone())
        .max()
        .unwrap_or_else(|| "unknown".into());
    let min_group = request.min_group_size;

    let course_section = |c: &Course| -> (Json, Vec<String>) {
        let now = &c.by_week[&week];
        let before = c.by_week.get(&previous);
        let kpi = kpis(now, before, min_group);
        let suppressed = now.enrolled < min_group as f64;
        let reasons = if suppressed {
            Vec::new()
        } else {
            attention(now, before)
        };
        let list = at_risk.get(&c.id).cloned().unwrap_or_default();
        let shown: Vec<Json> = list
            .iter()
            .take(AT_RISK_SHOWN)
            .map(|r| {
                let level = text(r, "risk_level");
                let previous_level = r.get("previous_level").and_then(Json::as_str);
                json!({
                    "student_id": text(r, "student_id"),
                    "name": text(r, "name"),
                    "level": level,
                    "previous_level": previous_level,
                    "rose": previous_level.is_some_and(|p| level_rank(level) > level_rank(p)),
                    "probability": r.get("success_probability").cloned().unwrap_or(Json::Null),
                    "reasons": strings(r, "risk_indicators").iter().map(|s| reason(s)).collect::<Vec<_>>(),
                    "factors": strings(r, "risk_factors").iter().map(|s| factor(s)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let high_share = if now.enrolled > 0.0 {
            now.risk[0] / now.enrolled
        } else {
            0.0
        };
        (
            json!({
                "course_id": c.id,
                "title": c.title,
                "instructor": c.instructor,
                "suppressed": suppressed,
                "needs_attention": !reasons.is_empty(),
                "attention_reasons": reasons,
                "high_share": high_share,
                "kpis": kpi,
                "at_risk": shown,
                "at_risk_total": list.len(),
                "at_risk_hidden": list.len().saturating_sub(AT_RISK_SHOWN),
            }),
            reasons,
        )
    };

    let mut out = Vec::new();
    // The institution report (or, with --course, that course's part of it).
    let mut sections: Vec<Json> = courses.values().map(|c| course_section(c).0).collect();
    sections.sort_by(|a, b| {
        let attn = |s: &Json| !s["needs_attention"].as_bool().unwrap_or(false);
        attn(a)
            .cmp(&attn(b))
            .then(
                b["high_share"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&a["high_share"].as_f64().unwrap_or(0.0)),
            )
            .then(a["title"].as_str().cmp(&b["title"].as_str()))
    });
    let all: Vec<&Course> = courses.values().collect();
    let admin_kind = match &request.course {
        Some(c) => format!("admin_report:{c}"),
        None => "admin_report".to_string(),
    };
    out.push(render_one(
        templates,
        request,
        &admin_kind,
        &all.iter().map(|c| &c.by_week).collect::<Vec<_>>(),
        &weeks,
        sections,
        &model_version,
        admins.to_vec(),
    )?);
    // Each instructor: their course's section alone, with its own charts.
    for c in courses.values() {
        let Some(instructor) = &c.instructor else {
            continue;
        };
        let (section, _) = course_section(c);
        out.push(render_one(
            templates,
            request,
            &format!("course_report:{}", c.id),
            &[&c.by_week],
            &weeks,
            vec![section],
            &model_version,
            vec![instructor.clone()],
        )?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn render_one(
    templates: &Templates,
    request: &ReportRequest,
    kind: &str,
    groups: &[&BTreeMap<NaiveDate, Figures>],
    weeks: &[NaiveDate],
    sections: Vec<Json>,
    model_version: &str,
    recipients: Vec<String>,
) -> Result<Rendered> {
    let week = request.period_start;
    let previous = week - chrono::Duration::days(7);
    let sum = |day: NaiveDate| -> Option<Figures> {
        let mut total = Figures::default();
        let mut any = false;
        for g in groups {
            if let Some(f) = g.get(&day) {
                any = true;
                total.enrolled += f.enrolled;
                total.active += f.active;
                total.minutes += f.minutes;
                total.score_sum += f.score_sum;
                total.scored += f.scored;
                total.completion_sum += f.completion_sum;
                for i in 0..6 {
                    total.grades[i] += f.grades[i];
                }
                for i in 0..3 {
                    total.risk[i] += f.risk[i];
                }
            }
        }
        any.then_some(total)
    };
    let now = sum(week).unwrap_or_default();
    let before = sum(previous);
    let totals = kpis(&now, before.as_ref(), request.min_group_size);
    // A report of one course (an instructor's) names it in the subject.
    let course_title = if kind.starts_with("course_report:") {
        sections
            .first()
            .map(|s| s["title"].clone())
            .unwrap_or(Json::Null)
    } else {
        Json::Null
    };
    let attention_count = sections
        .iter()
        .filter(|s| s["needs_attention"].as_bool().unwrap_or(false))
        .count();

    // The charts, unless the whole group is too small to show.
    let mut images = Vec::new();
    let mut charts_json = Vec::new();
    if !totals["suppressed"].as_bool().unwrap_or(true) {
        let label = |d: &NaiveDate| d.format("%-d %b").to_string();
        let series: Vec<(NaiveDate, Figures)> = weeks
            .iter()
            .filter_map(|d| sum(*d).map(|f| (*d, f)))
            // weeks whose group was too small are left out, not drawn
            .filter(|(_, f)| f.enrolled >= request.min_group_size as f64)
            .collect();
        let activity: Vec<Bar> = series
            .iter()
            .map(|(d, f)| Bar {
                label: label(d),
                parts: vec![f.enrolled, f.active],
            })
            .collect();
        let risk: Vec<Bar> = series
            .iter()
            .map(|(d, f)| Bar {
                label: label(d),
                parts: f.risk.to_vec(),
            })
            .collect();
        let grades: Vec<Bar> = ["A", "B", "C", "D", "F", "no score"]
            .iter()
            .enumerate()
            .map(|(i, g)| Bar {
                label: g.to_string(),
                parts: vec![now.grades[i]],
            })
            .collect();
        let specs = [
            (
                "activity",
                "Active students per week",
                "Students active each week (dark) out of those enrolled (light), last 8 weeks",
                charts::bar_chart(
                    "students",
                    &activity,
                    Palette::Activity,
                    &["enrolled", "active"],
                )?,
            ),
            (
                "grades",
                "Grade bands this week",
                "Students per grade band on their score to date this week",
                charts::bar_chart("students", &grades, Palette::Grades, &[])?,
            ),
            (
                "risk",
                "Risk levels per week",
                "Students at high, medium and low risk each week, last 8 weeks",
                charts::bar_chart("students", &risk, Palette::Risk, &["high", "medium", "low"])?,
            ),
        ];
        for (cid, title, alt, png) in specs {
            charts_json.push(json!({"cid": cid, "title": title, "alt": alt}));
            images.push(Image {
                cid: cid.to_string(),
                png,
            });
        }
    }

    let mut data = json!({
        "title": "Weekly learning report",
        "period_start": week.to_string(),
        "period_last_day": (week + chrono::Duration::days(6)).to_string(),
        "zone": request.zone.name(),
        "generated_at": request.generated_at,
        "min_group_size": request.min_group_size,
        "model": {
            "version": model_version,
            "is_default": model_version.starts_with("default"),
        },
        "totals": totals,
        "attention_count": attention_count,
        "course_title": course_title,
        "courses": sections,
        "charts": [],
    });
    let with_sources = |data: &mut Json, src: &dyn Fn(&str, &[u8]) -> String| {
        let charts: Vec<Json> = charts_json
            .iter()
            .zip(&images)
            .map(|(c, img)| {
                let mut c = c.clone();
                c["src"] = json!(src(&img.cid, &img.png));
                c
            })
            .collect();
        data["charts"] = json!(charts);
    };
    with_sources(&mut data, &|cid, _| format!("cid:{cid}"));
    let html = templates.render("admin_report.html", &data)?;
    let text_body = templates.render("admin_report.txt", &data)?;
    let subject = templates.render("admin_report.subject.txt", &data)?;
    with_sources(&mut data, &|_, png| {
        use base64::Engine as _;
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        )
    });
    let html_standalone = templates.render("admin_report.html", &data)?;
    Ok(Rendered {
        kind: kind.to_string(),
        subject: subject.trim().to_string(),
        text: text_body,
        html,
        html_standalone,
        images,
        recipients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_factors_read_as_sentences() {
        assert_eq!(
            reason("inactive_7d: no activity for 9 days"),
            json!({"code": "inactive_7d", "text": "No activity for 9 days"})
        );
        assert_eq!(factor("days_inactive: -0.14"), "days inactive −14 pts");
        assert_eq!(factor("score: 0.031"), "score +3 pts");
    }

    #[test]
    fn attention_follows_the_documented_rules() {
        let mut now = Figures {
            enrolled: 100.0,
            active: 80.0,
            ..Figures::default()
        };
        now.risk = [10.0, 20.0, 70.0];
        assert!(attention(&now, None).is_empty());
        now.risk[0] = 20.0;
        assert_eq!(attention(&now, None), vec!["20% of students at high risk"]);
        let mut before = now.clone();
        before.risk[0] = 14.0;
        now.active = 40.0;
        assert_eq!(
            attention(&now, Some(&before)),
            vec![
                "20% of students at high risk",
                "6 more students at high risk than last week",
                "only 40% of students active"
            ]
        );
    }
}
