//! Credits you can plan with (`status`, `report`): what each API's key spent over the last 7
//! and 30 days, the balance it reported last, and how long that lasts at the week's rate.

use chrono::{DateTime, Duration, Utc};
use joblake_writer::RunRecord;
use serde::Serialize;

/// The APIs whose credits `status` plans with, and the tables each one's key fetches: Jobo's
/// one wallet pays for the feed and for company profiles.
pub const API_SOURCES: [(&str, &[&str]); 2] = [
    ("jobo", &["career_sites", "companies"]),
    ("sentrion", &["jobs"]),
];

/// One API's credits: used over the last 7 and 30 days (by the runs started then), the
/// balance it reported last, and how many days that balance lasts at the last 7 days' rate.
#[derive(Debug, Serialize, PartialEq)]
pub struct Credits {
    pub api: String,
    pub runs: usize,
    pub used_7_days: f64,
    pub used_30_days: f64,
    pub balance: Option<f64>,
    /// Credits a day over the last 7 days, or over the days since the API's first run when
    /// that is less (at least one day: a lake a few hours old is not judged by its hours).
    pub per_day: f64,
    /// `balance / per_day`; none without a balance, or without any use in 7 days.
    pub days_left: Option<f64>,
}

pub fn credits(api: &str, sources: &[&str], ledger: &[RunRecord], now: DateTime<Utc>) -> Credits {
    let runs: Vec<&RunRecord> = ledger
        .iter()
        .filter(|r| sources.contains(&r.source.as_str()))
        .collect();
    let used_since = |days: i64| -> f64 {
        runs.iter()
            .filter(|r| r.started_at > now - Duration::days(days))
            .filter_map(|r| r.credits_used)
            .sum()
    };
    let used_7_days = used_since(7);
    let first = runs.iter().map(|r| r.started_at).min().unwrap_or(now);
    let days_seen = (now - first).num_seconds() as f64 / 86_400.0;
    let per_day = used_7_days / days_seen.clamp(1.0, 7.0);
    let balance = runs
        .iter()
        .filter(|r| r.credits_balance.is_some())
        .max_by_key(|r| r.finished_at.unwrap_or(r.started_at))
        .and_then(|r| r.credits_balance);
    Credits {
        api: api.to_string(),
        runs: runs.len(),
        used_7_days,
        used_30_days: used_since(30),
        balance,
        per_day,
        days_left: balance.filter(|_| per_day > 0.0).map(|b| b / per_day),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        source: &str,
        days_ago: f64,
        used: Option<f64>,
        balance: Option<f64>,
        now: DateTime<Utc>,
    ) -> RunRecord {
        let started = now - Duration::seconds((days_ago * 86_400.0) as i64);
        let mut r = RunRecord::new(&format!("r{days_ago}"), source, started);
        r.finished_at = Some(started + Duration::minutes(5));
        r.credits_used = used;
        r.credits_balance = balance;
        r
    }

    #[test]
    fn credits_are_summed_per_api_over_7_and_30_days_and_the_balance_is_the_last_reported() {
        let now = Utc::now();
        let ledger = vec![
            run("career_sites", 40.0, Some(1000.0), Some(9000.0), now),
            run("career_sites", 20.0, Some(300.0), Some(8700.0), now),
            run("companies", 6.0, Some(70.0), Some(8630.0), now),
            run("career_sites", 1.0, Some(70.0), Some(8560.0), now),
            run("jobs", 1.0, Some(5.0), None, now),
        ];
        let jobo = credits("jobo", &["career_sites", "companies"], &ledger, now);
        assert_eq!(jobo.runs, 4);
        assert_eq!(jobo.used_7_days, 140.0);
        assert_eq!(jobo.used_30_days, 440.0);
        assert_eq!(jobo.balance, Some(8560.0));
        assert_eq!(jobo.per_day, 20.0);
        assert_eq!(jobo.days_left, Some(428.0));
        // Sentrion reported no balance: nothing to plan with, said so.
        let sentrion = credits("sentrion", &["jobs"], &ledger, now);
        assert_eq!(
            (sentrion.used_7_days, sentrion.balance, sentrion.days_left),
            (5.0, None, None)
        );
    }

    #[test]
    fn a_young_lake_is_judged_by_a_whole_day_and_an_idle_one_by_its_week() {
        let now = Utc::now();
        // Two runs an hour old: 100 credits a day, not 2,400.
        let young = vec![
            run("jobs", 0.04, Some(60.0), Some(1000.0), now),
            run("jobs", 0.01, Some(40.0), Some(960.0), now),
        ];
        let c = credits("sentrion", &["jobs"], &young, now);
        assert_eq!((c.per_day, c.days_left), (100.0, Some(9.6)));
        // Three days old: the three days' use over three days.
        let three = vec![run("jobs", 3.0, Some(30.0), Some(900.0), now)];
        assert_eq!(credits("sentrion", &["jobs"], &three, now).per_day, 10.0);
        // Nothing used in the last week: the balance lasts; no days are made up.
        let idle = vec![run("jobs", 10.0, Some(30.0), Some(900.0), now)];
        let c = credits("sentrion", &["jobs"], &idle, now);
        assert_eq!(
            (c.used_7_days, c.used_30_days, c.days_left),
            (0.0, 30.0, None)
        );
    }
}
