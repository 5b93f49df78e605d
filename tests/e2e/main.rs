//! End-to-end tests: the real `learnlake` binary over real files, the lake
//! read back by DuckDB and pyarrow (tests/second_reader.py).

mod analytics;
mod cli;
mod cloud;
mod cluster;
mod docs;
mod golden;
mod ingest;
mod inputs;
mod lake;
mod predict;
mod privacy;
mod report;
mod schedule;
mod webhooks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Runs `learnlake` with `args`, extra environment, in `cwd`.
pub fn learnlake(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_learnlake"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("LEARNLAKE_CONFIG")
        .env(
            "LEARNLAKE_LOG",
            "info,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn",
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the learnlake binary runs")
}

/// Like [`learnlake`], but the command must succeed.
pub fn learnlake_ok(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = learnlake(cwd, args, env);
    assert!(
        out.status.success(),
        "learnlake {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The arguments of `learnlake --lake LAKE --landing LANDING ingest`.
fn ingest_args<'a>(lake: &'a Path, landing: &'a Path) -> [&'a str; 5] {
    let path = |p: &'a Path| p.to_str().expect("test paths are UTF-8");
    ["--lake", path(lake), "--landing", path(landing), "ingest"]
}

/// Ingests `landing` into `lake`, extra environment.
pub fn ingest(cwd: &Path, lake: &Path, landing: &Path, env: &[(&str, &str)]) -> Output {
    learnlake(cwd, &ingest_args(lake, landing), env)
}

/// Like [`ingest`], but the command must succeed.
pub fn ingest_ok(cwd: &Path, lake: &Path, landing: &Path, env: &[(&str, &str)]) -> Output {
    learnlake_ok(cwd, &ingest_args(lake, landing), env)
}

/// What DuckDB and pyarrow see in a lake, which must hold all six raw tables.
pub fn second_reader(lake: &Path) -> serde_json::Value {
    second_reader_of(
        lake,
        &[
            "activity",
            "attempts",
            "students",
            "courses",
            "enrollments",
            "assessments",
        ],
    )
}

/// What DuckDB and pyarrow see in a lake that must hold the `expected` tables.
pub fn second_reader_of(lake: &Path, expected: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/second_reader.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(lake)
        .arg("--expect")
        .arg(expected.join(","))
        .output()
        .expect("python3 runs (scripts/test installs duckdb and pyarrow)");
    assert!(
        out.status.success(),
        "second reader failed; install its dependencies with `pip install duckdb pyarrow`:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("second reader prints JSON")
}

/// Every file under `dir` (relative path → sha256 of its bytes), optionally
/// skipping top-level folders. Delta transaction logs (`_delta_log/`) are
/// left out: their commits carry timestamps.
pub fn fingerprint(dir: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
                || rel.ends_with("_delta_log")
            {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, skip, out);
            } else {
                let digest = Sha256::digest(std::fs::read(&path).unwrap());
                out.insert(rel, hex::encode(digest));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, skip, &mut out);
    }
    out
}

/// `learnlake generate --out landing` in `dir`: `students` students in two
/// courses over `weeks` weeks from `seed`, plus `extra` options.
pub fn small_landing(dir: &Path, students: u32, weeks: u32, seed: u32, extra: &[&str]) {
    let (students, weeks, seed) = (students.to_string(), weeks.to_string(), seed.to_string());
    let mut args = vec![
        "generate",
        "--out",
        "landing",
        "--students",
        &students,
        "--courses",
        "2",
        "--weeks",
        &weeks,
        "--seed",
        &seed,
    ];
    args.extend(extra);
    learnlake_ok(dir, &args, &[]);
}

/// The first value of a query's one-row CSV answer over `lake`.
pub fn sql_one(dir: &Path, lake: &Path, query: &str) -> String {
    let lake = lake.to_str().expect("test paths are UTF-8");
    let out = learnlake_ok(dir, &["--lake", lake, "sql", query, "--format", "csv"], &[]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The port a test server started by a script writes to `port_file` once
/// it listens; fails with `hint` (what to install) if that takes longer than
/// `within`.
pub fn port_from_file(port_file: &Path, within: std::time::Duration, hint: &str) -> u16 {
    let started = std::time::Instant::now();
    while !port_file.exists() {
        assert!(started.elapsed() < within, "{hint}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::read_to_string(port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A scratch folder that lives as long as the test.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}
