//! Landing files: which kind and format each one is, and reading it as bytes
//! (decompressed, hashed) whatever store it sits in.

use std::io::{BufReader, Read};

use object_store::{ObjectMeta, ObjectStoreExt};
use sha2::{Digest, Sha256};

use super::records::Kind;
use crate::lake::Store;
use crate::{Error, Result};

/// How a file's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// How a file's rows are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

/// Whose format a file's records are in: learnlake's own raw contract, or
/// one of the learning-record formats of other systems (PRODUCT §3 "Other
/// input formats", mapped by `records::lms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dialect {
    Native,
    Xapi,
    Caliper,
    OpenEdx,
    Moodle,
}

impl Dialect {
    /// The other systems' formats, each with its landing folder.
    pub const LMS: [Dialect; 4] = [
        Dialect::Xapi,
        Dialect::Caliper,
        Dialect::OpenEdx,
        Dialect::Moodle,
    ];

    /// The landing folder (and the name in reports and docs).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Native => "native",
            Dialect::Xapi => "xapi",
            Dialect::Caliper => "caliper",
            Dialect::OpenEdx => "openedx",
            Dialect::Moodle => "moodle",
        }
    }

    /// The event kinds a file of this format feeds: every record is an
    /// activity event; scored ones are attempts too. Moodle's log holds no
    /// scores.
    fn kinds(self) -> &'static [Kind] {
        match self {
            Dialect::Native => &[],
            Dialect::Moodle => &[Kind::Activity],
            _ => &[Kind::Activity, Kind::Attempts],
        }
    }
}

/// One landing file.
#[derive(Clone, Debug)]
pub struct Source {
    /// Path relative to the landing root.
    pub path: String,
    pub size: u64,
    /// `last_modified` and e-tag, to skip re-hashing unchanged files.
    pub version: String,
    pub kind: Kind,
    /// `None` when the extension is not one of the contract's.
    pub format: Option<Format>,
    pub compression: Compression,
    pub dialect: Dialect,
}

/// Sorts landing objects into sources. Files that belong to no kind (a
/// README, `GENERATED.json`) are returned separately so they can be reported.
pub fn classify(landing: &Store, objects: &[ObjectMeta]) -> (Vec<Source>, Vec<String>) {
    let mut sources = Vec::new();
    let mut ignored = Vec::new();
    for meta in objects {
        let path = landing.relative(&meta.location);
        let file = path.rsplit('/').next().unwrap_or(&path);
        if file.starts_with('.') || file.starts_with('_') {
            continue;
        }
        let (kinds, dialect): (&[Kind], Dialect) = match kind_of(&path) {
            Some(kind) => (only(kind), Dialect::Native),
            None => match dialect_of(&path) {
                Some(d) => (d.kinds(), d),
                None => {
                    ignored.push(path);
                    continue;
                }
            },
        };
        let (stem, compression) = if let Some(s) = file.strip_suffix(".gz") {
            (s, Compression::Gzip)
        } else if let Some(s) = file.strip_suffix(".zst") {
            (s, Compression::Zstd)
        } else {
            (file, Compression::None)
        };
        let format = match stem
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
        {
            Some(ext) if ext == "jsonl" || ext == "ndjson" || ext == "json" => Some(Format::Ndjson),
            Some(ext) if ext == "csv" => Some(Format::Csv),
            // Open edX names its rotated logs `tracking.log-20260301`.
            _ if dialect == Dialect::OpenEdx && stem.contains(".log") => Some(Format::Ndjson),
            _ => None,
        };
        for &kind in kinds {
            sources.push(Source {
                path: path.clone(),
                size: meta.size,
                version: format!(
                    "{}/{}",
                    meta.last_modified.timestamp_micros(),
                    meta.e_tag.as_deref().unwrap_or("")
                ),
                kind,
                format,
                compression,
                dialect,
            });
        }
    }
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    (sources, ignored)
}

/// `kind` alone, as the kinds a native file feeds.
fn only(kind: Kind) -> &'static [Kind] {
    match kind {
        Kind::Activity => &[Kind::Activity],
        Kind::Attempts => &[Kind::Attempts],
        Kind::Students => &[Kind::Students],
        Kind::Courses => &[Kind::Courses],
        Kind::Enrollments => &[Kind::Enrollments],
        Kind::Assessments => &[Kind::Assessments],
    }
}

/// `xapi/…`, `caliper/…`, `openedx/…`, `moodle/…` (any depth).
fn dialect_of(path: &str) -> Option<Dialect> {
    let (first, _) = path.split_once('/')?;
    Dialect::LMS.into_iter().find(|d| d.name() == first)
}

/// `activity/…` and `attempts/…` (any depth); reference kinds are top-level
/// files named after the kind (`students.csv`, `students-2026-03.jsonl`) or
/// files in a folder of that name.
fn kind_of(path: &str) -> Option<Kind> {
    let (first, rest) = match path.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let by_name = |name: &str| {
        [
            Kind::Students,
            Kind::Courses,
            Kind::Enrollments,
            Kind::Assessments,
        ]
        .into_iter()
        .find(|k| {
            name == k.name()
                || name
                    .strip_prefix(k.name())
                    .is_some_and(|r| r.starts_with(['.', '-', '_']))
        })
    };
    match (first, rest) {
        (folder, Some(_)) if folder == Kind::Activity.name() => Some(Kind::Activity),
        (folder, Some(_)) if folder == Kind::Attempts.name() => Some(Kind::Attempts),
        (folder, Some(_)) => by_name(folder),
        (file, None) => by_name(file),
    }
}

/// Opens a source's raw (still compressed) bytes as a blocking reader. Must
/// run on a blocking thread when the store is remote.
pub fn open_raw(landing: &Store, source: &Source) -> Result<Box<dyn Read + Send>> {
    if let Some(root) = &landing.local_root {
        let path = root.join(&source.path);
        let file = std::fs::File::open(&path).map_err(|e| Error::ReadFile { path, source: e })?;
        return Ok(Box::new(file));
    }
    let handle = tokio::runtime::Handle::current();
    let location = landing.path(&source.path);
    let meta = handle
        .block_on(landing.inner.head(&location))
        .map_err(|e| Error::ObjectStore {
            location: landing.display(&source.path),
            source: e,
        })?;
    let reader = object_store::buffered::BufReader::new(landing.inner.clone(), &meta);
    Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
        reader, handle,
    )))
}

/// Wraps a raw reader with the source's decompression.
pub fn decompress<'a>(
    raw: Box<dyn Read + Send + 'a>,
    compression: Compression,
) -> std::io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            raw,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    })
}

/// What the first look at a file found.
#[derive(Clone)]
pub struct Inspection {
    /// The content hash of the raw bytes: `blake3:<hex>`.
    pub content_hash: String,
    /// SHA-256 of the raw bytes, hex, when asked for: the content hash of
    /// ledger entries written before BLAKE3 (see `Ledger::legacy`).
    pub sha256: Option<String>,
    /// Why the file cannot be ingested at all, if it cannot.
    pub unreadable: Option<String>,
    /// The start of its text, for the quarantine.
    pub head: Vec<u8>,
}

/// Hashes a source (and with `sha256`, hashes it the old way too) and
/// checks that it can be read as text: the first 64 KiB must decompress and
/// be UTF-8 without NUL bytes. A compressed reference file is decompressed
/// to the end (it is read whole later); an event file only to its head: the
/// reader finds corruption further on (`corrupt_reason`) before anything of
/// the run is committed, and the run starts again without the file
/// (`ingest_kind`). Decompressing every event file twice was 4 % of a
/// narrow ingest.
pub fn inspect(landing: &Store, source: &Source, sha256: bool) -> Result<Inspection> {
    let raw = open_raw(landing, source)?;
    let mut hasher = ContentHasher {
        blake3: blake3::Hasher::new(),
        sha256: sha256.then(Sha256::new),
    };
    let mut tee = HashingReader {
        inner: raw,
        hasher: &mut hasher,
    };
    let mut head = Vec::new();
    let mut unreadable = None;
    if source.format.is_none() {
        unreadable = Some(format!(
            "unsupported file type {:?}: expected .jsonl, .ndjson{} (optionally .gz or .zst)",
            source.path.rsplit('/').next().unwrap_or_default(),
            if source.kind.accepts_csv() {
                " or .csv"
            } else {
                ""
            }
        ));
    } else if source.format == Some(Format::Csv) && source.dialect != Dialect::Native {
        if source.dialect != Dialect::Moodle {
            unreadable = Some(format!(
                "{} records must be JSON (.json, .jsonl, .ndjson), not CSV",
                source.dialect.name()
            ));
        }
    } else if source.format == Some(Format::Csv) && !source.kind.accepts_csv() {
        unreadable = Some(format!(
            "{} must be NDJSON (.jsonl), not CSV",
            source.kind.name()
        ));
    }
    let to_the_end = !source.kind.is_event();
    let result = (|| -> std::io::Result<()> {
        let mut reader = decompress(Box::new(&mut tee), source.compression)?;
        let mut buf = vec![0u8; if to_the_end { 1 << 20 } else { 1 << 16 }];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if head.len() < 65_536 {
                let take = n.min(65_536 - head.len());
                head.extend_from_slice(&buf[..take]);
            } else if !to_the_end {
                return Ok(());
            }
        }
    })();
    if let Err(e) = result
        && unreadable.is_none()
    {
        unreadable = Some(corrupt_reason(source.compression, &e));
    }
    // Hash what is left even when decompression stopped early.
    std::io::copy(&mut tee, &mut std::io::sink()).map_err(|e| Error::ReadFile {
        path: source.path.clone().into(),
        source: e,
    })?;
    if unreadable.is_none()
        && let Some(reason) = not_text(&head)
    {
        unreadable = Some(reason);
    }
    Ok(Inspection {
        content_hash: format!("blake3:{}", hasher.blake3.finalize().to_hex()),
        sha256: hasher.sha256.map(|h| hex::encode(h.finalize())),
        unreadable,
        head,
    })
}

/// Why a file whose decompression failed with `e` cannot be read.
pub fn corrupt_reason(compression: Compression, e: &std::io::Error) -> String {
    match compression {
        Compression::Gzip => format!("corrupt gzip file: {e}"),
        Compression::Zstd => format!("corrupt zstd file: {e}"),
        Compression::None => format!("cannot read file: {e}"),
    }
}

/// A raw reader that tells whether reading it failed: a decompressor's
/// error over a reader that did not fail is the file's own corruption.
pub struct Watched<R> {
    inner: R,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<R> Watched<R> {
    pub fn new(inner: R) -> (Self, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let failed = std::sync::Arc::default();
        let watched = Self {
            inner,
            failed: std::sync::Arc::clone(&failed),
        };
        (watched, failed)
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        })
    }
}

/// Whether a file is not text at all: most of its first 64 KiB sits on
/// lines that are not UTF-8 or hold NUL bytes. A file with a few such lines
/// is text with bad lines, which the parser quarantines one by one.
fn not_text(head: &[u8]) -> Option<String> {
    let mut bad = 0usize;
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if line_problem(line, last).is_some() {
            bad += line.len() + 1;
        }
    }
    let bad = bad.min(head.len());
    if bad * 2 > head.len() {
        return Some(format!(
            "not a text file ({}% of its first {} bytes is binary: NUL bytes or invalid UTF-8); expected UTF-8 NDJSON or CSV",
            bad * 100 / head.len().max(1),
            head.len()
        ));
    }
    None
}

/// Why one line of a text file is not text, if it is not: the reason for the
/// quarantine. `at_end`: the line may be cut by a read window, so a
/// character cut at its end is fine.
pub fn line_problem(line: &[u8], at_end: bool) -> Option<String> {
    if let Some(at) = line.iter().position(|&b| b == 0) {
        return Some(format!(
            "line holds a NUL byte at column {}: not text; fix or remove the line",
            at + 1
        ));
    }
    match std::str::from_utf8(line) {
        Ok(_) => None,
        Err(e) if at_end && e.error_len().is_none() => None,
        Err(e) => Some(format!(
            "line is not UTF-8 text (invalid byte at column {}); re-export the file as UTF-8",
            e.valid_up_to() + 1
        )),
    }
}

/// BLAKE3 hashes a landing file at several times SHA-256's speed (a tenth
/// of a large ingest's CPU went to SHA-256); SHA-256 only for old ledgers.
struct ContentHasher {
    blake3: blake3::Hasher,
    sha256: Option<Sha256>,
}

struct HashingReader<'h, R> {
    inner: R,
    hasher: &'h mut ContentHasher,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.blake3.update(&buf[..n]);
        if let Some(sha256) = &mut self.hasher.sha256 {
            sha256.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_folders_and_file_names() {
        assert_eq!(kind_of("activity/2026/03/a.jsonl"), Some(Kind::Activity));
        assert_eq!(kind_of("attempts/x.ndjson.gz"), Some(Kind::Attempts));
        assert_eq!(kind_of("students.csv"), Some(Kind::Students));
        assert_eq!(kind_of("students-2026-03.jsonl"), Some(Kind::Students));
        assert_eq!(kind_of("enrollments/part1.csv"), Some(Kind::Enrollments));
        assert_eq!(kind_of("studentsx.csv"), None);
        assert_eq!(kind_of("README.md"), None);
        assert_eq!(kind_of("activity.jsonl"), None);
        assert_eq!(dialect_of("xapi/lrs/2026-03.json.gz"), Some(Dialect::Xapi));
        assert_eq!(dialect_of("moodle/log.csv"), Some(Dialect::Moodle));
        assert_eq!(dialect_of("openedx/tracking.log"), Some(Dialect::OpenEdx));
        assert_eq!(dialect_of("caliper.json"), None);
    }

    #[test]
    fn binary_and_non_utf8_heads_are_refused() {
        assert!(not_text(b"{\"a\":1}\n").is_none());
        assert!(not_text(b"\x00\x01\x02").unwrap().contains("binary"));
        assert!(not_text(b"caf\xe9 au lait").unwrap().contains("binary"));
        // A multi-byte character cut at the end of the window is fine.
        assert!(not_text("ab\u{e9}".as_bytes().split_last().unwrap().1).is_none());
    }

    #[test]
    fn a_few_bad_lines_do_not_make_a_file_binary() {
        let mut text = Vec::new();
        for i in 0..3000 {
            if i == 35 {
                text.extend_from_slice(b"\x00\xff\xfe garbage \x00\n");
            } else {
                text.extend_from_slice(format!("{{\"event_id\":\"e{i}\"}}\n").as_bytes());
            }
        }
        let head = &text[..text.len().min(65_536)];
        assert!(not_text(head).is_none());
        assert!(line_problem(b"\x00\xff", false).unwrap().contains("NUL"));
        assert!(
            line_problem(b"caf\xe9", false)
                .unwrap()
                .contains("not UTF-8")
        );
        assert!(line_problem(b"{}", false).is_none());
    }
}
