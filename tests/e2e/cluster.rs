//! The analytics SQL on Apache DataFusion Ballista: `ballista-standalone`
//! (a scheduler and two executors inside the command), and a cluster of
//! separate processes (`learnlake scheduler`, two `learnlake executor`s,
//! `engine.url = "ballista://…"`) on an S3 lake, compute the same
//! student_week, course_week and risk_flags as the local engine, row for
//! row; `learnlake sql` runs on them too.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cloud::{KEYS, S3Server, rows, same_rows};
use super::{learnlake_ok, scratch, small_landing};

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Processes that are killed when the test ends, however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn spawn(&mut self, dir: &Path, args: &[&str], env: &[(&str, &str)], log: &str) {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_learnlake"));
        cmd.current_dir(dir)
            .args(args)
            .env_remove("LEARNLAKE_CONFIG")
            .env("LEARNLAKE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.0.push(cmd.spawn().expect("the learnlake binary runs"));
    }

    /// Fails if a process has ended (with its log), so a test does not wait
    /// on a cluster that is not there.
    fn check_alive(&mut self, dir: &Path, logs: &[&str]) {
        for (child, log) in self.0.iter_mut().zip(logs) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{log} ended ({status}):\n{}",
                    std::fs::read_to_string(dir.join(log)).unwrap_or_default()
                );
            }
        }
    }
}

#[test]
fn ballista_standalone_computes_the_same_weeks_as_the_local_engine() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 60, 4, 5, &["--start", "2026-03-02"]);
    let lake = dir.join("lake");
    let args = ["--lake", lake.to_str().unwrap()];
    learnlake_ok(
        &dir,
        &[args[0], args[1], "--landing", "landing", "ingest"],
        &[],
    );
    learnlake_ok(&dir, &[args[0], args[1], "analyze"], &[]);
    let local = rows(&dir, &args, &[]);
    assert!(local["student_week"].len() > 60, "{local:?}");
    assert!(local["risk_flags"].len() > 1, "{local:?}");

    // The same weeks again on the cluster: every partition is replaced by
    // what Ballista computed.
    let cluster = [("LEARNLAKE_ENGINE", "ballista-standalone")];
    let out = learnlake_ok(&dir, &[args[0], args[1], "-v", "analyze"], &cluster);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("in-process Ballista cluster started"), "{log}");
    assert!(
        !lake.join("_work").exists()
            || std::fs::read_dir(lake.join("_work"))
                .unwrap()
                .all(|e| std::fs::read_dir(e.unwrap().path())
                    .unwrap()
                    .next()
                    .is_none()),
        "the run's intermediate tables are removed"
    );
    same_rows(&rows(&dir, &args, &[]), &local);

    // `learnlake sql` on the cluster reads the same lake.
    same_rows(&rows(&dir, &args, &cluster), &local);
}

#[test]
fn a_scheduler_and_two_executor_processes_run_the_analytics_on_an_s3_lake() {
    let (_keep, dir) = scratch();
    small_landing(&dir, 40, 3, 9, &["--start", "2026-03-02"]);
    let server = S3Server::start(&dir, "s3", "lake", 0);
    let cfg = server.config(&dir, "cluster.toml", "lake", "lake");
    let port = free_port();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[engine]\nurl = \"ballista://127.0.0.1:{port}\"\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let env = KEYS;
    let local_engine = [KEYS[0], KEYS[1], ("LEARNLAKE_ENGINE", "local")];

    learnlake_ok(
        &dir,
        &[args[0], args[1], "--landing", "landing", "ingest"],
        &env,
    );
    learnlake_ok(&dir, &[args[0], args[1], "analyze"], &local_engine);
    let local = rows(&dir, &args, &local_engine);
    assert!(local["student_week"].len() > 40, "{local:?}");

    let mut cluster = Processes(Vec::new());
    let bind = format!("127.0.0.1:{port}");
    cluster.spawn(
        &dir,
        &[
            args[0],
            args[1],
            "scheduler",
            "--bind",
            &bind,
            "--external-host",
            "127.0.0.1",
        ],
        &env,
        "scheduler.log",
    );
    let started = Instant::now();
    while TcpStream::connect(&bind).is_err() {
        cluster.check_alive(&dir, &["scheduler.log"]);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the scheduler did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in 1..=2 {
        let (flight, grpc) = (free_port().to_string(), free_port().to_string());
        let work = dir.join(format!("executor-{n}"));
        std::fs::create_dir_all(&work).unwrap();
        cluster.spawn(
            &dir,
            &[
                args[0],
                args[1],
                "executor",
                "--scheduler",
                &bind,
                "--bind-host",
                "127.0.0.1",
                "--external-host",
                "127.0.0.1",
                "--port",
                &flight,
                "--grpc-port",
                &grpc,
                "--slots",
                "2",
                "--work-dir",
                work.to_str().unwrap(),
            ],
            &env,
            &format!("executor-{n}.log"),
        );
    }
    let logs = ["scheduler.log", "executor-1.log", "executor-2.log"];
    std::thread::sleep(Duration::from_secs(2));
    cluster.check_alive(&dir, &logs);

    // The configured engine is the cluster: analyze replaces every week.
    learnlake_ok(&dir, &[args[0], args[1], "analyze"], &env);
    cluster.check_alive(&dir, &logs);
    same_rows(&rows(&dir, &args, &local_engine), &local);
    // Both executors ran tasks (each wrote shuffle files or logged tasks).
    for n in 1..=2 {
        let log = std::fs::read_to_string(dir.join(format!("executor-{n}.log"))).unwrap();
        let work = dir.join(format!("executor-{n}"));
        let shuffled = walk_count(&work);
        assert!(
            shuffled > 0 || log.contains("task"),
            "executor {n} ran nothing:\n{log}"
        );
    }
}

/// Files below `dir`, recursively.
fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let path = e.unwrap().path();
                    if path.is_dir() { walk_count(&path) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}
