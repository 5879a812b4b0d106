//! The `switchboard` binary: parses the command line and reports errors at the edge.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use switchboard::cli::{Cli, Command};
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
