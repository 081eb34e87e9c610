//! The writer's integration tests, one binary: the lake conformance suite (every case run
//! against a local directory and against a real S3-compatible server), the lock, and the
//! S3 fault handling.

mod conformance;
mod lock;
mod s3_faults;
mod support;
