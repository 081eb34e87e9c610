//! Where a lake lives, and the one `object_store` through which every byte reaches it.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::SecretString;

use crate::layout;
use crate::{Error, Result};

/// Where the lake's objects are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// A directory on this machine (absolute).
    Local(PathBuf),
    /// A bucket and key prefix on S3 or an S3-compatible server.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing slash (may be empty).
        prefix: String,
    },
}

/// A lake: its location plus a store whose paths are relative to the lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    location: LakeLocation,
    s3_access: Option<Arc<S3Access>>,
    /// The store the Delta kernel resolves table URLs through (the bucket, or `/`).
    root_store: Arc<dyn ObjectStore>,
    delta: Arc<std::sync::OnceLock<Arc<crate::delta::Engine>>>,
    /// Whether this process recorded the lake's format yet (before its first commit).
    format_recorded: Arc<tokio::sync::OnceCell<()>>,
    /// The S3 lease this process holds on the lake, if any: every commit confirms it.
    lease: crate::lock::LeaseSlot,
    /// How to make another client to the same bucket and prefix (see [`Lake::own_store`]).
    s3_client: Option<Arc<S3Client>>,
}

/// The settings an S3 lake's client was built with, to build another.
struct S3Client {
    builder: AmazonS3Builder,
    prefix: String,
}

impl S3Client {
    /// A client of its own: the bucket's store, and the lake's (the bucket under the prefix).
    fn build(&self, url: &str) -> Result<(Arc<AmazonS3>, Arc<dyn ObjectStore>)> {
        let s3 = Arc::new(self.builder.clone().build().map_err(|e| Error::BadLake {
            url: url.to_string(),
            detail: format!("{e}; check the AWS_* variables"),
        })?);
        let store: Arc<dyn ObjectStore> = if self.prefix.is_empty() {
            s3.clone()
        } else {
            Arc::new(PrefixStore::new(Arc::clone(&s3), self.prefix.as_str()))
        };
        Ok((s3, store))
    }
}

impl std::fmt::Debug for S3Client {
    // The builder's own `Debug` would print the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The settings an S3 lake was opened with, for readers other than `object_store` (DuckDB's
/// httpfs) that must reach the same bucket the same way.
#[derive(Debug, Clone)]
pub struct S3Access {
    /// `s3://bucket/prefix` URLs this access is for.
    pub scope: String,
    /// The region, when one is set.
    pub region: Option<String>,
    /// A custom endpoint (an S3-compatible server), as a URL.
    pub endpoint: Option<String>,
    /// Whether plain http is allowed (`AWS_ALLOW_HTTP`).
    pub allow_http: bool,
    /// Whether requests go to `bucket.host` instead of `host/bucket`.
    pub virtual_hosted_style: bool,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<SecretString>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<SecretString>,
}

/// Refuses a local lake in which `_joblake/` (or anything in it), a table directory or a
/// partition is a symbolic link: joblake writes and deletes there, and must not do so through
/// a link to somewhere outside the lake. The lake's root may itself be a link.
fn refuse_symlinks(root: &std::path::Path) -> std::result::Result<(), String> {
    /// Looks at `dir`'s entries, and `levels` more levels below (all of them for `_joblake`).
    fn walk(dir: &std::path::Path, levels: usize) -> std::result::Result<(), String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_symlink() {
                return Err(format!(
                    "{} is a symbolic link: joblake writes and deletes only inside its lake and \
                     will not follow it there (make it a plain directory or file, or point \
                     --lake at the place it links to)",
                    path.display()
                ));
            }
            let own = entry.file_name() == "_joblake";
            if kind.is_dir() && (own || levels > 0) {
                walk(&path, if own { usize::MAX } else { levels - 1 })?;
            }
        }
        Ok(())
    }
    walk(root, 1)
}

impl Lake {
    /// Opens the lake at `url` (a path, or `s3://bucket/prefix`); a local lake directory is
    /// created when `create` is set, otherwise it must exist.
    pub fn open(url: &str, create: bool) -> Result<Lake> {
        let bad = |detail: String| Error::BadLake {
            url: url.to_string(),
            detail,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad(
                    "the URL names no bucket (expected s3://bucket/prefix)".into()
                ));
            }
            return Lake::open_s3(AmazonS3Builder::from_env(), bucket, prefix);
        }
        if url.contains("://") {
            return Err(bad("only local paths and s3:// URLs are supported".into()));
        }
        let path = PathBuf::from(url);
        if path.exists() && !path.is_dir() {
            return Err(bad(
                "that is a file, not a lake directory; give --lake a directory (a new one is \
                 made on the first refresh)"
                    .into(),
            ));
        }
        if create {
            std::fs::create_dir_all(&path).map_err(|e| Error::Io {
                context: format!("cannot create the lake directory {}", path.display()),
                source: e,
            })?;
        } else if !path.is_dir() {
            return Err(bad(
                "no lake there yet; run `joblake refresh` (or `make demo`) first".into(),
            ));
        }
        let abs = std::fs::canonicalize(&path).map_err(|e| Error::Io {
            context: format!("cannot resolve the lake directory {}", path.display()),
            source: e,
        })?;
        refuse_symlinks(&abs).map_err(bad)?;
        // fsync: committed files and state must survive a power cut, not just a killed
        // process (staged pages are synced by their log, see `stage.rs`).
        let store = LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| bad(e.to_string()))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let root_store = LocalFileSystem::new()
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(Lake {
            store: Arc::new(store),
            location: LakeLocation::Local(abs),
            s3_access: None,
            root_store: Arc::new(root_store),
            delta: Arc::default(),
            format_recorded: Arc::default(),
            lease: Arc::default(),
            s3_client: None,
        })
    }

    /// Opens `s3://bucket/prefix` with the settings in `builder` (credentials, endpoint);
    /// [`Lake::open`] takes them from the `AWS_*` variables.
    pub fn open_s3(builder: AmazonS3Builder, bucket: &str, prefix: &str) -> Result<Lake> {
        let prefix = prefix.trim_matches('/').to_string();
        let setting = |key: AmazonS3ConfigKey| builder.get_config_value(&key);
        let flag = |key: AmazonS3ConfigKey| setting(key).is_some_and(|v| v == "true" || v == "1");
        let access = S3Access {
            scope: format!("s3://{bucket}/{prefix}")
                .trim_end_matches('/')
                .to_string(),
            region: setting(AmazonS3ConfigKey::Region),
            endpoint: setting(AmazonS3ConfigKey::Endpoint),
            allow_http: flag(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)),
            virtual_hosted_style: flag(AmazonS3ConfigKey::VirtualHostedStyleRequest),
            access_key_id: setting(AmazonS3ConfigKey::AccessKeyId),
            secret_access_key: setting(AmazonS3ConfigKey::SecretAccessKey).map(SecretString::from),
            session_token: setting(AmazonS3ConfigKey::Token).map(SecretString::from),
        };
        let client = S3Client {
            builder: builder.with_bucket_name(bucket),
            prefix: prefix.clone(),
        };
        let (s3, store) = client.build(&format!("s3://{bucket}/{prefix}"))?;
        Ok(Lake {
            store,
            location: LakeLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.clone(),
            },
            s3_access: Some(Arc::new(access)),
            root_store: s3,
            delta: Arc::default(),
            format_recorded: Arc::default(),
            lease: Arc::default(),
            s3_client: Some(Arc::new(client)),
        })
    }

    /// A store rooted at the lake like [`Lake::store`], but with HTTP connections of its own,
    /// for a task on another runtime (the S3 lease's thread): a pooled connection is driven
    /// by the runtime that opened it, so sharing the pool would tie that task to this one.
    /// The same store for a local lake.
    pub(crate) fn own_store(&self) -> Result<Arc<dyn ObjectStore>> {
        match &self.s3_client {
            Some(client) => Ok(client.build(&self.url())?.1),
            None => Ok(Arc::clone(&self.store)),
        }
    }

    /// How DuckDB (or another reader) reaches this lake, when it is on S3.
    pub fn s3_access(&self) -> Option<&S3Access> {
        self.s3_access.as_deref()
    }

    /// Where a file being written goes until its commit publishes it. An S3 multipart
    /// upload is invisible until complete, so it is written in place; on disk, the partial
    /// file goes under `_joblake/uploads/` (where no reader's glob or dataset looks) and is
    /// renamed into place, which is atomic.
    pub(crate) fn upload_path(&self, table: &str, target: &Path) -> Path {
        match self.location {
            LakeLocation::Local(_) => Path::from(format!("{}/{target}", layout::uploads(table))),
            LakeLocation::S3 { .. } => target.clone(),
        }
    }

    /// Removes what an interrupted run was uploading for `table` (the lake lock must be
    /// held). On disk these are partial files, some hidden from `list`, so they are removed
    /// directly; on S3 an unfinished multipart upload was never visible to readers.
    pub(crate) async fn clear_uploads(&self, table: &str) -> Result<()> {
        let LakeLocation::Local(root) = &self.location else {
            return Ok(());
        };
        let dir = root.join(layout::uploads(table).as_ref());
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                context: format!("cannot clear the unfinished uploads in {}", dir.display()),
                source: e,
            }),
        }
    }

    /// The store, rooted at the lake.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The engine through which the Delta kernel reaches this lake (made on first use).
    pub(crate) fn delta_engine(&self) -> Result<Arc<crate::delta::Engine>> {
        if let Some(engine) = self.delta.get() {
            return Ok(Arc::clone(engine));
        }
        let made = crate::delta::engine(Arc::clone(&self.root_store))?;
        Ok(Arc::clone(self.delta.get_or_init(|| made)))
    }

    pub(crate) fn lease_slot(&self) -> &crate::lock::LeaseSlot {
        &self.lease
    }

    /// Confirms the S3 lease this process holds on the lake (renewing it), if it holds one:
    /// every commit does this first, so a run that lost the lake never commits over the run
    /// that took it. Nothing to do for a local lake (its OS lock cannot be lost).
    pub(crate) async fn confirm_lease(&self) -> Result<()> {
        let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match lease {
            Some(lease) => lease.confirm(self).await,
            None => Ok(()),
        }
    }

    /// Records the lake's format (see `format.rs`) before this process first commits to it.
    pub(crate) async fn record_format(&self) -> Result<()> {
        self.format_recorded
            .get_or_try_init(|| crate::format::record(self))
            .await
            .map(|_| ())
    }

    /// The URL of `table`'s root, as the Delta kernel takes it (`file:///…/` or
    /// `s3://bucket/prefix/table/`).
    pub fn table_url(&self, table: &str) -> Result<url::Url> {
        let bad = |detail: String| Error::BadLake {
            url: self.url(),
            detail,
        };
        match &self.location {
            LakeLocation::Local(root) => url::Url::from_directory_path(root.join(table))
                .map_err(|()| bad(format!("{} is not an absolute path", root.display()))),
            LakeLocation::S3 { .. } => url::Url::parse(&format!("{}/", self.reader_path(table)))
                .map_err(|e| bad(e.to_string())),
        }
    }

    /// Where the lake is.
    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// The lake's URL for messages: an absolute path or `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        self.reader_path("").trim_end_matches('/').to_string()
    }

    /// The absolute path or URL of a lake-relative path, as a reader such as DuckDB needs it.
    pub fn reader_path(&self, rel: &str) -> String {
        match &self.location {
            LakeLocation::Local(root) => {
                if rel.is_empty() {
                    root.display().to_string()
                } else {
                    root.join(rel).display().to_string()
                }
            }
            LakeLocation::S3 { bucket, prefix } => {
                let mut s = format!("s3://{bucket}/");
                if !prefix.is_empty() {
                    s.push_str(prefix);
                    s.push('/');
                }
                s.push_str(rel);
                s
            }
        }
    }

    /// Writes an object atomically (readers see the old or the new bytes, never a part).
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<()> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| Error::store(path, e))?;
        Ok(())
    }

    /// Reads a whole object, or `None` when it does not exist.
    pub async fn get_opt(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| Error::store(path, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    /// Copies an object (a hard link on a local lake; on S3, within the bucket: no byte
    /// leaves the store).
    pub async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        // A local store links the file (no byte copied) and makes the directories: it links
        // `<to>#<n>`, then renames that over `to`. When `to` is already a link of `from` (a
        // latest table written again keeps a file it had), rename(2) does nothing and the
        // staged link would stay behind: that copy is done already.
        if let LakeLocation::Local(root) = &self.location
            && same_file(&root.join(from.as_ref()), &root.join(to.as_ref()))
        {
            return Ok(());
        }
        self.store
            .copy(from, to)
            .await
            .map_err(|e| Error::store(to, e))
    }

    /// Lists every object under a prefix (recursively).
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store(prefix, e))
    }

    /// Deletes objects; ones already gone are fine.
    pub async fn delete_all(&self, paths: Vec<Path>) -> Result<()> {
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(locations);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store("(delete)", e)),
            }
        }
        Ok(())
    }
}

/// Whether two paths are links of one file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_lake_paths_are_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("l").to_str().unwrap(), true).unwrap();
        let p = lake.reader_path("jobs/dt=*/*.parquet");
        assert!(std::path::Path::new(&p).is_absolute(), "{p}");
        assert!(p.ends_with("/l/jobs/dt=*/*.parquet"));
    }

    #[test]
    #[cfg(unix)]
    fn a_lake_whose_own_directories_link_elsewhere_is_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let url = |l: &std::path::Path| l.to_str().unwrap().to_string();
        for linked in [
            "_joblake/uploads",
            "_joblake/staging/jobs",
            "jobs",
            "jobs/dt=2026-01-01",
        ] {
            let lake = dir
                .path()
                .join(format!("lake-{}", linked.replace('/', "-")));
            let link = lake.join(linked);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            symlink(&outside, &link).unwrap();
            let err = Lake::open(&url(&lake), false).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{linked}: {err}");
            assert!(err.contains(linked), "{linked}: {err}");
        }
        // The root itself may be a link (a lake on another disk).
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("_joblake")).unwrap();
        let root_link = dir.path().join("root-link");
        symlink(&real, &root_link).unwrap();
        assert!(Lake::open(&url(&root_link), false).is_ok());
    }

    #[test]
    fn missing_local_lake_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Lake::open(dir.path().join("nope").to_str().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("joblake refresh"), "{err}");
    }

    #[test]
    fn a_file_given_as_the_lake_is_refused_saying_so_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "mine").unwrap();
        for create in [false, true] {
            let err = Lake::open(file.to_str().unwrap(), create).unwrap_err();
            assert!(
                err.to_string().contains("is a file, not a lake directory"),
                "{err}"
            );
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    }

    #[test]
    fn s3_url_names_bucket_and_prefix() {
        let lake = Lake::open("s3://bucket/some/prefix/", false).unwrap();
        assert_eq!(
            lake.location(),
            &LakeLocation::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(lake.reader_path("jobs/x"), "s3://bucket/some/prefix/jobs/x");
        assert!(Lake::open("s3:///x", false).is_err());
        assert!(Lake::open("gs://b/x", false).is_err());
    }
}
