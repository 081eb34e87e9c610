//! CPU time and peak RSS of a child process (from `wait4`) and of this process.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};

use anyhow::Result;

/// What a process used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub user_secs: f64,
    pub sys_secs: f64,
    pub max_rss_kb: u64,
}

impl Usage {
    pub fn cpu_secs(&self) -> f64 {
        self.user_secs + self.sys_secs
    }
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn from_rusage(r: &libc::rusage) -> Usage {
    Usage {
        user_secs: secs(r.ru_utime),
        sys_secs: secs(r.ru_stime),
        max_rss_kb: r.ru_maxrss as u64,
    }
}

/// This process's usage so far.
pub fn self_usage() -> Usage {
    // SAFETY: getrusage writes one rusage struct, which we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    from_rusage(&r)
}

/// Runs `cmd` to its end with its output captured, and reaps it with `wait4`, which
/// reports that one child's own CPU time and peak RSS.
pub fn run_measured(cmd: &mut Command) -> Result<(Output, Usage)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut o = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut o).ok();
        o
    });
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut err, &mut stderr)?;
    let stdout = reader.join().unwrap_or_default();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 on our own child, writing into locals we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut r) };
    anyhow::ensure!(
        got == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    // The child is reaped; `Child` must not wait for it again.
    std::mem::forget(child);
    Ok((
        Output {
            status: ExitStatus::from_raw(status),
            stdout,
            stderr,
        },
        from_rusage(&r),
    ))
}
