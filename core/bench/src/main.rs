//! `switchboard-load`: drives the real `switchboard` binary on loopback and reports what it
//! sustains, against a bare relay measured in the same run on the same machine.
//!
//! Run with `cargo build --release -p switchboard -p switchboard-bench` then
//! `target/release/switchboard-load` (see docs/performance.md for every option and the latest
//! figures).
//!
//! One process plays everything around the connector: the LivePerson simulator (in process),
//! the SMS gateway (Kannel's MO get-url towards the connector, its sendsms endpoint for the
//! connector's answers) and the load. The connector runs as its own process with the durable
//! store, exactly as deployed; so does the baseline relay (this binary's `relay` subcommand).

mod drive;
mod ingest;
mod process;
mod relay;
mod sink;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use switchboard_core::Secret;
use switchboard_liveperson::{Engine, EngineConfig};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};

use crate::drive::{Board, Inbound, MO_TOKEN, Outbound, SHORT_CODE, phone};
use crate::process::{Proc, Usage, free_port};
use crate::stats::Summary;

/// Drives the `switchboard` binary with SMS consumers and LivePerson agents, and a bare relay
/// for comparison; prints rates, latencies, losses and the connector's memory and CPU.
#[derive(Debug, Parser)]
#[command(name = "switchboard-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The baseline relay process (started by the tool itself).
    #[command(hide = true)]
    Relay {
        /// Its routes, written by the tool.
        #[arg(long)]
        routes: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The connector binary (default: `switchboard` next to this one).
    #[arg(long)]
    connector: Option<PathBuf>,
    /// Concurrent consumers (each one phone number, one conversation).
    #[arg(long, default_value_t = 100)]
    consumers: u32,
    /// Messages per consumer in each direction at the maximum rate.
    #[arg(long, default_value_t = 50)]
    messages: u32,
    /// The fixed-rate phases run at this fraction of the maximum rate.
    #[arg(long, default_value_t = 0.5)]
    rate_fraction: f64,
    /// Run the fixed-rate phases at this many messages per second instead (both directions),
    /// to compare builds at the same load.
    #[arg(long)]
    fixed_rate: Option<f64>,
    /// The store: `sqlite` (a fresh file, the default) or a `postgres://` server URL, in
    /// which the tool creates a fresh database (dropped at the end; needs `psql`).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// SQLite's `store.sync` for the connector: `full` (its default: a sync per group
    /// commit) or `normal` (syncs at checkpoints only), to measure what durability costs.
    #[arg(long, value_parser = ["full", "normal"])]
    store_sync: Option<String>,
    /// Connector instances sharing the store (more than one needs PostgreSQL). Consumers are
    /// spread over them; LivePerson's webhooks go to the first.
    #[arg(long, default_value_t = 1)]
    instances: u32,
    /// After the rate phases, this many further consumers each open a conversation; the
    /// connector's memory is then measured with all of them mapped.
    #[arg(long, default_value_t = 0)]
    conversations: u32,
    /// Open-load ingest: offer channel webhooks (Kannel MOs) at each of these rates per
    /// second, comma-separated (`2000,4000,8000`), to the relay and to the connector, each
    /// request timed from when it was due to its 2xx (see docs/performance.md).
    #[arg(long, value_delimiter = ',')]
    ingest_rates: Vec<f64>,
    /// How long each open-load ingest rate is offered, in seconds.
    #[arg(long, default_value_t = 5.0)]
    ingest_secs: f64,
    /// Skip the bare-relay baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Also write the summaries as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep each process's log (stderr) in this folder.
    #[arg(long)]
    logs: Option<PathBuf>,
    /// The connector's `RUST_LOG` (its logs cost CPU too; `warn` keeps them to problems).
    #[arg(long, default_value = "warn")]
    connector_log: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::Relay { routes }) => {
            let routes = serde_json::from_slice(&std::fs::read(&routes)?)?;
            rt.block_on(relay::serve(routes))
        }
        None => rt.block_on(run(cli.run)),
    }
}

/// A figure of the report that is not a phase.
#[derive(Debug, serde::Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.instances > 1 && !args.store.starts_with("postgres") {
        bail!("--instances above 1 needs --store postgres://…");
    }
    if args.store_sync.is_some() && !args.store.starts_with("sqlite") {
        bail!("--store-sync is SQLite's setting: PostgreSQL makes every commit durable");
    }
    let me = std::env::current_exe()?;
    let connector = args
        .connector
        .clone()
        .unwrap_or_else(|| me.with_file_name("switchboard"));
    if !connector.is_file() {
        bail!(
            "no connector binary at {} (build it: cargo build --release -p switchboard)",
            connector.display()
        );
    }
    let work = tempfile::tempdir()?;
    let sim = Arc::new(
        Simulator::start(SimConfig::default())
            .await
            .context("the LivePerson simulator did not start")?,
    );
    let (sink_url, gateway) = sink::start().await?;
    let board = Arc::new(Board::default());
    board.collect(&sim, gateway);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let outbound = Outbound { sim: sim.clone() };
    let (n, m) = (args.consumers, args.messages);
    let mut rows: Vec<Summary> = Vec::new();
    let mut figures: Vec<Figure> = Vec::new();
    let mut ingest_rows: Vec<ingest::IngestRow> = Vec::new();
    if args
        .ingest_rates
        .iter()
        .any(|r| !(r.is_finite() && *r > 0.0))
    {
        bail!("--ingest-rates must be positive numbers");
    }

    eprintln!("machine: {}", machine());

    // The baseline relay, with a conversation opened for each consumer beforehand.
    let relay = if args.no_baseline {
        None
    } else {
        Some(start_relay(&me, &sim, &sink_url, work.path(), n, args.logs.as_deref()).await?)
    };

    if let Some((relay, conversations)) = &relay {
        let inbound = aim_at_relay(&board, &sim, relay, conversations, &http);
        eprintln!("baseline relay: consumer → LivePerson at the highest rate");
        let usage = Usage::start(relay);
        inbound.max_rate(&board, 1, n, m).await;
        board.settle(1, Duration::from_secs(10)).await;
        rows.push(with_usage(
            board.summary(1, "relay: consumer → LP, max"),
            relay,
            &usage,
        ));
        eprintln!("baseline relay: LivePerson → consumer at the highest rate");
        let usage = Usage::start(relay);
        outbound.max_rate(&board, 2, n, m).await;
        board.settle(2, Duration::from_secs(10)).await;
        rows.push(with_usage(
            board.summary(2, "relay: LP → consumer, max"),
            relay,
            &usage,
        ));
        for (i, &rate) in args.ingest_rates.iter().enumerate() {
            eprintln!("baseline relay: open-load ingest at {rate:.0}/s");
            let phase = 30 + i as u8;
            let row =
                ingest::open_load(&inbound, &board, phase, n, rate, args.ingest_secs, "relay")
                    .await;
            ingest_rows.push(settled(&board, phase, row).await);
        }
    }

    // The connector(s).
    let store = Store::create(&args.store, work.path())?;
    let mut instances = Vec::new();
    for i in 0..args.instances {
        let port = free_port();
        let config = work.path().join(format!("switchboard-{i}.toml"));
        let store_keys = match &args.store_sync {
            Some(sync) => format!("url = \"{}\"\nsync = \"{sync}\"", store.url),
            None => format!("url = \"{}\"", store.url),
        };
        std::fs::write(
            &config,
            connector_config(port, &store_keys, &sim, &sink_url),
        )?;
        let log = args
            .logs
            .as_ref()
            .map(|d| d.join(format!("switchboard-{i}.log")));
        let proc = Proc::spawn(
            &connector,
            &["run", "--config", &config.to_string_lossy()],
            &[("RUST_LOG", &args.connector_log)],
            port,
            log.as_deref(),
        )
        .await?;
        figures.push(Figure {
            name: format!("instance {i}: ready (healthz 200) after start"),
            value: proc.ready_after.as_secs_f64() * 1e3,
            unit: "ms",
        });
        instances.push((proc, config));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = &instances[0].0;
    figures.push(Figure {
        name: "instance 0: idle RSS (ready, no traffic yet)".into(),
        value: first.rss_mib().0,
        unit: "MiB",
    });
    webhooks_to(&sim, first);
    let inbound = Inbound {
        bases: instances
            .iter()
            .map(|(p, _)| format!("http://127.0.0.1:{}", p.port))
            .collect(),
        http: http.clone(),
    };
    let label = |what: &str| {
        let store = match (&args.store_sync, store.url.starts_with("sqlite")) {
            (Some(sync), true) => format!("SQLite, sync = {sync}"),
            (None, true) => "SQLite".to_owned(),
            (_, false) => "PostgreSQL".to_owned(),
        };
        format!("switchboard ({store}, {}×): {what}", args.instances)
    };

    // What one message costs the database, per phase (PostgreSQL only).
    let db_activity = || async {
        if store.created.is_some() {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        store.activity()
    };
    let mut db_costs: Vec<(String, f64, f64)> = Vec::new();
    let mut db_cost =
        |what: &str, before: Option<(u64, u64)>, after: Option<(u64, u64)>, messages: u32| {
            if let (Some(b), Some(a)) = (before, after) {
                let per = |x: u64, y: u64| x.saturating_sub(y) as f64 / f64::from(messages.max(1));
                db_costs.push((what.to_owned(), per(a.0, b.0), per(a.1, b.1)));
            }
        };

    if let Some(idle_start) = store.activity() {
        // The cost of waiting: polls, lease renewals and housekeeping with no traffic.
        tokio::time::sleep(Duration::from_secs(5)).await;
        if let Some(idle_end) = store.activity() {
            figures.push(Figure {
                name: "PostgreSQL transactions per second while idle (all instances)".into(),
                value: idle_end.0.saturating_sub(idle_start.0) as f64 / 5.0,
                unit: "/s",
            });
        }
    }

    eprintln!("switchboard: opening a conversation for each consumer");
    board.forget_conversations();
    let before = db_activity().await;
    let usage = Usage::start(first);
    inbound.max_rate(&board, 10, n, 1).await;
    board.settle(10, Duration::from_secs(30)).await;
    let after = db_activity().await;
    db_cost("first messages (new conversations)", before, after, n);
    rows.push(with_usage(
        board.summary(10, &label("first messages (new conversations)")),
        first,
        &usage,
    ));
    for i in 0..n {
        if board.conversation(i).is_none() {
            bail!("consumer {i}'s first message never reached LivePerson");
        }
    }

    eprintln!("switchboard: consumer → LivePerson at the highest rate");
    let before = db_activity().await;
    let usage = Usage::start(first);
    inbound.max_rate(&board, 11, n, m).await;
    board.settle(11, Duration::from_secs(30)).await;
    let usage_end = with_usage(board.summary(11, ""), first, &usage);
    let after = db_activity().await;
    db_cost("consumer → LP", before, after, n * m);
    let in_max = Summary {
        phase: label("consumer → LP, max"),
        ..usage_end
    };
    eprintln!("switchboard: LivePerson → consumer at the highest rate");
    let before = db_activity().await;
    let usage = Usage::start(first);
    outbound.max_rate(&board, 12, n, m).await;
    board.settle(12, Duration::from_secs(30)).await;
    let out_max = with_usage(
        board.summary(12, &label("LP → consumer, max")),
        first,
        &usage,
    );
    let after = db_activity().await;
    db_cost("LP → consumer", before, after, n * m);
    let (in_rate, out_rate) = match args.fixed_rate {
        Some(rate) => (rate, rate),
        None => (
            in_max.rate * args.rate_fraction,
            out_max.rate * args.rate_fraction,
        ),
    };
    rows.push(in_max);
    rows.push(out_max);

    let total = n * m;
    eprintln!("switchboard: consumer → LivePerson at {in_rate:.0}/s");
    let usage = Usage::start(first);
    inbound.fixed_rate(&board, 13, n, total, in_rate).await;
    board.settle(13, Duration::from_secs(30)).await;
    rows.push(with_usage(
        board.summary(13, &label(&format!("consumer → LP at {in_rate:.0}/s"))),
        first,
        &usage,
    ));
    eprintln!("switchboard: LivePerson → consumer at {out_rate:.0}/s");
    let usage = Usage::start(first);
    outbound.fixed_rate(&board, 14, n, total, out_rate).await;
    board.settle(14, Duration::from_secs(30)).await;
    rows.push(with_usage(
        board.summary(14, &label(&format!("LP → consumer at {out_rate:.0}/s"))),
        first,
        &usage,
    ));

    let target = label("open-load ingest");
    for (i, &rate) in args.ingest_rates.iter().enumerate() {
        eprintln!("switchboard: open-load ingest at {rate:.0}/s");
        let phase = 40 + i as u8;
        let row =
            ingest::open_load(&inbound, &board, phase, n, rate, args.ingest_secs, &target).await;
        ingest_rows.push(settled(&board, phase, row).await);
    }

    if let Some((relay, conversations)) = &relay {
        let relay_in = aim_at_relay(&board, &sim, relay, conversations, &http);
        eprintln!("baseline relay: the same fixed rates");
        let usage = Usage::start(relay);
        relay_in.fixed_rate(&board, 3, n, total, in_rate).await;
        board.settle(3, Duration::from_secs(10)).await;
        rows.push(with_usage(
            board.summary(3, &format!("relay: consumer → LP at {in_rate:.0}/s")),
            relay,
            &usage,
        ));
        let usage = Usage::start(relay);
        outbound.fixed_rate(&board, 4, n, total, out_rate).await;
        board.settle(4, Duration::from_secs(10)).await;
        rows.push(with_usage(
            board.summary(4, &format!("relay: LP → consumer at {out_rate:.0}/s")),
            relay,
            &usage,
        ));
        webhooks_to(&sim, first);
    }

    if args.conversations > 0 {
        let c = args.conversations;
        eprintln!("switchboard: {c} more consumers open a conversation each");
        let usage = Usage::start(first);
        mapped(&inbound, &board, n, c).await;
        board.settle(20, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut row = with_usage(
            board.summary(20, &label(&format!("{c} new conversations"))),
            first,
            &usage,
        );
        row.rss_mib = Some(first.rss_mib().0);
        rows.push(row);
        figures.push(Figure {
            name: format!("instance 0: RSS with {} conversations mapped", c + n),
            value: first.rss_mib().0,
            unit: "MiB",
        });
    }

    // A restart on the store as it now is: how soon the connector is ready again.
    let (proc, config) = instances.remove(0);
    let port = proc.port;
    proc.stop().await;
    let again = Proc::spawn(
        &connector,
        &["run", "--config", &config.to_string_lossy()],
        &[("RUST_LOG", &args.connector_log)],
        port,
        None,
    )
    .await?;
    figures.push(Figure {
        name: "instance 0: ready after a restart on the filled store".into(),
        value: again.ready_after.as_secs_f64() * 1e3,
        unit: "ms",
    });
    again.stop().await;
    for (proc, _) in instances {
        proc.stop().await;
    }
    if let Some((relay, _)) = relay {
        relay.stop().await;
    }
    store.drop_database();

    println!("\n{}", stats::markdown(&rows));
    for f in &figures {
        println!("- {}: {:.1} {}", f.name, f.value, f.unit);
    }
    let rate = |phase: &str| {
        rows.iter()
            .find(|r| r.phase.contains(phase))
            .map(|r| r.rate)
    };
    let p99 = |phase: &str| {
        rows.iter()
            .find(|r| r.phase.contains(phase))
            .map(|r| r.p99_ms)
    };
    if let (Some(sb), Some(bare)) = (
        rate("): consumer → LP, max"),
        rate("relay: consumer → LP, max"),
    ) {
        println!(
            "- consumer → LP: switchboard / relay = {:.0} %",
            100.0 * sb / bare
        );
    }
    if let (Some(sb), Some(bare)) = (
        rate("): LP → consumer, max"),
        rate("relay: LP → consumer, max"),
    ) {
        println!(
            "- LP → consumer: switchboard / relay = {:.0} %",
            100.0 * sb / bare
        );
    }
    let at = |dir: &str, r: f64| format!("{dir} at {r:.0}/s");
    if let (Some(sb), Some(bare)) = (
        p99(&format!("): {}", at("consumer → LP", in_rate))),
        p99(&format!("relay: {}", at("consumer → LP", in_rate))),
    ) {
        println!(
            "- consumer → LP at {in_rate:.0}/s: p99 added by switchboard = {:.2} ms",
            sb - bare
        );
    }
    if let (Some(sb), Some(bare)) = (
        p99(&format!("): {}", at("LP → consumer", out_rate))),
        p99(&format!("relay: {}", at("LP → consumer", out_rate))),
    ) {
        println!(
            "- LP → consumer at {out_rate:.0}/s: p99 added by switchboard = {:.2} ms",
            sb - bare
        );
    }
    for (what, tx, rows) in &db_costs {
        println!(
            "- PostgreSQL per message, {what}: {tx:.1} transactions, {rows:.1} rows written \
             (all instances)"
        );
    }
    if !ingest_rows.is_empty() {
        println!("\nOpen-load ingest (each request timed from when it was due to its 2xx):\n");
        println!("{}", ingest::markdown(&ingest_rows));
        let relay_best = ingest::highest_sustained(&ingest_rows, "relay");
        let sb_best = ingest::highest_sustained(&ingest_rows, &target);
        let show =
            |v: Option<f64>| v.map_or("none of the rates".to_owned(), |v| format!("{v:.0}/s"));
        println!(
            "- open-load ingest, highest rate kept up: relay {}, switchboard {}",
            show(relay_best),
            show(sb_best)
        );
        if let (Some(sb), Some(bare)) = (sb_best, relay_best) {
            println!(
                "- open-load ingest: switchboard / relay = {:.0} %",
                100.0 * sb / bare
            );
        }
    }
    if let Some(path) = args.json {
        let report = serde_json::json!({
            "machine": machine(),
            "phases": rows,
            "ingest": ingest_rows,
            "postgres_per_message": db_costs
                .iter()
                .map(|(what, tx, rows)| serde_json::json!({
                    "phase": what, "transactions": tx, "rows_written": rows,
                }))
                .collect::<Vec<_>>(),
            "figures": figures,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// Waits until the messages of an ingest phase reached LivePerson (or stopped arriving), then
/// notes the losses and copies in its row.
async fn settled(board: &Board, phase: u8, mut row: ingest::IngestRow) -> ingest::IngestRow {
    board.settle(phase, Duration::from_secs(30)).await;
    let s = board.summary(phase, &row.target);
    row.lost = s.lost;
    row.duplicated = s.duplicated;
    row
}

fn with_usage(mut row: Summary, proc: &Proc, usage: &Usage) -> Summary {
    row.cpu_percent = Some(usage.cpu_percent(proc));
    let (rss, peak) = proc.rss_mib();
    row.rss_mib = Some(rss);
    row.peak_rss_mib = Some(peak);
    row
}

/// `count` consumers after the first `offset` each send one message, 64 at a time.
async fn mapped(inbound: &Inbound, board: &Arc<Board>, offset: u32, count: u32) {
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (inbound, board, next) = (inbound.clone(), board.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let key = stats::MessageKey {
                    phase: 20,
                    consumer: offset + i,
                    seq: 0,
                };
                inbound.send(&board, key).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The connector's configuration: the SMS channel on Kannel (the gateway is this tool), the
/// simulator as LivePerson, the store.
/// Sends the simulator's webhooks to the process `to`.
fn webhooks_to(sim: &SimHandle, to: &Proc) {
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{}/webhooks/liveperson", to.port));
}

/// Points the load at the bare relay: its conversations on the board, the simulator's
/// webhooks to it, and the consumers' side (returned) sending to it.
fn aim_at_relay(
    board: &Board,
    sim: &SimHandle,
    relay: &Proc,
    conversations: &[String],
    http: &reqwest::Client,
) -> Inbound {
    for (i, c) in conversations.iter().enumerate() {
        board.set_conversation(i as u32, c.clone());
    }
    webhooks_to(sim, relay);
    Inbound {
        bases: vec![format!("http://127.0.0.1:{}", relay.port)],
        http: http.clone(),
    }
}

/// `store_keys` are the lines of the `[store]` table.
fn connector_config(port: u16, store_keys: &str, sim: &SimHandle, sink_url: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
[store]
{store_keys}
[liveperson]
mode = "live"
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
domain_api = "{domain}"
[channels.sms]
kind = "sms"
gateway = "kannel"
from = "{SHORT_CODE}"
callback_token = "{MO_TOKEN}"
callback_base_url = "http://127.0.0.1:{port}/channels/sms"
sendsms_url = "{sink_url}"
username = "switchboard"
password = "load"
"#,
        account = sim.account_id(),
        client = sim.client_id(),
        secret = sim.client_secret(),
        domain = sim.domain_api(),
    )
}

/// Opens a conversation for each of `n` relay consumers (with the engine, before the clock
/// runs), fetches an AppJWT, and starts the relay process. Returns it and the conversations.
async fn start_relay(
    me: &Path,
    sim: &SimHandle,
    sink_url: &str,
    dir: &Path,
    n: u32,
    logs: Option<&Path>,
) -> anyhow::Result<(Proc, Vec<String>)> {
    let config = EngineConfig::new(
        sim.account_id(),
        sim.client_id(),
        Secret::new(sim.client_secret()),
    )
    .with_domain_api(sim.domain_api());
    let engine = Engine::new(config)?;
    let mut consumers = std::collections::HashMap::new();
    let mut conversations = Vec::new();
    for i in 0..n {
        let mut identity = engine.consumer_identity(&format!("relay-load-{i}")).await?;
        let conversation = engine.create_conversation(&mut identity, None).await?;
        conversations.push(conversation.clone());
        consumers.insert(
            phone(i),
            relay::Route {
                jws: identity.jws.expose().to_owned(),
                conversation,
            },
        );
    }
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/sentinel/api/account/{}/app/token?v=1.0",
            sim.base_url(),
            sim.account_id()
        ))
        .form(&[
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let port = free_port();
    let routes = relay::Routes {
        listen: ([127, 0, 0, 1], port).into(),
        send_url: format!(
            "{}/api/account/{}/messaging/consumer/conversation/send?v=3",
            sim.base_url(),
            sim.account_id()
        ),
        app_jwt: token["access_token"]
            .as_str()
            .context("no AppJWT from the simulator")?
            .to_owned(),
        consumers,
        sink_url: sink_url.to_owned(),
    };
    let path = dir.join("relay-routes.json");
    std::fs::write(&path, serde_json::to_vec(&routes)?)?;
    let log = logs.map(|d| d.join("relay.log"));
    let proc = Proc::spawn(
        me,
        &["relay", "--routes", &path.to_string_lossy()],
        &[],
        port,
        log.as_deref(),
    )
    .await?;
    Ok((proc, conversations))
}

/// The store of the run.
#[derive(Debug)]
struct Store {
    url: String,
    /// `(server URL, database)` of a database this run created.
    created: Option<(String, String)>,
}

impl Store {
    fn create(spec: &str, dir: &Path) -> anyhow::Result<Self> {
        if spec == "sqlite" {
            return Ok(Self {
                url: format!("sqlite://{}", dir.join("switchboard.db").display()),
                created: None,
            });
        }
        if !spec.starts_with("postgres://") && !spec.starts_with("postgresql://") {
            bail!("--store is `sqlite` or a postgres:// URL");
        }
        let database = format!("switchboard_load_{}", std::process::id());
        psql(spec, &format!("CREATE DATABASE {database}"))?;
        let (server, _) = spec.rsplit_once('/').context("no database in the URL")?;
        Ok(Self {
            url: format!("{server}/{database}"),
            created: Some((spec.to_owned(), database)),
        })
    }

    /// PostgreSQL's counts for the run's database: transactions (each autocommit statement
    /// is one, so this counts the connector's round trips that end a transaction) and rows
    /// written. `None` for SQLite. The server publishes a backend's counts when it goes idle
    /// (at most once a second), so the caller waits that long first.
    fn activity(&self) -> Option<(u64, u64)> {
        let (server, database) = self.created.as_ref()?;
        let out = std::process::Command::new("psql")
            .args([
                server.as_str(),
                "-qtAc",
                &format!(
                    "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted \
                     FROM pg_stat_database WHERE datname = '{database}'"
                ),
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (tx, rows) = text.trim().split_once('|')?;
        Some((tx.parse().ok()?, rows.parse().ok()?))
    }

    fn drop_database(&self) {
        if let Some((server, database)) = &self.created
            && let Err(e) = psql(server, &format!("DROP DATABASE IF EXISTS {database}"))
        {
            eprintln!("warning: {e}");
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("psql")
        .args([url, "-qtAc", sql])
        .status()
        .context("cannot run psql")?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

/// The machine, as the report states it.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}
