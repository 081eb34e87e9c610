//! `BENCHMARKS.md`: one section per benchmark between `<!-- name:begin -->` and
//! `<!-- name:end -->`, replaced whole by each run of that benchmark.

use std::path::Path;

use anyhow::Result;

/// The machine, as a reader comparing figures needs it.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kb: u64 = s.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}")
}

/// Replaces (or appends) section `name` of `path` with `body`, stamped with the command.
pub fn write_section(path: &Path, name: &str, command: &str, body: &str) -> Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let stamp = format!(
        "{begin}\n{body}\n_Measured {} on {} by `{command}`._\n{end}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine()
    );
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures written by `make bench` and `make bench-pacing` \
         (`crates/bench`); each section says which command produced it, when, and on what.\n"
            .to_string()
    });
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{stamp}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{}\n{stamp}\n", old.trim_end()),
    };
    std::fs::write(path, new)?;
    Ok(())
}
