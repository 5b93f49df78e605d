//! docs/LAKE.md, docs/ANALYTICS.md and docs/OPERATIONS.md describe every
//! table's columns and types; this test builds a lake with every table and
//! compares what the documents say with the schemas the engine registers,
//! so the documents stay true.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use learnlake_pipeline::engine::{self, EngineOptions};
use learnlake_pipeline::lake::{LakeTable, Store};

use super::{learnlake_ok, scratch, small_landing};

/// What a document says about one table: column → (type, nullable), a type
/// of `None` where the document gives none; `prefixes` are `name_*` rows.
#[derive(Debug, Default)]
struct Documented {
    columns: BTreeMap<String, (Option<String>, Option<bool>)>,
    prefixes: Vec<(String, Option<String>)>,
}

/// The text of the section whose heading starts with `heading`, up to the
/// next heading.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let body = &markdown[start + 1..];
    let body = &body[body.find('\n').unwrap() + 1..];
    &body[..body.find("\n#").unwrap_or(body.len())]
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace('`', "")
}

/// A section's columns: from its `| column | type | …` table, or from prose
/// like `student_id (key), name: Utf8; start_date: Date32.`
fn documented(text: &str) -> Documented {
    let mut doc = Documented::default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    if let Some(header) = lines.first() {
        let header: Vec<String> = header.split('|').map(|c| c.trim().to_string()).collect();
        let type_at = header.iter().position(|c| c == "type");
        let null_at = header.iter().position(|c| c == "null");
        for line in &lines[2..] {
            let cells: Vec<String> = line.split('|').map(|c| unescape(c.trim())).collect();
            let ty = type_at.map(|i| cells[i].clone());
            let null = null_at.map(|i| cells[i] == "yes");
            for name in cells[1].split(", ") {
                match name.strip_suffix('*') {
                    Some(prefix) => doc.prefixes.push((prefix.to_string(), ty.clone())),
                    None => {
                        doc.columns.insert(name.to_string(), (ty.clone(), null));
                    }
                }
            }
        }
        return doc;
    }
    // Prose: drop the parenthetical notes, then `names: Type` per `;`.
    let mut flat = String::new();
    let mut depth = 0;
    for c in text
        .replace('\n', " ")
        .replace("Timestamp(µs, UTC)", "Timestamp[µs UTC]")
        .chars()
    {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => flat.push(c),
            _ => {}
        }
    }
    let flat = flat
        .split(". ")
        .next()
        .unwrap_or(&flat)
        .trim_end_matches('.');
    for part in flat.split(';') {
        let (names, ty) = part.rsplit_once(':').expect("`names: Type`");
        for name in names.split(',') {
            doc.columns.insert(
                name.trim().to_string(),
                (
                    Some(
                        unescape(ty.trim().trim_end_matches('.'))
                            .replace("Timestamp[µs UTC]", "Timestamp(µs, UTC)"),
                    ),
                    None,
                ),
            );
        }
    }
    doc
}

/// A type as the documents write it.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            "Timestamp(µs, UTC)".into()
        }
        DataType::List(item) | DataType::LargeList(item) => {
            format!("List<{}>", type_name(item.data_type()))
        }
        DataType::Struct(fields) => format!(
            "Struct{{{}}}",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Problems, and the columns documented as never null whose schema allows
/// nulls (their values are checked instead).
fn compare(
    table: &str,
    doc: &Documented,
    schema: &datafusion::arrow::datatypes::Schema,
    partition: Option<&str>,
    never_null: &mut Vec<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        let actual = type_name(field.data_type());
        let documented = doc.columns.get(name).cloned().or_else(|| {
            doc.prefixes
                .iter()
                .find(|(p, _)| name.starts_with(p.as_str()))
                .map(|(_, ty)| (ty.clone(), None))
        });
        match documented {
            None if Some(name.as_str()) == partition => {}
            None => problems.push(format!("{table}.{name} ({actual}) is not documented")),
            Some((Some(ty), null)) => {
                if ty != actual {
                    problems.push(format!("{table}.{name}: documented {ty}, is {actual}"));
                }
                match null {
                    Some(true) if !field.is_nullable() => {
                        problems.push(format!("{table}.{name}: documented nullable, is NOT NULL"))
                    }
                    Some(false) if field.is_nullable() => never_null.push(name.clone()),
                    _ => {}
                }
            }
            Some((None, _)) => {}
        }
    }
    for name in doc.columns.keys() {
        if schema.field_with_name(name).is_err() {
            problems.push(format!("{table}.{name} is documented but not in the table"));
        }
    }
    problems
}

#[test]
fn the_documents_list_every_column_of_every_table_with_its_type() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 30, 4, 9, &[]);
    // One bad line, for a quarantine.
    let activity = std::fs::read_dir(dir.join("landing/activity"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut text = std::fs::read_to_string(&activity).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&activity, text).unwrap();
    let lake = dir.join("lake");
    let l = lake.to_str().unwrap();
    learnlake_ok(
        &dir,
        &["--lake", l, "--landing", "landing", "run", "ingest"],
        &[],
    );
    learnlake_ok(&dir, &["--lake", l, "analyze"], &[]);

    let lake_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/LAKE.md"))
            .unwrap();
    let analytics_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ANALYTICS.md"))
            .unwrap();
    let operations_md = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"),
    )
    .unwrap();
    let sections: Vec<(&str, &str, &str)> = vec![
        ("activity", &lake_md, "### activity"),
        ("attempts", &lake_md, "### attempts"),
        ("students", &lake_md, "### students"),
        ("courses", &lake_md, "### courses"),
        ("enrollments", &lake_md, "### enrollments"),
        ("assessments", &lake_md, "### assessments"),
        ("quarantine_activity", &lake_md, "### _quarantine/"),
        ("risk_flags", &lake_md, "### risk_flags"),
        ("student_week", &analytics_md, "## student_week columns"),
        ("course_week", &analytics_md, "## course_week columns"),
        ("job_runs", &operations_md, "## `job_runs`"),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let problems = runtime.block_on(async {
        let store = Store::open(l, false).unwrap();
        let ctx = engine::session(&store, &EngineOptions::default())
            .await
            .unwrap();
        let mut problems = Vec::new();
        for (table, markdown, heading) in sections {
            let doc = documented(section(markdown, heading));
            assert!(
                !doc.columns.is_empty(),
                "{table}: nothing parsed under {heading}"
            );
            let schema = ctx
                .table(table)
                .await
                .unwrap_or_else(|e| panic!("{table} is registered: {e}"))
                .schema()
                .as_arrow()
                .clone();
            let partition = LakeTable::ALL
                .iter()
                .find(|t| t.name() == table)
                .and_then(|t| t.partition_column())
                .or(table.starts_with("quarantine_").then_some("ingest_date"));
            let mut never_null = Vec::new();
            problems.extend(compare(table, &doc, &schema, partition, &mut never_null));
            for column in never_null {
                let nulls = ctx
                    .sql(&format!(
                        "SELECT COUNT(*) AS n FROM {table} WHERE \"{column}\" IS NULL"
                    ))
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                let n = datafusion::arrow::array::cast::as_primitive_array::<
                    datafusion::arrow::datatypes::Int64Type,
                >(nulls[0].column(0))
                .value(0);
                if n > 0 {
                    problems.push(format!(
                        "{table}.{column}: documented never null, has {n} nulls"
                    ));
                }
            }
        }
        problems
    });
    assert!(
        problems.is_empty(),
        "the documents and the tables differ:\n{}",
        problems.join("\n")
    );
}
