//! `joblake.toml`: filters, page sizes, pacing and retry settings per source.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Settings for Jobo's career sites feed.
    #[serde(default)]
    pub career_sites: SourceConfig,
    /// Settings for Sentrion's jobs search.
    #[serde(default)]
    pub jobs: SourceConfig,
    /// Which company profiles `refresh --enrich` keeps current (none without this section).
    pub companies: Option<CompaniesConfig>,
    /// How the views are kept fast.
    #[serde(default)]
    pub views: ViewsConfig,
}

/// `[views]`: how refreshes keep the latest-version views fast.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// Whether a refresh writes a new latest-version snapshot when one is due (default true);
    /// `compact` always writes one.
    pub auto_snapshot: bool,
    /// The share of the snapshot (in Parquet bytes) the rows fetched since it reach before a
    /// refresh writes a new one (default 0.2; 0: after every run that brought rows).
    pub snapshot_after: Option<f64>,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            auto_snapshot: true,
            snapshot_after: None,
        }
    }
}

impl ViewsConfig {
    /// `snapshot_after`, or its default; an error names the setting when it is not a share.
    pub fn snapshot_after(&self) -> Result<f64> {
        match self.snapshot_after {
            None => Ok(0.2),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(s),
            Some(s) => anyhow::bail!(
                "[views] snapshot_after = {s} in joblake.toml: give a share of the snapshot, \
                 0 or more (0.2 rewrites it once the runs since it hold a fifth of its bytes)"
            ),
        }
    }
}

/// `[companies]`: the profiles `refresh --enrich` fetches (Jobo's pacing and retries are the
/// `[career_sites]` ones).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompaniesConfig {
    /// SQL predicate over the `career_sites` view choosing the companies.
    #[serde(rename = "where")]
    pub predicate: Option<String>,
    /// Age after which a profile is fetched again, e.g. "30d" (default 30 days).
    pub stale_after: Option<String>,
    /// At most this many profiles a run.
    pub limit: Option<u64>,
    /// Profiles asked for at once (default 4).
    pub concurrency: Option<usize>,
}

/// One source's settings; everything optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Request-body filters sent as they are (see the API reference pages).
    pub filters: Option<toml::Table>,
    /// Rows per page: Jobo `batch_size` (≤ 50), Sentrion `limit` (10–100).
    pub page_size: Option<u32>,
    /// Requests per minute to hold to (0 = no pacing).
    pub requests_per_minute: Option<u32>,
    /// Career sites: minutes subtracted from the last run start for `updated_after`.
    pub overlap_minutes: Option<i64>,
    /// Seconds before one request times out.
    pub timeout_secs: Option<u64>,
    /// Attempts per request before giving up.
    pub max_attempts: Option<u32>,
    /// First backoff delay, milliseconds.
    pub retry_base_ms: Option<u64>,
    /// Longest backoff delay, seconds.
    pub retry_cap_secs: Option<u64>,
    /// Backfill: a window the API says holds more rows than this is split (default 10 000).
    pub backfill_window_rows: Option<u64>,
    /// Warn when the credit balance ends a run under this (default 1 000; 0 never warns).
    pub warn_below_credits: Option<f64>,
}

impl SourceConfig {
    /// The filters as the JSON object the API takes.
    pub fn filters_json(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        match &self.filters {
            None => Ok(Default::default()),
            Some(t) => match serde_json::to_value(t)? {
                serde_json::Value::Object(m) => Ok(m),
                _ => unreachable!("a TOML table is an object"),
            },
        }
    }
}

/// Loads `path`, or `./joblake.toml` when present, or the defaults.
pub fn load(path: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>)> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from("joblake.toml")).filter(|p| p.is_file()),
    };
    let Some(path) = path else {
        return Ok((FileConfig::default(), None));
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let cfg = toml::from_str(&text)
        .with_context(|| format!("the config file {} is not valid", path.display()))?;
    Ok((cfg, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_after_is_a_share_or_a_clear_error() {
        let share = |text: &str| {
            toml::from_str::<FileConfig>(text)
                .unwrap()
                .views
                .snapshot_after()
        };
        assert_eq!(share("").unwrap(), 0.2);
        assert_eq!(share("[views]\nsnapshot_after = 0\n").unwrap(), 0.0);
        assert_eq!(share("[views]\nsnapshot_after = 0.5\n").unwrap(), 0.5);
        for bad in ["-1.0", "nan", "inf"] {
            let e = share(&format!("[views]\nsnapshot_after = {bad}\n")).unwrap_err();
            assert!(e.to_string().contains("[views] snapshot_after"), "{e}");
        }
        let off: FileConfig = toml::from_str("[views]\nauto_snapshot = false\n").unwrap();
        assert!(!off.views.auto_snapshot);
        assert!(toml::from_str::<FileConfig>("[views]\nsnapshots = 1\n").is_err());
    }

    #[test]
    fn filters_become_json_and_unknown_keys_are_refused() {
        let cfg: FileConfig = toml::from_str(
            r#"
            [career_sites]
            page_size = 25
            filters = { industries = ["fintech"], founded_after = 2015 }
            [jobs]
            filters = { jobs_locations = [{ country = "United States" }] }
            "#,
        )
        .unwrap();
        let f = cfg.career_sites.filters_json().unwrap();
        assert_eq!(f["industries"][0], "fintech");
        assert_eq!(f["founded_after"], 2015);
        assert_eq!(
            cfg.jobs.filters_json().unwrap()["jobs_locations"][0]["country"],
            "United States"
        );
        assert!(toml::from_str::<FileConfig>("[jobs]\nbatch = 3").is_err());
    }
}
