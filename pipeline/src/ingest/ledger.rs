//! The ingest ledger (`_meta/ingest_ledger/<kind>-<commit>.json`): which
//! batches are committed and which landing files were read to their end.
//! A commit's rows are committed by the table's Delta commit, which carries
//! each batch's transaction id; the ledger entry written after it lets the
//! next run skip those files without reading them (a run restarted between
//! the two finds the transaction ids and writes the entry). Nothing here
//! reads landing files or writes table data.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::crash::crash_point;
use crate::lake::Store;
use crate::{Error, Result};

/// One entry of the ingest ledger (`_meta/ingest_ledger/<kind>-<batch>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub batch_id: String,
    pub kind: String,
    pub committed_at: DateTime<Utc>,
    pub sources: Vec<LedgerSource>,
    /// The batches this entry commits (one commit can hold several); empty
    /// in entries written before commits held more than one batch, whose
    /// `batch_id` is the batch.
    #[serde(default)]
    pub batches: Vec<String>,
    pub rows_accepted: u64,
    pub duplicates: u64,
    pub rows_quarantined: u64,
}

/// The part of one landing file a batch read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerSource {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub version: String,
    /// First and last line read (1-based); 0, 0 for a whole-file quarantine.
    pub first_line: u64,
    pub last_line: u64,
    /// This batch read the file to its end.
    pub complete: bool,
}

const LEDGER: &str = "_meta/ingest_ledger";

pub(super) struct Ledger {
    pub(super) committed: HashSet<String>,
    /// (kind, path, size, version) → sha256 of files read to their end
    /// for that kind (an xAPI file feeds activity and attempts, each once).
    pub(super) done_by_version: HashMap<(String, String, u64, String), String>,
    /// (kind, path, size, sha256) of files read to their end.
    pub(super) done: HashSet<(String, String, u64, String)>,
}

impl Ledger {
    pub(super) async fn load(lake: &Store) -> Result<Self> {
        let mut ledger = Ledger {
            committed: HashSet::new(),
            done_by_version: HashMap::new(),
            done: HashSet::new(),
        };
        for meta in lake.list(LEDGER).await? {
            let rel = lake.relative(&meta.location);
            if !rel.ends_with(".json") {
                continue;
            }
            let bytes = lake.get(&rel).await?;
            let entry: LedgerEntry =
                serde_json::from_slice(&bytes).map_err(|e| Error::ReadTable {
                    table: format!("{rel} (ingest ledger)"),
                    source: Box::new(e),
                })?;
            for s in entry.sources.iter().filter(|s| s.complete) {
                ledger.done_by_version.insert(
                    (
                        entry.kind.clone(),
                        s.path.clone(),
                        s.size,
                        s.version.clone(),
                    ),
                    s.sha256.clone(),
                );
                ledger
                    .done
                    .insert((entry.kind.clone(), s.path.clone(), s.size, s.sha256.clone()));
            }
            ledger.committed.extend(entry.batches);
            ledger.committed.insert(entry.batch_id);
        }
        Ok(ledger)
    }
}

pub(super) async fn commit(lake: &Store, entry: &LedgerEntry) -> Result<()> {
    let json = serde_json::to_vec_pretty(entry).map_err(|e| Error::WriteTable {
        table: LEDGER.into(),
        source: Box::new(e),
    })?;
    lake.put(
        &format!("{LEDGER}/{}-{}.json", entry.kind, entry.batch_id),
        Bytes::from(json),
    )
    .await?;
    crash_point();
    Ok(())
}
