//! Batches: landing text cut into runs of at most `batch_bytes` (at line
//! boundaries, across files), each named by a hash of exactly what it reads,
//! and split into work items for the parser threads. Only reads landing
//! files; never writes.

use std::io::{BufRead, BufReader};

use sha2::{Digest, Sha256};

use super::ledger::LedgerSource;
use super::records::Kind;
use super::source::{self, Format};
use super::{IngestOptions, Pending, progress};
use crate::lake::Store;
use crate::{Error, Result};

/// A run of input inside a batch.
pub(super) enum Unit {
    /// NDJSON lines `buf[start..end]` of source `source`, the first being `first_line`.
    Lines {
        source: usize,
        first_line: u64,
        start: usize,
        end: usize,
    },
    /// A whole CSV file's text.
    Csv { source: usize, text: Vec<u8> },
}

pub(super) struct Batch {
    pub(super) kind: Kind,
    pub(super) buf: Vec<u8>,
    pub(super) units: Vec<Unit>,
    pub(super) sources: Vec<LedgerSource>,
}

impl Batch {
    pub(super) fn new(kind: Kind) -> Self {
        Self {
            kind,
            buf: Vec::new(),
            units: Vec::new(),
            sources: Vec::new(),
        }
    }

    fn text_len(&self) -> usize {
        self.buf.len()
            + self
                .units
                .iter()
                .map(|u| match u {
                    Unit::Csv { text, .. } => text.len(),
                    Unit::Lines { .. } => 0,
                })
                .sum::<usize>()
    }

    /// The batch id: a hash of exactly what it reads.
    pub(super) fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kind.name());
        for s in &self.sources {
            h.update([0]);
            h.update(&s.path);
            h.update([0]);
            h.update(&s.sha256);
            h.update(format!(":{}:{}:{}", s.first_line, s.last_line, s.complete));
        }
        hex::encode(&h.finalize()[..10])
    }
}

/// Reads the pending sources in order and sends batches of about
/// `batch_bytes` of text, cut at line boundaries.
pub(super) fn cut_batches(
    landing: &Store,
    kind: Kind,
    pending: &[Pending],
    options: &IngestOptions,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> Result<()> {
    // A batch's text is read into one buffer of its final size (mapped
    // lazily): growing it by doubling copied every batch twice.
    let new_batch = || {
        let mut batch = Batch::new(kind);
        batch
            .buf
            .reserve(options.batch_bytes.saturating_add(1 << 20));
        batch
    };
    let mut batch = new_batch();
    let send = |batch: Batch| -> Result<()> {
        tx.blocking_send(batch)
            .map_err(|_| Error::Worker("ingest stopped before the reader finished".into()))
    };
    for (index, p) in pending.iter().enumerate() {
        let source = &p.source;
        let ledger_source = |first_line: u64, last_line: u64, complete: bool| LedgerSource {
            path: source.path.clone(),
            size: source.size,
            sha256: p.sha256.clone(),
            version: source.version.clone(),
            first_line,
            last_line,
            complete,
        };
        let read_err = |e: std::io::Error| Error::ReadFile {
            path: source.path.clone().into(),
            source: e,
        };
        let raw = source::open_raw(landing, source)?;
        let mut reader = BufReader::with_capacity(
            1 << 20,
            source::decompress(raw, source.compression).map_err(read_err)?,
        );
        if source.format == Some(Format::Csv) {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut text).map_err(read_err)?;
            let lines = memchr::memchr_iter(b'\n', &text).count() as u64 + 1;
            batch.units.push(Unit::Csv {
                source: index,
                text,
            });
            batch.sources.push(ledger_source(1, lines, true));
            progress(options, source.size);
            if batch.text_len() >= options.batch_bytes {
                send(std::mem::replace(&mut batch, new_batch()))?;
            }
            continue;
        }
        let mut line_no = 0u64;
        let mut first_line = 1u64;
        let mut start = batch.buf.len();
        loop {
            let before = batch.buf.len();
            let n = reader.read_until(b'\n', &mut batch.buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if batch.buf[before..].last() != Some(&b'\n') {
                batch.buf.push(b'\n');
            }
            if batch.buf.len() >= options.batch_bytes {
                batch.units.push(Unit::Lines {
                    source: index,
                    first_line,
                    start,
                    end: batch.buf.len(),
                });
                // Whether the file ends here decides `complete`: peek.
                let at_end = reader.fill_buf().map_err(read_err)?.is_empty();
                batch
                    .sources
                    .push(ledger_source(first_line, line_no, at_end));
                send(std::mem::replace(&mut batch, new_batch()))?;
                first_line = line_no + 1;
                start = 0;
                if at_end {
                    break;
                }
            }
        }
        // Unless the file ended exactly at a cut, its tail is in this batch.
        if first_line <= line_no || line_no == 0 {
            batch.units.push(Unit::Lines {
                source: index,
                first_line,
                start,
                end: batch.buf.len(),
            });
            batch.sources.push(ledger_source(first_line, line_no, true));
        }
        progress(options, source.size);
    }
    if !batch.sources.is_empty() {
        send(batch)?;
    }
    Ok(())
}

/// Splits a batch's units into work items of roughly equal size.
pub(super) fn work_items(batch: &Batch, threads: usize) -> Vec<(usize, u64, usize, usize)> {
    // (unit index, first line, start, end) — CSV units are one item each.
    let target = (batch.buf.len() / (threads * 4)).max(1 << 20);
    let mut items = Vec::new();
    for (u, unit) in batch.units.iter().enumerate() {
        match *unit {
            Unit::Csv { .. } => items.push((u, 1, 0, 0)),
            Unit::Lines {
                first_line,
                start,
                end,
                ..
            } => {
                let mut pos = start;
                let mut line = first_line;
                while pos < end {
                    let mut cut = (pos + target).min(end);
                    if cut < end {
                        cut = match memchr::memchr(b'\n', &batch.buf[cut..end]) {
                            Some(i) => cut + i + 1,
                            None => end,
                        };
                    }
                    items.push((u, line, pos, cut));
                    line += memchr::memchr_iter(b'\n', &batch.buf[pos..cut]).count() as u64;
                    pos = cut;
                }
            }
        }
    }
    items
}
