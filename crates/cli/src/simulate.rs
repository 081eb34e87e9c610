//! `joblake simulate`: both APIs served locally from synthetic data (the demo, tests and
//! benchmarks).

use anyhow::Context;

use crate::args::SimulateArgs;
use crate::outcome::{CmdResult, Outcome};

/// Runs `simulate` until Ctrl-C.
pub async fn simulate(args: &SimulateArgs) -> CmdResult {
    let faults = joblake_simulator::parse_faults(&args.faults)
        .map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
    let cfg = joblake_simulator::SimConfig {
        seed: args.seed,
        rows: args.rows,
        career_sites: args.career_sites,
        faults,
        rpm: args.rpm,
        jobo_keys: vec![args.jobo_key.clone()],
        sentrion_keys: vec![args.sentrion_key.clone()],
        credits: args.credits,
        latency: std::time::Duration::from_millis(args.latency_ms),
        history_days: args.history_days,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let handle = joblake_simulator::Simulator::start(cfg, listener).await;
    let url = handle.url();
    if let Some(f) = &args.url_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{url}\n"))
            .and_then(|_| std::fs::rename(&tmp, f))
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    println!(
        "joblake simulator listening on {url} (seed {}, {} rows per API); Ctrl-C stops it",
        args.seed, args.rows
    );
    handle.run_until_ctrl_c().await;
    Ok(Outcome::Done)
}
