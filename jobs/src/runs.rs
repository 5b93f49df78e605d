//! The scheduler's state in the lake, shared by every daemon and every
//! `learnlake run` on one lake:
//!
//! - **`job_runs`** (`_meta/job_runs`, a Delta table, PRODUCT §9): one row
//!   per finished run, appended by one commit whose transaction id is the
//!   run's id, so a retried write never adds it twice.
//! - **Leases** (`_meta/jobs/<job>/lease-<n>.json`): whoever creates lease
//!   `n + 1` (a conditional put, which exactly one writer wins) runs the job;
//!   its holder renews it (`lease-<n>.state.json`, written by the holder only)
//!   until it releases it. A lease not renewed for `lease_seconds` has
//!   expired: its holder died, and the next one records that run as
//!   `abandoned`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use learnlake_pipeline::lake::delta::{self, DataFile};
use learnlake_pipeline::lake::{LakeTable, Store, parquet_io};
use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every step succeeded.
    Succeeded,
    /// A step failed on its last attempt; the rest did not run.
    Failed,
    /// Stopped by SIGTERM or ctrl-c after the grace period.
    Cancelled,
    /// Its process died mid-run (found by the next holder of the lease).
    Abandoned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Status::Succeeded,
            Status::Failed,
            Status::Cancelled,
            Status::Abandoned,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The slot needs no other run: it succeeded, or failed after its
    /// retries (the next slot is the next chance). A cancelled or
    /// abandoned slot is run again.
    pub fn settles_slot(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed)
    }
}

/// One row of `job_runs`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub job: String,
    pub run_id: String,
    pub scheduled_for: DateTime<Utc>,
    /// `schedule`, `catch-up` or `manual`.
    pub trigger: String,
    /// The lease holder: `host:pid`.
    pub host: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: Status,
    pub steps_total: i32,
    pub steps_succeeded: i32,
    /// Step attempts, retries included.
    pub attempts: i32,
    /// Each finished step's counts, as a JSON object by step.
    pub step_counts: String,
    pub error: Option<String>,
}

fn folder() -> &'static str {
    LakeTable::JobRuns.folder()
}

/// Appends `record` to `job_runs` (once, whatever the retries).
pub async fn record(lake: &Store, record: &RunRecord) -> Result<()> {
    let schema = LakeTable::JobRuns
        .file_schema()
        .expect("job_runs has a schema");
    let mut table = delta::open_or_create(lake, folder(), &schema, None).await?;
    let app = format!("learnlake-run-{}", record.run_id);
    if delta::applied_version(&table, folder(), &app)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let micros = |t: DateTime<Utc>| {
        Arc::new(TimestampMicrosecondArray::from(vec![t.timestamp_micros()]).with_timezone("UTC"))
            as ArrayRef
    };
    let text = |t: &str| Arc::new(StringArray::from(vec![t])) as ArrayRef;
    let int = |n: i32| Arc::new(Int32Array::from(vec![n])) as ArrayRef;
    let columns = vec![
        text(&record.job),
        text(&record.run_id),
        micros(record.scheduled_for),
        text(&record.trigger),
        text(&record.host),
        micros(record.started_at),
        micros(record.finished_at),
        text(record.status.as_str()),
        int(record.steps_total),
        int(record.steps_succeeded),
        int(record.attempts),
        text(&record.step_counts),
        Arc::new(StringArray::from(vec![record.error.as_deref()])) as ArrayRef,
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let data = parquet_io::encode(&schema, &[batch])?;
    let path = format!("part-{}.parquet", record.run_id);
    let size = data.len() as u64;
    lake.put(&format!("{}/{path}", folder()), data).await?;
    let mut commit = delta::Commit::append(vec![DataFile {
        path,
        size,
        rows: 1,
        partition: None,
    }]);
    commit.app_transactions = vec![(app, 1)];
    commit.info = vec![(
        "learnlake".to_string(),
        serde_json::json!({ "operation": "job run", "job": record.job, "run_id": record.run_id }),
    )];
    delta::commit(&mut table, folder(), commit)
        .await
        .with_context(|| {
            format!(
                "recording run {} of {} in job_runs",
                record.run_id, record.job
            )
        })?;
    // Every run reads the history first: keep the table to a few files
    // (one per run otherwise; a 15-minute job makes 35,000 a year). The
    // merged-away files go at the next vacuum.
    if delta::files(&table, folder())?.len() > COMPACT_AFTER_FILES
        && let Err(e) = delta::compact(lake, folder(), 64 << 20, None).await
    {
        tracing::warn!("compacting job_runs failed ({e}); the next run tries again");
    }
    Ok(())
}

/// job_runs is merged into one file once it has more than this many.
const COMPACT_AFTER_FILES: usize = 32;

/// Every recorded run, oldest slot first.
pub async fn history(lake: &Store) -> Result<Vec<RunRecord>> {
    let mut rows = Vec::new();
    for file in delta::current_files(lake, folder()).await? {
        let data = lake.get(&file).await?;
        for batch in parquet_io::decode(data, None)? {
            rows.extend(rows_of(&batch).with_context(|| format!("reading {file}"))?);
        }
    }
    rows.sort_by(|a: &RunRecord, b| {
        (a.scheduled_for, a.finished_at).cmp(&(b.scheduled_for, b.finished_at))
    });
    Ok(rows)
}

fn rows_of(batch: &RecordBatch) -> Result<Vec<RunRecord>> {
    // Files merged by `compact` (delta-rs's writer) may hold the same
    // columns in other Arrow encodings (string views): read them as ours.
    let schema = LakeTable::JobRuns
        .file_schema()
        .expect("job_runs has a schema");
    let mut columns = Vec::new();
    for field in schema.fields() {
        let column = batch
            .column_by_name(field.name())
            .with_context(|| format!("job_runs has no column {}", field.name()))?;
        columns.push(datafusion::arrow::compute::cast(column, field.data_type())?);
    }
    let batch = &RecordBatch::try_new(schema, columns)?;
    let text = |name: &str| -> Result<&StringArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .with_context(|| format!("job_runs has no text column {name}"))
    };
    let time = |name: &str| -> Result<&TimestampMicrosecondArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .with_context(|| format!("job_runs has no timestamp column {name}"))
    };
    let int = |name: &str| -> Result<&Int32Array> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
            .with_context(|| format!("job_runs has no integer column {name}"))
    };
    let at = |a: &TimestampMicrosecondArray, i: usize| {
        DateTime::from_timestamp_micros(a.value(i)).unwrap_or_default()
    };
    let (job, run_id, trigger, host, status, counts, error) = (
        text("job")?,
        text("run_id")?,
        text("trigger")?,
        text("host")?,
        text("status")?,
        text("step_counts")?,
        text("error")?,
    );
    let (scheduled, started, finished) = (
        time("scheduled_for")?,
        time("started_at")?,
        time("finished_at")?,
    );
    let (total, succeeded, attempts) = (
        int("steps_total")?,
        int("steps_succeeded")?,
        int("attempts")?,
    );
    (0..batch.num_rows())
        .map(|i| {
            Ok(RunRecord {
                job: job.value(i).to_string(),
                run_id: run_id.value(i).to_string(),
                scheduled_for: at(scheduled, i),
                trigger: trigger.value(i).to_string(),
                host: host.value(i).to_string(),
                started_at: at(started, i),
                finished_at: at(finished, i),
                status: Status::parse(status.value(i))
                    .with_context(|| format!("unknown run status {:?}", status.value(i)))?,
                steps_total: total.value(i),
                steps_succeeded: succeeded.value(i),
                attempts: attempts.value(i),
                step_counts: counts.value(i).to_string(),
                error: (!error.is_null(i)).then(|| error.value(i).to_string()),
            })
        })
        .collect()
}

/// What the scheduler needs from the history, per job.
#[derive(Debug, Default)]
pub struct JobHistory {
    /// Slots that need no other run.
    pub settled: std::collections::BTreeSet<DateTime<Utc>>,
    /// Slots recorded as cancelled or abandoned and not settled since.
    pub unsettled: std::collections::BTreeSet<DateTime<Utc>>,
    /// The newest run of the job.
    pub last: Option<RunRecord>,
    /// Run ids recorded (an abandoned run is recorded once).
    pub run_ids: std::collections::HashSet<String>,
}

/// The history of each job.
pub fn by_job(rows: Vec<RunRecord>) -> BTreeMap<String, JobHistory> {
    let mut jobs: BTreeMap<String, JobHistory> = BTreeMap::new();
    for row in rows {
        let job = jobs.entry(row.job.clone()).or_default();
        job.run_ids.insert(row.run_id.clone());
        if row.trigger != "manual" {
            if row.status.settles_slot() {
                job.settled.insert(row.scheduled_for);
            } else {
                job.unsettled.insert(row.scheduled_for);
            }
        }
        if job
            .last
            .as_ref()
            .is_none_or(|l| row.finished_at >= l.finished_at)
        {
            job.last = Some(row);
        }
    }
    for job in jobs.values_mut() {
        let JobHistory {
            settled, unsettled, ..
        } = job;
        unsettled.retain(|s| !settled.contains(s));
    }
    jobs
}

/// A lease's content (`lease-<n>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseEntry {
    pub holder: String,
    pub run_id: String,
    pub job: String,
    pub scheduled_for: DateTime<Utc>,
    pub trigger: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The holder's renewals and release (`lease-<n>.state.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LeaseState {
    expires_at: DateTime<Utc>,
    released: bool,
}

/// Who holds a job's lease now.
#[derive(Clone, Debug)]
pub struct Holder {
    pub entry: LeaseEntry,
    pub expires_at: DateTime<Utc>,
}

/// A lease this process holds.
#[derive(Clone, Debug)]
pub struct Lease {
    pub number: u64,
    pub entry: LeaseEntry,
    /// The lease before this one expired unreleased: its run died.
    pub abandoned: Option<LeaseEntry>,
}

/// The outcome of trying to take a job's lease.
#[derive(Debug)]
pub enum Acquire {
    Acquired(Lease),
    /// Someone else runs the job.
    Busy(Holder),
}

fn lease_folder(job: &str) -> String {
    format!("_meta/jobs/{job}")
}

fn lease_path(job: &str, n: u64) -> String {
    format!("{}/lease-{n:012}.json", lease_folder(job))
}

fn state_path(job: &str, n: u64) -> String {
    format!("{}/lease-{n:012}.state.json", lease_folder(job))
}

/// This process's name as a lease holder: `host:pid`.
pub fn holder_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}

/// The newest lease of `job` and whether it is still held.
async fn newest(lake: &Store, job: &str) -> Result<Option<(u64, LeaseEntry, Option<LeaseState>)>> {
    let prefix = format!("{}/lease-", lease_folder(job));
    let newest = lake
        .list(&lease_folder(job))
        .await?
        .iter()
        .filter_map(|m| {
            let rel = lake.relative(&m.location);
            rel.strip_prefix(&prefix)?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()
        })
        .max();
    let Some(n) = newest else {
        return Ok(None);
    };
    let entry: LeaseEntry = serde_json::from_slice(&lake.get(&lease_path(job, n)).await?)
        .with_context(|| format!("reading {}", lease_path(job, n)))?;
    let state = match lake.get_opt(&state_path(job, n)).await? {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", state_path(job, n)))?,
        ),
        None => None,
    };
    Ok(Some((n, entry, state)))
}

/// The run of `job`'s newest lease if that lease was never released: a
/// run going on now, or one whose process died (its slot is not settled).
pub async fn unreleased(lake: &Store, job: &str) -> Result<Option<LeaseEntry>> {
    Ok(match newest(lake, job).await? {
        Some((_, entry, state)) if !state.as_ref().is_some_and(|s| s.released) => Some(entry),
        _ => None,
    })
}

/// The current holder of `job`'s lease, if it is held and not expired.
pub async fn holder(lake: &Store, job: &str, now: DateTime<Utc>) -> Result<Option<Holder>> {
    Ok(match newest(lake, job).await? {
        Some((_, entry, state)) => {
            let (expires_at, released) = match &state {
                Some(s) => (s.expires_at, s.released),
                None => (entry.expires_at, false),
            };
            (!released && expires_at > now).then_some(Holder { entry, expires_at })
        }
        None => None,
    })
}

/// Takes `job`'s lease for one run, unless a live holder has it.
pub async fn acquire(
    lake: &Store,
    mut entry: LeaseEntry,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Acquire> {
    let job = entry.job.clone();
    let (next, abandoned) = match newest(lake, &job).await? {
        None => (0, None),
        Some((n, previous, state)) => {
            let (expires_at, released) = match &state {
                Some(s) => (s.expires_at, s.released),
                None => (previous.expires_at, false),
            };
            if !released && expires_at > now {
                return Ok(Acquire::Busy(Holder {
                    entry: previous,
                    expires_at,
                }));
            }
            (n + 1, (!released).then_some(previous))
        }
    };
    entry.acquired_at = now;
    entry.expires_at = now + ttl;
    let body = Bytes::from(serde_json::to_vec_pretty(&entry)?);
    if !lake.put_if_absent(&lease_path(&job, next), body).await? {
        // Another process took lease `next` between our read and write.
        return match holder(lake, &job, now).await? {
            Some(h) => Ok(Acquire::Busy(h)),
            None => Box::pin(acquire(lake, entry, ttl, now)).await,
        };
    }
    // Older leases are history nobody reads.
    if let Some(old) = next.checked_sub(2) {
        lake.delete(&lease_path(&job, old)).await?;
        lake.delete(&state_path(&job, old)).await?;
    }
    Ok(Acquire::Acquired(Lease {
        number: next,
        entry,
        abandoned,
    }))
}

impl Lease {
    /// Extends the lease to `now + ttl`; `false` when another process has
    /// taken the job since (this one stalled past its expiry).
    pub async fn renew(&self, lake: &Store, ttl: Duration, now: DateTime<Utc>) -> Result<bool> {
        if lake
            .get_opt(&lease_path(&self.entry.job, self.number + 1))
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let state = LeaseState {
            expires_at: now + ttl,
            released: false,
        };
        lake.put(
            &state_path(&self.entry.job, self.number),
            Bytes::from(serde_json::to_vec(&state)?),
        )
        .await?;
        Ok(true)
    }

    /// Gives the job back: the next run may start at once.
    pub async fn release(&self, lake: &Store, now: DateTime<Utc>) -> Result<()> {
        let state = LeaseState {
            expires_at: now,
            released: true,
        };
        lake.put(
            &state_path(&self.entry.job, self.number),
            Bytes::from(serde_json::to_vec(&state)?),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(holder: &str, run: &str) -> LeaseEntry {
        LeaseEntry {
            holder: holder.into(),
            run_id: run.into(),
            job: "weekly".into(),
            scheduled_for: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            trigger: "schedule".into(),
            acquired_at: DateTime::UNIX_EPOCH,
            expires_at: DateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_expired_lease_is_taken_over_as_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Store::open(dir.path().to_str().unwrap(), true).unwrap();
        let ttl = Duration::seconds(10);
        let t0 = Utc::now();
        let Acquire::Acquired(a) = acquire(&lake, entry("a", "r1"), ttl, t0).await.unwrap() else {
            panic!("a free job's lease is taken");
        };
        assert!(a.abandoned.is_none());
        // b cannot take it while a holds it, even after a renews past the
        // first expiry.
        assert!(matches!(
            acquire(&lake, entry("b", "r2"), ttl, t0 + Duration::seconds(5)).await.unwrap(),
            Acquire::Busy(h) if h.entry.holder == "a"
        ));
        assert!(
            a.renew(&lake, ttl, t0 + Duration::seconds(8))
                .await
                .unwrap()
        );
        assert!(matches!(
            acquire(&lake, entry("b", "r2"), ttl, t0 + Duration::seconds(15))
                .await
                .unwrap(),
            Acquire::Busy(_)
        ));
        // a released: b takes it at once, and nothing was abandoned.
        a.release(&lake, t0 + Duration::seconds(16)).await.unwrap();
        let Acquire::Acquired(b) =
            acquire(&lake, entry("b", "r2"), ttl, t0 + Duration::seconds(16))
                .await
                .unwrap()
        else {
            panic!("a released lease is taken");
        };
        assert!(b.abandoned.is_none());
        // b dies: c waits for the expiry, then finds b's run abandoned.
        assert!(matches!(
            acquire(&lake, entry("c", "r3"), ttl, t0 + Duration::seconds(20))
                .await
                .unwrap(),
            Acquire::Busy(_)
        ));
        let Acquire::Acquired(c) =
            acquire(&lake, entry("c", "r3"), ttl, t0 + Duration::seconds(27))
                .await
                .unwrap()
        else {
            panic!("an expired lease is taken over");
        };
        assert_eq!(c.abandoned.map(|e| e.run_id).as_deref(), Some("r2"));
        // b wakes up: its renewal says it lost the job.
        assert!(
            !b.renew(&lake, ttl, t0 + Duration::seconds(28))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn racing_processes_get_the_lease_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Store::open(dir.path().to_str().unwrap(), true).unwrap();
        let now = Utc::now();
        let attempts = (0..16).map(|i| {
            let lake = lake.clone();
            tokio::spawn(async move {
                acquire(
                    &lake,
                    entry(&format!("p{i}"), &format!("r{i}")),
                    Duration::seconds(30),
                    now,
                )
                .await
                .unwrap()
            })
        });
        let outcomes = futures::future::join_all(attempts).await;
        let won = outcomes
            .into_iter()
            .filter(|o| matches!(o.as_ref().unwrap(), Acquire::Acquired(_)))
            .count();
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn a_run_is_recorded_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Store::open(dir.path().to_str().unwrap(), true).unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let run = RunRecord {
            job: "weekly".into(),
            run_id: "20270115T080000Z-1a2b".into(),
            scheduled_for: at,
            trigger: "schedule".into(),
            host: "h:1".into(),
            started_at: at,
            finished_at: at + Duration::seconds(3),
            status: Status::Failed,
            steps_total: 2,
            steps_succeeded: 1,
            attempts: 4,
            step_counts: r#"{"ingest":{"rows":3}}"#.into(),
            error: Some("analyze: boom".into()),
        };
        record(&lake, &run).await.unwrap();
        record(&lake, &run).await.unwrap();
        let rows = history(&lake).await.unwrap();
        assert_eq!(rows, vec![run.clone()]);
        let jobs = by_job(rows);
        assert!(jobs["weekly"].settled.contains(&at));
        // Many runs later the table is still a few files, every run in it.
        for i in 0..40 {
            let mut next = run.clone();
            next.run_id = format!("weekly-{i}");
            next.scheduled_for = at + Duration::days(i + 1);
            next.status = Status::Succeeded;
            record(&lake, &next).await.unwrap();
        }
        let table = delta::open(&lake, folder()).await.unwrap().unwrap();
        assert!(delta::files(&table, folder()).unwrap().len() <= super::COMPACT_AFTER_FILES);
        let rows = history(&lake).await.unwrap();
        assert_eq!(rows.len(), 41);
        assert_eq!(by_job(rows)["weekly"].settled.len(), 41);
    }
}
