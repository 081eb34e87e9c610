//! The writer's test fixtures: a lake under test (local or on the shared moto server) and
//! the macro that runs each conformance case against both.

pub use joblake_testkit::{Fault, FaultProxy, Moto, s3_builder};
use joblake_writer::Lake;

/// A lake at `s3://bucket/prefix` on `moto` (or through `endpoint`, a proxy in front of it).
pub fn s3_lake(endpoint: &str, bucket: &str, prefix: &str) -> Lake {
    Lake::open_s3(s3_builder(endpoint), bucket, prefix).unwrap()
}

/// A lake under test and whatever keeps it alive.
pub struct TestLake {
    pub lake: Lake,
    /// The bucket, for S3 lakes.
    pub bucket: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestLake {
    type Target = Lake;
    fn deref(&self) -> &Lake {
        &self.lake
    }
}

impl TestLake {
    /// A fresh lake in a temp directory.
    pub fn local() -> TestLake {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap(), true).unwrap();
        TestLake {
            lake,
            bucket: None,
            _dir: Some(dir),
        }
    }

    /// A fresh lake under a prefix of a new bucket on the shared moto server.
    pub fn s3(test: &str) -> TestLake {
        let moto = Moto::shared();
        let bucket = moto.bucket(test);
        TestLake {
            lake: s3_lake(&moto.endpoint, &bucket, "team/lake"),
            bucket: Some(bucket),
            _dir: None,
        }
    }

    /// Unfinished uploads the lake still holds: S3 multipart uploads neither completed nor
    /// aborted, or partial files on disk.
    pub fn unfinished_uploads(&self) -> usize {
        match (&self.bucket, self.lake.location()) {
            (Some(bucket), _) => Moto::shared().unfinished_uploads(bucket),
            (None, joblake_writer::LakeLocation::Local(root)) => {
                files_under(&root.join("_joblake/uploads")).len()
            }
            (None, _) => unreachable!(),
        }
    }
}

/// Every file below `dir` on disk, hidden ones included.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Runs each named conformance case against a local lake and an S3 lake on moto.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::TestLake::local()).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::TestLake::s3(stringify!($case))).await
                }
            )*
        }
    };
}
