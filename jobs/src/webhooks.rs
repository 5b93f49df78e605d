//! `learnlake flags --deliver`: every changed at-risk flag to every
//! configured endpoint, once, signed the Standard Webhooks way
//! (docs/PREDICTIONS.md, "Webhooks").
//!
//! A flag is POSTed as its JSON object (the NDJSON line of `learnlake
//! flags`) with `webhook-id` = flag_id (the idempotency key),
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`. Timeouts, connection errors, 408, 429 and 5xx are
//! retried with exponential backoff and jitter; any other answer is final
//! for this run. Each delivery is recorded in the lake
//! (`_meta/webhooks/<endpoint>/`) right after the endpoint accepts it, so a
//! re-run or a run after a crash sends only what is not recorded: at most
//! the one flag in flight at a crash is sent again, with the same
//! webhook-id, for the receiver to recognise.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use learnlake_pipeline::analytics::{self, Queries};
use learnlake_pipeline::config::WebhookConfig;
use learnlake_pipeline::lake::{LakeTable, Store};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tracing::{Instrument, info, info_span, warn};

use crate::cli::RiskLevel;
use crate::flags::Filter;

/// Where the delivery ledgers live.
const LEDGER: &str = "_meta/webhooks";

/// What one endpoint got in one run.
#[derive(Debug, Default)]
pub struct Delivery {
    pub endpoint: String,
    pub delivered: usize,
    pub already_delivered: usize,
    pub failed: usize,
    pub last_error: Option<String>,
}

/// The signing key: a Standard Webhooks secret (`whsec_` + base64) is
/// decoded, any other text is used as it is.
pub fn secret_key(secret: &str) -> Result<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64
            .decode(b64.trim())
            .context("the secret starts with whsec_ but the rest is not base64"),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Loopback, private, link-local, shared (CGNAT), unique-local or
/// unspecified: addresses a webhook may reach only when allowed.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// The endpoint's address, checked against the private ranges; the client
/// is pinned to it, so a second DNS answer cannot lead elsewhere.
async fn resolve(hook: &WebhookConfig) -> Result<(url::Url, String, SocketAddr)> {
    let url = url::Url::parse(&hook.url)
        .with_context(|| format!("webhooks {}: {:?} is not a URL", hook.name, hook.url))?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow!("webhooks {}: {} has no host", hook.name, hook.url))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("webhooks {}: cannot resolve {host}", hook.name))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| anyhow!("webhooks {}: {host} has no address", hook.name))?;
    if !hook.allow_private
        && let Some(private) = addrs.iter().find(|a| is_private(a.ip()))
    {
        bail!(
            "webhooks {}: {} resolves to the private address {}; set allow_private = true for that endpoint if it is meant",
            hook.name,
            hook.url,
            private.ip()
        );
    }
    Ok((url, host, addr))
}

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    flag_ids: Vec<String>,
}

/// The flag ids already delivered to `endpoint`.
async fn delivered(lake: &Store, endpoint: &str) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for meta in lake.list(&format!("{LEDGER}/{endpoint}")).await? {
        let rel = lake.relative(&meta.location);
        let name = rel.rsplit('/').next().unwrap_or("");
        if rel.contains("/delivered/") {
            if let Some(id) = name.strip_suffix(".json") {
                ids.insert(id.to_string());
            }
        } else if name.starts_with("ledger-") && name.ends_with(".json") {
            let file: LedgerFile = serde_json::from_slice(&lake.get(&rel).await?)
                .with_context(|| format!("reading the webhook ledger {}", lake.display(&rel)))?;
            ids.extend(file.flag_ids);
        }
    }
    Ok(ids)
}

/// Folds the one-file-per-delivery records of `endpoint` into one ledger
/// file (written before the small ones go, so a crash loses nothing).
async fn compact(lake: &Store, endpoint: &str) -> Result<()> {
    let folder = format!("{LEDGER}/{endpoint}/delivered");
    // A run killed while writing a record leaves its staging file.
    lake.remove_stale_uploads_in(&folder)?;
    let mut small = Vec::new();
    for meta in lake.list(&folder).await? {
        small.push(lake.relative(&meta.location));
    }
    if small.is_empty() {
        return Ok(());
    }
    let mut flag_ids: Vec<String> = small
        .iter()
        .filter_map(|r| {
            r.rsplit('/')
                .next()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    flag_ids.sort();
    let name = format!(
        "{LEDGER}/{endpoint}/ledger-{}-{}.json",
        Utc::now().format("%Y%m%dT%H%M%S%.6f"),
        &flag_ids[0]
    );
    lake.put(
        &name,
        Bytes::from(serde_json::to_vec(&LedgerFile { flag_ids })?),
    )
    .await?;
    for rel in small {
        lake.delete(&rel).await?;
    }
    Ok(())
}

/// Erasure (`learnlake forget`): removes `flag_ids` from every endpoint's
/// delivery ledger (a ledger file holding some is written again without
/// them before it is deleted, so a crash loses no other record); returns
/// how many delivery records went (with `dry_run`, would go).
pub async fn forget(lake: &Store, flag_ids: &HashSet<String>, dry_run: bool) -> Result<usize> {
    let mut removed = 0;
    if flag_ids.is_empty() {
        return Ok(0);
    }
    for meta in lake.list(LEDGER).await? {
        let rel = lake.relative(&meta.location);
        let Some((folder, name)) = rel.rsplit_once('/') else {
            continue;
        };
        if folder.ends_with("/delivered") {
            if name
                .strip_suffix(".json")
                .is_some_and(|id| flag_ids.contains(id))
            {
                removed += 1;
                if !dry_run {
                    lake.delete(&rel).await?;
                }
            }
        } else if name.starts_with("ledger-") && name.ends_with(".json") {
            let file: LedgerFile = serde_json::from_slice(&lake.get(&rel).await?)
                .with_context(|| format!("reading the webhook ledger {}", lake.display(&rel)))?;
            let (gone, kept): (Vec<String>, Vec<String>) = file
                .flag_ids
                .into_iter()
                .partition(|id| flag_ids.contains(id));
            if gone.is_empty() {
                continue;
            }
            removed += gone.len();
            if dry_run {
                continue;
            }
            if let Some(first) = kept.first() {
                let name = format!(
                    "{folder}/ledger-{}-{first}.json",
                    Utc::now().format("%Y%m%dT%H%M%S%.6f")
                );
                lake.put(
                    &name,
                    Bytes::from(serde_json::to_vec(&LedgerFile { flag_ids: kept })?),
                )
                .await?;
            }
            lake.delete(&rel).await?;
        }
    }
    Ok(removed)
}

/// Delivers the changed flags as of `since` (or all) to every endpoint.
pub async fn deliver(
    lake: &Store,
    ctx: &SessionContext,
    queries: &Queries,
    endpoints: &[WebhookConfig],
    since: Option<NaiveDate>,
    level: Option<RiskLevel>,
    secret_of: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Vec<Delivery>> {
    if endpoints.is_empty() {
        bail!("no webhook endpoints are configured; add a [[webhooks]] section to learnlake.toml");
    }
    if !ctx.table_exist(LakeTable::RiskFlags.name())? {
        bail!("the lake has no risk_flags yet; run `learnlake analyze` first");
    }
    let mut reports = Vec::new();
    for hook in endpoints {
        let span = info_span!("webhook", endpoint = %hook.name);
        let report = deliver_to(lake, ctx, queries, hook, since, level, secret_of)
            .instrument(span)
            .await?;
        reports.push(report);
    }
    Ok(reports)
}

async fn deliver_to(
    lake: &Store,
    ctx: &SessionContext,
    queries: &Queries,
    hook: &WebhookConfig,
    since: Option<NaiveDate>,
    level: Option<RiskLevel>,
    secret_of: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Delivery> {
    let secret = secret_of(&hook.secret_env).ok_or_else(|| {
        anyhow!(
            "webhooks {}: the signing secret is not set; export {}",
            hook.name,
            hook.secret_env
        )
    })?;
    let key = secret_key(&secret).with_context(|| format!("webhooks {}", hook.name))?;
    let (url, host, addr) = resolve(hook).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(hook.timeout_seconds))
        .resolve(&host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let done = delivered(lake, &hook.name).await?;
    let mut report = Delivery {
        endpoint: hook.name.clone(),
        ..Delivery::default()
    };
    let filter = Filter {
        since,
        level,
        changed: true,
    };
    let df = analytics::query_frame(ctx, queries, "flags", &filter.params()).await?;
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let mut lines = Vec::new();
        {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut lines);
            w.write(&batch)?;
            w.finish()?;
        }
        for body in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let flag: serde_json::Value = serde_json::from_slice(body)?;
            let id = flag["flag_id"]
                .as_str()
                .ok_or_else(|| anyhow!("a flag without flag_id"))?
                .to_string();
            if done.contains(&id) {
                report.already_delivered += 1;
                continue;
            }
            match send(&client, &url, hook, &key, &id, body).await {
                Ok(()) => {
                    let record = serde_json::json!({"flag_id": id, "delivered_at": Utc::now()});
                    lake.put(
                        &format!("{LEDGER}/{}/delivered/{id}.json", hook.name),
                        Bytes::from(record.to_string()),
                    )
                    .await?;
                    report.delivered += 1;
                }
                Err(e) => {
                    warn!(flag_id = %id, error = %e, "flag not delivered");
                    report.failed += 1;
                    report.last_error = Some(e);
                }
            }
        }
    }
    compact(lake, &hook.name).await?;
    info!(
        delivered = report.delivered,
        already = report.already_delivered,
        failed = report.failed,
        "webhook run done"
    );
    Ok(report)
}

/// Test hook: the first backoff in milliseconds (default 500).
fn base_backoff() -> Duration {
    let ms = std::env::var("LEARNLAKE_WEBHOOK_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500u64);
    Duration::from_millis(ms)
}

/// Jitter in [0.5, 1.5) from the clock and the flag id (no shared RNG).
fn jitter(id: &str, attempt: u32) -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(nanos) ^ u64::from(attempt);
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    0.5 + (h % 1000) as f64 / 1000.0
}

/// POSTs one flag, retrying what may pass later; the error of the last
/// attempt otherwise.
async fn send(
    client: &reqwest::Client,
    url: &url::Url,
    hook: &WebhookConfig,
    key: &[u8],
    id: &str,
    body: &[u8],
) -> std::result::Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=hook.max_attempts {
        let timestamp = Utc::now().timestamp();
        let result = client
            .post(url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(key, id, timestamp, body))
            .body(body.to_vec())
            .send()
            .await;
        let retry = match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                last = format!("{} answered {status}", hook.url);
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
            }
            Err(e) => {
                last = format!("{}: {e}", hook.url);
                e.is_timeout() || e.is_connect() || e.is_request()
            }
        };
        if !retry || attempt == hook.max_attempts {
            break;
        }
        let backoff =
            base_backoff().mul_f64(2f64.powi(attempt as i32 - 1).min(60.0) * jitter(id, attempt));
        info!(flag_id = id, attempt, backoff_ms = backoff.as_millis() as u64, error = %last, "retrying");
        tokio::time::sleep(backoff).await;
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // a changed body or timestamp gives another signature
        assert_ne!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232315}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(secret_key("plain").unwrap(), b"plain");
        assert!(secret_key("whsec_***").is_err());
    }

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "151.101.1.1", "2001:4860:4860::8888"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
