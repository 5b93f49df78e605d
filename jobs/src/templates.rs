//! The message templates (PRODUCT.md §7): handlebars files in `templates/`,
//! carried by the binary, each replaceable by a file of the same name in a
//! configured folder (`[email] templates`, `LEARNLAKE_TEMPLATES`).
//!
//! `<name>.html.hbs` files render with HTML escaping, `<name>.txt.hbs` files
//! (plain-text bodies and subjects) without; any template can be used as a
//! partial by its name (`{{> footer.html}}`). Both registries are strict: a
//! field the data does not have is an error, not an empty string.

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use handlebars::{Handlebars, handlebars_helper};
use serde::Serialize;

/// The built-in templates: (name, text). The name is the file name without
/// `.hbs`; its last part (`html` or `txt`) chooses the escaping.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "achievement.subject.txt",
        include_str!("../../templates/achievement.subject.txt.hbs"),
    ),
    (
        "admin_report.html",
        include_str!("../../templates/admin_report.html.hbs"),
    ),
    (
        "admin_report.subject.txt",
        include_str!("../../templates/admin_report.subject.txt.hbs"),
    ),
    (
        "admin_report.txt",
        include_str!("../../templates/admin_report.txt.hbs"),
    ),
    (
        "advisor_report.html",
        include_str!("../../templates/advisor_report.html.hbs"),
    ),
    (
        "advisor_report.subject.txt",
        include_str!("../../templates/advisor_report.subject.txt.hbs"),
    ),
    (
        "advisor_report.txt",
        include_str!("../../templates/advisor_report.txt.hbs"),
    ),
    (
        "at_risk_alert.subject.txt",
        include_str!("../../templates/at_risk_alert.subject.txt.hbs"),
    ),
    (
        "deadline_reminder.subject.txt",
        include_str!("../../templates/deadline_reminder.subject.txt.hbs"),
    ),
    ("footer.txt", include_str!("../../templates/footer.txt.hbs")),
    (
        "inactivity_reminder.subject.txt",
        include_str!("../../templates/inactivity_reminder.subject.txt.hbs"),
    ),
    (
        "kpi_table.html",
        include_str!("../../templates/kpi_table.html.hbs"),
    ),
    (
        "kpi_table.txt",
        include_str!("../../templates/kpi_table.txt.hbs"),
    ),
    (
        "layout_bottom.html",
        include_str!("../../templates/layout_bottom.html.hbs"),
    ),
    (
        "layout_top.html",
        include_str!("../../templates/layout_top.html.hbs"),
    ),
    (
        "notification.html",
        include_str!("../../templates/notification.html.hbs"),
    ),
    (
        "notification.txt",
        include_str!("../../templates/notification.txt.hbs"),
    ),
    (
        "student_report.html",
        include_str!("../../templates/student_report.html.hbs"),
    ),
    (
        "student_report.subject.txt",
        include_str!("../../templates/student_report.subject.txt.hbs"),
    ),
    (
        "student_report.txt",
        include_str!("../../templates/student_report.txt.hbs"),
    ),
];

/// The compiled templates with their helpers.
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The built-in templates, each replaced by `<dir>/<name>.hbs` when the
    /// folder holds it. A folder that does not exist, or a file in it that
    /// matches no template (a typo would otherwise be ignored), is an error.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let mut html = registry(true);
        let mut text = registry(false);
        let mut sources: Vec<(String, String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string(), "built in".to_string()))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).with_context(|| {
                format!(
                    "the templates folder {} cannot be read; fix [email] templates or LEARNLAKE_TEMPLATES",
                    dir.display()
                )
            })?;
            for entry in entries {
                let path = entry?.path();
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                let Some(name) = file.strip_suffix(".hbs") else {
                    continue;
                };
                let Some(slot) = sources.iter_mut().find(|(n, _, _)| n == name) else {
                    bail!(
                        "{} matches no template; the templates are: {}",
                        path.display(),
                        EMBEDDED
                            .iter()
                            .map(|(n, _)| format!("{n}.hbs"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                };
                slot.1 = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                slot.2 = path.display().to_string();
            }
        }
        for (name, source, origin) in &sources {
            let target = if name.ends_with(".html") {
                &mut html
            } else {
                &mut text
            };
            target
                .register_template_string(name, source)
                .with_context(|| format!("template {name} ({origin}) does not compile"))?;
        }
        Ok(Self { html, text })
    }

    /// Renders template `name` (`…html` escaped, `…txt` not) with `data`.
    pub fn render<T: Serialize>(&self, name: &str, data: &T) -> Result<String> {
        let registry = if name.ends_with(".html") {
            &self.html
        } else {
            &self.text
        };
        registry
            .render(name, data)
            .with_context(|| format!("rendering template {name}"))
    }

    /// The names of every template, for `learnlake validate`.
    pub fn names() -> impl Iterator<Item = &'static str> {
        EMBEDDED.iter().map(|(n, _)| *n)
    }
}

fn registry(escape_html: bool) -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    if escape_html {
        h.register_escape_fn(escape_html_text);
    } else {
        h.register_escape_fn(handlebars::no_escape);
    }
    h.register_helper("date", Box::new(date));
    h.register_helper("datetime", Box::new(datetime));
    h.register_helper("percent", Box::new(percent));
    h.register_helper("number", Box::new(number));
    h.register_helper("plural", Box::new(plural));
    h.register_helper("arrow", Box::new(arrow));
    h.register_helper("trend", Box::new(trend));
    h.register_helper("eq", Box::new(eq));
    h.register_helper("gt", Box::new(gt));
    h.register_helper("len", Box::new(len));
    h
}

// A date (`YYYY-MM-DD`) as "Mon 2 Mar 2026"; dates are already local days of
// the reader's zone when they reach a template. Null shows as "—".
handlebars_helper!(date: |value: Json| {
    match value.as_str().and_then(|s| NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok()) {
        Some(d) => d.format("%a %-d %b %Y").to_string(),
        None => "—".to_string(),
    }
});

// An instant (RFC 3339) in the reader's zone: `{{datetime due_at reader_zone}}`
// → "Fri 6 Mar, 23:59 GMT". Null shows as "—"; an unknown zone shows UTC.
handlebars_helper!(datetime: |value: Json, zone: Json| {
    let tz: chrono_tz::Tz = zone.as_str().and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC);
    match value.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) {
        Some(t) => t.with_timezone(&tz).format("%a %-d %b, %H:%M %Z").to_string(),
        None => "—".to_string(),
    }
});

// A fraction as a percentage: `{{percent 0.734}}` → "73%",
// `{{percent 0.734 digits=1}}` → "73.4%". Null shows as "—".
handlebars_helper!(percent: |value: Json, {digits: u64 = 0}| {
    match value.as_f64() {
        Some(v) => format!("{}%", group(v * 100.0, digits as usize)),
        None => "—".to_string(),
    }
});

// A number with thousands separators: `{{number 12345.6 digits=1}}` →
// "12,345.6". Null shows as "—".
handlebars_helper!(number: |value: Json, {digits: u64 = 0}| {
    match value.as_f64() {
        Some(v) => group(v, digits as usize),
        None => "—".to_string(),
    }
});

// `{{plural n "student"}}` → "1 student", "3 students";
// `{{plural n "person" "people"}}` for irregular plurals.
handlebars_helper!(plural: |n: Json, one: str, *args| {
    let count = n.as_f64().unwrap_or(0.0);
    let many = args.get(2).and_then(|v| v.as_str()).map(str::to_string)
        .unwrap_or_else(|| format!("{one}s"));
    let word = if (count - 1.0).abs() < f64::EPSILON { one.to_string() } else { many };
    format!("{} {word}", group(count, 0))
});

// A change with its arrow: `{{arrow 3}}` → "▲ 3", `{{arrow -2.5 digits=1}}`
// → "▼ 2.5", 0 → "= 0", null (no previous week) → "new".
handlebars_helper!(arrow: |change: Json, {digits: u64 = 0}| {
    match change.as_f64() {
        None => "new".to_string(),
        Some(c) if c.abs() < 0.5 * 10f64.powi(-(digits as i32)) => "= 0".to_string(),
        Some(c) if c > 0.0 => format!("▲ {}", group(c, digits as usize)),
        Some(c) => format!("▼ {}", group(-c, digits as usize)),
    }
});

// The CSS class of a change: "good", "bad" or "same", where `good` says
// which direction is good (`{{trend change good="down"}}` for at-risk counts).
handlebars_helper!(trend: |change: Json, {good: str = "up"}| {
    match change.as_f64() {
        Some(c) if c > 0.0 => if good == "up" { "good" } else { "bad" },
        Some(c) if c < 0.0 => if good == "up" { "bad" } else { "good" },
        _ => "same",
    }
});

handlebars_helper!(eq: |a: Json, b: Json| a == b);
// The number of items of a list (or keys of an object): handlebars-rust has
// no `.length`.
handlebars_helper!(len: |value: Json| match value {
    serde_json::Value::Array(items) => items.len(),
    serde_json::Value::Object(map) => map.len(),
    serde_json::Value::String(s) => s.chars().count(),
    _ => 0,
});
handlebars_helper!(gt: |a: Json, b: Json| a.as_f64().unwrap_or(0.0) > b.as_f64().unwrap_or(0.0));

/// Escapes what HTML needs escaped in text and quoted attribute values
/// (`& < > " '`); handlebars' default also turns `=` and `` ` `` into
/// entities, which makes "= 0" read as "&#x3D; 0" in a plain-text view of
/// the source and in mail clients that show it.
fn escape_html_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` rounded to `digits` decimals with comma thousands separators.
fn group(value: f64, digits: usize) -> String {
    let text = format!("{:.*}", digits, value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text.clone(), None),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(&f);
    }
    let negative = value < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0');
    if negative { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    fn render(template: &str, data: Json) -> String {
        let mut h = registry(true);
        h.register_template_string("t", template).unwrap();
        h.render("t", &data).unwrap()
    }

    #[test]
    fn html_escapes_markup_and_quotes_but_not_plain_signs() {
        let data = json!({"name": "<script>alert('x')</script> & \"co\" = 1"});
        assert_eq!(
            render("{{name}}", data.clone()),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot; = 1"
        );
        let mut text = registry(false);
        text.register_template_string("t", "{{name}}").unwrap();
        assert_eq!(
            text.render("t", &data).unwrap(),
            "<script>alert('x')</script> & \"co\" = 1"
        );
    }

    #[test]
    fn helpers_format_numbers_dates_and_changes() {
        assert_eq!(
            render("{{number 1234567.891 digits=2}}", json!({})),
            "1,234,567.89"
        );
        assert_eq!(render("{{number -1234}}", json!({})), "-1,234");
        assert_eq!(render("{{number x}}", json!({"x": null})), "—");
        assert_eq!(render("{{percent 0.734}}", json!({})), "73%");
        assert_eq!(render("{{percent 0.7345 digits=1}}", json!({})), "73.5%");
        assert_eq!(render("{{plural 1 \"student\"}}", json!({})), "1 student");
        assert_eq!(
            render("{{plural 1200 \"student\"}}", json!({})),
            "1,200 students"
        );
        assert_eq!(
            render("{{plural 2 \"person\" \"people\"}}", json!({})),
            "2 people"
        );
        assert_eq!(render("{{arrow 3}}", json!({})), "▲ 3");
        assert_eq!(render("{{arrow -2.5 digits=1}}", json!({})), "▼ 2.5");
        assert_eq!(render("{{arrow 0}}", json!({})), "= 0");
        assert_eq!(render("{{arrow x}}", json!({"x": null})), "new");
        assert_eq!(render("{{trend 2 good=\"down\"}}", json!({})), "bad");
        assert_eq!(
            render("{{date \"2026-03-02\"}}", json!({})),
            "Mon 2 Mar 2026"
        );
        assert_eq!(
            render(
                "{{datetime t \"America/New_York\"}}",
                json!({"t": "2026-03-07T04:59:59Z"})
            ),
            "Fri 6 Mar, 23:59 EST"
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let data = json!({"name": "<script>alert(1)</script>"});
        assert_eq!(
            render("{{name}}", data.clone()),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        let mut text = registry(false);
        text.register_template_string("t", "{{name}}").unwrap();
        assert_eq!(
            text.render("t", &data).unwrap(),
            "<script>alert(1)</script>"
        );
    }

    #[test]
    fn strict_mode_refuses_a_missing_field() {
        let mut h = registry(true);
        h.register_template_string("t", "{{nme}}").unwrap();
        assert!(h.render("t", &json!({"name": "x"})).is_err());
    }

    #[test]
    fn every_built_in_template_compiles_and_a_folder_overrides_by_name() {
        Templates::load(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("footer.txt.hbs"), "custom footer").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(t.render("footer.txt", &json!({})).unwrap(), "custom footer");
        std::fs::write(dir.path().join("fotter.txt.hbs"), "typo").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("fotter.txt.hbs matches no template"), "{err}");
    }
}
