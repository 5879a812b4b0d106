//! The `switchboard` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Switchboard connects messaging channels to LivePerson Conversational Cloud.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SWITCHBOARD_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the connector.
    Run {
        /// The config file (TOML). Without one, the embedded defaults are used: the LivePerson
        /// simulator and an SQLite store under ./data.
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and every channel's own keys, without touching the network.
    Check {
        /// The config file (TOML).
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// List the channel kinds this binary knows.
    Channels,
}
