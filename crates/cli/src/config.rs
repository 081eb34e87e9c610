//! `joblake.toml` (filters, page sizes, pacing and retry settings per source, which
//! companies to enrich, how the views are kept fast) and the environment, resolved into the
//! settings each command runs with; a value out of range is an error naming the setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use joblake_fetcher::RetryPolicy;
use joblake_schema::Table;
use joblake_sync::{SourceSettings, api_of, base_url_env, page_sizes};
use secrecy::SecretString;
use serde::Deserialize;

/// The most `overlap_minutes` may be: a day of changes asked for again each run.
const MAX_OVERLAP_MINUTES: u64 = 24 * 60;

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

/// `[views]`: how refreshes keep the latest tables (and so the latest-version views) exact.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// Whether a refresh keeps the latest tables exact (default true); with `false` they wait
    /// for `compact`, and the views are a window over the history meanwhile.
    /// (`auto_snapshot` before they had one name.)
    #[serde(alias = "auto_snapshot")]
    pub auto_latest: bool,
    /// The share of a latest table's rows that the rows refreshes deleted from it or added
    /// to it since it was last written as one file reach before a refresh writes it again
    /// (default 0.2; 0: after every run that brought rows).
    #[serde(alias = "snapshot_after")]
    pub latest_after: Option<f64>,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            auto_latest: true,
            latest_after: None,
        }
    }
}

impl ViewsConfig {
    /// `latest_after`, or its default; an error names the setting when it is not a share.
    pub fn latest_after(&self) -> Result<f64> {
        match self.latest_after {
            None => Ok(0.2),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(s),
            Some(s) => bail!(
                "[views] latest_after = {s} in joblake.toml: give a share of the latest table, \
                 0 or more (0.2 writes it again once the rows runs replaced or added since \
                 reach a fifth of its rows)"
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

impl FileConfig {
    /// Checks every value in the file, whichever command reads it and whichever sources have
    /// a key: a value out of range is an error naming it, before anything runs.
    pub fn check(&self) -> Result<()> {
        self.views.latest_after()?;
        for table in [Table::CareerSites, Table::Jobs] {
            self.settings(table, SecretString::from("not a key: checking settings"))?;
        }
        if let Some(companies) = &self.companies {
            EnrichOptions::resolve(Some(companies), EnrichFlags::default())?;
        }
        Ok(())
    }

    /// The settings of `table`'s API (company profiles are Jobo's, paced as its feed).
    pub fn source(&self, table: Table) -> &SourceConfig {
        match table {
            Table::CareerSites | Table::Companies => &self.career_sites,
            Table::Jobs => &self.jobs,
        }
    }

    /// `table`'s settings with `key`: the file's values over the API's defaults, the base URL
    /// from the environment; an error names a setting out of range.
    pub fn settings(&self, table: Table, key: SecretString) -> Result<SourceSettings> {
        let api = api_of(table);
        let cfg = self.source(table);
        let section = match table {
            Table::Jobs => "jobs",
            Table::CareerSites | Table::Companies => "career_sites",
        };
        let within = |name: &str, value: u64, lo: u64, hi: u64, unit: &str| -> Result<u64> {
            if !(lo..=hi).contains(&value) {
                bail!(
                    "[{section}] {name} = {value} in joblake.toml is out of range: give {lo} to \
                     {hi}{unit}"
                );
            }
            Ok(value)
        };
        let mut s = SourceSettings::defaults(api, key);
        if let Ok(url) = std::env::var(base_url_env(api)) {
            let allowed = std::env::var("JOBLAKE_ALLOW_HTTP").is_ok_and(|v| v.trim() == "1");
            if joblake_fetcher::sends_key_in_clear(&url) && !allowed {
                bail!(
                    "{} is a plain http:// URL to another machine: the API key would cross the \
                     network in clear text. Use https, or set JOBLAKE_ALLOW_HTTP=1 if that is \
                     what you mean",
                    base_url_env(api)
                );
            }
            s.base_url = url;
        }
        s.filters = cfg.filters_json()?;
        if let Some(size) = cfg.page_size {
            let range = page_sizes(api);
            if !range.contains(&size) {
                bail!(
                    "[{section}] page_size = {size} is out of range: the API takes {} to {} rows per page",
                    range.start(),
                    range.end()
                );
            }
            s.page_size = size;
        }
        if let Some(rpm) = cfg.requests_per_minute {
            s.requests_per_minute = rpm;
        }
        if let Some(m) = cfg.overlap_minutes {
            // A negative overlap would skip the changes between two runs.
            let m = u64::try_from(m).unwrap_or(u64::MAX);
            let m = within(
                "overlap_minutes",
                m,
                0,
                MAX_OVERLAP_MINUTES,
                " minutes (a day at most; 15 by default)",
            )?;
            s.overlap = chrono::Duration::minutes(m as i64);
        }
        if let Some(t) = cfg.timeout_secs {
            s.timeout = Duration::from_secs(within("timeout_secs", t, 1, 600, " seconds")?);
        }
        let defaults = RetryPolicy::default();
        s.retry = RetryPolicy {
            max_attempts: match cfg.max_attempts {
                Some(n) => within("max_attempts", n.into(), 1, 20, " attempts")? as u32,
                None => defaults.max_attempts,
            },
            base: match cfg.retry_base_ms {
                Some(ms) => {
                    Duration::from_millis(within("retry_base_ms", ms, 1, 60_000, " milliseconds")?)
                }
                None => defaults.base,
            },
            cap: match cfg.retry_cap_secs {
                Some(secs) => {
                    Duration::from_secs(within("retry_cap_secs", secs, 1, 3_600, " seconds")?)
                }
                None => defaults.cap,
            },
        };
        if s.retry.cap < s.retry.base {
            bail!(
                "[{section}] retry_cap_secs ({} s) is shorter than retry_base_ms ({} ms) in \
                 joblake.toml: the longest wait between attempts cannot be shorter than the first",
                s.retry.cap.as_secs(),
                s.retry.base.as_millis()
            );
        }
        if let Some(rows) = cfg.backfill_window_rows {
            s.backfill_window_rows = within("backfill_window_rows", rows, 1, 10_000_000, " rows")?;
        }
        if let Some(w) = cfg.warn_below_credits {
            if !(w.is_finite() && w >= 0.0) {
                bail!(
                    "[{section}] warn_below_credits = {w} in joblake.toml: give a number of \
                     credits, 0 or more (0 never warns)"
                );
            }
            s.warn_below_credits = w;
        }
        Ok(s)
    }
}

/// What `enrich companies` asks for: the flags where given, `[companies]` otherwise.
#[derive(Debug, Clone)]
pub struct EnrichOptions {
    /// Which companies (SQL over the views).
    pub choice: joblake_views::companies::Choice,
    /// Profiles asked for at once.
    pub concurrency: usize,
}

/// `enrich companies`' flags, each `None` where not given (`refresh --enrich` gives none:
/// `[companies]` decides).
#[derive(Debug, Default, Clone, Copy)]
pub struct EnrichFlags<'a> {
    /// `--where`.
    pub predicate: Option<&'a str>,
    /// `--stale-after`.
    pub stale_after: Option<&'a str>,
    /// `--limit`.
    pub limit: Option<u64>,
    /// `--concurrency`.
    pub concurrency: Option<usize>,
}

impl EnrichOptions {
    /// Resolves `flags` over `[companies]` (`cfg`, when the file has the section).
    pub fn resolve(cfg: Option<&CompaniesConfig>, flags: EnrichFlags<'_>) -> Result<EnrichOptions> {
        let default = CompaniesConfig::default();
        let cfg = cfg.unwrap_or(&default);
        let EnrichFlags {
            predicate,
            stale_after,
            limit,
            concurrency,
        } = flags;
        let stale_after = match stale_after.or(cfg.stale_after.as_deref()) {
            Some(s) => parse_age(s).map_err(|e| anyhow::anyhow!("--stale-after: {e}"))?,
            None => chrono::Duration::days(30),
        };
        let predicate = predicate
            .map(str::to_string)
            .or_else(|| cfg.predicate.clone())
            .filter(|p| !p.trim().is_empty());
        if let Some(p) = &predicate {
            joblake_views::companies::check_predicate(p).map_err(|why| {
                anyhow::anyhow!(
                    "--where (or [companies] where) must be one SQL condition on the \
                     career_sites view, such as \"country = 'Germany' AND company_size > 50\": \
                     {why}"
                )
            })?;
        }
        let concurrency = concurrency.or(cfg.concurrency).unwrap_or(4);
        if !(1..=64).contains(&concurrency) {
            bail!("--concurrency {concurrency} is out of range: give 1 to 64 profiles at once");
        }
        Ok(EnrichOptions {
            choice: joblake_views::companies::Choice {
                predicate,
                stale_after,
                limit: limit.or(cfg.limit),
            },
            concurrency,
        })
    }
}

/// The oldest an age may be (ten years): older than any profile.
const MAX_AGE_DAYS: i64 = 3_650;

/// Parses `30d`, `12h` or a number of days, up to ten years.
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not an age like 30d or 12h"))?;
    let age = match unit {
        "d" => chrono::Duration::try_days(n),
        "h" => chrono::Duration::try_hours(n),
        _ => return Err(format!("{s:?}: the unit must be d (days) or h (hours)")),
    };
    match age {
        Some(age) if age <= chrono::Duration::days(MAX_AGE_DAYS) => Ok(age),
        _ => Err(format!(
            "{s:?} is longer than {MAX_AGE_DAYS} days: give an age like 30d or 12h"
        )),
    }
}

/// An API key from the environment, if set and not blank.
pub fn read_key(var: &str) -> Option<SecretString> {
    std::env::var(var)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(SecretString::from)
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
    let cfg: FileConfig = toml::from_str(&text)
        .with_context(|| format!("the config file {} is not valid", path.display()))?;
    cfg.check()
        .with_context(|| format!("in the config file {}", path.display()))?;
    Ok((cfg, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_after_is_a_share_or_a_clear_error() {
        let share = |text: &str| {
            toml::from_str::<FileConfig>(text)
                .unwrap()
                .views
                .latest_after()
        };
        assert_eq!(share("").unwrap(), 0.2);
        assert_eq!(share("[views]\nlatest_after = 0\n").unwrap(), 0.0);
        assert_eq!(share("[views]\nlatest_after = 0.5\n").unwrap(), 0.5);
        assert_eq!(
            share("[views]\nsnapshot_after = 0.5\n").unwrap(),
            0.5,
            "the name from before still reads"
        );
        for bad in ["-1.0", "nan", "inf"] {
            let e = share(&format!("[views]\nlatest_after = {bad}\n")).unwrap_err();
            assert!(e.to_string().contains("[views] latest_after"), "{e}");
        }
        let off: FileConfig = toml::from_str("[views]\nauto_latest = false\n").unwrap();
        assert!(!off.views.auto_latest);
        let off: FileConfig = toml::from_str("[views]\nauto_snapshot = false\n").unwrap();
        assert!(!off.views.auto_latest);
        assert!(toml::from_str::<FileConfig>("[views]\nsnapshots = 1\n").is_err());
    }

    #[test]
    fn page_sizes_outside_what_the_api_takes_are_refused_up_front() {
        for (table, size, ok) in [
            (Table::CareerSites, 50, true),
            (Table::CareerSites, 51, false),
            (Table::CareerSites, 0, false),
            (Table::Jobs, 10, true),
            (Table::Jobs, 9, false),
            (Table::Jobs, 101, false),
        ] {
            let section = if table == Table::Jobs {
                "jobs"
            } else {
                "career_sites"
            };
            let cfg: FileConfig =
                toml::from_str(&format!("[{section}]\npage_size = {size}\n")).unwrap();
            match cfg.settings(table, "k".to_string().into()) {
                Ok(s) => {
                    assert!(ok, "{table} {size}");
                    assert_eq!(s.page_size, size);
                }
                Err(e) => {
                    assert!(!ok, "{table} {size}");
                    assert!(e.to_string().contains("page_size"), "{e}");
                }
            }
        }
    }

    #[test]
    fn every_setting_out_of_range_is_refused_naming_it() {
        for (text, names) in [
            (
                "[career_sites]\noverlap_minutes = -5\n",
                "[career_sites] overlap_minutes",
            ),
            (
                "[career_sites]\noverlap_minutes = 100000\n",
                "[career_sites] overlap_minutes",
            ),
            ("[jobs]\ntimeout_secs = 0\n", "[jobs] timeout_secs"),
            ("[jobs]\nmax_attempts = 0\n", "[jobs] max_attempts"),
            ("[jobs]\nretry_base_ms = 0\n", "[jobs] retry_base_ms"),
            ("[jobs]\nretry_cap_secs = 0\n", "[jobs] retry_cap_secs"),
            (
                "[jobs]\nretry_base_ms = 5000\nretry_cap_secs = 2\n",
                "[jobs] retry_cap_secs",
            ),
            (
                "[jobs]\nbackfill_window_rows = 0\n",
                "[jobs] backfill_window_rows",
            ),
            (
                "[jobs]\nwarn_below_credits = -1.0\n",
                "[jobs] warn_below_credits",
            ),
            (
                "[jobs]\nwarn_below_credits = nan\n",
                "[jobs] warn_below_credits",
            ),
        ] {
            let cfg: FileConfig = toml::from_str(text).unwrap();
            let table = if text.contains("[jobs]") {
                Table::Jobs
            } else {
                Table::CareerSites
            };
            let e = cfg.settings(table, "k".to_string().into()).unwrap_err();
            assert!(e.to_string().contains(names), "{text}: {e}");
        }
        let cfg: FileConfig = toml::from_str(
            "[career_sites]\noverlap_minutes = 0\ntimeout_secs = 600\nmax_attempts = 1\n",
        )
        .unwrap();
        assert!(
            cfg.settings(Table::Companies, "k".to_string().into())
                .is_ok()
        );
    }

    #[test]
    fn ages_take_days_hours_or_plain_days() {
        assert_eq!(parse_age("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_age("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_age("7").unwrap(), chrono::Duration::days(7));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("3w").is_err());
        assert!(parse_age("-3d").is_err());
        assert_eq!(parse_age("3650d").unwrap(), chrono::Duration::days(3650));
        for absurd in [
            "3651d",
            "99999999999999d",
            "99999999999999999999999d",
            "9999999999999h",
        ] {
            assert!(parse_age(absurd).is_err(), "{absurd}");
        }
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
