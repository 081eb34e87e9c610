//! The writer's error type.

/// Everything that can go wrong between a batch and a committed file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object store refused or failed an operation.
    #[error("lake storage error at {location}: {source}")]
    Store {
        /// The lake-relative path involved.
        location: String,
        /// The object store's own error.
        #[source]
        source: object_store::Error,
    },
    /// Encoding Parquet failed.
    #[error("writing Parquet failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Encoding or decoding Arrow IPC failed.
    #[error("Arrow encoding failed: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A local filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but cannot be read.
    #[error(
        "the state file {path} is corrupt ({detail}); move it aside to let joblake rebuild it \
         from the lake (the next run then scans the source from the start)"
    )]
    CorruptState {
        /// Lake-relative path of the state file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A staged page cannot be read back.
    #[error("the staged page {path} is unreadable ({detail}); it was left in place")]
    CorruptStage {
        /// Lake-relative path of the staged page.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Another process holds the lake.
    #[error(
        "another joblake process is writing to the lake {lake} ({holder}); wait for it to \
         finish, or stop it, then run again"
    )]
    Busy {
        /// The lake's URL.
        lake: String,
        /// Who holds the lock, as it wrote itself down.
        holder: String,
    },
    /// The lake URL cannot be used.
    #[error("cannot use the lake {url}: {detail}")]
    BadLake {
        /// The URL as given.
        url: String,
        /// Why not.
        detail: String,
    },
}

/// The writer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an object store error with the lake-relative path it concerns.
    pub(crate) fn store(location: impl std::fmt::Display, source: object_store::Error) -> Self {
        Error::Store {
            location: location.to_string(),
            source,
        }
    }
}
