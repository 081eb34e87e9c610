//! Threads for the CPU-heavy half of writing — decoding pages, encoding Parquet — apart
//! from the async runtime and at the lowest priority a thread can ask for.
//!
//! A fetch loop is a chain of waits: each page is asked for only once the last is staged, so
//! any time it spends queued behind a row group being compressed is time the API's end of
//! the chain sits idle. On the runtime's own threads a long encode holds up the fetch loop
//! and the connection tasks beside it; on these threads, at nice 19, the encoder takes the
//! CPU the fetch loop leaves, and the bounded queue between them still holds the fetcher
//! back when the encoder cannot keep up. At nice 10 the encoder still had a tenth of a core
//! the fetch loop was waiting for; at 19 (about a seventieth) a first jobs refresh took 8 % less time
//! (BENCHMARKS.md, "Less CPU per row"). There is one thread per core but one (up to four): on 2 cores, a
//! second encoder thread took the core the fetch loop and the API's end of the chain were
//! waiting for, and the run was about 4 % slower.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

type Job = Box<dyn FnOnce() + Send>;

/// How much lower than the process the encoder threads run: as low as Linux goes.
const NICE: i32 = 19;

fn pool() -> &'static mpsc::Sender<Job> {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        // One core is left to the fetch loop (and, in a benchmark, the API beside it).
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1).clamp(1, 4));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("joblake-encode-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("cannot start an encoder thread");
        }
        tx
    })
}

/// Makes the calling thread (not the process: Linux keeps a nice value per thread) yield to
/// the fetch loop. Best effort: where it fails, the encoder runs at the usual priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the calling thread's scheduling weight.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, NICE) != 0 {
            tracing::debug!("could not lower the encoder thread's priority");
        }
    }
}

/// Runs `f` on an encoder thread and waits for its result; a panic in `f` resumes here.
pub(crate) async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
    });
    pool()
        .send(job)
        .expect("the encoder threads live as long as the process");
    match rx.await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("an encoder thread dropped its job"),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_off_the_runtime_and_passes_panics_on() {
        let here = std::thread::current().id();
        let (there, name) = super::run(|| {
            let t = std::thread::current();
            (t.id(), t.name().map(str::to_owned))
        })
        .await;
        assert_ne!(here, there);
        assert!(name.unwrap().starts_with("joblake-encode-"));
        let caught = tokio::spawn(super::run(|| panic!("boom"))).await;
        assert!(caught.unwrap_err().is_panic());
        // The pool survives a panicking job.
        assert_eq!(super::run(|| 2 + 2).await, 4);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn encoder_threads_run_at_a_lower_priority() {
        // SAFETY: getpriority reads the calling thread's nice value.
        let nice = super::run(|| unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        })
        .await;
        // SAFETY: as above, for this (runtime) thread.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(nice, (own + super::NICE).min(19));
    }
}
