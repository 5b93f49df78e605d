//! The ingest ledger (`_meta/ingest_ledger/<kind>-<commit>.json`): which
//! batches are committed and which landing files were read to their end.
//! A commit's rows are committed by the table's Delta commit, which carries
//! each batch's transaction id; the ledger entry written after it lets the
//! next run skip those files without reading them (a run restarted between
//! the two finds the transaction ids and writes the entry). Nothing here
//! reads landing files or writes table data.

use std::collections::HashSet;

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
    /// `blake3:<hex>` of the file's bytes; bare SHA-256 hex in entries
    /// written before BLAKE3, under the field's old name `sha256`.
    #[serde(alias = "sha256")]
    pub content_hash: String,
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
    /// (kind, path, size, version) of files read to their end for that kind
    /// (an xAPI file feeds activity and attempts, each once).
    pub(super) done_by_version: HashSet<(String, String, u64, String)>,
    /// (kind, path, size, content hash) of files read to their end.
    pub(super) done: HashSet<(String, String, u64, String)>,
    /// (path, size) of files done by an entry that holds a SHA-256 content
    /// hash: such a file, touched since, is hashed the old way too, so that
    /// it is still recognised by its content.
    pub(super) legacy: HashSet<(String, u64)>,
}

impl Ledger {
    /// Whether the file was read to its end for `kind`, by its content hash
    /// (or, for a ledger entry written before BLAKE3, its SHA-256).
    pub(super) fn done(&self, kind: &str, path: &str, size: u64, hashes: &[&str]) -> bool {
        hashes.iter().any(|hash| {
            self.done
                .contains(&(kind.to_string(), path.to_string(), size, hash.to_string()))
        })
    }
}

impl Ledger {
    pub(super) async fn load(lake: &Store) -> Result<Self> {
        let mut ledger = Ledger {
            committed: HashSet::new(),
            done_by_version: HashSet::new(),
            done: HashSet::new(),
            legacy: HashSet::new(),
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
                ledger.done_by_version.insert((
                    entry.kind.clone(),
                    s.path.clone(),
                    s.size,
                    s.version.clone(),
                ));
                ledger.done.insert((
                    entry.kind.clone(),
                    s.path.clone(),
                    s.size,
                    s.content_hash.clone(),
                ));
                if !s.content_hash.starts_with("blake3:") {
                    ledger.legacy.insert((s.path.clone(), s.size));
                }
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
