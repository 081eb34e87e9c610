//! `joblake report`'s page: what a lake holds, as one self-contained HTML file.
//!
//! Everything is drawn here as inline SVG: no script, no font, no image, no stylesheet but
//! the page's own, and a Content-Security-Policy that lets the page ask for nothing, so it
//! opens anywhere (a mail attachment, an air-gapped laptop) and never calls out. The figures
//! come from the caller ([`Report`]); this crate only draws them.
#![deny(missing_docs)]

mod svg;

pub use svg::{Bar, Series};

/// One run of the ledger, as the charts use it.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// `runs.run_id`.
    pub run_id: String,
    /// `runs.source`: the table.
    pub source: String,
    /// When it started, seconds since the epoch (UTC).
    pub started: f64,
    /// Rows it committed.
    pub rows: f64,
    /// Ids it saw first.
    pub new_ids: f64,
    /// Pages fetched: one request each.
    pub pages: f64,
    /// Requests retried.
    pub retries: f64,
    /// 429 answers.
    pub http_429: f64,
    /// Credits the API reported it used.
    pub credits_used: Option<f64>,
    /// The balance the API reported last.
    pub credits_balance: Option<f64>,
}

/// How fresh one table is.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    /// The table.
    pub table: String,
    /// Its last successful run, as text (`-` when none).
    pub last_success: String,
    /// Hours since that run finished.
    pub age_hours: Option<f64>,
    /// Row versions and ids.
    pub rows: f64,
    /// Distinct ids.
    pub ids: f64,
}

/// One API's credits: its balance over time and how long it lasts at the last week's rate.
#[derive(Debug, Clone, Default)]
pub struct Credits {
    /// `jobo` or `sentrion`.
    pub api: String,
    /// (seconds since the epoch, balance) after each run that reported one.
    pub balance: Vec<(f64, f64)>,
    /// Credits a day over the last 7 days.
    pub per_day: f64,
    /// Days the last balance lasts at that rate.
    pub days_left: Option<f64>,
}

/// Yearly salaries of one currency, bucketed.
#[derive(Debug, Clone, Default)]
pub struct Salaries {
    /// The currency (the one most jobs quote).
    pub currency: String,
    /// (lower bound of the bucket, jobs) for `salary_annual_from`.
    pub buckets: Vec<(f64, f64)>,
    /// Jobs quoting a salary (text or figures).
    pub quoted: f64,
    /// Jobs quoting a salary that could not be put per year.
    pub not_per_year: f64,
}

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The lake's URL.
    pub lake: String,
    /// When the report was made, as text (UTC).
    pub generated_at: String,
    /// The ledger, oldest first.
    pub runs: Vec<Run>,
    /// One line per table.
    pub freshness: Vec<Freshness>,
    /// Per API.
    pub credits: Vec<Credits>,
    /// (title, bars): the top countries, seniorities, ATS.
    pub tops: Vec<(String, Vec<Bar>)>,
    /// The salary distribution, when any job quotes one per year.
    pub salaries: Option<Salaries>,
}

/// The charts every report has, by the id their `<figure>` carries (`data-chart`).
pub const CHARTS: [&str; 7] = [
    "rows-per-run",
    "credits",
    "requests",
    "freshness",
    "tops",
    "salaries",
    "runs-table",
];

/// The page, whole.
pub fn render(r: &Report) -> String {
    let mut body = String::new();
    body.push_str(&format!(
        "<header><h1>joblake report</h1><p>{} · made {} · {} runs</p></header>\n",
        esc(&r.lake),
        esc(&r.generated_at),
        r.runs.len()
    ));
    body.push_str(&figure(
        "rows-per-run",
        "Rows and new ids per run",
        &svg::grouped_bars(
            &r.runs.iter().map(short_run).collect::<Vec<_>>(),
            &[
                ("rows", r.runs.iter().map(|x| x.rows).collect()),
                ("new ids", r.runs.iter().map(|x| x.new_ids).collect()),
            ],
        ),
    ));
    let series: Vec<Series> = r
        .credits
        .iter()
        .map(|c| Series {
            name: c.api.clone(),
            points: c.balance.clone(),
            forecast: forecast(c),
        })
        .collect();
    body.push_str(&figure(
        "credits",
        &format!(
            "Credit balance over time, dashed: at the last 7 days' rate ({})",
            r.credits
                .iter()
                .map(|c| match c.days_left {
                    Some(d) => format!("{}: {:.0} a day, {:.0} days left", c.api, c.per_day, d),
                    None => format!("{}: no use in 7 days", c.api),
                })
                .collect::<Vec<_>>()
                .join("; ")
        ),
        &svg::lines(&series),
    ));
    body.push_str(&figure(
        "requests",
        "Requests (pages and retries) and 429 answers per run",
        &svg::grouped_bars(
            &r.runs.iter().map(short_run).collect::<Vec<_>>(),
            &[
                (
                    "requests",
                    r.runs.iter().map(|x| x.pages + x.retries).collect(),
                ),
                ("429s", r.runs.iter().map(|x| x.http_429).collect()),
            ],
        ),
    ));
    body.push_str(&figure(
        "freshness",
        "Hours since each table's last successful run",
        &svg::hbars(
            &r.freshness
                .iter()
                .map(|f| Bar {
                    label: format!("{} ({})", f.table, f.last_success),
                    value: f.age_hours.unwrap_or(0.0),
                })
                .collect::<Vec<_>>(),
        ),
    ));
    let mut tops = String::new();
    for (title, bars) in &r.tops {
        tops.push_str(&format!("<h3>{}</h3>", esc(title)));
        tops.push_str(&svg::hbars(bars));
    }
    body.push_str(&figure("tops", "What the lake holds most of", &tops));
    let salaries = match &r.salaries {
        Some(s) => {
            let bars: Vec<Bar> = s
                .buckets
                .iter()
                .map(|(lo, n)| Bar {
                    label: format!("{}k", (lo / 1000.0).round()),
                    value: *n,
                })
                .collect();
            (
                format!(
                    "Yearly salaries (salary_annual_from) in {}: {} jobs quote a salary, {} of them not put per year",
                    s.currency, s.quoted, s.not_per_year
                ),
                svg::columns(&bars),
            )
        }
        None => (
            "Yearly salaries".to_string(),
            svg::empty("no salary put per year yet"),
        ),
    };
    body.push_str(&figure("salaries", &salaries.0, &salaries.1));
    body.push_str(&figure("runs-table", "Runs", &runs_table(&r.runs)));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>joblake report</title>\n<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}\
figure{margin:0 0 2.5em}figcaption{font-weight:600;margin:.5em 0}svg{max-width:100%;height:auto}\
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child,td:nth-child(2){text-align:left}h3{font-size:14px;margin:1em 0 .2em}";

fn figure(id: &str, caption: &str, inner: &str) -> String {
    format!(
        "<figure class=\"chart\" data-chart=\"{id}\"><figcaption>{}</figcaption>\n{inner}\n</figure>\n",
        esc(caption)
    )
}

/// A run's label on an axis: its source and time (`jobs 11-29 02:41`).
fn short_run(r: &Run) -> String {
    let t = &r.run_id;
    let when = if t.len() >= 13 {
        format!("{}-{} {}:{}", &t[4..6], &t[6..8], &t[9..11], &t[11..13])
    } else {
        t.clone()
    };
    format!("{} {when}", r.source)
}

/// The balance's line carried on at the rate, to zero or 30 days ahead, whichever is first.
fn forecast(c: &Credits) -> Vec<(f64, f64)> {
    let Some(&(t, b)) = c.balance.last() else {
        return Vec::new();
    };
    if c.per_day <= 0.0 {
        return Vec::new();
    }
    let days = (b / c.per_day).min(30.0);
    vec![(t, b), (t + days * 86_400.0, b - days * c.per_day)]
}

fn runs_table(runs: &[Run]) -> String {
    let mut s = String::from(
        "<table><tr><th>run</th><th>source</th><th>rows</th><th>new ids</th><th>pages</th>\
         <th>retries</th><th>429s</th><th>credits used</th><th>balance</th></tr>",
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for r in runs.iter().rev().take(50) {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>\
             <td>{:.0}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.run_id),
            esc(&r.source),
            r.rows,
            r.new_ids,
            r.pages,
            r.retries,
            r.http_429,
            opt(r.credits_used),
            opt(r.credits_balance)
        ));
    }
    s.push_str("</table>");
    s
}

/// Text made safe for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A width for the salary chart's buckets: 1, 2 or 5 times a power of ten, at least `w`.
pub fn round_width(w: f64) -> f64 {
    let p = 10f64.powf(w.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= w)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_widths_are_round() {
        assert_eq!(round_width(7_300.0), 10_000.0);
        assert_eq!(round_width(1_900.0), 2_000.0);
        assert_eq!(round_width(4_100.0), 5_000.0);
        assert_eq!(round_width(0.3), 1.0);
    }

    fn one_run() -> Report {
        Report {
            lake: "/tmp/lake <&>".into(),
            generated_at: "2026-11-29 03:00 UTC".into(),
            runs: vec![Run {
                run_id: "20261129T024100000Z".into(),
                source: "jobs".into(),
                started: 1.0e9,
                rows: 310.0,
                new_ids: 310.0,
                pages: 4.0,
                credits_used: Some(310.0),
                credits_balance: Some(9690.0),
                ..Run::default()
            }],
            freshness: vec![Freshness {
                table: "jobs".into(),
                last_success: "20261129T024100000Z".into(),
                age_hours: Some(0.2),
                rows: 310.0,
                ids: 310.0,
            }],
            credits: vec![Credits {
                api: "sentrion".into(),
                balance: vec![(1.0e9, 9690.0)],
                per_day: 310.0,
                days_left: Some(31.3),
            }],
            tops: vec![(
                "Countries".into(),
                vec![Bar {
                    label: "US".into(),
                    value: 120.0,
                }],
            )],
            salaries: None,
        }
    }

    #[test]
    fn a_one_run_lake_has_every_chart_and_asks_for_nothing() {
        let html = render(&one_run());
        for id in CHARTS {
            assert!(html.contains(&format!("data-chart=\"{id}\"")), "{id}");
        }
        // Nothing the page could fetch: no script, no link, no URL but the SVG namespace.
        for banned in [
            "<script", "<link", "<img", "@import", "url(", "src=", "href=",
        ] {
            assert!(!html.contains(banned), "{banned}");
        }
        assert_eq!(
            html.matches("://").count(),
            html.matches("http://www.w3.org/2000/svg").count()
        );
        assert!(html.contains("default-src 'none'"));
        // Text is escaped.
        assert!(html.contains("/tmp/lake &lt;&amp;&gt;"));
        assert!(html.contains("no salary put per year yet"));
    }
}
