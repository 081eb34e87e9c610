//! The lake lock: one writer at a time. A local lake uses an OS file lock (released by the
//! OS if the holder dies); an S3 lake uses a lease object written with S3's conditional
//! writes, renewed while the run lasts, which a crashed holder cannot keep past its expiry
//! (nor at all from a run on its own machine, which sees that its process is gone).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{Error, Lake, LakeLocation, Result};

/// How long an S3 lease lasts without renewal; it is renewed every third of that.
pub const LEASE_TTL: Duration = Duration::from_secs(120);

/// Held for the whole of a run; release it with [`LakeLock::release`] (dropping it releases
/// a local lock at once and lets an S3 lease run out).
#[derive(Debug)]
pub struct LakeLock {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Local(File),
    S3(S3Lease),
}

#[derive(Debug)]
struct S3Lease {
    store: Arc<dyn ObjectStore>,
    version: Arc<Mutex<UpdateVersion>>,
    lost: Arc<AtomicBool>,
    holder: String,
    ttl: Duration,
    renewer: tokio::task::JoinHandle<()>,
}

/// What the lease object holds.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    expires_at: DateTime<Utc>,
    /// The machine (hostname and boot) and process holding the lease, so a run on the same
    /// machine can tell a crashed holder from a live one without waiting out the lease.
    #[serde(default)]
    machine: Option<String>,
    #[serde(default)]
    pid: Option<u32>,
}

impl LeaseBody {
    fn new(holder: &str, ttl: Duration) -> LeaseBody {
        LeaseBody {
            holder: holder.to_string(),
            expires_at: Utc::now() + ttl,
            machine: this_machine(),
            pid: Some(std::process::id()),
        }
    }

    /// Whether the holder is gone: its lease ran out, or it ran on this machine and its
    /// process no longer exists (killed, crashed). A live holder elsewhere is never
    /// judged dead early; at worst a stale judgement is caught by the holder's
    /// [`LakeLock::confirm`] before its next commit.
    fn holder_is_gone(&self) -> bool {
        if self.expires_at <= Utc::now() {
            return true;
        }
        match (&self.machine, self.pid, this_machine()) {
            (Some(theirs), Some(pid), Some(ours)) if *theirs == ours => !process_exists(pid),
            _ => false,
        }
    }
}

/// This machine as hostname plus boot id (Linux), or `None` where that cannot be told.
fn this_machine() -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    Some(format!(
        "{}/{}",
        read("/proc/sys/kernel/hostname")?,
        read("/proc/sys/kernel/random/boot_id")?
    ))
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl LakeLock {
    /// Takes the lake for this process, or fails at once with [`Error::Busy`] naming the
    /// holder. `holder` is a short description written into the lock for that message.
    pub async fn acquire(lake: &Lake, holder: &str) -> Result<LakeLock> {
        Self::acquire_with_ttl(lake, holder, LEASE_TTL).await
    }

    /// [`LakeLock::acquire`] with an S3 lease of `ttl` (tests use short ones).
    pub async fn acquire_with_ttl(lake: &Lake, holder: &str, ttl: Duration) -> Result<LakeLock> {
        let inner = match lake.location() {
            LakeLocation::Local(root) => Inner::Local(lock_file(lake, root, holder)?),
            LakeLocation::S3 { .. } => Inner::S3(S3Lease::acquire(lake, holder, ttl).await?),
        };
        Ok(LakeLock { inner })
    }

    /// Confirms the lock is still this process's (an S3 lease is renewed on the spot); call
    /// it right before a commit so a run that lost its lease never commits over another.
    pub async fn confirm(&self, lake: &Lake) -> Result<()> {
        match &self.inner {
            Inner::Local(_) => Ok(()),
            Inner::S3(lease) => lease.renew().await.map_err(|_| Error::Busy {
                lake: lake.url(),
                holder: "this run's lease expired and was taken over; nothing more was committed"
                    .into(),
            }),
        }
    }

    /// Stops renewing an S3 lease, as a hung process would (for tests of the takeover).
    #[doc(hidden)]
    pub fn pause_renewal_for_tests(&self) {
        if let Inner::S3(lease) = &self.inner {
            lease.renewer.abort();
        }
    }

    /// Gives the lake back.
    pub async fn release(self) {
        if let Inner::S3(lease) = &self.inner {
            lease.renewer.abort();
            if !lease.lost.load(Ordering::SeqCst) {
                let version = lease.version.lock().await.clone();
                // Only delete the lease if it is still ours (no conditional delete in S3).
                if let Ok(meta) = lease.store.head(&crate::layout::lease()).await
                    && meta.e_tag == version.e_tag
                {
                    let _ = lease.store.delete(&crate::layout::lease()).await;
                }
            }
        }
    }
}

impl S3Lease {
    async fn acquire(lake: &Lake, holder: &str, ttl: Duration) -> Result<S3Lease> {
        let store = Arc::clone(lake.store());
        let path = crate::layout::lease();
        let busy = |holder: String| Error::Busy {
            lake: lake.url(),
            holder,
        };
        let mut attempts = 0;
        let version = loop {
            attempts += 1;
            let create = PutOptions::from(PutMode::Create);
            match store
                .put_opts(&path, lease_payload(holder, ttl), create)
                .await
            {
                Ok(r) => {
                    break UpdateVersion {
                        e_tag: r.e_tag,
                        version: r.version,
                    };
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(Error::store(&path, e)),
            }
            let current = match store.get(&path).await {
                Ok(r) => r,
                // Released between our two requests: try to create it again.
                Err(object_store::Error::NotFound { .. }) if attempts < 3 => continue,
                Err(e) => return Err(Error::store(&path, e)),
            };
            let meta = current.meta.clone();
            let bytes = current.bytes().await.map_err(|e| Error::store(&path, e))?;
            let body: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
            if let Some(b) = &body
                && !b.holder_is_gone()
            {
                return Err(busy(format!(
                    "{}, lease until {}",
                    b.holder,
                    b.expires_at.to_rfc3339()
                )));
            }
            let expired = UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            };
            let take = PutOptions::from(PutMode::Update(expired));
            match store
                .put_opts(&path, lease_payload(holder, ttl), take)
                .await
            {
                Ok(r) => {
                    tracing::warn!(
                        previous = body.map(|b| b.holder).unwrap_or_default(),
                        "took over the lake lease of a holder that crashed or hung"
                    );
                    break UpdateVersion {
                        e_tag: r.e_tag,
                        version: r.version,
                    };
                }
                Err(object_store::Error::Precondition { .. }) => {
                    return Err(busy(
                        "another process took over the expired lease just now".into(),
                    ));
                }
                Err(e) => return Err(Error::store(&path, e)),
            }
        };
        let version = Arc::new(Mutex::new(version));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew_loop(
            Arc::clone(&store),
            Arc::clone(&version),
            Arc::clone(&lost),
            holder.to_string(),
            ttl,
        ));
        Ok(S3Lease {
            store,
            version,
            lost,
            holder: holder.to_string(),
            ttl,
            renewer,
        })
    }

    async fn renew(&self) -> std::result::Result<(), object_store::Error> {
        renew_once(
            &self.store,
            &self.version,
            &self.lost,
            &self.holder,
            self.ttl,
        )
        .await
    }
}

impl Drop for S3Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn lease_payload(holder: &str, ttl: Duration) -> PutPayload {
    let body = LeaseBody::new(holder, ttl);
    PutPayload::from(serde_json::to_vec(&body).expect("lease serialises"))
}

async fn renew_once(
    store: &Arc<dyn ObjectStore>,
    version: &Mutex<UpdateVersion>,
    lost: &AtomicBool,
    holder: &str,
    ttl: Duration,
) -> std::result::Result<(), object_store::Error> {
    let mut v = version.lock().await;
    if lost.load(Ordering::SeqCst) {
        return Err(object_store::Error::Precondition {
            path: crate::layout::lease().to_string(),
            source: "the lease was lost".into(),
        });
    }
    let opts = PutOptions::from(PutMode::Update(v.clone()));
    match store
        .put_opts(&crate::layout::lease(), lease_payload(holder, ttl), opts)
        .await
    {
        Ok(r) => {
            *v = UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            };
            Ok(())
        }
        Err(e @ object_store::Error::Precondition { .. }) => {
            lost.store(true, Ordering::SeqCst);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn renew_loop(
    store: Arc<dyn ObjectStore>,
    version: Arc<Mutex<UpdateVersion>>,
    lost: Arc<AtomicBool>,
    holder: String,
    ttl: Duration,
) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match renew_once(&store, &version, &lost, &holder, ttl).await {
            Ok(()) => {}
            Err(object_store::Error::Precondition { .. }) => {
                tracing::error!("the lake lease was taken over; this run will not commit");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the lake lease; retrying"),
        }
    }
}

fn lock_file(lake: &Lake, root: &std::path::Path, holder: &str) -> Result<File> {
    let dir = root.join(crate::layout::TOOL_DIR);
    let io = |context: String| move |source| Error::Io { context, source };
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let path = dir.join(crate::layout::LOCK_FILE);
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
    Ok(file)
}

impl Drop for LakeLock {
    /// Clears a local lock's holder line while it is still held, so a finished run leaves
    /// the lock file exactly as it found it, then unlocks explicitly: a child process forked
    /// meanwhile shares the open file, and merely closing ours would leave it locked.
    fn drop(&mut self) {
        if let Inner::Local(file) = &self.inner {
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }
}
