//! The writer's error type.

/// Everything that can go wrong between a batch and a committed file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object store refused or failed an operation.
    #[error("lake storage error at {location}: {}", describe(.error))]
    Store {
        /// The lake-relative path involved.
        location: String,
        /// The object store's own error (its text is in the message, once; not a `source`,
        /// so error chains do not print it again).
        error: object_store::Error,
    },
    /// Encoding Parquet failed.
    #[error("writing Parquet failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Encoding or decoding Arrow IPC failed.
    #[error("Arrow encoding failed: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A local filesystem operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The lake was written by a newer joblake, in a format this one does not know.
    #[error(
        "the lake {lake} is in format {found} (written by {written_by}); this joblake knows \
         format {known} at most: use a joblake that writes format {found} or later"
    )]
    NewerLake {
        /// The lake.
        lake: String,
        /// Its format.
        found: u32,
        /// The newest format this joblake knows.
        known: u32,
        /// Who wrote it.
        written_by: String,
    },
    /// The Delta kernel could not read or commit a table's log.
    #[error("the Delta log of {table}: {detail}")]
    Delta {
        /// The table.
        table: String,
        /// The kernel's message.
        detail: String,
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
    /// A compaction could not swap a partition's files (nothing was lost: see the detail).
    #[error("cannot compact {partition}: {detail}")]
    Compaction {
        /// The partition (or manifest) concerned.
        partition: String,
        /// What went wrong.
        detail: String,
    },
    /// A write of this run failed earlier, so what the open files hold is not known to match
    /// the pages staged: the run must not commit (see [`crate::TableWriter::abort`]).
    #[error(
        "{table}: nothing was committed after a failed write ({cause}); the fetched pages \
         stay staged and the next run commits them"
    )]
    WriteFailed {
        /// The table.
        table: String,
        /// The first failure, as it was reported.
        cause: String,
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
            error: source,
        }
    }
}

/// The store error as a user can act on it: what to check first, then the innermost cause
/// (object_store's own text repeats each nested cause, and S3 bodies are long XML).
fn describe(e: &object_store::Error) -> String {
    let full = e.to_string();
    let mut innermost: &dyn std::error::Error = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    let mut cause = innermost.to_string();
    if let Some(code) = xml_field(&full, "Message") {
        cause = code.to_string();
    }
    if cause.chars().count() > 300 {
        cause = cause.chars().take(300).collect::<String>() + "…";
    }
    let has = |needle: &str| full.contains(needle);
    let hint = if has("NoSuchBucket") {
        let bucket = xml_field(&full, "BucketName").unwrap_or("the lake's bucket");
        Some(format!(
            "bucket {bucket} does not exist; check the lake URL (s3://bucket/prefix) and AWS_ENDPOINT_URL"
        ))
    } else if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("AccessDenied")
        || has("403 Forbidden")
    {
        Some("S3 refused the credentials; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION".into())
    } else if has("error sending request") || has("Connection refused") || has("dns error") {
        Some(
            "cannot reach the S3 endpoint; check AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP for http://)"
                .into(),
        )
    } else {
        None
    };
    match hint {
        Some(h) => format!("{h} ({cause})"),
        None => full,
    }
}

fn xml_field<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[test]
    fn s3_errors_say_what_to_check() {
        let e = Error::store(
            "_joblake/lease.json",
            generic(
                "404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>team-lake</BucketName></Error>",
            ),
        );
        let msg = e.to_string();
        assert!(
            msg.contains("bucket team-lake does not exist") && msg.contains("AWS_ENDPOINT_URL"),
            "{msg}"
        );
        assert_eq!(
            msg.matches("The specified bucket does not exist").count(),
            1,
            "{msg}"
        );

        let e = Error::store(
            "x",
            generic("403 Forbidden: <Error><Code>InvalidAccessKeyId</Code></Error>"),
        );
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");

        let e = Error::store(
            "x",
            generic("error sending request: Connection refused (os error 111)"),
        );
        assert!(
            e.to_string().contains("cannot reach the S3 endpoint"),
            "{e}"
        );

        let e = Error::store("x", generic("something else"));
        assert!(e.to_string().ends_with("something else"), "{e}");
    }
}
