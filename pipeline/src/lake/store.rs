//! Where the lake (and the landing area) live: one object store plus a prefix.
//!
//! A plain path or a `file://` URL becomes the local filesystem; `s3://`,
//! `gs://` and `az://` URLs go through object_store's builders, configured by
//! the storage options the caller passes (the binary collects the usual
//! `AWS_*` / `GOOGLE_*` / `AZURE_*` environment variables).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::{Error, Result};

/// An object store rooted at a prefix, addressed with `/`-separated paths
/// relative to that root.
#[derive(Clone, Debug)]
pub struct Store {
    /// The URL the user gave, normalised (`file:///abs/path`, `s3://bucket/prefix`).
    pub url: Url,
    /// The store itself.
    pub inner: Arc<dyn ObjectStore>,
    /// The root inside the store.
    pub prefix: Path,
    /// Where the root is on the local disk, for a `file://` store.
    pub local_root: Option<PathBuf>,
}

impl Store {
    /// Opens the store a URL or plain path names, with no storage options
    /// (see [`Store::open_with_options`]). A local root is created if it does
    /// not exist yet when `create` is set.
    pub fn open(location: &str, create: bool) -> Result<Self> {
        Self::open_with_options(location, create, &[])
    }

    /// Like [`Store::open`], with object_store options for a remote store
    /// (`aws_region`, `google_service_account`, …; the binary passes the
    /// `AWS_*` / `GOOGLE_*` / `AZURE_*` environment). The library never reads
    /// the environment itself.
    pub fn open_with_options(
        location: &str,
        create: bool,
        storage_options: &[(String, String)],
    ) -> Result<Self> {
        let url = parse_location(location)?;
        if url.scheme() == "file" {
            let dir = url.to_file_path().map_err(|()| Error::InvalidUrl {
                url: location.to_string(),
                reason: "not a valid local path".into(),
            })?;
            if !create && !dir.is_dir() {
                return Err(Error::InvalidUrl {
                    url: location.to_string(),
                    reason: format!("the folder {} does not exist", dir.display()),
                });
            }
            if create {
                std::fs::create_dir_all(&dir).map_err(|source| Error::WriteFile {
                    path: dir.clone(),
                    source,
                })?;
            }
            let prefix = Path::from_filesystem_path(&dir).map_err(|e| Error::InvalidUrl {
                url: location.to_string(),
                reason: e.to_string(),
            })?;
            return Ok(Self {
                url,
                inner: Arc::new(LocalFileSystem::new()),
                prefix,
                local_root: Some(dir),
            });
        }
        let options = storage_options
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()));
        let (inner, prefix) =
            object_store::parse_url_opts(&url, options).map_err(|e| Error::InvalidUrl {
                url: location.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url,
            inner: Arc::from(inner),
            prefix,
            local_root: None,
        })
    }

    /// The store's base URL (`file://`, `s3://bucket`), as DataFusion registers stores.
    pub fn base_url(&self) -> Url {
        let mut base = self.url.clone();
        base.set_path("");
        base
    }

    /// The full URL of a folder below the root, ending in `/`.
    pub fn folder_url(&self, rel: &str) -> String {
        let root = self.url.as_str().trim_end_matches('/');
        format!("{root}/{}/", rel.trim_matches('/'))
    }

    /// The store path of `rel` below the root.
    pub fn path(&self, rel: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// `path` relative to the root, as `a/b/c`.
    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    /// Writes a whole object atomically: readers see all of it or nothing.
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        let path = self.path(rel);
        self.inner
            .put(&path, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|source| Error::ObjectStore {
                location: self.display(rel),
                source,
            })
    }

    /// Writes a whole object only if none exists at `rel` (the store's
    /// conditional put): `false` when another writer got there first. Two
    /// writers racing for one name: exactly one gets `true`.
    pub async fn put_if_absent(&self, rel: &str, data: Bytes) -> Result<bool> {
        let path = self.path(rel);
        let options = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .inner
            .put_opts(&path, PutPayload::from(data), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(Error::ObjectStore {
                location: self.display(rel),
                source,
            }),
        }
    }

    /// Reads a whole object.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        let path = self.path(rel);
        let get = async { self.inner.get(&path).await?.bytes().await };
        get.await.map_err(|source| Error::ObjectStore {
            location: self.display(rel),
            source,
        })
    }

    /// Reads a whole object, `None` when it does not exist.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.get(rel).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object below `rel` (recursively), sorted by path. A missing
    /// folder is empty.
    pub async fn list(&self, rel: &str) -> Result<Vec<ObjectMeta>> {
        let path = self.path(rel);
        let mut found: Vec<ObjectMeta> = match self.inner.list(Some(&path)).try_collect().await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(source) => {
                return Err(Error::ObjectStore {
                    location: self.display(rel),
                    source,
                });
            }
        };
        found.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(found)
    }

    /// Whether any object under `rel` has a name ending in `suffix`; stops
    /// at the first one instead of listing the whole folder.
    pub async fn contains_file(&self, rel: &str, suffix: &str) -> Result<bool> {
        let path = self.path(rel);
        let mut listing = self.inner.list(Some(&path));
        while let Some(item) = listing.next().await {
            match item {
                Ok(meta) if meta.location.as_ref().ends_with(suffix) => return Ok(true),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::ObjectStore {
                        location: self.display(rel),
                        source,
                    });
                }
            }
        }
        Ok(false)
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.inner.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::ObjectStore {
                location: self.display(rel),
                source,
            }),
        }
    }

    /// Removes the staging files a killed writer leaves behind on a local
    /// disk (`name#N`, invisible to listings and readers, but taking space).
    /// Returns how many were removed.
    pub fn remove_stale_uploads(&self) -> Result<usize> {
        self.remove_stale_uploads_in("")
    }

    /// Like [`Store::remove_stale_uploads`], below the folder `rel` only.
    pub fn remove_stale_uploads_in(&self, rel: &str) -> Result<usize> {
        fn walk(dir: &std::path::Path, removed: &mut usize) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(&path, removed)?;
                } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
                    && let Some((_, suffix)) = name.rsplit_once('#')
                    && !suffix.is_empty()
                    && suffix.bytes().all(|b| b.is_ascii_digit())
                {
                    std::fs::remove_file(&path)?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        if let Some(root) = &self.local_root {
            let folder = root.join(rel);
            if folder.is_dir() {
                walk(&folder, &mut removed).map_err(|source| Error::WriteFile {
                    path: folder.clone(),
                    source,
                })?;
            }
        }
        Ok(removed)
    }

    /// A human-readable location for messages.
    pub fn display(&self, rel: &str) -> String {
        self.folder_url(rel).trim_end_matches('/').to_string()
    }
}

/// What is wrong with the object_store `options` of the store at
/// `location` (`[lake] options`): options on a local path, keys the store's
/// scheme does not know (object_store would ignore them silently), and
/// credentials, which stay in the environment, never in a file.
pub fn option_problems(
    location: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    use std::str::FromStr;
    let mut problems = Vec::new();
    if options.is_empty() {
        return problems;
    }
    let Ok(url) = parse_location(location) else {
        return problems; // reported with the url itself
    };
    let scheme = url.scheme().to_string();
    for key in options.keys() {
        let lower = key.to_ascii_lowercase();
        let known = match scheme.as_str() {
            "s3" | "s3a" => object_store::aws::AmazonS3ConfigKey::from_str(&lower).is_ok(),
            "gs" => object_store::gcp::GoogleConfigKey::from_str(&lower).is_ok(),
            "az" | "abfs" | "abfss" | "adl" | "azure" => {
                object_store::azure::AzureConfigKey::from_str(&lower).is_ok()
            }
            _ => {
                problems.push(format!(
                    "{key}: options apply to s3://, gs:// and az:// stores only, not to {location}"
                ));
                continue;
            }
        };
        if !known {
            problems.push(format!(
                "{key}: not an option of {scheme}:// stores (e.g. endpoint, region, allow_http; \
                 see object_store's {scheme} configuration keys)"
            ));
        } else if [
            "secret",
            "access_key",
            "token",
            "password",
            "sas",
            "account_key",
        ]
        .iter()
        .any(|s| lower.contains(s))
        {
            problems.push(format!(
                "{key}: credentials stay out of files; set them in the environment \
                 (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_ACCOUNT_KEY, …)"
            ));
        }
    }
    problems
}

/// Turns what a user wrote (`./lake`, `/data/lake`, `file://./lake`,
/// `s3://bucket/prefix`) into an absolute URL.
pub fn parse_location(location: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: location.to_string(),
        reason,
    };
    if location.trim().is_empty() {
        return Err(invalid("empty location".into()));
    }
    let local = match location.split_once("://") {
        None => Some(location),
        Some(("file", rest)) => Some(rest),
        Some((scheme, _)) => {
            if !matches!(
                scheme,
                "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" | "memory"
            ) {
                return Err(invalid(format!(
                    "unsupported scheme {scheme:?}; use a path, file://, s3://, gs:// or az://"
                )));
            }
            None
        }
    };
    match local {
        Some(path) => {
            let path = PathBuf::from(path);
            let abs = if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|e| invalid(e.to_string()))?
                    .join(path)
            };
            let abs = normalise(&abs);
            Url::from_directory_path(&abs).map_err(|()| invalid("not an absolute path".into()))
        }
        None => Url::parse(location).map_err(|e| invalid(e.to_string())),
    }
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalise(path: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_file_urls() {
        let url = parse_location("file://./lake").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/lake/"));
        assert!(!url.path().contains("/./"));
        let url = parse_location("/tmp/x/../lake").unwrap();
        assert_eq!(url.as_str(), "file:///tmp/lake/");
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_alternatives() {
        let err = parse_location("ftp://host/lake").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme \"ftp\""), "{err}");
    }

    #[tokio::test]
    async fn put_get_list_round_trip_on_a_local_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), true).unwrap();
        store
            .put("a/b/c.txt", Bytes::from_static(b"hi"))
            .await
            .unwrap();
        assert_eq!(store.get("a/b/c.txt").await.unwrap().as_ref(), b"hi");
        let listed = store.list("a").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(store.relative(&listed[0].location), "a/b/c.txt");
        assert!(store.list("missing").await.unwrap().is_empty());
        assert!(store.get_opt("nope").await.unwrap().is_none());
    }
}

#[cfg(test)]
mod storage_option_tests {
    use super::*;

    /// A remote store is configured by the options passed in, not by the
    /// process environment (building an S3 client needs no network).
    #[test]
    fn remote_stores_take_their_options_explicitly() {
        let options = [
            ("AWS_REGION".to_string(), "eu-west-1".to_string()),
            ("AWS_ACCESS_KEY_ID".to_string(), "id".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "secret".to_string()),
        ];
        let store = Store::open_with_options("s3://bucket/some/lake", false, &options).unwrap();
        assert_eq!(store.prefix.as_ref(), "some/lake");
        assert!(store.local_root.is_none());
        assert!(format!("{:?}", store.inner).contains("eu-west-1"));
    }
}
