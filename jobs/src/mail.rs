//! E-mail delivery (PRODUCT.md §7, docs/REPORTS.md "Delivery"): messages
//! built with lettre, an outbox and a sent ledger in the lake, and the
//! `file` and `smtp` transports.
//!
//! Exactly once: every message has an id from (kind, period, recipient),
//! which is also its Message-ID. A run writes what it is about to send to
//! the outbox (`_meta/mail/outbox/`, one object per chunk of messages),
//! sends, records each message in the ledger (`_meta/mail/sent/`) as soon
//! as the transport accepts it, and removes the chunk when all of it is
//! settled. A later run first sends what an interrupted run left in the
//! outbox, and never sends an id the ledger holds. The file transport's
//! `.eml` name is the id, so a crash between writing it and recording it
//! sends nothing twice; over SMTP, a message the server accepted in the
//! instant before a crash, before its record was written (at most
//! `[email] parallel` of them), may go again, with the same Message-ID for
//! the receiving side to recognise.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use learnlake_pipeline::config::{EmailConfig, TlsMode, Transport};
use learnlake_pipeline::lake::Store;
use learnlake_pipeline::lake::erase::Subject;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::progress::Progress;

/// Where the outbox and ledgers live in the lake.
pub const LEDGER: &str = "_meta/mail";
/// Messages per outbox object.
const CHUNK: usize = 200;

/// An image shown inline in the HTML part (`<img src="cid:…">`).
#[derive(Clone, Debug)]
pub struct Image {
    pub cid: String,
    pub png: Vec<u8>,
}

/// A message before it becomes MIME: one recipient, both bodies.
#[derive(Clone, Debug)]
pub struct Draft {
    /// What it is: `admin_report`, `student_report`, `at_risk_alert`, …
    pub kind: String,
    /// The period it is about (the week's Monday, `YYYY-MM-DD`).
    pub period: String,
    /// The recipient's address (validated when the message is built).
    pub to: String,
    /// The recipient's display name, if known.
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub images: Vec<Image>,
}

impl Draft {
    /// The message id: the first 32 hex digits of SHA-256 over kind,
    /// period and recipient (lower-cased). The subject is left out on
    /// purpose: a subject that changed with a re-analysis must not make a
    /// second message for the same recipient and period.
    pub fn id(&self) -> String {
        message_id(&self.kind, &self.period, &self.to)
    }
}

pub fn message_id(kind: &str, period: &str, recipient: &str) -> String {
    let mut h = Sha256::new();
    for part in [kind, period, &recipient.trim().to_lowercase()] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

/// A header value with its line breaks (and other control characters)
/// replaced by spaces: a name or subject can never add a header.
pub fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An address as lettre checks it (RFC 5321 syntax, no CR/LF possible).
pub fn address(text: &str) -> Result<Address> {
    text.trim()
        .parse::<Address>()
        .map_err(|e| anyhow!("{text:?} is not an e-mail address ({e})"))
}

/// The `from` of the config as a mailbox (`Name <addr>` or `addr`).
pub fn from_mailbox(config: &EmailConfig) -> Result<Mailbox> {
    config.from.parse::<Mailbox>().map_err(|e| {
        anyhow!(
            "[email] from = {:?} is not an address like \"learnlake <reports@example.edu>\" ({e})",
            config.from
        )
    })
}

/// A message ready to go: its id, envelope and the MIME text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outgoing {
    pub id: String,
    pub kind: String,
    pub period: String,
    pub to: String,
    pub subject: String,
    pub from: String,
    /// The whole message (RFC 5322, 7-bit: lettre encodes every part).
    pub eml: String,
}

/// Builds the MIME message: multipart/alternative of the plain text and a
/// multipart/related of the HTML with its inline images.
pub fn build(from: &Mailbox, draft: &Draft, date: SystemTime) -> Result<Outgoing> {
    let to_address = address(&draft.to)?;
    let to = Mailbox::new(draft.to_name.as_deref().map(one_line), to_address.clone());
    let subject = one_line(&draft.subject);
    let id = draft.id();
    let mut related = MultiPart::related().singlepart(SinglePart::html(draft.html.clone()));
    let png = ContentType::parse("image/png").expect("a valid content type");
    for image in &draft.images {
        related = related.singlepart(
            Attachment::new_inline(image.cid.clone()).body(image.png.clone(), png.clone()),
        );
    }
    let body = MultiPart::alternative()
        .singlepart(SinglePart::plain(draft.text.clone()))
        .multipart(related);
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject.clone())
        .message_id(Some(format!("<{id}@learnlake>")))
        .date(date)
        .multipart(body)
        .with_context(|| format!("building the {} message to {}", draft.kind, draft.to))?;
    let eml = String::from_utf8(message.formatted())
        .context("lettre produced a message that is not text")?;
    Ok(Outgoing {
        id,
        kind: draft.kind.clone(),
        period: draft.period.clone(),
        to: to_address.to_string(),
        subject,
        from: from.email.to_string(),
        eml,
    })
}

/// The record of a message the transport accepted, or refused for good.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// `sent` or `failed`.
    pub status: String,
    pub kind: String,
    pub period: String,
    pub to: String,
    pub subject: String,
    pub at: chrono::DateTime<Utc>,
    pub transport: String,
    /// The server's answer, or the reason it failed.
    pub detail: String,
}

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    records: Vec<Record>,
}

/// Why a send did not succeed.
#[derive(Debug)]
enum SendError {
    /// May pass later (4xx, connection refused, timeout).
    Transient(String),
    /// Will not pass (5xx): recorded as failed, not retried.
    Permanent(String),
}

/// Where messages go.
pub enum Sender {
    /// `.eml` files under `<outbox>/<period>/`.
    File { dir: PathBuf },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        label: String,
    },
}

/// Settings of a delivery run beyond the config.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The first retry waits this long, doubling after each attempt.
    pub backoff: Duration,
    /// Attempts per message in one run.
    pub max_attempts: u32,
    /// The whole send of one message, connection included.
    pub timeout: Duration,
    /// Messages in flight at once. SMTP is a conversation of round trips
    /// (and lettre writes the final dot apart from the body, so each
    /// message also waits for a delayed ACK): one at a time, a loopback
    /// server took ~45 ms per message.
    pub parallel: usize,
}

impl Sender {
    pub fn from_config(config: &EmailConfig, timeout: Duration) -> Result<Self> {
        Ok(match config.transport {
            Transport::File => Sender::File {
                dir: PathBuf::from(&config.outbox),
            },
            Transport::Smtp => {
                let smtp = &config.smtp;
                if smtp.host.is_empty() {
                    bail!(
                        "email.transport is smtp but no host is set; set [email.smtp] host or LEARNLAKE_SMTP_HOST"
                    );
                }
                let builder = match smtp.tls {
                    TlsMode::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                    }
                    TlsMode::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                            .with_context(|| format!("STARTTLS to {}", smtp.host))?
                    }
                    TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                        .with_context(|| format!("TLS to {}", smtp.host))?,
                };
                let mut builder = builder.port(smtp.port).timeout(Some(timeout));
                match (&smtp.username, &smtp.password) {
                    (Some(user), Some(password)) => {
                        builder =
                            builder.credentials(Credentials::new(user.clone(), password.clone()));
                    }
                    (Some(_), None) => bail!(
                        "[email.smtp] username is set but LEARNLAKE_SMTP_PASSWORD is not; export the password"
                    ),
                    _ => {}
                }
                Sender::Smtp {
                    transport: builder.build(),
                    label: format!("smtp://{}:{}", smtp.host, smtp.port),
                }
            }
        })
    }

    fn label(&self) -> String {
        match self {
            Sender::File { dir } => format!("file://{}", dir.display()),
            Sender::Smtp { label, .. } => label.clone(),
        }
    }

    /// Where the file transport puts a message.
    pub fn file_path(dir: &Path, message: &Outgoing) -> PathBuf {
        dir.join(&message.period).join(format!(
            "{}-{}.eml",
            message.kind.replace(':', "-"),
            message.id
        ))
    }

    async fn send(&self, message: &Outgoing, timeout: Duration) -> Result<String, SendError> {
        match self {
            Sender::File { dir } => {
                let path = Self::file_path(dir, message);
                if path.exists() {
                    return Ok(format!("{} (written before)", path.display()));
                }
                write_atomically(&path, message.eml.as_bytes())
                    .map_err(|e| SendError::Transient(format!("{e:#}")))?;
                Ok(path.display().to_string())
            }
            Sender::Smtp { transport, .. } => {
                let from: Address = message
                    .from
                    .parse()
                    .map_err(|e| SendError::Permanent(format!("from address: {e}")))?;
                let to: Address = message
                    .to
                    .parse()
                    .map_err(|e| SendError::Permanent(format!("to address: {e}")))?;
                let envelope = Envelope::new(Some(from), vec![to])
                    .map_err(|e| SendError::Permanent(format!("envelope: {e}")))?;
                // lettre's own timeout covers the connect step only.
                match tokio::time::timeout(
                    timeout,
                    transport.send_raw(&envelope, message.eml.as_bytes()),
                )
                .await
                {
                    Err(_) => Err(SendError::Transient(format!(
                        "no answer within {} s",
                        timeout.as_secs_f64()
                    ))),
                    Ok(Ok(response)) => Ok(format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    )),
                    Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                    Ok(Err(e)) => Err(SendError::Transient(e.to_string())),
                }
            }
        }
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// What a delivery run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: usize,
    /// Skipped: an earlier run sent them.
    pub already: usize,
    /// Skipped: an earlier run recorded them as refused for good (they are
    /// not retried; see the ledger for the server's answer).
    pub failed_before: usize,
    /// Refused for good (5xx, bad address) in this run.
    pub failed: usize,
    /// Left in the outbox for the next run (the server kept failing).
    pub pending: usize,
    pub errors: Vec<String>,
}

/// Sends one message, retrying what may pass later (4xx, no connection,
/// no answer in time) with exponential backoff, up to `max_attempts`.
async fn send_one(
    sender: &Sender,
    tuning: &Tuning,
    message: &Outgoing,
) -> Result<String, SendError> {
    let mut attempt = 1;
    loop {
        match sender.send(message, tuning.timeout).await {
            Err(SendError::Transient(reason)) if attempt < tuning.max_attempts => {
                let wait = tuning.backoff * 2u32.saturating_pow(attempt - 1).min(64);
                info!(id = %message.id, attempt, wait_ms = wait.as_millis() as u64, %reason, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Summary {
    fn count_settled(&mut self, failed: bool) {
        if failed {
            self.failed_before += 1;
        } else {
            self.already += 1;
        }
    }
}

/// The ledger: ids sent (false) or failed for good (true).
pub async fn settled(lake: &Store) -> Result<HashMap<String, bool>> {
    let mut ids = HashMap::new();
    for meta in lake.list(LEDGER).await? {
        let rel = lake.relative(&meta.location);
        let name = rel.rsplit('/').next().unwrap_or("");
        if rel.contains("/sent/") || rel.contains("/failed/") {
            if let Some(id) = name.strip_suffix(".json") {
                ids.insert(id.to_string(), rel.contains("/failed/"));
            }
        } else if name.starts_with("ledger-") && name.ends_with(".json") {
            let file: LedgerFile = serde_json::from_slice(&lake.get(&rel).await?)
                .with_context(|| format!("reading the mail ledger {}", lake.display(&rel)))?;
            ids.extend(
                file.records
                    .into_iter()
                    .map(|r| (r.id, r.status == "failed")),
            );
        }
    }
    Ok(ids)
}

/// Folds the one-file-per-message records into one ledger file (written
/// before the small ones are removed, so a crash loses nothing).
async fn compact(lake: &Store) -> Result<()> {
    let mut small = Vec::new();
    for folder in ["sent", "failed"] {
        for meta in lake.list(&format!("{LEDGER}/{folder}")).await? {
            small.push(lake.relative(&meta.location));
        }
    }
    if small.len() < 2 {
        return Ok(());
    }
    let mut records: Vec<Record> = Vec::with_capacity(small.len());
    for rel in &small {
        records.push(serde_json::from_slice(&lake.get(rel).await?)?);
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let name = format!(
        "{LEDGER}/ledger-{}-{}.json",
        Utc::now().format("%Y%m%dT%H%M%S%.6f"),
        records[0].id
    );
    lake.put(
        &name,
        Bytes::from(serde_json::to_vec(&LedgerFile { records })?),
    )
    .await?;
    for rel in small {
        lake.delete(&rel).await?;
    }
    Ok(())
}

/// What forgetting a student removed from the mail records.
#[derive(Debug, Default)]
pub struct Forgotten {
    /// Ledger records (sent or failed) to or about the student.
    pub records: usize,
    /// Unsent messages withdrawn from the outbox: (kind, period, to). Those
    /// to someone else are sent again, without the student, by re-running
    /// the command that made them for that week.
    pub pending: Vec<(String, String, String)>,
    /// `.eml` files of the file transport deleted.
    pub files: usize,
}

/// Whether a message mentions the student anywhere a reader would see it:
/// its recipient and kind, every header (decoded) and every text part
/// (decoded from quoted-printable or base64).
pub fn mentions(subject: &Subject, eml: &[u8]) -> bool {
    fn walk(subject: &Subject, part: &mailparse::ParsedMail<'_>) -> bool {
        part.headers
            .iter()
            .any(|h| subject.mentioned_in(&h.get_value()))
            || (part.ctype.mimetype.starts_with("text/")
                && part.get_body().is_ok_and(|b| subject.mentioned_in(&b)))
            || part.subparts.iter().any(|p| walk(subject, p))
    }
    match mailparse::parse_mail(eml) {
        Ok(mail) => walk(subject, &mail),
        // Not MIME: the raw text is all there is.
        Err(_) => subject.mentioned_in(&String::from_utf8_lossy(eml)),
    }
}

fn record_mentions(subject: &Subject, r: &Record) -> bool {
    [&r.kind, &r.to, &r.subject, &r.detail]
        .iter()
        .any(|t| subject.mentioned_in(t))
}

/// Erasure (`learnlake forget`): removes the student from the mail ledger
/// (records to them or naming them), from the outbox (unsent messages to
/// or about them) and, given the file transport's folder, deletes the
/// `.eml` files to or about them. A file holding other records too is
/// written again without them before it is deleted, so a crash loses
/// nothing else. With `dry_run`, only counts.
pub async fn forget(
    lake: &Store,
    subject: &Subject,
    file_outbox: Option<&Path>,
    dry_run: bool,
) -> Result<Forgotten> {
    let mut forgotten = Forgotten::default();
    let stamp = || Utc::now().format("%Y%m%dT%H%M%S%.6f").to_string();
    for meta in lake.list(LEDGER).await? {
        let rel = lake.relative(&meta.location);
        let Some((folder, name)) = rel.rsplit_once('/') else {
            continue;
        };
        let data = lake.get(&rel).await?;
        if folder.ends_with("/sent") || folder.ends_with("/failed") {
            let record: Record = serde_json::from_slice(&data)
                .with_context(|| format!("reading the mail ledger {}", lake.display(&rel)))?;
            if record_mentions(subject, &record) {
                forgotten.records += 1;
                if !dry_run {
                    lake.delete(&rel).await?;
                }
            }
        } else if name.starts_with("ledger-") && name.ends_with(".json") {
            let file: LedgerFile = serde_json::from_slice(&data)
                .with_context(|| format!("reading the mail ledger {}", lake.display(&rel)))?;
            let (gone, kept): (Vec<Record>, Vec<Record>) = file
                .records
                .into_iter()
                .partition(|r| record_mentions(subject, r));
            if gone.is_empty() {
                continue;
            }
            forgotten.records += gone.len();
            if dry_run {
                continue;
            }
            if let Some(first) = kept.first() {
                let name = format!("{LEDGER}/ledger-{}-{}.json", stamp(), first.id);
                let body = serde_json::to_vec(&LedgerFile { records: kept })?;
                lake.put(&name, Bytes::from(body)).await?;
            }
            lake.delete(&rel).await?;
        } else if folder.ends_with("/outbox") && name.ends_with(".jsonl") {
            let mut kept = Vec::new();
            let mut gone = 0;
            for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let message: Outgoing = serde_json::from_slice(line)
                    .with_context(|| format!("reading the outbox {}", lake.display(&rel)))?;
                let about = [&message.kind, &message.to, &message.subject]
                    .iter()
                    .any(|t| subject.mentioned_in(t))
                    || mentions(subject, message.eml.as_bytes());
                if about {
                    gone += 1;
                    forgotten.pending.push((
                        message.kind.clone(),
                        message.period.clone(),
                        message.to.clone(),
                    ));
                } else {
                    kept.push(message);
                }
            }
            if gone == 0 || dry_run {
                continue;
            }
            if let Some(first) = kept.first() {
                let name = format!("{LEDGER}/outbox/{}-{}.jsonl", stamp(), first.id);
                let mut body = Vec::new();
                for m in &kept {
                    serde_json::to_writer(&mut body, m)?;
                    body.push(b'\n');
                }
                lake.put(&name, Bytes::from(body)).await?;
            }
            lake.delete(&rel).await?;
        }
    }
    if let Some(dir) = file_outbox.filter(|d| d.is_dir()) {
        let mut files = Vec::new();
        for week in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let week = week?.path();
            if week.is_dir() {
                for file in std::fs::read_dir(&week)? {
                    files.push(file?.path());
                }
            }
        }
        for path in files {
            if path.extension().is_none_or(|x| x != "eml") {
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().to_string());
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if name.is_some_and(|n| subject.mentioned_in(&n)) || mentions(subject, &data) {
                forgotten.files += 1;
                if !dry_run {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("deleting {}", path.display()))?;
                }
            }
        }
    }
    Ok(forgotten)
}

/// The chunks an earlier run left in the outbox.
async fn leftover_chunks(lake: &Store) -> Result<Vec<String>> {
    let mut chunks: Vec<String> = lake
        .list(&format!("{LEDGER}/outbox"))
        .await?
        .iter()
        .map(|m| lake.relative(&m.location))
        .filter(|r| r.ends_with(".jsonl"))
        .collect();
    chunks.sort();
    Ok(chunks)
}

/// A delivery run: sends `messages` (built, not yet checked against the
/// ledger) and whatever an earlier run left in the outbox.
pub struct Delivery<'a> {
    lake: &'a Store,
    progress: &'a Progress,
    sender: &'a Sender,
    tuning: Tuning,
    settled: HashMap<String, bool>,
    /// Ids this run has counted (sent, skipped or failed), each once.
    seen: HashSet<String>,
    pub summary: Summary,
    /// Set when the transport keeps failing: the rest stays in the outbox.
    halted: bool,
}

impl<'a> Delivery<'a> {
    /// Starts a run: reads the ledger and first sends what an interrupted
    /// run left in the outbox.
    pub async fn start(
        lake: &'a Store,
        sender: &'a Sender,
        tuning: Tuning,
        progress: &'a Progress,
    ) -> Result<Self> {
        let settled = settled(lake).await?;
        let mut run = Self {
            lake,
            progress,
            sender,
            tuning,
            settled,
            seen: HashSet::new(),
            summary: Summary::default(),
            halted: false,
        };
        for chunk in leftover_chunks(lake).await? {
            let text = lake.get(&chunk).await?;
            let mut messages = Vec::new();
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                messages.push(
                    serde_json::from_slice::<Outgoing>(line)
                        .with_context(|| format!("reading the outbox {}", lake.display(&chunk)))?,
                );
            }
            info!(chunk = %lake.display(&chunk), messages = messages.len(), "sending what an earlier run left in the outbox");
            run.send_chunk(&chunk, messages, false).await?;
        }
        Ok(run)
    }

    /// Queues and sends `messages` (those already settled are counted and
    /// skipped), a chunk at a time.
    pub async fn send_all(&mut self, messages: Vec<Outgoing>) -> Result<()> {
        let mut fresh = Vec::new();
        for m in messages {
            if !self.seen.insert(m.id.clone()) {
                continue; // sent from the outbox at the start of this run
            }
            if let Some(&failed) = self.settled.get(&m.id) {
                self.summary.count_settled(failed);
                self.progress.inc(1);
            } else {
                fresh.push(m);
            }
        }
        for chunk in fresh.chunks(CHUNK) {
            let name = format!(
                "{LEDGER}/outbox/{}-{}.jsonl",
                Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                chunk[0].id
            );
            let mut body = Vec::new();
            for m in chunk {
                serde_json::to_writer(&mut body, m)?;
                body.push(b'\n');
            }
            self.lake.put(&name, Bytes::from(body)).await?;
            self.send_chunk(&name, chunk.to_vec(), true).await?;
        }
        Ok(())
    }

    async fn send_chunk(
        &mut self,
        chunk: &str,
        messages: Vec<Outgoing>,
        fresh: bool,
    ) -> Result<()> {
        let mut to_send = Vec::with_capacity(messages.len());
        for message in messages {
            if !fresh && !self.seen.insert(message.id.clone()) {
                continue;
            }
            if let Some(&failed) = self.settled.get(&message.id) {
                if !fresh {
                    self.summary.count_settled(failed);
                }
                continue;
            }
            to_send.push(message);
        }
        // Up to `parallel` in flight; each result is recorded as soon as it
        // comes. Once the transport keeps failing, nothing new is started
        // (those in flight finish and are recorded) and the rest stays in
        // the outbox.
        let halted = std::sync::atomic::AtomicBool::new(self.halted);
        let (sender, tuning) = (self.sender, self.tuning.clone());
        let mut results = futures::stream::iter(to_send)
            .map(|message| {
                let (halted, tuning) = (&halted, &tuning);
                async move {
                    if halted.load(std::sync::atomic::Ordering::Relaxed) {
                        return (message, None);
                    }
                    let result = send_one(sender, tuning, &message).await;
                    if matches!(result, Err(SendError::Transient(_))) {
                        halted.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    (message, Some(result))
                }
            })
            .buffer_unordered(self.tuning.parallel.max(1));
        let mut left = 0;
        while let Some((message, result)) = results.next().await {
            let Some(result) = result else {
                left += 1;
                continue;
            };
            self.progress.inc(1);
            match result {
                Ok(detail) => {
                    self.record("sent", &message, detail).await?;
                    self.summary.sent += 1;
                }
                Err(SendError::Permanent(reason)) => {
                    warn!(id = %message.id, to = %message.to, %reason, "message refused; recorded as failed");
                    self.summary
                        .errors
                        .push(format!("{} to {}: {reason}", message.kind, message.to));
                    self.record("failed", &message, reason).await?;
                    self.summary.failed += 1;
                }
                Err(SendError::Transient(reason)) => {
                    warn!(id = %message.id, %reason, "the transport keeps failing; the rest stays in the outbox");
                    self.summary.errors.push(format!(
                        "{} to {}: {reason} (after {} attempts)",
                        message.kind, message.to, self.tuning.max_attempts
                    ));
                    left += 1;
                }
            }
        }
        drop(results);
        self.halted = halted.into_inner();
        self.summary.pending += left;
        if left == 0 {
            self.lake.delete(chunk).await?;
        }
        Ok(())
    }

    async fn record(&mut self, folder: &str, message: &Outgoing, detail: String) -> Result<()> {
        let record = Record {
            id: message.id.clone(),
            status: folder.to_string(),
            kind: message.kind.clone(),
            period: message.period.clone(),
            to: message.to.clone(),
            subject: message.subject.clone(),
            at: Utc::now(),
            transport: self.sender.label(),
            detail,
        };
        self.lake
            .put(
                &format!("{LEDGER}/{folder}/{}.json", message.id),
                Bytes::from(serde_json::to_vec(&record)?),
            )
            .await?;
        self.settled.insert(message.id.clone(), folder == "failed");
        Ok(())
    }

    /// Compacts the ledger and returns what the run did.
    pub async fn finish(self) -> Result<Summary> {
        compact(self.lake).await?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            kind: "admin_report".into(),
            period: "2026-03-02".into(),
            to: "Head@Example.edu".into(),
            to_name: Some("Ann\r\nBcc: evil@example.com".into()),
            subject: "Weekly\r\nBcc: evil@example.com".into(),
            text: "plain body".into(),
            html: "<p>html body <img src=\"cid:chart\"></p>".into(),
            images: vec![Image {
                cid: "chart".into(),
                png: vec![0x89, b'P', b'N', b'G'],
            }],
        }
    }

    #[test]
    fn ids_depend_on_kind_period_and_recipient_only() {
        let a = draft();
        let mut b = draft();
        b.subject = "another subject".into();
        b.to = " head@example.edu".into();
        assert_eq!(a.id(), b.id());
        b.period = "2026-03-09".into();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 32);
    }

    #[test]
    fn a_message_is_multipart_with_inline_images_and_no_injected_header() {
        let from: Mailbox = "learnlake <reports@example.edu>".parse().unwrap();
        let m = build(&from, &draft(), SystemTime::UNIX_EPOCH).unwrap();
        let eml = &m.eml;
        assert!(
            eml.contains(&format!("Message-ID: <{}@learnlake>", m.id)),
            "{eml}"
        );
        assert!(eml.contains("multipart/alternative"));
        assert!(eml.contains("multipart/related"));
        assert!(eml.contains("Content-ID: <chart>"));
        // The CR/LF in the name and subject became spaces: no Bcc header.
        assert!(
            !eml.lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{eml}"
        );
        assert!(
            eml.contains("Subject: Weekly Bcc: evil@example.com"),
            "{eml}"
        );
    }

    #[test]
    fn bad_addresses_are_refused_with_the_address_in_the_message() {
        for bad in ["no-at-sign", "a@b\r\nBcc: c@d", "", "two@@example.com"] {
            let err = address(bad).unwrap_err().to_string();
            assert!(err.contains("is not an e-mail address"), "{err}");
        }
        assert!(address("ok@example.edu").is_ok());
    }
}
