//! How a command ended, and so its exit code (README's table).

use std::process::ExitCode;

use joblake_writer::RunStatus;

/// A command that ran to an end of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything it set out to do: exit 0.
    Done,
    /// A source, the views or a compaction failed; what was fetched is committed and the
    /// next run goes on: exit 1.
    Failed,
    /// Stopped early on purpose (`--max-pages`, `--min-credits`); the next run resumes
    /// there: exit 3.
    Partial,
    /// Ctrl-C or SIGTERM: exit 130.
    Interrupted,
}

impl Outcome {
    /// The exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::Partial => 3,
            Outcome::Interrupted => EXIT_INTERRUPTED,
        })
    }

    /// A run's outcome from how each of its tables ended: interrupted over failed over
    /// stopped early.
    pub fn of_run(interrupted: bool, statuses: impl IntoIterator<Item = RunStatus>) -> Outcome {
        if interrupted {
            return Outcome::Interrupted;
        }
        let statuses: Vec<RunStatus> = statuses.into_iter().collect();
        if statuses.contains(&RunStatus::Failed) {
            Outcome::Failed
        } else if statuses.iter().any(|s| *s != RunStatus::Succeeded) {
            Outcome::Partial
        } else {
            Outcome::Done
        }
    }
}

/// Exit code after Ctrl-C / SIGTERM (also when a second Ctrl-C ends the process at once).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A command that could not do its work.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or setup (no key, bad config, the lake busy, bad SQL): exit 2. Nothing was
    /// changed.
    Usage(anyhow::Error),
    /// It started and failed (a compaction, the views): exit 1.
    Failed(anyhow::Error),
}

impl Failure {
    /// The exit code, once the error is shown.
    pub fn code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) => 1,
        })
    }

    /// The error.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Usage(e) | Failure::Failed(e) => e,
        }
    }
}

/// Errors met before a command changes anything are usage or setup errors.
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

impl From<joblake_writer::Error> for Failure {
    fn from(e: joblake_writer::Error) -> Self {
        Failure::Usage(e.into())
    }
}

/// What every command returns.
pub type CmdResult = Result<Outcome, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_ends_as_its_worst_table_did() {
        use RunStatus::*;
        assert_eq!(
            Outcome::of_run(false, [Succeeded, Succeeded]),
            Outcome::Done
        );
        assert_eq!(
            Outcome::of_run(false, [Succeeded, Interrupted]),
            Outcome::Partial
        );
        assert_eq!(
            Outcome::of_run(false, [Interrupted, Failed]),
            Outcome::Failed
        );
        assert_eq!(Outcome::of_run(true, [Failed]), Outcome::Interrupted);
        assert_eq!(Outcome::of_run(false, []), Outcome::Done);
    }
}
