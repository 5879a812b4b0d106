//! Which LivePerson the engine talks to: a real account (`liveperson.mode = "live"`) or the
//! embedded simulator (`"simulator"`, and `switchboard demo`), whose client secret (the key
//! its webhooks are signed with) is new at every start, so nobody can sign one from outside.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_liveperson::{Engine, EngineConfig};
#[cfg(feature = "simulator")]
use switchboard_lp_sim::{SimConfig, SimError, SimHandle, Simulator};
use tokio::sync::watch;

use crate::RunError;
#[cfg(not(feature = "simulator"))]
use crate::config::NO_SIMULATOR;
use crate::config::{Config, LivePersonMode};
use crate::readiness::Readiness;

/// The LivePerson side of a running connector.
#[derive(Debug)]
pub struct Backend {
    /// What the engine is configured with.
    pub engine: EngineConfig,
    /// The embedded simulator, in simulator mode.
    #[cfg(feature = "simulator")]
    pub simulator: Option<SimHandle>,
}

impl Backend {
    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        #[cfg(not(feature = "simulator"))]
        let simulator: Option<String> = None;
        #[cfg(feature = "simulator")]
        let simulator = self.simulator.as_ref().map(|sim| sim.base_url());
        match simulator {
            Some(url) => format!("simulator at {url} (agent console: {url}/console)"),
            None => format!(
                "account {} via {}",
                self.engine.account_id, self.engine.domain_api
            ),
        }
    }

    /// Stops the simulator, if any.
    pub async fn shutdown(self) {
        #[cfg(feature = "simulator")]
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
    }

    /// The embedded simulator's address (`simulator` mode).
    pub fn simulator_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "simulator")]
        return self.simulator.as_ref().map(|sim| sim.addr());
        #[cfg(not(feature = "simulator"))]
        None
    }
}

/// Sets up the LivePerson side. In simulator mode the simulator starts on
/// `liveperson.simulator_listen` (default: a free loopback port) and
/// its app installation sends every webhook to this connector's own listener.
pub async fn start(config: &Config, listen: SocketAddr) -> Result<Backend, RunError> {
    match config.liveperson.mode() {
        LivePersonMode::Live => Ok(Backend {
            engine: config.liveperson.engine_config(),
            #[cfg(feature = "simulator")]
            simulator: None,
        }),
        #[cfg(not(feature = "simulator"))]
        LivePersonMode::Simulator => {
            let _ = listen;
            Err(RunError::LivePerson(NO_SIMULATOR.to_owned()))
        }
        #[cfg(feature = "simulator")]
        LivePersonMode::Simulator => {
            let sim_addr = config
                .liveperson
                .simulator_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            // A new random client secret at every start (`SimConfig::default`).
            let simulator = Simulator::start_on(SimConfig::default(), sim_addr)
                .await
                .map_err(|e| match e {
                    SimError::Io(source) => RunError::SimulatorBind {
                        addr: sim_addr,
                        source,
                    },
                    other => RunError::LivePerson(format!(
                        "cannot start the LivePerson simulator on {sim_addr}: {other}"
                    )),
                })?;
            let port = listen.port();
            simulator.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
            let mut engine = EngineConfig::new(
                simulator.account_id(),
                simulator.client_id(),
                simulator.client_secret().into(),
            )
            .with_domain_api(simulator.domain_api());
            let section = &config.liveperson;
            engine.routing = section.engine_config().routing;
            engine.features = section.features();
            section.apply_timing(&mut engine);
            Ok(Backend {
                engine,
                simulator: Some(simulator),
            })
        }
    }
}

/// Keeps `/readyz`'s `liveperson` component current: ready once the Domain API answered and
/// an AppJWT was obtained; checked again every 30 s (every 2 s while not ready).
pub async fn watch_readiness(
    engine: Engine,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = match engine.check_ready().await {
            Ok(()) => {
                readiness.set("liveperson", true, "token obtained");
                Duration::from_secs(30)
            }
            Err(e) => {
                readiness.set("liveperson", false, e.to_string());
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
