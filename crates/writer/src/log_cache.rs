//! The Delta logs' commit files, fetched once per lake and process.
//!
//! A commit (`_delta_log/<20 digits>.json`) never changes once written: it is put only if
//! absent, and a version is never written twice. Yet the kernel reads every commit since the
//! last checkpoint again on each replay of the log (the snapshot, each scan of its files,
//! each read of its domain metadata), so a refresh of an S3 lake fetched each one six or
//! seven times (BENCHMARKS.md, "httpfs checked once, each Delta commit fetched once"). The
//! store the kernel is given keeps the commits it has fetched and passes every other request
//! through: listings, checkpoints, `_last_checkpoint`, data files and every write are never
//! answered from here.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// At most this much commit JSON is kept; beyond it commits are fetched each time again.
/// A log replays at most `CHECKPOINT_EVERY` commits per table, a few kB each for a run (an
/// upgraded lake's first commit lists every file it had: a few MB).
const KEPT_BYTES: usize = 64 << 20;

/// `inner`, remembering the Delta commits read through it.
#[derive(Debug)]
pub(crate) struct CommitCache {
    inner: Arc<dyn ObjectStore>,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    commits: HashMap<Path, Commit>,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Commit {
    meta: ObjectMeta,
    attributes: Attributes,
    body: Bytes,
}

impl CommitCache {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CommitCache {
            inner,
            kept: Mutex::default(),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether `path` is a Delta commit: `…/_delta_log/` and twenty digits `.json`.
fn is_commit(path: &Path) -> bool {
    let text = path.as_ref();
    let Some((dir, name)) = text.rsplit_once('/') else {
        return false;
    };
    let Some(version) = name.strip_suffix(".json") else {
        return false;
    };
    (dir == "_delta_log" || dir.ends_with("/_delta_log"))
        && version.len() == 20
        && version.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `options` ask for the whole object, unconditionally.
fn whole(options: &GetOptions) -> bool {
    options.range.is_none()
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head
}

fn answer(commit: Commit) -> GetResult {
    let Commit {
        meta,
        attributes,
        body,
    } = commit;
    GetResult {
        range: 0..body.len() as u64,
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed()),
        meta,
        attributes,
        extensions: Default::default(),
    }
}

impl fmt::Display for CommitCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitCache({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CommitCache {
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !is_commit(location) || !whole(&options) {
            return self.inner.get_opts(location, options).await;
        }
        if let Some(commit) = self.kept().commits.get(location).cloned() {
            return Ok(answer(commit));
        }
        let got = self.inner.get_opts(location, options).await?;
        let (meta, attributes) = (got.meta.clone(), got.attributes.clone());
        let commit = Commit {
            meta,
            attributes,
            body: got.bytes().await?,
        };
        let mut kept = self.kept();
        // Two replays may have fetched it side by side: counted once.
        if kept.bytes + commit.body.len() <= KEPT_BYTES && !kept.commits.contains_key(location) {
            kept.bytes += commit.body.len();
            kept.commits.insert(location.clone(), commit.clone());
        }
        drop(kept);
        Ok(answer(commit))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[test]
    fn only_commit_files_are_commits() {
        for (path, commit) in [
            ("jobs/_delta_log/00000000000000000007.json", true),
            ("lake/jobs/_delta_log/00000000000000000000.json", true),
            ("_delta_log/00000000000000000012.json", true),
            ("jobs/_delta_log/_last_checkpoint", false),
            (
                "jobs/_delta_log/00000000000000000020.checkpoint.parquet",
                false,
            ),
            ("jobs/_delta_log/0000000000000000007.json", false),
            ("jobs/_delta_log/0000000000000000007x.json", false),
            ("jobs/dt=2026-11-29/00000000000000000007.json", false),
            ("jobs/x_delta_log/00000000000000000007.json", false),
        ] {
            assert_eq!(is_commit(&Path::from(path)), commit, "{path}");
        }
    }

    #[tokio::test]
    async fn a_commit_is_fetched_once_and_everything_else_every_time() {
        let store = Arc::new(InMemory::new());
        let cache = CommitCache::new(Arc::clone(&store) as Arc<dyn ObjectStore>);
        let commit = Path::from("jobs/_delta_log/00000000000000000003.json");
        let pointer = Path::from("jobs/_delta_log/_last_checkpoint");
        cache.put(&commit, "{\"add\":1}".into()).await.unwrap();
        cache.put(&pointer, "{\"version\":0}".into()).await.unwrap();
        cache.get(&commit).await.unwrap().bytes().await.unwrap();
        cache.get(&pointer).await.unwrap().bytes().await.unwrap();

        // Gone from the store behind it: the commit read before is still answered, whole ...
        store.delete(&commit).await.unwrap();
        store.delete(&pointer).await.unwrap();
        for _ in 0..2 {
            let got = cache.get(&commit).await.unwrap();
            assert_eq!(got.meta.size, 9);
            assert_eq!(got.bytes().await.unwrap(), Bytes::from("{\"add\":1}"));
        }
        // ... while a range, a head and any other file go to the store each time.
        let gone = |r: Result<()>| matches!(r, Err(object_store::Error::NotFound { .. }));
        assert!(gone(cache.get_range(&commit, 1..4).await.map(drop)));
        assert!(gone(cache.head(&commit).await.map(drop)));
        assert!(gone(cache.get(&pointer).await.map(drop)));

        // A commit not there yet is not remembered as missing.
        let next = Path::from("jobs/_delta_log/00000000000000000004.json");
        assert!(gone(cache.get(&next).await.map(drop)));
        cache.put(&next, "{}".into()).await.unwrap();
        assert_eq!(cache.get(&next).await.unwrap().bytes().await.unwrap(), "{}");
    }
}
