//! `learnlake run`, `learnlake schedule` and `learnlake status` (PRODUCT §9,
//! docs/OPERATIONS.md).
//!
//! A job's **slots** are the instants its schedule names on the
//! institution's wall clock ([`Schedule`]). A slot runs under the job's
//! lease in the lake ([`runs`]), so no two processes — daemons or manual
//! runs, on any machines sharing the lake — run one job at once, and a slot
//! whose run succeeded (or failed after its retries) is not run again.
//! Every run ends as one row of `job_runs`.

use std::collections::BTreeMap;
use std::future::Future;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;
use learnlake_pipeline::config::{CatchUp, Config, JobConfig, STEPS};
use learnlake_pipeline::lake::Store;
use learnlake_pipeline::schedule::Schedule;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::commands::{Failure, run_step};
use crate::runs::{self, Acquire, Holder, JobHistory, LeaseEntry, RunRecord, Status};

/// Slots a daemon looks back over for missed ones (per job).
const CATCH_UP_LIMIT: usize = 10_000;

/// How a run was started (`job_runs.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Its slot came due while a daemon ran.
    Schedule,
    /// Its slot was missed while no daemon ran.
    CatchUp,
    /// `learnlake run` with `--slot now`.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::Manual => "manual",
        }
    }
}

/// One job as the daemon plans it.
struct Planned {
    job: JobConfig,
    schedule: Schedule,
    /// Slots up to here are planned.
    cursor: DateTime<Utc>,
    /// Slots due and not yet run.
    pending: BTreeMap<DateTime<Utc>, Trigger>,
}

/// Which slot of which job runs next: pure bookkeeping over a clock the
/// caller moves, so a simulated year of it runs in a test.
pub struct Planner {
    tz: Tz,
    jobs: Vec<Planned>,
}

impl Planner {
    /// Plans `jobs` from `now`, with the slots missed since each job's
    /// newest settled slot (per its `catch_up`). A job that never ran
    /// misses nothing.
    pub fn new(
        jobs: &[JobConfig],
        tz: Tz,
        history: &BTreeMap<String, JobHistory>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let mut planned = Vec::new();
        for job in jobs {
            let schedule = Schedule::parse(&job.schedule)
                .map_err(|e| anyhow!("jobs {:?}: schedule {e}", job.name))?;
            let mut pending = BTreeMap::new();
            if let Some(h) = history.get(&job.name) {
                let anchor = match (h.settled.last(), h.unsettled.first()) {
                    (Some(&settled), _) => Some(settled),
                    (None, Some(&unsettled)) => Some(unsettled - Duration::seconds(1)),
                    (None, None) => None,
                };
                if let Some(anchor) = anchor {
                    let missed: Vec<_> = schedule
                        .slots_between(anchor, now, tz, CATCH_UP_LIMIT)
                        .into_iter()
                        .filter(|s| !h.settled.contains(s))
                        .collect();
                    let keep: &[DateTime<Utc>] = match job.catch_up {
                        CatchUp::All => &missed,
                        CatchUp::Latest => &missed[missed.len().saturating_sub(1)..],
                        CatchUp::None => &[],
                    };
                    if missed.len() > keep.len() {
                        warn!(
                            job = %job.name,
                            missed = missed.len(),
                            running = keep.len(),
                            policy = ?job.catch_up,
                            "slots missed while no scheduler ran; catch_up decides which run"
                        );
                    }
                    pending.extend(keep.iter().map(|&s| (s, Trigger::CatchUp)));
                }
            }
            planned.push(Planned {
                job: job.clone(),
                schedule,
                cursor: now,
                pending,
            });
        }
        Ok(Self { tz, jobs: planned })
    }

    /// Moves the clock to `now`: every slot in between comes due.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        for p in &mut self.jobs {
            if now <= p.cursor {
                continue;
            }
            for slot in p
                .schedule
                .slots_between(p.cursor, now, self.tz, CATCH_UP_LIMIT)
            {
                p.pending.entry(slot).or_insert(Trigger::Schedule);
            }
            p.cursor = now;
        }
    }

    /// The next instant a slot comes due.
    pub fn next_fire(&self) -> Option<DateTime<Utc>> {
        self.jobs
            .iter()
            .filter_map(|p| p.schedule.next_after(p.cursor, self.tz))
            .min()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn job(&self, i: usize) -> &JobConfig {
        &self.jobs[i].job
    }

    pub fn has_pending(&self, i: usize) -> bool {
        !self.jobs[i].pending.is_empty()
    }

    /// The slot job `i` runs next, now that it is free. Slots that came due
    /// while its last run overran wait for it; unless the job catches up
    /// `all`, only the newest of them runs.
    pub fn take(&mut self, i: usize) -> Option<(DateTime<Utc>, Trigger)> {
        let p = &mut self.jobs[i];
        if p.job.catch_up != CatchUp::All && p.pending.len() > 1 {
            let newest = p.pending.pop_last();
            for slot in p.pending.keys() {
                warn!(job = %p.job.name, slot = %slot, "slot skipped: a newer one is due (catch_up)");
            }
            p.pending = newest.into_iter().collect();
        }
        p.pending.pop_first()
    }

    /// Returns a slot that could not start (another process runs the job).
    pub fn put_back(&mut self, i: usize, slot: DateTime<Utc>, trigger: Trigger) {
        self.jobs[i].pending.entry(slot).or_insert(trigger);
    }
}

/// How [`run_slot`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The slot ran; its row is in job_runs.
    Ran(RunRecord),
    /// The slot already succeeded (or failed after its retries) elsewhere.
    Settled,
    /// Another process holds the job's lease.
    Busy(Holder),
}

/// Waits until `flag` is set; forever if its sender is gone.
async fn raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn run_id(job: &str, slot: DateTime<Utc>, holder: &str) -> String {
    let nonce = Sha256::digest(format!(
        "{job}{slot}{holder}{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    format!(
        "{job}-{}-{}",
        slot.format("%Y%m%dT%H%M%SZ"),
        hex::encode(&nonce[..4])
    )
}

/// Runs one slot of `job` under its lease: records an earlier holder's
/// abandoned run, skips a settled slot, renews the lease while the steps
/// run, records the run, and releases the lease.
pub async fn run_slot(
    config: &Config,
    lake: &Store,
    job: &JobConfig,
    slot: DateTime<Utc>,
    trigger: Trigger,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome> {
    let holder = runs::holder_name();
    let ttl = Duration::seconds(config.scheduler.lease_seconds as i64);
    let now = Utc::now();
    let run_id = run_id(&job.name, slot, &holder);
    let entry = LeaseEntry {
        holder: holder.clone(),
        run_id: run_id.clone(),
        job: job.name.clone(),
        scheduled_for: slot,
        trigger: trigger.as_str().into(),
        acquired_at: now,
        expires_at: now,
    };
    let lease = match runs::acquire(lake, entry, ttl, now).await? {
        Acquire::Busy(h) => return Ok(Outcome::Busy(h)),
        Acquire::Acquired(lease) => lease,
    };
    let span = info_span!("run", job = %job.name, run_id = %run_id, scheduled_for = %slot);
    let outcome = async {
        let history = runs::by_job(runs::history(lake).await?);
        let past = history.get(&job.name);
        if let Some(dead) = &lease.abandoned
            && past.is_none_or(|h| !h.run_ids.contains(&dead.run_id))
        {
            let now = Utc::now();
            warn!(run = %dead.run_id, holder = %dead.holder, "the previous run of this job stopped without finishing; recorded as abandoned");
            runs::record(
                lake,
                &RunRecord {
                    job: dead.job.clone(),
                    run_id: dead.run_id.clone(),
                    scheduled_for: dead.scheduled_for,
                    trigger: dead.trigger.clone(),
                    host: dead.holder.clone(),
                    started_at: dead.acquired_at,
                    finished_at: now,
                    status: Status::Abandoned,
                    steps_total: job.steps.len() as i32,
                    steps_succeeded: 0,
                    attempts: 0,
                    step_counts: "{}".into(),
                    error: Some(format!(
                        "its process ({}) stopped before the run finished (killed or crashed); its lease expired unreleased",
                        dead.holder
                    )),
                },
            )
            .await?;
        }
        if trigger != Trigger::Manual && past.is_some_and(|h| h.settled.contains(&slot)) {
            info!("slot already settled (succeeded, or failed after its retries): nothing to run");
            return Ok(Outcome::Settled);
        }
        let (lost_tx, lost) = watch::channel(false);
        let heartbeat = {
            let (lake, lease) = (lake.clone(), lease.clone());
            let every = (ttl / 4).to_std().unwrap_or(std::time::Duration::from_secs(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match lease.renew(&lake, ttl, Utc::now()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            error!("another process took over this job's lease (this one stalled past its expiry); stopping the run");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => warn!("could not renew the job's lease: {e:#}"),
                    }
                }
            })
        };
        let record = execute(config, job, slot, trigger, &run_id, &holder, cancel, lost).await;
        heartbeat.abort();
        let mut tries = 0;
        loop {
            tries += 1;
            match runs::record(lake, &record).await {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    warn!("recording the run failed ({e:#}); trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
        match record.status {
            Status::Succeeded => info!(seconds = (record.finished_at - record.started_at).num_milliseconds() as f64 / 1e3, "run succeeded"),
            _ => error!(status = record.status.as_str(), error = record.error.as_deref().unwrap_or(""), "run did not succeed"),
        }
        Ok(Outcome::Ran(record))
    }
    .instrument(span)
    .await;
    if let Err(e) = lease.release(lake, Utc::now()).await {
        warn!(job = %job.name, "could not release the job's lease ({e:#}); it expires by itself");
    }
    outcome
}

/// Runs the steps of one run, retrying a failed step with backoff; stops
/// at the first step that still fails, or when `cancel` or `lost` is raised
/// (the running step is dropped: every step is safe to stop anywhere, as
/// under kill -9).
#[allow(clippy::too_many_arguments)]
async fn execute(
    config: &Config,
    job: &JobConfig,
    slot: DateTime<Utc>,
    trigger: Trigger,
    run_id: &str,
    holder: &str,
    mut cancel: watch::Receiver<bool>,
    mut lost: watch::Receiver<bool>,
) -> RunRecord {
    let started_at = Utc::now();
    let mut counts = serde_json::Map::new();
    let (mut attempts, mut succeeded) = (0, 0);
    let mut status = Status::Succeeded;
    let mut error = None;
    'steps: for step in &job.steps {
        let span = info_span!("step", step = %step);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            attempts += 1;
            info!(parent: &span, attempt, "step started");
            let result = tokio::select! {
                r = run_step(config, step, slot).instrument(span.clone()) => Some(r),
                _ = raised(&mut cancel) => None,
                _ = raised(&mut lost) => None,
            };
            let failure = match result {
                None => {
                    status = Status::Cancelled;
                    error = Some(if *lost.borrow() {
                        format!("{step}: stopped, another process took over the job's lease")
                    } else {
                        format!("{step}: cancelled by shutdown after the grace period")
                    });
                    break 'steps;
                }
                Some(Ok(c)) => {
                    info!(parent: &span, counts = %c, "step succeeded");
                    counts.insert(step.clone(), c);
                    succeeded += 1;
                    break;
                }
                Some(Err(e)) => e,
            };
            if attempt > job.retries {
                status = Status::Failed;
                error = Some(format!(
                    "{step} failed after {attempt} attempt(s): {failure:#}"
                ));
                break 'steps;
            }
            let base = job.retry_backoff_seconds.max(1) * 2u64.pow(attempt - 1);
            // Up to a quarter more, so runs that failed together do not
            // retry together.
            let jitter = u64::from(Utc::now().timestamp_subsec_nanos()) % (base * 250 + 1);
            let wait = std::time::Duration::from_millis(base * 1000 + jitter);
            warn!(parent: &span, attempt, retry_in_seconds = wait.as_secs_f64(), "step failed: {failure:#}");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = raised(&mut cancel) => {
                    status = Status::Cancelled;
                    error = Some(format!("{step}: cancelled by shutdown while waiting to retry ({failure:#})"));
                    break 'steps;
                }
            }
        }
    }
    RunRecord {
        job: job.name.clone(),
        run_id: run_id.to_string(),
        scheduled_for: slot,
        trigger: trigger.as_str().into(),
        host: holder.to_string(),
        started_at,
        finished_at: Utc::now(),
        status,
        steps_total: job.steps.len() as i32,
        steps_succeeded: succeeded,
        attempts,
        step_counts: serde_json::Value::Object(counts).to_string(),
        error,
    }
}

/// SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Raises `cancel` `grace` after `signal` fires.
fn cancel_after(
    signal: impl Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> (watch::Receiver<bool>, watch::Receiver<bool>) {
    let (stopping_tx, stopping) = watch::channel(false);
    let (cancel_tx, cancel) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        warn!(
            grace_seconds = grace.as_secs(),
            "stopping: the running step may finish within the grace period"
        );
        let _ = stopping_tx.send(true);
        tokio::time::sleep(grace).await;
        let _ = cancel_tx.send(true);
        // Keep both senders alive until the process ends.
        std::future::pending::<()>().await;
    });
    (stopping, cancel)
}

/// The job `name` of the config, or one step run alone under that name.
fn job_or_step(config: &Config, name: &str) -> Result<JobConfig> {
    if let Some(job) = config.jobs.iter().find(|j| j.name == name) {
        return Ok(job.clone());
    }
    if STEPS.contains(&name) {
        return Ok(JobConfig {
            name: name.to_string(),
            schedule: String::new(),
            steps: vec![name.to_string()],
            catch_up: CatchUp::Latest,
            retries: 0,
            retry_backoff_seconds: 1,
        });
    }
    let jobs: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    Err(Failure::Usage(format!(
        "no job or step named {name:?}; jobs in the config: {}; steps: {}",
        if jobs.is_empty() {
            "none".to_string()
        } else {
            jobs.join(", ")
        },
        STEPS.join(", ")
    ))
    .into())
}

/// `learnlake run JOB|STEP [--slot now|latest]`.
pub async fn run_once(config: &Config, lake: &Store, name: &str, slot: &str) -> Result<()> {
    let job = job_or_step(config, name)?;
    let tz = config.tz().map_err(|e| anyhow!(e))?;
    let now = Utc::now().duration_trunc(Duration::seconds(1))?;
    let (slot, trigger) = match slot {
        "latest" => {
            if job.schedule.is_empty() {
                return Err(Failure::Usage(format!(
                    "--slot latest needs a [[jobs]] entry with a schedule; {name:?} is a step"
                ))
                .into());
            }
            let schedule = Schedule::parse(&job.schedule).map_err(|e| anyhow!(e))?;
            let slot = schedule.latest_at_or_before(now, tz).with_context(|| {
                format!("{name}: no slot of {:?} in the last 8 years", job.schedule)
            })?;
            (slot, Trigger::Schedule)
        }
        _ => (now, Trigger::Manual),
    };
    let grace = std::time::Duration::from_secs(config.scheduler.shutdown_grace_seconds);
    let (_stopping, cancel) = cancel_after(shutdown_signal(), grace);
    match run_slot(config, lake, &job, slot, trigger, cancel).await? {
        Outcome::Busy(h) => bail!(
            "{name} is running elsewhere: run {} on {} since {} (lease until {}); try again when it ends",
            h.entry.run_id,
            h.entry.holder,
            h.entry.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            h.expires_at.format("%H:%M:%S UTC")
        ),
        Outcome::Settled => {
            println!(
                "{name}: the slot {} already ran; nothing to do",
                slot.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
            );
            Ok(())
        }
        Outcome::Ran(record) => {
            println!(
                "{name}: run {} {} in {:.1}s ({} of {} steps)",
                record.run_id,
                record.status.as_str(),
                (record.finished_at - record.started_at).num_milliseconds() as f64 / 1e3,
                record.steps_succeeded,
                record.steps_total
            );
            match record.status {
                Status::Succeeded | Status::Cancelled => Ok(()),
                _ => bail!(
                    "{name}: {}",
                    record.error.as_deref().unwrap_or("the run failed")
                ),
            }
        }
    }
}

/// `learnlake schedule`: the daemon.
pub async fn daemon(config: &Config, lake: &Store) -> Result<()> {
    if config.jobs.is_empty() {
        return Err(Failure::Usage(
            "the config has no [[jobs]]; add one (see `learnlake validate` and docs/OPERATIONS.md)"
                .into(),
        )
        .into());
    }
    let tz = config.tz().map_err(|e| anyhow!(e))?;
    let mut history = runs::by_job(runs::history(lake).await?);
    // A run whose process died left its lease unreleased and no row: its
    // slot is caught up like a missed one (once the lease expires).
    for job in &config.jobs {
        if let Some(dead) = runs::unreleased(lake, &job.name).await?
            && dead.trigger != Trigger::Manual.as_str()
        {
            let h = history.entry(job.name.clone()).or_default();
            if !h.run_ids.contains(&dead.run_id) && !h.settled.contains(&dead.scheduled_for) {
                h.unsettled.insert(dead.scheduled_for);
            }
        }
    }
    let mut planner = Planner::new(&config.jobs, tz, &history, Utc::now())?;
    let grace = std::time::Duration::from_secs(config.scheduler.shutdown_grace_seconds);
    let (mut stopping, cancel) = cancel_after(shutdown_signal(), grace);
    for i in 0..planner.len() {
        let job = planner.job(i);
        let next = Schedule::parse(&job.schedule)
            .ok()
            .and_then(|s| s.next_after(Utc::now(), tz));
        info!(
            job = %job.name,
            schedule = %job.schedule,
            next = %next.map(|n| n.with_timezone(&tz).to_rfc3339()).unwrap_or_default(),
            catching_up = planner.has_pending(i),
            "job scheduled"
        );
    }
    let mut running: JoinSet<(usize, DateTime<Utc>, Trigger, Result<Outcome>)> = JoinSet::new();
    let mut busy = vec![false; planner.len()];
    let mut not_before = vec![DateTime::<Utc>::MIN_UTC; planner.len()];
    loop {
        let now = Utc::now();
        planner.advance(now);
        for i in 0..planner.len() {
            if busy[i] || now < not_before[i] {
                continue;
            }
            if let Some((slot, trigger)) = planner.take(i) {
                busy[i] = true;
                let (config, lake, job, cancel) = (
                    config.clone(),
                    lake.clone(),
                    planner.job(i).clone(),
                    cancel.clone(),
                );
                running.spawn(async move {
                    let outcome = run_slot(&config, &lake, &job, slot, trigger, cancel).await;
                    (i, slot, trigger, outcome)
                });
            }
        }
        let mut wake = planner.next_fire().unwrap_or(now + Duration::minutes(1));
        for i in 0..planner.len() {
            if planner.has_pending(i) && !busy[i] {
                wake = wake.min(not_before[i]);
            }
        }
        // Look at the wall clock at least once a minute (a suspended
        // machine or a clock step is noticed).
        let sleep = (wake - now)
            .clamp(Duration::milliseconds(10), Duration::minutes(1))
            .to_std()
            .unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                settle(done, &mut planner, &mut busy, &mut not_before);
            }
            _ = raised(&mut stopping) => break,
        }
    }
    // Stopping: the running runs finish, or are cancelled when the grace
    // period ends and record themselves as cancelled.
    let deadline = tokio::time::Instant::now() + grace + std::time::Duration::from_secs(30);
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, running.join_next()).await {
            Ok(Some(done)) => settle(done, &mut planner, &mut busy, &mut not_before),
            Ok(None) => break,
            Err(_) => {
                warn!(
                    "runs still recording after the grace period; leaving them to their lease expiry"
                );
                break;
            }
        }
    }
    info!("scheduler stopped");
    Ok(())
}

type Done =
    std::result::Result<(usize, DateTime<Utc>, Trigger, Result<Outcome>), tokio::task::JoinError>;

fn settle(done: Done, planner: &mut Planner, busy: &mut [bool], not_before: &mut [DateTime<Utc>]) {
    let (i, slot, trigger, outcome) = match done {
        Ok(done) => done,
        Err(e) => {
            error!("a run task ended abnormally: {e}");
            return;
        }
    };
    busy[i] = false;
    match outcome {
        Ok(Outcome::Ran(_)) | Ok(Outcome::Settled) => {}
        Ok(Outcome::Busy(h)) => {
            // Another process runs the job: try again shortly; the slot is
            // skipped then if that process settled it.
            planner.put_back(i, slot, trigger);
            not_before[i] = Utc::now() + Duration::seconds(1);
            tracing::debug!(job = %planner.job(i).name, holder = %h.entry.holder, "job busy elsewhere");
        }
        Err(e) => {
            error!(job = %planner.job(i).name, slot = %slot, "run could not start or be recorded: {e:#}; trying again in 10s");
            planner.put_back(i, slot, trigger);
            not_before[i] = Utc::now() + Duration::seconds(10);
        }
    }
}

/// `learnlake status`.
pub async fn status(config: &Config, lake: &Store) -> Result<()> {
    let tz = config.tz().map_err(|e| anyhow!(e))?;
    let now = Utc::now();
    let history = runs::by_job(runs::history(lake).await?);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    if config.jobs.is_empty() {
        println!("No [[jobs]] in the config.");
    }
    let mut names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    names.extend(
        history
            .keys()
            .map(String::as_str)
            .filter(|n| !config.jobs.iter().any(|j| j.name == *n)),
    );
    println!(
        "{:<14} {:<18} {:<22} last run",
        "job",
        "schedule",
        format!("next ({tz})")
    );
    for name in names {
        let job = config.jobs.iter().find(|j| j.name == name);
        let next = job
            .and_then(|j| Schedule::parse(&j.schedule).ok())
            .and_then(|s| s.next_after(now, tz))
            .map_or_else(|| "-".to_string(), local);
        let last = history.get(name).and_then(|h| h.last.as_ref()).map_or_else(
            || "never".to_string(),
            |r| {
                format!(
                    "{} ({}, slot {}, {:.0}s){}",
                    r.status.as_str(),
                    r.trigger,
                    local(r.scheduled_for),
                    (r.finished_at - r.started_at).num_milliseconds() as f64 / 1e3,
                    r.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            },
        );
        println!(
            "{:<14} {:<18} {:<22} {}",
            name,
            job.map_or("(not in config)", |j| j.schedule.as_str()),
            next,
            last
        );
        if let Some(h) = runs::holder(lake, name, now).await? {
            println!(
                "{:<14} running now: run {} on {} since {} (lease until {})",
                "",
                h.entry.run_id,
                h.entry.holder,
                local(h.entry.acquired_at),
                local(h.expires_at)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{NaiveTime, TimeZone};

    use super::*;

    fn job(name: &str, schedule: &str, catch_up: CatchUp) -> JobConfig {
        JobConfig {
            name: name.into(),
            schedule: schedule.into(),
            steps: vec!["ingest".into()],
            catch_up,
            retries: 2,
            retry_backoff_seconds: 30,
        }
    }

    /// A year of a daemon's loop on a simulated clock: each wake-up jumps
    /// to the next fire time, and each due slot "runs" at once.
    #[test]
    fn a_simulated_year_runs_every_slot_once_at_its_local_time() {
        for tz in [chrono_tz::Europe::London, chrono_tz::America::New_York] {
            let jobs = [
                job("weekly", "0 0 7 * * Mon", CatchUp::Latest),
                job("night-back", "0 30 1 * * *", CatchUp::Latest),
                job("night-forward", "0 30 2 * * *", CatchUp::Latest),
            ];
            let start = tz
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .unwrap()
                .with_timezone(&Utc);
            let end = tz
                .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .unwrap()
                .with_timezone(&Utc);
            let mut planner = Planner::new(&jobs, tz, &BTreeMap::new(), start).unwrap();
            let mut runs: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
            let mut clock = start;
            while let Some(next) = planner.next_fire() {
                assert!(next > clock);
                if next >= end {
                    break;
                }
                clock = next;
                planner.advance(clock);
                for i in 0..planner.len() {
                    while let Some((slot, trigger)) = planner.take(i) {
                        assert_eq!(trigger, Trigger::Schedule);
                        assert_eq!(slot, clock, "a slot runs when it is due");
                        runs.entry(jobs[i].name.as_str()).or_default().push(slot);
                    }
                }
            }
            assert_eq!(runs["weekly"].len(), 52, "{tz}");
            for slot in &runs["weekly"] {
                assert_eq!(
                    slot.with_timezone(&tz).time(),
                    NaiveTime::from_hms_opt(7, 0, 0).unwrap()
                );
            }
            for name in ["night-back", "night-forward"] {
                let days: std::collections::BTreeSet<_> = runs[name]
                    .iter()
                    .map(|s| s.with_timezone(&tz).date_naive())
                    .collect();
                // One run on each of the 365 days (the spring-forward night
                // of a time that does not exist runs at the end of the gap),
                // none twice.
                assert_eq!((runs[name].len(), days.len()), (365, 365), "{tz} {name}");
            }
        }
    }

    fn settled(job: &str, slots: &[DateTime<Utc>]) -> BTreeMap<String, JobHistory> {
        let mut h = JobHistory::default();
        h.settled.extend(slots.iter().copied());
        BTreeMap::from([(job.to_string(), h)])
    }

    #[test]
    fn slots_missed_while_down_are_caught_up_by_policy() {
        let tz = chrono_tz::UTC;
        let at = |h: u32| Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
        // Hourly; last settled at 03:00; the daemon starts at 07:30.
        let history = settled("j", &[at(3)]);
        for (policy, expected) in [
            (CatchUp::Latest, vec![at(7)]),
            (CatchUp::All, vec![at(4), at(5), at(6), at(7)]),
            (CatchUp::None, vec![]),
        ] {
            let jobs = [job("j", "0 0 * * * *", policy)];
            let mut planner =
                Planner::new(&jobs, tz, &history, at(7) + Duration::minutes(30)).unwrap();
            let mut taken = Vec::new();
            while let Some((slot, trigger)) = planner.take(0) {
                assert_eq!(trigger, Trigger::CatchUp);
                taken.push(slot);
            }
            assert_eq!(taken, expected, "{policy:?}");
        }
        // An abandoned (unsettled) newest slot is run again.
        let mut history = settled("j", &[at(3)]);
        history.get_mut("j").unwrap().unsettled.insert(at(4));
        let jobs = [job("j", "0 0 * * * *", CatchUp::Latest)];
        let mut planner = Planner::new(&jobs, tz, &history, at(4) + Duration::minutes(5)).unwrap();
        assert_eq!(planner.take(0), Some((at(4), Trigger::CatchUp)));
        // A job that never ran misses nothing.
        let mut planner = Planner::new(&jobs, tz, &BTreeMap::new(), at(9)).unwrap();
        assert_eq!(planner.take(0), None);
    }

    #[test]
    fn an_overrun_runs_the_newest_waiting_slot_next() {
        let tz = chrono_tz::UTC;
        let at = |m: u32| Utc.with_ymd_and_hms(2026, 12, 1, 10, m, 0).unwrap();
        let jobs = [job("j", "0 */15 * * * *", CatchUp::Latest)];
        let mut planner = Planner::new(&jobs, tz, &BTreeMap::new(), at(0)).unwrap();
        planner.advance(at(15));
        assert_eq!(planner.take(0), Some((at(15), Trigger::Schedule)));
        // That run lasts 35 minutes: 10:30 and 10:45 come due meanwhile.
        planner.advance(at(50));
        assert_eq!(planner.take(0), Some((at(45), Trigger::Schedule)));
        assert_eq!(planner.take(0), None);
    }
}
