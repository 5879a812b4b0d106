//! The `switchboard` command line, and [`main`], the whole program: the stock binary's
//! `main.rs` calls it, and so does a brand's own binary that links its channel crates
//! (`examples/01-brand-binary`, compiled and tested with the workspace), which gets every
//! command:
//!
//! ```ignore
//! use switchboard_channel_sms as _; // a linked crate: its kinds come along
//!
//! fn main() -> std::process::ExitCode {
//!     switchboard::cli::main()
//! }
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigErrors, LoadedConfig};
use crate::telemetry::LogFormat;
use crate::{RunError, runtime};

/// Switchboard connects messaging channels (SMS, Slack, Telegram, web chat) to LivePerson
/// Conversational Cloud
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    long_about = None,
    after_help = EXIT_STATUS_HELP
)]
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
    /// Run the connector. The config file is `--config`, else `SWITCHBOARD_CONFIG`, else
    /// ./switchboard.toml; without any, nothing runs (try `switchboard demo`).
    Run {
        /// The config file (TOML).
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and every channel's own keys, without touching the network.
    Check {
        /// The config file (TOML).
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// List the channel kinds this binary knows and where each comes from (built in, a
    /// linked crate, or a dynamic plugin library of the config's `[plugins] paths`).
    Channels {
        /// A config file (TOML) whose `[plugins] paths` are loaded to list their kinds too.
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
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
    /// The timeline of the events a key names, oldest first: a platform message id, a
    /// LivePerson conversation id or a consumer address `<instance>:<id>`. Reads the store
    /// only. Exits 1 when nothing matches, 2 when the store cannot be opened.
    Trace {
        /// The config file (TOML): its `[store]` is read.
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// What to look for.
        key: String,
        /// Print `{"events": [...]}` instead of a table.
        #[arg(long)]
        json: bool,
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

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The connector (or the simulator) stopped with an error.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The trace exporter could not be set up.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A file named on the command line could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] switchboard_store::StoreError),
    /// Output could not be serialized.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// `deadletters retry` named ids that do not exist.
    #[error("no dead letter with id {0}")]
    NoDeadLetter(String),
    /// `trace` printed no timeline.
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    /// `run` found no configuration file.
    #[error(
        "no configuration file: `switchboard run` reads `--config FILE`, else the file named by \
         SWITCHBOARD_CONFIG, else ./switchboard.toml (not found in {}). To try Switchboard out \
         without one, run `switchboard demo`",
        cwd.display()
    )]
    NoConfig {
        /// The directory searched for switchboard.toml.
        cwd: PathBuf,
    },
    /// `demo` could not bind one of its two ports.
    #[error(
        "{source}\n  choose another port with `--listen 127.0.0.1:PORT` (the agent console takes \
         PORT+1, here {console})"
    )]
    DemoPort {
        /// The bind error.
        source: RunError,
        /// The console's port (`--listen`'s + 1).
        console: u16,
    },
}

/// The exit status of a command that failed at run time: the store, the network, a port
/// taken, a dead letter id that is not there.
pub const EXIT_FAILURE: u8 = 1;
/// The exit status of a command refused before it ran: no configuration file, an invalid one
/// (a key, a value, a channel's own keys), a file named on the command line that cannot be
/// read, or (clap's own) a command line that does not parse.
pub const EXIT_CONFIG: u8 = 2;

/// The exit statuses, as `--help` ends with them (docs/operations.md has the same table).
const EXIT_STATUS_HELP: &str = "Exit status: 0 done; 1 failed while running (store, network, \
     port); 2 refused before running: no or an invalid configuration, or a bad command line.";

impl CliError {
    /// The exit status: [`EXIT_CONFIG`] for what the configuration or the command line got
    /// wrong, [`EXIT_FAILURE`] for everything that failed while running.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }

    /// [`Self::exit_code`] as a number.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Config(_)
            | CliError::Run(RunError::Config(_))
            | CliError::NoConfig { .. }
            | CliError::Read { .. } => EXIT_CONFIG,
            CliError::Run(_)
            | CliError::Telemetry(_)
            | CliError::Runtime(_)
            | CliError::Store(_)
            | CliError::Json(_)
            | CliError::NoDeadLetter(_)
            | CliError::DemoPort { .. } => EXIT_FAILURE,
            // `trace`'s own: 2 for a store it cannot open, 1 for a key matching nothing.
            CliError::Trace(e) => e.exit_code(),
        }
    }
}

/// The file `run` reads: `--config` (or `SWITCHBOARD_CONFIG`, which clap reads into it), else
/// ./switchboard.toml in the current directory.
fn run_config(config: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(path) = config {
        return Ok(path);
    }
    let local = PathBuf::from("switchboard.toml");
    if local.is_file() {
        return Ok(local);
    }
    Err(CliError::NoConfig {
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    })
}

/// The whole `switchboard` program: parses the command line, sets up logging, runs the
/// command and turns an error into a message on stderr and a failing exit code. Every
/// channel kind linked into the calling binary is available.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match start_telemetry(&cli.command) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return err.exit_code();
        }
    };
    crate::telemetry::init(cli.log_format, telemetry.as_ref().map(|(t, _)| t));
    if let Some((_, settings)) = &telemetry {
        tracing::info!(
            collector = %settings.display_endpoint(),
            from = settings.source,
            "exporting OpenTelemetry traces"
        );
        for ignored in &settings.overridden {
            tracing::info!(
                variable = ignored,
                "{ignored} is set but ignored: `{}` names the collector",
                settings.source
            );
        }
    }
    let result = execute(cli.command);
    // Sends the spans still queued (the async runtime is gone by now; the exporter has its
    // own thread).
    drop(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

/// The trace pipeline of `run` (or `demo`), set up before the configuration is loaded whole:
/// loading it loads the dynamic plugins, which log through the subscriber that must already
/// hold the trace layer. A problem in `[telemetry]` is left to the full load, which reports
/// it with its key.
fn start_telemetry(
    command: &Command,
) -> Result<
    Option<(
        crate::telemetry::Telemetry,
        crate::telemetry::ExportSettings,
    )>,
    CliError,
> {
    let section = match command {
        Command::Run { config } => match run_config(config.clone()) {
            Ok(path) => crate::config::TelemetryConfig::peek(&path),
            Err(_) => None,
        },
        Command::Demo { .. } => Some(crate::config::TelemetryConfig::default()),
        _ => None,
    };
    let Some(Ok(Some(settings))) = section.map(|s| s.export_settings()) else {
        return Ok(None);
    };
    let telemetry = crate::telemetry::Telemetry::start(&settings)?;
    Ok(Some((telemetry, settings)))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(CliError::Runtime)
}

/// Runs one command.
pub fn execute(command: Command) -> Result<(), CliError> {
    match command {
        Command::Run { config } => {
            let path = run_config(config)?;
            let loaded = LoadedConfig::load(Some(&path))?;
            runtime()?.block_on(crate::run(loaded))?;
        }
        Command::Check { config } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            let channels = crate::check(&loaded)?;
            println!("{}: configuration is valid", config.display());
            let mode = match loaded.config.liveperson.mode() {
                crate::config::LivePersonMode::Live => "live",
                crate::config::LivePersonMode::Simulator => "simulator",
            };
            println!("  liveperson: {mode} mode");
            println!("  store: {}", loaded.config.store.display_url());
            for plugin in loaded.plugins() {
                println!(
                    "  plugin {} (switchboard-core {})",
                    plugin.path().display(),
                    plugin.core_version()
                );
            }
            for inst in channels.iter() {
                println!("  channel `{}` ({})", inst.name, inst.kind);
            }
        }
        Command::Manifest { config } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            let manifest = crate::manifest(&loaded)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        }
        Command::Sms {
            action: SmsAction::KannelConfig { config, instance },
        } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            print!("{}", crate::kannel_config(&loaded, instance.as_deref())?);
        }
        Command::Demo { listen } => {
            let loaded = crate::demo_config(listen)?;
            runtime()?.block_on(demo(loaded, listen))?;
        }
        Command::Sim { listen, manifest } => {
            let manifest = match manifest {
                Some(path) => {
                    Some(
                        std::fs::read_to_string(&path).map_err(|source| CliError::Read {
                            path: path.clone(),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            runtime()?.block_on(crate::run_simulator(listen, manifest))?;
        }
        Command::Trace { config, key, json } => {
            let loaded = LoadedConfig::load(Some(&config))?;
            runtime()?.block_on(crate::trace::run(&loaded, &config, &key, json))?;
        }
        Command::Deadletters { action } => {
            runtime()?.block_on(deadletters(action))?;
        }
        Command::Channels { config } => {
            let loaded = match &config {
                Some(path) => Some(LoadedConfig::load(Some(path))?),
                None => None,
            };
            print!("{}", channels_table(&runtime::kinds(loaded.as_ref())));
        }
    }
    Ok(())
}

/// `switchboard demo`: binds both ports (the connector's, and the simulator's next to it),
/// and only then prints where to go.
async fn demo(loaded: LoadedConfig, listen: std::net::SocketAddr) -> Result<(), CliError> {
    let port_taken = |source: RunError| match source {
        RunError::Bind { .. } | RunError::SimulatorBind { .. } => CliError::DemoPort {
            source,
            console: listen.port().saturating_add(1),
        },
        other => CliError::Run(other),
    };
    let store = loaded.config.store.display_url();
    let listeners = crate::Listeners::bind(&loaded.config.server)
        .await
        .map_err(port_taken)?;
    let started = crate::start(loaded, listeners).await.map_err(port_taken)?;
    println!("Switchboard demo: everything embedded, no LivePerson account needed.");
    println!("  consumer web chat:  http://{listen}/channels/web/");
    if let Some(sim) = started.simulator_addr() {
        println!("  agent console:      http://{sim}/console");
    }
    println!("  store:              {store}");
    println!("Stop with ctrl-c.");
    started.serve(crate::shutdown::signal()).await?;
    Ok(())
}

/// The `switchboard channels` table: kind, origin, description; a dynamic kind's library is
/// followed by how it was built.
pub fn channels_table(kinds: &[runtime::KindInfo]) -> String {
    if kinds.is_empty() {
        return "no channel kinds are registered in this binary\n".to_owned();
    }
    let kind_width = kinds.iter().map(|k| k.kind.len()).max().unwrap_or(4).max(4);
    let origin_width = kinds
        .iter()
        .map(|k| k.origin.to_string().len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!(
        "{:<kind_width$}  {:<origin_width$}  description\n",
        "kind", "origin"
    );
    for k in kinds {
        out.push_str(&format!(
            "{:<kind_width$}  {:<origin_width$}  {}\n",
            k.kind,
            k.origin.to_string(),
            k.description
        ));
        if let runtime::KindOrigin::Library {
            core_version,
            build_info,
            ..
        } = &k.origin
        {
            out.push_str(&format!(
                "{:<kind_width$}  {:<origin_width$}  (switchboard-core {core_version}; {build_info})\n",
                "", ""
            ));
        }
    }
    out
}

async fn deadletters(action: DeadletterAction) -> Result<(), CliError> {
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
                let letter = store.dead_letter_by_id(id).await?;
                if store.retry_dead_letter(id).await? {
                    println!("dead letter {id} is queued again");
                    if let Some(letter) = letter
                        && loaded.config.store.trace_retention().is_some()
                    {
                        crate::routing::timeline::trace_requeued(&store, &letter).await;
                    }
                } else {
                    missing.push(id.to_string());
                }
            }
            if !missing.is_empty() {
                return Err(CliError::NoDeadLetter(missing.join(", ")));
            }
        }
    }
    store.close().await;
    Ok(())
}
