//! The lake lock: one writer at a time, released by the OS if the holder dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};

use crate::{Error, Lake, LakeLocation, Result};

/// Held for the whole of a run; dropping it releases the lake.
#[derive(Debug)]
pub struct LakeLock {
    file: File,
}

impl LakeLock {
    /// Takes the lake for this process, or fails at once with [`Error::Busy`] naming the
    /// holder. `holder` is a short description written into the lock for that message.
    pub fn acquire(lake: &Lake, holder: &str) -> Result<LakeLock> {
        let root = match lake.location() {
            LakeLocation::Local(root) => root.clone(),
            LakeLocation::S3 { .. } => {
                return Err(Error::BadLake {
                    url: lake.url(),
                    detail: "writing to S3 lakes is not available in this build yet".into(),
                });
            }
        };
        let dir = root.join("_joblake");
        let io = |context: String| move |source| Error::Io { context, source };
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("cannot open the lake lock {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                let who = who.trim();
                return Err(Error::Busy {
                    lake: lake.url(),
                    holder: if who.is_empty() {
                        "holder unknown".into()
                    } else {
                        who.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(io(format!("cannot lock {}", path.display()))(e));
            }
        }
        // The holder line is informational only; the OS lock is what excludes.
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{holder}"))
            .map_err(io(format!("cannot write {}", path.display())))?;
        Ok(LakeLock { file })
    }
}

impl Drop for LakeLock {
    /// Clears the holder line while the lock is still held, so a finished run leaves the
    /// lock file exactly as it found it.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
        let first = LakeLock::acquire(&lake, "pid 1 refresh").unwrap();
        let err = LakeLock::acquire(&lake, "pid 2 refresh").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("pid 1 refresh") && msg.contains("wait"),
            "{msg}"
        );
        drop(first);
        LakeLock::acquire(&lake, "pid 2 refresh").unwrap();
    }
}
