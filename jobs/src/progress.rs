//! Progress of long work: a bar when stderr is a terminal, otherwise an
//! `info` log line every few seconds and one at the end (done, total, rate).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// How often a log line is written when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One task's progress (`ingest` in bytes, `analyze` in weeks).
pub struct Progress {
    task: &'static str,
    unit: &'static str,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

struct State {
    done: u64,
    total: u64,
    started: Instant,
    logged: Instant,
}

impl Progress {
    pub fn new(task: &'static str, unit: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let pos = if unit == "bytes" {
                "{bytes}/{total_bytes} ({bytes_per_sec}"
            } else {
                "{pos}/{len} {msg} ({per_sec}"
            };
            let template = format!("{task} [{{bar:30}}] {pos}, {{eta}} left)");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(unit);
            bar
        });
        let now = Instant::now();
        Self {
            task,
            unit,
            bar,
            state: Mutex::new(State {
                done: 0,
                total,
                started: now,
                logged: now,
            }),
        }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done += n;
        self.show(&mut s);
    }

    /// `done` of `total` units done.
    pub fn set(&self, done: u64, total: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done = s.done.max(done);
        s.total = total;
        self.show(&mut s);
    }

    fn show(&self, s: &mut State) {
        if let Some(bar) = &self.bar {
            bar.set_length(s.total);
            bar.set_position(s.done);
        } else if s.logged.elapsed() >= LOG_EVERY {
            s.logged = Instant::now();
            self.log(s, "progress");
        }
    }

    fn log(&self, s: &State, message: &str) {
        let seconds = s.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            s.done as f64 / seconds
        } else {
            0.0
        };
        info!(
            task = self.task,
            unit = self.unit,
            done = s.done,
            total = s.total,
            per_second = (rate * 10.0).round() / 10.0,
            seconds = (seconds * 100.0).round() / 100.0,
            "{message}"
        );
    }

    /// The work is over: clear the bar, log the last line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.log(&s, "finished");
    }
}
