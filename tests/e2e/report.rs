//! `joblake report` opened in a real headless browser (Debian's Chromium, which `.ci/run`
//! installs): every chart drawn, a screenshot taken, and no request leaving the page.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Lake, Sim};

/// Debian's Chromium, or a clear failure saying how to get it.
fn chromium() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("JOBLAKE_CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "{} is missing: the report test opens the page in Debian's Chromium \
         (`apt-get install chromium`, as .ci/run does)",
        path.display()
    );
    path
}

/// Runs a Chromium command to its successful end (within a minute).
async fn finished(cmd: &mut tokio::process::Command) -> std::process::Output {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium took over a minute")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Opens `page` headless with a network log; returns (the DOM as rendered, the URLs of every
/// request made for the page, the screenshot's bytes).
async fn open(page: &Path, dir: &Path) -> (String, Vec<String>, Vec<u8>) {
    let netlog = dir.join("net.json");
    let shot = dir.join("shot.png");
    let base = |profile: &str| {
        let mut c = tokio::process::Command::new(chromium());
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1000,3200",
        ])
        .arg(format!("--user-data-dir={}", dir.join(profile).display()))
        .kill_on_drop(true);
        c
    };
    let url = format!("file://{}", page.display());
    let mut shoot = base("a");
    shoot
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--net-log-capture-mode=Everything")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url);
    finished(&mut shoot).await;
    let mut dump = base("b");
    dump.arg("--dump-dom").arg(&url);
    let out = finished(&mut dump).await;
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    // The log may end without its closing bracket when the browser exits.
    let text = std::fs::read_to_string(&netlog).expect("a network log");
    let text = text.trim_end().trim_end_matches(',');
    let log: Value = serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&format!("{text}]}}")))
        .expect("the network log is JSON");
    // The requests made for the page: those the network stack keys to its site (`file://`).
    // Chromium's own background requests (its clock, its sign-in) are keyed to none or to
    // Google, and are not the page's.
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == start_job)
        .filter(|e| {
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("file://"))
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .filter(|u| !u.starts_with("file://"))
        .collect();
    urls.sort();
    urls.dedup();
    (dom, urls, std::fs::read(&shot).expect("a screenshot"))
}

#[tokio::test]
async fn the_report_opens_in_a_browser_with_every_chart_drawn_and_asks_for_nothing() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let lake = Lake::new(&sim);
    // A lake of one run first, then of several.
    lake.refresh_ok(&["--source", "jobs"]).await;
    let dir = tempfile::tempdir().unwrap();
    for (n, label) in [(1, "one run"), (3, "three runs")] {
        if n > 1 {
            sim.advance(6).await;
            lake.refresh_ok(&[]).await;
        }
        let page = dir.path().join(format!("report-{n}.html"));
        let run = lake.run(&["report", "--out", page.to_str().unwrap()]).await;
        run.assert_code(0);
        assert_eq!(run.stdout().trim(), page.display().to_string());
        let (dom, urls, shot) = open(&page, dir.path()).await;
        for id in joblake_report::CHARTS {
            let at = dom
                .find(&format!("data-chart=\"{id}\""))
                .unwrap_or_else(|| panic!("{label}: no {id} chart"));
            let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
            assert!(
                figure.contains("class=\"mark") || figure.contains("<td>"),
                "{label}: the {id} chart is empty"
            );
        }
        assert!(urls.is_empty(), "{label}: the page asked for {urls:?}");
        assert!(
            shot.starts_with(b"\x89PNG") && shot.len() > 20_000,
            "{label}: screenshot of {} bytes",
            shot.len()
        );
        std::fs::write(dir.path().join(format!("shot-{n}.png")), &shot).unwrap();
    }
    // The check can fail: a page that fetches an image is seen doing it.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!doctype html><img src=\"http://127.0.0.1:9/x.png\">",
    )
    .unwrap();
    let (_, urls, _) = open(&control, dir.path()).await;
    assert!(
        urls.iter().any(|u| u.starts_with("http://127.0.0.1:9/")),
        "{urls:?}"
    );
}
