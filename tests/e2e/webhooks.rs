//! Webhook delivery of changed at-risk flags against a real HTTP receiver on
//! loopback that verifies every signature with the reference Standard
//! Webhooks library (tests/webhook_receiver.py).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ingest_ok, learnlake, learnlake_ok, scratch};

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) struct Receiver {
    child: Child,
    log: PathBuf,
    pub(crate) port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    pub(crate) fn start(dir: &Path, name: &str, fail_first: u32, delay_ms: u32) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/webhook_receiver.py");
        let log = dir.join(format!("{name}.log"));
        let port_file = dir.join(format!("{name}.port"));
        let child = Command::new("python3")
            .arg(&script)
            .args(["--secret", SECRET, "--log"])
            .arg(&log)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--fail-first", &fail_first.to_string()])
            .args(["--delay-ms", &delay_ms.to_string()])
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the receiver (scripts/test installs standardwebhooks)");
        let port = super::port_from_file(
            &port_file,
            Duration::from_secs(20),
            "the webhook receiver did not start; is `standardwebhooks` installed (pip install standardwebhooks)?",
        );
        Self { child, log, port }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// flag id → how many times it was accepted (200).
    pub(crate) fn accepted(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for r in self.requests() {
            assert_eq!(r["verified"], true, "signature verified: {r}");
            assert_eq!(r["tamper_rejected"], true, "a tampered body fails: {r}");
            assert_eq!(
                r["webhook_id"], r["flag_id"],
                "webhook-id is the flag_id: {r}"
            );
            if r["status"] == 200 {
                *ids.entry(r["flag_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        ids
    }
}

pub(crate) fn config(dir: &Path, name: &str, endpoints: &[(&str, u16, bool)]) -> PathBuf {
    let mut text = String::new();
    for (endpoint, port, allow) in endpoints {
        text.push_str(&format!(
            "[[webhooks]]\nname = \"{endpoint}\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             secret_env = \"TEST_WEBHOOK_SECRET\"\nallow_private = {allow}\ntimeout_seconds = 5\n\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn changed_flags(dir: &Path, lake: &Path) -> BTreeSet<String> {
    let out = learnlake_ok(
        dir,
        &[
            "--lake",
            lake.to_str().unwrap(),
            "sql",
            "SELECT flag_id FROM risk_flags WHERE changed",
            "--format",
            "csv",
        ],
        &[],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn changed_flags_reach_each_endpoint_once_signed_retried_and_after_a_crash() {
    let (_tmp, dir) = scratch();
    let landing = dir.join("landing");
    learnlake_ok(
        &dir,
        &[
            "generate",
            "--out",
            landing.to_str().unwrap(),
            "--students",
            "40",
            "--courses",
            "2",
            "--weeks",
            "6",
            "--seed",
            "2",
        ],
        &[],
    );
    let lake = dir.join("lake");
    ingest_ok(&dir, &lake, &landing, &[]);
    let lake_s = lake.to_str().unwrap();
    learnlake_ok(
        &dir,
        &[
            "--lake",
            lake_s,
            "analyze",
            "--from",
            "2026-02-16",
            "--to",
            "2026-02-23",
        ],
        &[],
    );
    let expected = changed_flags(&dir, &lake);
    assert!(expected.len() >= 20, "{} changed flags", expected.len());
    let env = [
        ("TEST_WEBHOOK_SECRET", SECRET),
        ("LEARNLAKE_WEBHOOK_BACKOFF_MS", "20"),
    ];

    // A receiver that fails twice, then accepts: every flag once.
    let flaky = Receiver::start(&dir, "flaky", 2, 0);
    let cfg = config(&dir, "flaky.toml", &[("advising", flaky.port, true)]);
    let cfg_s = cfg.to_str().unwrap();
    let out = learnlake_ok(
        &dir,
        &["--config", cfg_s, "--lake", lake_s, "flags", "--deliver"],
        &env,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!(
            "advising: {} delivered, 0 delivered before, 0 failed",
            expected.len()
        )),
        "{text}"
    );
    let accepted = flaky.accepted();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    assert_eq!(
        flaky
            .requests()
            .iter()
            .filter(|r| r["status"] == 503)
            .count(),
        2
    );

    // A re-run sends nothing.
    let out = learnlake_ok(
        &dir,
        &["--config", cfg_s, "--lake", lake_s, "flags", "--deliver"],
        &env,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!(
            "advising: 0 delivered, {} delivered before",
            expected.len()
        )),
        "{text}"
    );
    assert_eq!(flaky.requests().len(), expected.len() + 2);

    // Loopback is refused unless the endpoint allows it.
    let strict = config(&dir, "strict.toml", &[("strict", flaky.port, false)]);
    let out = learnlake(
        &dir,
        &[
            "--config",
            strict.to_str().unwrap(),
            "--lake",
            lake_s,
            "flags",
            "--deliver",
        ],
        &env,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("private address 127.0.0.1") && err.contains("allow_private"),
        "{err}"
    );
    // and the secret must be set
    let out = learnlake(
        &dir,
        &["--config", cfg_s, "--lake", lake_s, "flags", "--deliver"],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("export TEST_WEBHOOK_SECRET"));

    // kill -9 in the middle of a delivery run, then run again: every flag
    // arrives, and only the one in flight at the kill may arrive twice (same
    // webhook-id, for the receiver to recognise).
    let slow = Receiver::start(&dir, "slow", 0, 60);
    let cfg = config(&dir, "slow.toml", &[("slow", slow.port, true)]);
    let cfg_s = cfg.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_learnlake"))
        .current_dir(&dir)
        .args(["--config", cfg_s, "--lake", lake_s, "flags", "--deliver"])
        .envs(env)
        .env_remove("LEARNLAKE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while slow.requests().len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "no deliveries");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run was still delivering when killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = slow.accepted().len();
    assert!(
        before < expected.len(),
        "killed mid-run ({before} of {})",
        expected.len()
    );
    learnlake_ok(
        &dir,
        &["--config", cfg_s, "--lake", lake_s, "flags", "--deliver"],
        &env,
    );
    let accepted = slow.accepted();
    assert_eq!(
        accepted.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "nothing lost"
    );
    let twice = accepted.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= 1 && accepted.values().all(|&n| n <= 2),
        "at most the one in flight twice: {accepted:?}"
    );
    // the per-delivery records were folded into ledger files
    let folder = lake.join("_meta/webhooks/slow/delivered");
    assert!(!folder.exists() || std::fs::read_dir(&folder).unwrap().next().is_none());
}
