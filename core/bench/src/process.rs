//! The processes under test (the connector, the baseline relay): started, waited for, measured
//! through `/proc` (resident memory, CPU time), and stopped.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// A process under test, killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// Its pid.
    pub(crate) pid: u32,
    /// Where it listens.
    pub(crate) port: u16,
    /// From spawn to the first `200` of `GET /healthz`.
    pub(crate) ready_after: Duration,
}

impl Proc {
    /// Spawns `program args…` with `env`, and waits until `GET http://127.0.0.1:{port}/healthz`
    /// answers 200 (polled every millisecond, for at most 30 s).
    pub(crate) async fn spawn(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        port: u16,
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        };
        let started = Instant::now();
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("the process ended at once")?;
        let mut proc = Self {
            child,
            pid,
            port,
            ready_after: Duration::ZERO,
        };
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/healthz");
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                proc.ready_after = started.elapsed();
                return Ok(proc);
            }
            if let Some(status) = proc.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready",
                    program.display()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{} was not ready within 30 s", program.display());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Resident memory now and at its peak, in MiB (`VmRSS`, `VmHWM`).
    pub(crate) fn rss_mib(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU time used so far (user + system).
    pub(crate) fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the `(comm)`, which may itself contain spaces.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 after `) state`.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    /// Stops it: SIGTERM (a graceful drain), then a kill after 10 s.
    pub(crate) async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `sysconf(_SC_CLK_TCK)`, read once through `getconf` (100 on Linux nearly everywhere).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU and memory of a process over one phase.
#[derive(Debug)]
pub(crate) struct Usage {
    cpu_at_start: Duration,
    started: Instant,
}

impl Usage {
    /// Starts measuring `proc`.
    pub(crate) fn start(proc: &Proc) -> Self {
        Self {
            cpu_at_start: proc.cpu_time(),
            started: Instant::now(),
        }
    }

    /// CPU used since the start, as % of one core.
    pub(crate) fn cpu_percent(&self, proc: &Proc) -> f64 {
        let cpu = proc.cpu_time().saturating_sub(self.cpu_at_start);
        100.0 * cpu.as_secs_f64() / self.started.elapsed().as_secs_f64().max(1e-9)
    }
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
