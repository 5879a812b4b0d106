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
    /// Print the App Install Manifest (JSON) to register with LivePerson for this
    /// deployment: every webhook points at `server.public_url`/webhooks/liveperson.
    Manifest {
        /// The config file (TOML).
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// Everything embedded, for trying Switchboard out: the LivePerson simulator with its agent
    /// console, a web chat for the consumer side, and an SQLite store under ./data.
    Demo {
        /// Where the connector listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Run only the LivePerson simulator (for testing another connector, or by hand).
    Sim {
        /// Where the simulator listens.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// An App Install Manifest (JSON) whose webhook endpoints receive notifications.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Set-up helpers for the SMS channel.
    Sms {
        /// What to print.
        #[command(subcommand)]
        action: SmsAction,
    },
    /// Events LivePerson or a channel refused for good, kept for inspection and retry.
    Deadletters {
        /// What to do with them.
        #[command(subcommand)]
        action: DeadletterAction,
    },
}

/// `switchboard deadletters ...`
#[derive(Debug, Subcommand)]
pub enum DeadletterAction {
    /// List dead letters, oldest first.
    List {
        /// The config file (TOML): its `[store]` is read.
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back into their outbox (at the end of their consumer's queue).
    Retry {
        /// The config file (TOML): its `[store]` is read.
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        /// The ids to retry (see `list`).
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

/// `switchboard sms ...`
#[derive(Debug, Subcommand)]
pub enum SmsAction {
    /// Print the kannel.conf groups (smsbox, sendsms-user, sms-service) that connect a Kannel
    /// gateway to an `sms` channel of this deployment. The output holds the callback token and
    /// the sendsms password: redirect it into kannel.conf, don't paste it into chats.
    KannelConfig {
        /// The config file (TOML).
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// The `sms` channel instance (needed when several are enabled).
        #[arg(long)]
        instance: Option<String>,
    },
}
