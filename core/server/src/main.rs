//! The `switchboard` binary: parses the command line and reports errors at the edge.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use switchboard::cli::{Cli, Command, DeadletterAction, SmsAction};
use switchboard::config::LoadedConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    switchboard::telemetry::init(cli.log_format);
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let loaded = LoadedConfig::load(config.as_deref())?;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(switchboard::run(loaded))?;
        }
        Command::Check { config } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            let channels = switchboard::check(&loaded)?;
            println!("{}: configuration is valid", config.display());
            println!("  liveperson: {:?} mode", loaded.config.liveperson.mode);
            println!("  store: {}", loaded.config.store.url);
            for inst in channels.iter() {
                println!("  channel `{}` ({})", inst.name, inst.kind);
            }
        }
        Command::Manifest { config } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            let manifest = switchboard::manifest(&loaded)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        }
        Command::Sms {
            action: SmsAction::KannelConfig { config, instance },
        } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            print!(
                "{}",
                switchboard::kannel_config(&loaded, instance.as_deref())?
            );
        }
        Command::Demo { listen } => {
            let loaded = switchboard::demo_config(listen)?;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            println!("Switchboard demo: everything embedded, no LivePerson account needed.");
            println!("  consumer web chat:  http://{listen}/channels/web/");
            match switchboard::demo_simulator_addr(listen) {
                Some(sim) if sim.ip().is_unspecified() => {
                    println!(
                        "  agent console:      http://127.0.0.1:{}/console",
                        sim.port()
                    );
                }
                Some(sim) => println!("  agent console:      http://{sim}/console"),
                None => println!(
                    "  agent console:      printed below once the simulator is up (…/console)"
                ),
            }
            println!("  store:              {}", loaded.config.store.url);
            println!("Stop with ctrl-c.");
            rt.block_on(switchboard::run(loaded))?;
        }
        Command::Sim { listen, manifest } => {
            let manifest = match manifest {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(switchboard::run_simulator(listen, manifest))?;
        }
        Command::Deadletters { action } => {
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(deadletters(action))?;
        }
        Command::Channels => {
            let regs = switchboard_core::registrations();
            if regs.is_empty() {
                println!("no channel kinds are registered in this binary");
            }
            for r in regs {
                println!("{:<12} {:<10} {}", r.kind, "built-in", r.description);
            }
        }
    }
    Ok(())
}

async fn deadletters(action: DeadletterAction) -> anyhow::Result<()> {
    let config = match &action {
        DeadletterAction::List { config, .. } | DeadletterAction::Retry { config, .. } => {
            config.clone()
        }
    };
    let loaded = LoadedConfig::load(config.as_deref())?;
    let store = switchboard_store::Store::connect(&loaded.config.store.url).await?;
    match action {
        DeadletterAction::List { limit, json, .. } => {
            let letters = store.dead_letters(limit).await?;
            if json {
                for d in &letters {
                    println!(
                        "{}",
                        serde_json::json!({ "id": d.id, "direction": d.direction.to_string(),
                            "consumer": d.consumer_key, "attempts": d.attempts, "reason": d.reason,
                            "failed_at_ms": d.failed_at_ms, "payload": d.payload })
                    );
                }
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>8}  {:<10}  {:>8}  {:<24}  reason",
                    "id", "direction", "attempts", "consumer"
                );
                for d in &letters {
                    println!(
                        "{:>8}  {:<10}  {:>8}  {:<24}  {}",
                        d.id,
                        d.direction.to_string(),
                        d.attempts,
                        d.consumer_key,
                        d.reason
                    );
                }
            }
        }
        DeadletterAction::Retry { ids, .. } => {
            let mut missing = Vec::new();
            for id in ids {
                if store.retry_dead_letter(id).await? {
                    println!("dead letter {id} is queued again");
                } else {
                    missing.push(id.to_string());
                }
            }
            if !missing.is_empty() {
                anyhow::bail!("no dead letter with id {}", missing.join(", "));
            }
        }
    }
    store.close().await;
    Ok(())
}
