//! The lake lock: one writer at a time. A local lake uses an OS file lock (released by the
//! OS if the holder dies); an S3 lake uses a lease object written with S3's conditional
//! writes, renewed while the run lasts, which a crashed holder cannot keep past its expiry
//! (nor at all from a run on its own machine, which sees that its process is gone).
//!
//! The S3 lease's promises:
//! - every commit confirms it first (a conditional write that fails if anyone else wrote the
//!   lease since): the roll commits of a long run, the latest tables', a compaction's swaps,
//!   the views step;
//! - a run that lost it stops fetching within one renewal period ([`LakeLock::lost`]);
//! - its expiry is judged on the store's clock (the lease object's `Last-Modified` against a
//!   probe object's), never on a reader's or holder's, so skewed machines agree;
//! - a holder's process is told apart by machine (hostname, boot and PID namespace) and by
//!   PID with its start time, so containers that share a hostname and PIDs are never
//!   mistaken for one another, nor a reused PID for the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{Error, Lake, LakeLocation, Result};

/// How long an S3 lease lasts without renewal, unless [`LEASE_ENV`] says otherwise; it is
/// renewed every third of that.
pub const LEASE_TTL: Duration = Duration::from_secs(120);

/// The variable that sets an S3 lease's length in seconds ([`LEASE_RANGE`]): how long a lake
/// stays closed after its holder hangs or its machine dies.
pub const LEASE_ENV: &str = "JOBLAKE_S3_LEASE_SECONDS";

/// The lease lengths [`LEASE_ENV`] may set, in seconds.
pub const LEASE_RANGE: std::ops::RangeInclusive<u64> = 3..=3600;

/// The S3 lease length [`LEASE_ENV`] sets, or [`LEASE_TTL`]; a value out of [`LEASE_RANGE`]
/// is an error naming the variable.
pub fn lease_ttl_from_env() -> std::result::Result<Duration, String> {
    match std::env::var(LEASE_ENV) {
        Err(_) => Ok(LEASE_TTL),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if LEASE_RANGE.contains(&s) => Ok(Duration::from_secs(s)),
            _ => Err(format!(
                "{LEASE_ENV} must be a whole number of seconds from {} to {}, not {v:?}",
                LEASE_RANGE.start(),
                LEASE_RANGE.end()
            )),
        },
    }
}

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
    state: Arc<LeaseState>,
    /// The renewals on their timer, a task on the lease's thread.
    renewer: tokio::task::JoinHandle<()>,
    /// Ends the lease's thread (when sent or dropped).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The lake's slot this lease sits in while held (see [`Lake::confirm_lease`]).
    slot: LeaseSlot,
}

/// Where an open [`Lake`] keeps the lease its process holds, so that every commit through it
/// confirms the lease first.
pub(crate) type LeaseSlot = Arc<std::sync::Mutex<Option<Arc<LeaseState>>>>;

/// A held S3 lease: its object's version, and whether it was lost.
///
/// Every request about it — the renewals on their timer, the confirmations before commits,
/// the release — runs on the lease's own thread and runtime, through a client of its own
/// ([`Lake::own_store`]): a command's runtime has one thread, which may be busy with other
/// work for longer than a short lease's renewal period.
#[derive(Debug)]
pub(crate) struct LeaseState {
    /// The lease thread's runtime.
    runtime: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    version: Mutex<UpdateVersion>,
    lost: AtomicBool,
    holder: String,
    ttl: Duration,
    /// When the lease was last written, on this process's monotonic clock.
    renewed: std::sync::Mutex<Instant>,
}

/// What the lease object holds.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    /// When the holder's clock said the lease runs out: for people reading the object only
    /// (expiry is judged by the store's clock, from the object's `Last-Modified` and `ttl_ms`).
    expires_at: DateTime<Utc>,
    /// How long the lease lasts after each renewal (absent in leases of older versions, which
    /// used [`LEASE_TTL`]).
    #[serde(default)]
    ttl_ms: Option<u64>,
    /// The machine the holder runs on: hostname, boot and PID namespace, so a run on the
    /// same machine can tell a crashed holder from a live one without waiting out the lease.
    #[serde(default)]
    machine: Option<String>,
    #[serde(default)]
    pid: Option<u32>,
    /// The holder process's start time (clock ticks after boot): a PID reused by another
    /// process is not the holder.
    #[serde(default)]
    started: Option<u64>,
}

impl LeaseBody {
    fn new(holder: &str, ttl: Duration) -> LeaseBody {
        let pid = std::process::id();
        LeaseBody {
            holder: holder.to_string(),
            expires_at: Utc::now() + ttl,
            ttl_ms: Some(ttl.as_millis() as u64),
            machine: this_machine(),
            pid: Some(pid),
            started: process_started(pid),
        }
    }

    fn ttl(&self) -> Duration {
        self.ttl_ms.map_or(LEASE_TTL, Duration::from_millis)
    }

    /// On this machine, whether the holder's process is gone (killed, crashed; its PID
    /// unused or used by another process); `None` when it runs elsewhere (or that cannot
    /// be told), where only the lease's expiry frees the lake.
    fn process_gone_here(&self) -> Option<bool> {
        match (&self.machine, self.pid, this_machine()) {
            (Some(theirs), Some(pid), Some(ours)) if *theirs == ours => {
                Some(match (process_started(pid), self.started) {
                    (None, _) => true,
                    (Some(now), Some(then)) => now != then,
                    (Some(_), None) => false,
                })
            }
            _ => None,
        }
    }
}

/// This machine as hostname, boot id and PID namespace (Linux), or `None` where that cannot
/// be told. Containers on one host share the boot id and may share a hostname; each has its
/// own PID namespace, in which another's PIDs mean nothing.
fn this_machine() -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!(
        "{}/{}/{}",
        read("/proc/sys/kernel/hostname")?,
        read("/proc/sys/kernel/random/boot_id")?,
        pid_ns.display()
    ))
}

/// When process `pid` started (clock ticks after boot, `/proc/<pid>/stat`'s 22nd field), or
/// `None` when there is no such process.
fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (2nd field) may hold spaces and parentheses: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl LakeLock {
    /// Takes the lake for this process, or fails at once with [`Error::Busy`] naming the
    /// holder. `holder` is a short description written into the lock for that message.
    pub async fn acquire(lake: &Lake, holder: &str) -> Result<LakeLock> {
        Self::acquire_with_ttl(lake, holder, LEASE_TTL).await
    }

    /// [`LakeLock::acquire`] with an S3 lease of `ttl` (see [`lease_ttl_from_env`]).
    pub async fn acquire_with_ttl(lake: &Lake, holder: &str, ttl: Duration) -> Result<LakeLock> {
        let inner = match lake.location() {
            LakeLocation::Local(root) => Inner::Local(lock_file(lake, root, holder)?),
            LakeLocation::S3 { .. } => Inner::S3(S3Lease::acquire(lake, holder, ttl).await?),
        };
        Ok(LakeLock { inner })
    }

    /// Confirms the lock is still this process's (an S3 lease is renewed on the spot). Every
    /// commit through `lake` does this itself; call it before other writes a run that lost
    /// the lake must not make.
    pub async fn confirm(&self, lake: &Lake) -> Result<()> {
        match &self.inner {
            Inner::Local(_) => Ok(()),
            Inner::S3(lease) => lease.state.confirm(lake).await,
        }
    }

    /// Whether this process lost the lake: its S3 lease was taken over, or could not be
    /// renewed for as long as it lasts (so another run may take it). Never for a local lock.
    pub fn is_lost(&self) -> bool {
        match &self.inner {
            Inner::Local(_) => false,
            Inner::S3(lease) => lease.state.is_lost(),
        }
    }

    /// Resolves once [`Self::is_lost`] (never for a local lock): a run stops fetching then.
    pub async fn lost(&self) {
        loop {
            if self.is_lost() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
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
            lease.leave_slot();
            let state = Arc::clone(&lease.state);
            if !state.lost.load(Ordering::SeqCst) {
                let _ = lease
                    .state
                    .on_lease_thread(async move {
                        let version = state.version.lock().await.clone();
                        // Only delete the lease if it is still ours (no conditional delete in S3).
                        let meta = state.store.head(&crate::layout::lease()).await?;
                        if meta.e_tag == version.e_tag {
                            state.store.delete(&crate::layout::lease()).await?;
                        }
                        Ok(())
                    })
                    .await;
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
                && b.process_gone_here() != Some(true)
            {
                // Judged on the store's clock: when it wrote the lease, and its time now.
                let now = store_clock(&store).await?;
                let runs_out = meta.last_modified + b.ttl();
                if runs_out > now {
                    return Err(busy(format!(
                        "{}; its lease was renewed {} s ago and runs out in {} s unless \
                         renewed (by the store's clock)",
                        b.holder,
                        (now - meta.last_modified).num_seconds().max(0),
                        (runs_out - now).num_seconds().max(1),
                    )));
                }
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
        let (runtime, stop) = lease_thread()?;
        let state = Arc::new(LeaseState {
            runtime,
            store: lake.own_store()?,
            version: Mutex::new(version),
            lost: AtomicBool::new(false),
            holder: holder.to_string(),
            ttl,
            renewed: std::sync::Mutex::new(Instant::now()),
        });
        let renewer = state.runtime.spawn(renew_loop(Arc::clone(&state)));
        let slot = Arc::clone(lake.lease_slot());
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&state));
        Ok(S3Lease {
            state,
            renewer,
            stop: Some(stop),
            slot,
        })
    }

    /// Takes the lease out of the lake's slot (if it is still this one).
    fn leave_slot(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &self.state)) {
            *slot = None;
        }
    }
}

impl Drop for S3Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        self.leave_slot();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a lease's thread: a runtime of its own, running until the sender is used or dropped.
fn lease_thread() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let cannot = |source| Error::Io {
        context: "cannot start the thread that renews the lake lease".into(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(cannot)?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("joblake-lease".into())
        // A current-thread runtime runs its tasks while its thread is in `block_on`.
        .spawn(move || {
            let _ = runtime.block_on(stopped);
        })
        .map_err(cannot)?;
    Ok((handle, stop))
}

/// The store's time now: the `Last-Modified` of a probe object written just now.
async fn store_clock(store: &Arc<dyn ObjectStore>) -> Result<DateTime<Utc>> {
    let probe = crate::layout::clock_probe();
    store
        .put(&probe, PutPayload::from_static(b""))
        .await
        .map_err(|e| Error::store(&probe, e))?;
    let meta = store
        .head(&probe)
        .await
        .map_err(|e| Error::store(&probe, e))?;
    Ok(meta.last_modified)
}

fn lease_payload(holder: &str, ttl: Duration) -> PutPayload {
    let body = LeaseBody::new(holder, ttl);
    PutPayload::from(serde_json::to_vec(&body).expect("lease serialises"))
}

impl LeaseState {
    /// Writes the lease again if it is still ours; fails with a precondition error (and
    /// counts it lost) if anyone else wrote it since.
    async fn renew(&self) -> std::result::Result<(), object_store::Error> {
        let mut v = self.version.lock().await;
        if self.lost.load(Ordering::SeqCst) {
            return Err(object_store::Error::Precondition {
                path: crate::layout::lease().to_string(),
                source: "the lease was lost".into(),
            });
        }
        let opts = PutOptions::from(PutMode::Update(v.clone()));
        match self
            .store
            .put_opts(
                &crate::layout::lease(),
                lease_payload(&self.holder, self.ttl),
                opts,
            )
            .await
        {
            Ok(r) => {
                *v = UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                };
                *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                Ok(())
            }
            Err(e @ object_store::Error::Precondition { .. }) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Renews the lease before a commit: an error if it is no longer ours.
    pub(crate) async fn confirm(self: &Arc<Self>, lake: &Lake) -> Result<()> {
        let state = Arc::clone(self);
        match self
            .on_lease_thread(async move { state.renew().await })
            .await
        {
            Ok(()) => Ok(()),
            Err(object_store::Error::Precondition { .. }) => Err(Error::Busy {
                lake: lake.url(),
                holder: "this run's lease expired and was taken over; nothing more was committed"
                    .into(),
            }),
            Err(e) => Err(Error::store(crate::layout::lease(), e)),
        }
    }

    /// Runs `request` on the lease's thread; an error if that thread has stopped (the lease
    /// was released).
    async fn on_lease_thread<T: Send + 'static>(
        &self,
        request: impl Future<Output = std::result::Result<T, object_store::Error>> + Send + 'static,
    ) -> std::result::Result<T, object_store::Error> {
        match self.runtime.spawn(request).await {
            Ok(answer) => answer,
            Err(e) => Err(object_store::Error::Generic {
                store: "lease",
                source: format!("the lease's thread stopped: {e}").into(),
            }),
        }
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
            || self
                .renewed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                >= self.ttl
    }
}

async fn renew_loop(state: Arc<LeaseState>) {
    let mut tick = tokio::time::interval(state.ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match state.renew().await {
            Ok(()) => {}
            Err(object_store::Error::Precondition { .. }) => {
                tracing::error!(
                    "the lake lease was taken over; this run stops fetching and will not commit"
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(machine: Option<String>, pid: u32, started: Option<u64>) -> LeaseBody {
        LeaseBody {
            holder: "h".into(),
            expires_at: Utc::now(),
            ttl_ms: None,
            machine,
            pid: Some(pid),
            started,
        }
    }

    #[test]
    fn a_holder_is_known_by_its_machine_pid_and_start_time() {
        let me = std::process::id();
        let started = process_started(me);
        assert!(started.is_some(), "this process's start time is readable");
        let here = this_machine();
        assert!(here.as_deref().is_some_and(|m| m.contains("pid:[")));
        // This very process: alive.
        assert_eq!(
            body(here.clone(), me, started).process_gone_here(),
            Some(false)
        );
        // Its PID, but another start: the holder died and the PID was reused.
        let other_start = started.map(|s| s + 1);
        assert_eq!(
            body(here.clone(), me, other_start).process_gone_here(),
            Some(true)
        );
        // A PID nothing uses here.
        assert_eq!(
            body(here, u32::MAX - 1, None).process_gone_here(),
            Some(true)
        );
        // Another PID namespace (a container sharing the hostname and boot): unknown here.
        let other_ns = this_machine().map(|m| format!("{}/pid:[1]", m.rsplit_once('/').unwrap().0));
        assert_eq!(body(other_ns, me, started).process_gone_here(), None);
        assert_eq!(body(None, me, started).process_gone_here(), None);
    }

    #[test]
    fn a_lease_of_an_older_joblake_lasts_the_default_time() {
        let old: LeaseBody = serde_json::from_str(
            r#"{"holder":"joblake refresh","expires_at":"2026-11-28T10:00:00Z","machine":"h/b","pid":3}"#,
        )
        .unwrap();
        assert_eq!(old.ttl(), LEASE_TTL);
        assert_eq!(old.started, None);
    }
}
