//! One feed as a run sees it: its table, its client, and how its scans start.

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use joblake_fetcher::{
    Api, ClientConfig, FetchError, JoboClient, JoboScan, Pacer, Page, SentrionClient, SentrionScan,
    StatsSnapshot,
};
use joblake_schema::Table;

use crate::checkpoint::{Checkpoint, Scan, Window};
use crate::settings::{SourceSettings, api_of};

enum Client {
    Jobo(JoboClient),
    Sentrion(SentrionClient),
}

/// A configured feed ready to fetch.
pub struct Source {
    /// The table it feeds.
    pub table: Table,
    /// The API behind it.
    pub api: Api,
    client: Client,
    filters: serde_json::Map<String, serde_json::Value>,
    page_size: u32,
    overlap: chrono::Duration,
    pacer: Pacer,
    backfill_window_rows: u64,
    warn_below_credits: f64,
}

impl Source {
    /// The feed of `table` (career sites or jobs) with `settings`.
    pub fn new(table: Table, settings: SourceSettings) -> anyhow::Result<Source> {
        let api = api_of(table);
        let pacer = Pacer::per_minute(settings.requests_per_minute);
        let client_cfg = ClientConfig {
            base_url: settings.base_url,
            key: settings.key,
            timeout: settings.timeout,
            retry: settings.retry,
            pacer: pacer.clone(),
        };
        let client = match api {
            Api::Jobo => Client::Jobo(JoboClient::new(client_cfg)?),
            Api::Sentrion => Client::Sentrion(SentrionClient::new(client_cfg)?),
        };
        Ok(Source {
            table,
            api,
            client,
            filters: settings.filters,
            page_size: settings.page_size,
            overlap: settings.overlap,
            pacer,
            backfill_window_rows: settings.backfill_window_rows.max(1),
            warn_below_credits: settings.warn_below_credits,
        })
    }

    /// The scan a run starts at `now` when none is under way: career sites updated since the
    /// last scan's start less the overlap, jobs published since the day before it (or
    /// `since`, or the API's two-month default on a first run).
    pub fn new_scan(
        &self,
        checkpoint: &Checkpoint,
        run_id: &str,
        now: DateTime<Utc>,
        full: bool,
        since: Option<NaiveDate>,
    ) -> Scan {
        let last = checkpoint.watermark.filter(|_| !full);
        let (updated_after, published_after) = match self.api {
            Api::Jobo => (last.map(|w| w - self.overlap), None),
            Api::Sentrion => (
                None,
                last.map(|w| w.date_naive() - chrono::Days::new(1))
                    .or(since),
            ),
        };
        Scan {
            updated_after,
            published_after,
            // Career sites are asked for by `updated_at`, the server's clock: so is the
            // watermark they leave.
            server_clock: self.api == Api::Jobo,
            ..Scan::starting(run_id, now)
        }
    }

    /// The scan of one backfill window: Sentrion by publication date, Jobo by discovery time.
    pub fn window_scan(&self, window: &Window, run_id: &str) -> Scan {
        let mut scan = Scan::starting(run_id, Utc::now());
        match self.api {
            Api::Sentrion => {
                scan.published_after = Some(window.from.date_naive());
                scan.published_before = Some(window.to.date_naive());
            }
            Api::Jobo => {
                scan.discovered_after = Some(window.from);
                scan.discovered_before = Some(window.to);
            }
        }
        scan
    }

    /// What the API says `scan` would return in all, where it says (Sentrion's
    /// `total_jobs_found`), from one page of the smallest size the API takes: the cheapest
    /// question that has an answer. `None` for Jobo, whose feed reports no totals.
    pub async fn count(&self, scan: &Scan) -> Result<Option<u64>, FetchError> {
        match &self.client {
            Client::Jobo(_) => Ok(None),
            Client::Sentrion(c) => {
                let q = SentrionScan {
                    filters: self.filters.clone(),
                    limit: *joblake_fetcher::SENTRION_LIMIT_RANGE.start(),
                    published_after: scan.published_after,
                    published_before: scan.published_before,
                };
                Ok(c.fetch_page(&q, None).await?.total_found)
            }
        }
    }

    /// Rows one page holds at most.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// A backfill window holding more rows than this is split.
    pub fn backfill_window_rows(&self) -> u64 {
        self.backfill_window_rows
    }

    /// Requests a minute the source is paced at now, if it is paced.
    pub fn requests_per_minute(&self) -> Option<f64> {
        self.pacer.per_minute_now()
    }

    /// The balance under which a run's end warns, if any.
    pub fn warn_below_credits(&self) -> Option<f64> {
        (self.warn_below_credits > 0.0).then_some(self.warn_below_credits)
    }

    /// The scan's pages from `scan.cursor` on, one request per poll.
    pub fn pages(&self, scan: &Scan) -> BoxStream<'_, Result<Page, FetchError>> {
        let cursor = scan.cursor.clone();
        match &self.client {
            Client::Jobo(c) => {
                let q = JoboScan {
                    filters: self.filters.clone(),
                    batch_size: self.page_size,
                    updated_after: scan.updated_after,
                    discovered_after: scan.discovered_after,
                    discovered_before: scan.discovered_before,
                };
                c.pages(q, cursor).boxed()
            }
            Client::Sentrion(c) => {
                let q = SentrionScan {
                    filters: self.filters.clone(),
                    limit: self.page_size,
                    published_after: scan.published_after,
                    published_before: scan.published_before,
                };
                c.pages(q, cursor).boxed()
            }
        }
    }

    /// Request counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        match &self.client {
            Client::Jobo(c) => c.stats().snapshot(),
            Client::Sentrion(c) => c.stats().snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(table: Table, overlap_minutes: i64) -> Source {
        let mut settings = SourceSettings::defaults(api_of(table), "k".to_string().into());
        settings.base_url = "http://127.0.0.1:9".into();
        settings.overlap = chrono::Duration::minutes(overlap_minutes);
        Source::new(table, settings).unwrap()
    }

    fn after(watermark: &str) -> Checkpoint {
        Checkpoint {
            watermark: Some(watermark.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn career_sites_ask_for_updates_since_the_last_start_minus_the_overlap() {
        let now = Utc::now();
        let s = source(Table::CareerSites, 15);
        let first = s.new_scan(&Checkpoint::default(), "r1", now, false, None);
        assert_eq!(
            first.updated_after, None,
            "a first run pages the whole feed"
        );
        let next = s.new_scan(&after("2026-11-23T12:00:00Z"), "r2", now, false, None);
        assert_eq!(
            next.updated_after,
            Some("2026-11-23T11:45:00Z".parse().unwrap())
        );
        assert_eq!(next.published_after, None);
        assert_eq!(next.started_at, now);
        let full = s.new_scan(&after("2026-11-23T12:00:00Z"), "r3", now, true, None);
        assert_eq!(full.updated_after, None);

        let s = source(Table::CareerSites, 60);
        let next = s.new_scan(&after("2026-11-23T12:00:00Z"), "r2", now, false, None);
        assert_eq!(
            next.updated_after,
            Some("2026-11-23T11:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn jobs_ask_from_the_last_run_date_minus_a_day_or_since_or_the_api_default() {
        let now = Utc::now();
        let s = source(Table::Jobs, 15);
        let first = s.new_scan(&Checkpoint::default(), "r1", now, false, None);
        assert_eq!(first.published_after, None, "the API's two-month default");
        let since = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let first = s.new_scan(&Checkpoint::default(), "r1", now, false, Some(since));
        assert_eq!(first.published_after, Some(since));
        let next = s.new_scan(&after("2026-11-23T00:30:00Z"), "r2", now, false, None);
        assert_eq!(next.published_after, NaiveDate::from_ymd_opt(2026, 11, 22));
        assert_eq!(next.updated_after, None);
    }
}
