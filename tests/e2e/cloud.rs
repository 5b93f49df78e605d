//! The lake on an S3-compatible server (moto's server mode on loopback,
//! tests/s3_server.py): every command works on an `s3://` lake configured
//! by `[lake] options`, the tables equal a local lake's built from the same
//! landing, partition for partition and file count for file count, and a
//! server that fails some requests (503 SlowDown, lost answers) still ends
//! in the same lake after the store's retries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{learnlake, learnlake_ok, scratch, small_landing};

pub(super) const KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

/// moto on a free loopback port, with buckets, optionally behind a proxy
/// that fails every `fail_every`-th request.
pub(super) struct S3Server {
    child: Child,
    pub(super) port: u16,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    pub(super) fn start(dir: &Path, name: &str, bucket: &str, fail_every: u32) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/s3_server.py");
        let port_file = dir.join(format!("{name}.port"));
        let child = Command::new("python3")
            .arg(&script)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--bucket", bucket, "--fail-every", &fail_every.to_string()])
            .arg("--log")
            .arg(dir.join(format!("{name}.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the S3 server (scripts/test installs moto[server])");
        let port = super::port_from_file(
            &port_file,
            Duration::from_secs(60),
            "the S3 server did not start; is moto installed (pip install 'moto[server]')?",
        );
        Self { child, port }
    }

    /// A config whose lake is `s3://<bucket>/<prefix>` on this server.
    pub(super) fn config(&self, dir: &Path, name: &str, bucket: &str, prefix: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[lake]\nurl = \"s3://{bucket}/{prefix}\"\n\
                 options = {{ endpoint = \"http://127.0.0.1:{}\", region = \"us-east-1\", allow_http = \"true\" }}\n",
                self.port
            ),
        )
        .unwrap();
        path
    }
}

/// The tables compared between lakes (the quarantine and job records carry
/// the time of the run).
const TABLES: [&str; 9] = [
    "activity",
    "attempts",
    "students",
    "courses",
    "enrollments",
    "assessments",
    "student_week",
    "course_week",
    "risk_flags",
];

/// Every row of every compared table, as sorted CSV lines per table.
pub(super) fn rows(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for table in TABLES {
        let mut a = args.to_vec();
        let query = format!("SELECT * FROM {table}");
        a.extend(["sql", query.as_str(), "--format", "csv"]);
        let out = learnlake_ok(dir, &a, env);
        // Fractions to 10 significant digits: sums over files listed in
        // another order (a directory vs an S3 listing) differ in the last bit.
        let mut lines: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.stdout.as_slice())
            .records()
            .map(|r| {
                r.unwrap()
                    .iter()
                    .map(|v| match v.parse::<f64>() {
                        Ok(x) if v.contains('.') => format!("{x:.9e}"),
                        _ => v.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        all.insert(table.to_string(), lines);
    }
    all
}

/// Fails with the first differing lines of each table that differs.
pub(super) fn same_rows(
    got: &BTreeMap<String, Vec<String>>,
    expected: &BTreeMap<String, Vec<String>>,
) {
    let mut report = String::new();
    for (table, want) in expected {
        let have = &got[table];
        if have != want {
            let first = (0..want.len().max(have.len()))
                .find(|&i| want.get(i) != have.get(i))
                .unwrap();
            report.push_str(&format!(
                "{table}: {} rows vs {} expected; first difference at {first}:\n  got  {:?}\n  want {:?}\n",
                have.len(),
                want.len(),
                have.get(first),
                want.get(first)
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// Data files (Parquet outside the Delta logs) per folder, from relative paths.
fn per_folder(paths: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut folders = BTreeMap::new();
    for path in paths.filter(|p| p.ends_with(".parquet") && !p.contains("_delta_log")) {
        let folder = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        *folders.entry(folder).or_default() += 1;
    }
    folders
}

fn local_files(root: &Path) -> BTreeMap<String, usize> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, root, &mut paths);
    per_folder(paths.into_iter())
}

fn s3_files(port: u16, bucket: &str, prefix: &str) -> BTreeMap<String, usize> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/s3_server.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--list",
            &format!("http://127.0.0.1:{port}"),
            "--bucket",
            bucket,
            "--prefix",
            prefix,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    per_folder(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string),
    )
}

/// Runs the pipeline's commands on a lake: ingest (twice: the second finds
/// nothing new), analyze, compact and forget, and with `readers` the flag
/// export and a report rendered from the lake.
fn pipeline(dir: &Path, lake: &[&str], env: &[(&str, &str)], readers: bool) -> String {
    let mut log = String::new();
    let mut run = |extra: &[&str]| {
        let mut a = lake.to_vec();
        a.extend(extra);
        let out = learnlake_ok(dir, &a, env);
        log.push_str(&String::from_utf8_lossy(&out.stdout));
    };
    run(&["--landing", "landing", "ingest"]);
    run(&["--landing", "landing", "ingest"]); // nothing new: the ledger is on S3 too
    run(&["analyze"]);
    if readers {
        run(&["flags", "--format", "ndjson"]);
        run(&["report", "--week", "2026-03-09", "--dry-run"]);
    }
    run(&["compact"]);
    run(&["forget", "--student", "s000002"]);
    log
}

#[test]
fn an_s3_lake_equals_a_local_one_through_every_command_even_when_the_server_fails_requests() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 40, 3, 21, &["--start", "2026-03-02"]);
    let env = [
        KEYS[0],
        KEYS[1],
        ("LEARNLAKE_EMAIL_ADMINS", "head@example.edu"),
    ];

    let local = dir.join("local");
    let local_args = ["--lake", local.to_str().unwrap()];
    pipeline(&dir, &local_args, &env, true);
    let expected = rows(&dir, &local_args, &env);
    assert!(expected["student_week"].len() > 40, "{expected:?}");
    assert!(
        expected["attempts"]
            .iter()
            .any(|l| l.contains("question_id")),
        "CSV shows an attempt's answers as JSON"
    );
    assert!(
        !expected["students"].iter().any(|l| l.contains("s000002,")),
        "forgotten locally"
    );
    let expected_files = local_files(&local);
    assert!(expected_files.len() > 20, "{expected_files:?}");

    let server = S3Server::start(&dir, "s3", "lake", 0);
    let cfg = server.config(&dir, "s3.toml", "lake", "a/lake");
    let s3_args = ["--config", cfg.to_str().unwrap()];
    let log = pipeline(&dir, &s3_args, &env, true);
    assert!(log.contains("s000002: 1 e-mail address"), "{log}");
    same_rows(&rows(&dir, &s3_args, &env), &expected);
    assert_eq!(s3_files(server.port, "lake", "a/lake"), expected_files);
    let out = learnlake_ok(
        &dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "validate",
            "--check-connections",
        ],
        &env,
    );
    assert!(out.status.success());

    // Every 25th request fails (503 before the store sees it, or a GET's
    // answer lost after): retried, and the lake ends the same. (Each retry
    // waits object_store's backoff, so the writing commands only.)
    let flaky = S3Server::start(&dir, "flaky", "lake", 25);
    let cfg = flaky.config(&dir, "flaky.toml", "lake", "lake");
    let flaky_args = ["--config", cfg.to_str().unwrap()];
    pipeline(&dir, &flaky_args, &env, false);
    let failed = std::fs::read_to_string(dir.join("flaky.log")).unwrap();
    assert!(
        failed.lines().count() > 20,
        "the proxy failed requests: {failed}"
    );
    same_rows(&rows(&dir, &flaky_args, &env), &expected);
    // Listed past the proxy's failures: retried by the lister too.
    assert_eq!(s3_files(flaky.port, "lake", "lake"), expected_files);

    // Options are checked: a typo and a credential in the file are named.
    std::fs::write(
        dir.join("bad.toml"),
        "[lake]\nurl = \"s3://lake/x\"\noptions = { endpiont = \"http://x\", aws_secret_access_key = \"k\" }\n",
    )
    .unwrap();
    let out = learnlake(&dir, &["--config", "bad.toml", "validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("lake.options: endpiont: not an option of s3:// stores"),
        "{text}"
    );
    assert!(
        text.contains("aws_secret_access_key: credentials stay out of files"),
        "{text}"
    );
}
