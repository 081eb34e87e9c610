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
#[serde(deny_unknown_fields)]
pub struct ViewsConfig {
    /// Whether a refresh writes a new latest-version snapshot when the rows fetched since the
    /// last one reach a fifth of it (default true); `compact` always writes one.
    #[serde(default = "yes")]
    pub auto_snapshot: bool,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            auto_snapshot: true,
        }
    }
}

fn yes() -> bool {
    true
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
