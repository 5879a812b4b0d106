//! The real Kannel 1.4.5 SMS gateway on loopback: bearerbox, smsbox and the `fakesmsc` SMSC
//! from Debian's `kannel` and `kannel-extras` packages.
//!
//! The caller chooses the sendsms port, builds its SMS channel config pointing at it, and
//! hands this harness the kannel.conf groups the channel generates
//! (`switchboard sms kannel-config`); the harness adds the `core` and `smsc` groups and the
//! smsbox's connection keys, starts the three processes and waits until the SMSC is
//! connected. What the SMSC receives (the MTs) is collected; [`RealKannel::send_mo`] makes the
//! SMSC deliver a consumer message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::{free_port, under_ci};

const BEARERBOX: &str = "/usr/sbin/bearerbox";
const SMSBOX: &str = "/usr/sbin/smsbox";
const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";

/// True when bearerbox, smsbox and fakesmsc are installed.
pub fn installed() -> bool {
    [BEARERBOX, SMSBOX, FAKESMSC]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// Why the harness could not start Kannel.
#[derive(Debug)]
pub struct KannelError(pub String);

impl std::fmt::Display for KannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KannelError {}

/// Where bearerbox keeps the delivery reports it waits for (the core group's `dlr-storage`,
/// Kannel user guide "Delivery Report storage").
#[derive(Debug, Clone, Default)]
pub enum DlrStorage {
    /// In memory (Kannel's default): lost when bearerbox restarts.
    #[default]
    Internal,
    /// A PostgreSQL table with the layout of Kannel's example DLR tables
    /// ([`POSTGRES_DLR_TABLE`]), as production set-ups use so that reports survive a
    /// bearerbox restart.
    Postgres(PostgresDlr),
}

/// The PostgreSQL database and schema of [`DlrStorage::Postgres`].
#[derive(Debug, Clone)]
pub struct PostgresDlr {
    /// Host of the PostgreSQL server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The user Kannel logs in as.
    pub user: String,
    /// Its password (anything with trust authentication).
    pub password: String,
    /// The database.
    pub database: String,
    /// The schema holding the `dlr` table (bearerbox gets it as its search path).
    pub schema: String,
}

impl PostgresDlr {
    /// The storage in `schema` of the database a `postgres://user[:password]@host:port/db` URL
    /// names.
    pub fn from_url(url: &str, schema: &str) -> Result<Self, KannelError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| KannelError(format!("{url}: {e}")))?;
        Ok(Self {
            host: parsed.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: parsed.port().unwrap_or(5432),
            user: match parsed.username() {
                "" => "postgres".to_owned(),
                u => u.to_owned(),
            },
            password: parsed.password().unwrap_or("unused").to_owned(),
            database: parsed.path().trim_start_matches('/').to_owned(),
            schema: schema.to_owned(),
        })
    }

    fn groups(&self) -> String {
        format!(
            "group = pgsql-connection\nid = dlrdb\nhost = {}\nport = {}\nusername = {}\n\
             password = {}\ndatabase = {}\nmax-connections = 1\n\n\
             group = dlr-db\nid = dlrdb\ntable = dlr\nfield-smsc = smsc\nfield-timestamp = ts\n\
             field-destination = destination\nfield-source = source\nfield-service = service\n\
             field-url = url\nfield-mask = mask\nfield-status = status\nfield-boxc-id = boxc\n\n",
            self.host, self.port, self.user, self.password, self.database
        )
    }
}

/// The DLR table of Kannel's examples (`doc/examples/dlr-mysql.conf`, `dlr-sdb.conf`: "Create
/// the required table … with something similar like this"), for PostgreSQL. Its `url` column
/// holds the dlr-url template of every message waiting for a report: 255 characters.
pub const POSTGRES_DLR_TABLE: &str = "CREATE TABLE dlr (smsc varchar(40), ts varchar(40), \
destination varchar(40), source varchar(40), service varchar(40), url varchar(255), \
mask integer, status integer, boxc varchar(40))";

/// A running Kannel with a fake SMSC. Processes are killed when it is dropped.
#[derive(Debug)]
pub struct RealKannel {
    dir: tempfile_dir::Dir,
    smsc_lines: Arc<Mutex<Vec<String>>>,
    stdin: tokio::sync::Mutex<ChildStdin>,
    _children: Vec<Child>,
}

/// A minimal owned temporary directory (removed on drop), so the kit needs no extra crate.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    #[derive(Debug)]
    pub(super) struct Dir(PathBuf);

    impl Dir {
        pub(super) fn new() -> std::io::Result<Self> {
            let unique = format!(
                "switchboard-kannel-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            );
            let path = std::env::temp_dir().join(unique);
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }
        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl RealKannel {
    /// Returns `Ok(None)` (after printing why) when Kannel is not installed, except under
    /// `CI=true`, where that is an error: the test must not pass silently.
    pub async fn start_or_skip(
        channel_snippet: &str,
        sendsms_port: u16,
    ) -> Result<Option<Self>, KannelError> {
        if !installed() {
            if under_ci() {
                return Err(KannelError(
                    "Kannel is required under CI=true: apt-get install -y kannel kannel-extras"
                        .into(),
                ));
            }
            eprintln!(
                "skipping: Kannel is not installed (apt-get install -y kannel kannel-extras)"
            );
            return Ok(None);
        }
        Self::start(channel_snippet, sendsms_port).await.map(Some)
    }

    /// [`RealKannel::start_or_skip`] with a choice of DLR storage.
    pub async fn start_or_skip_with(
        channel_snippet: &str,
        sendsms_port: u16,
        storage: &DlrStorage,
    ) -> Result<Option<Self>, KannelError> {
        if !installed() {
            return Self::start_or_skip(channel_snippet, sendsms_port).await;
        }
        Self::start_with(channel_snippet, sendsms_port, storage)
            .await
            .map(Some)
    }

    /// Starts bearerbox + smsbox with the channel's groups, and fakesmsc connected to it.
    pub async fn start(channel_snippet: &str, sendsms_port: u16) -> Result<Self, KannelError> {
        Self::start_with(channel_snippet, sendsms_port, &DlrStorage::Internal).await
    }

    /// [`RealKannel::start`] with a choice of DLR storage.
    pub async fn start_with(
        channel_snippet: &str,
        sendsms_port: u16,
        storage: &DlrStorage,
    ) -> Result<Self, KannelError> {
        let dir = tempfile_dir::Dir::new().map_err(|e| KannelError(format!("temp dir: {e}")))?;
        let (admin, smsbox_port, smsc) = (free_port(), free_port(), free_port());
        let log = |n: &str| dir.path().join(n).display().to_string();
        if !channel_snippet.contains(&format!("sendsms-port = {sendsms_port}")) {
            return Err(KannelError(format!(
                "the channel's kannel.conf groups do not use sendsms port {sendsms_port}"
            )));
        }
        // The snippet's smsbox group gets the keys it tells operators to merge (bearerbox-host)
        // plus logging for the test.
        let snippet = channel_snippet.replacen(
            "group = smsbox\n",
            &format!(
                "group = smsbox\nbearerbox-host = 127.0.0.1\nbearerbox-port = {smsbox_port}\n\
                 sendsms-interface = 127.0.0.1\nlog-file = \"{}\"\nlog-level = 0\n\
                 access-log = \"{}\"\n",
                log("smsbox.log"),
                log("access.log")
            ),
            1,
        );
        let (dlr_storage, dlr_groups) = match storage {
            DlrStorage::Internal => ("internal", String::new()),
            DlrStorage::Postgres(pg) => ("pgsql", pg.groups()),
        };
        let conf = format!(
            "group = core\nadmin-port = {admin}\nadmin-interface = 127.0.0.1\n\
             admin-password = adm1n\nsmsbox-port = {smsbox_port}\nsmsbox-interface = 127.0.0.1\n\
             box-allow-ip = 127.0.0.1\ndlr-storage = {dlr_storage}\nlog-file = \"{}\"\nlog-level = 0\n\n\
             group = smsc\nsmsc = fake\nsmsc-id = fake1\nport = {smsc}\n\
             connect-allow-ip = 127.0.0.1\n\n{dlr_groups}{snippet}",
            log("bearerbox.log")
        );
        let conf_path: PathBuf = dir.path().join("kannel.conf");
        std::fs::write(&conf_path, &conf).map_err(|e| KannelError(format!("kannel.conf: {e}")))?;

        let quiet = Arc::new(Mutex::new(Vec::new()));
        let mut children = Vec::new();
        let mut bearerbox = Command::new(BEARERBOX);
        bearerbox.arg(&conf_path);
        if let DlrStorage::Postgres(pg) = storage {
            // libpq's own variable: Kannel's pgsql-connection group has no schema key.
            bearerbox.env("PGOPTIONS", format!("-c search_path={}", pg.schema));
        }
        children.push(spawn_logged(&mut bearerbox, quiet.clone())?);
        if !wait_port(admin, 20).await || !wait_port(smsc, 20).await {
            return Err(KannelError(format!(
                "bearerbox did not start: {:?}\n{}",
                quiet.lock().expect("lines"),
                tails(dir.path())
            )));
        }
        children.push(spawn_logged(
            Command::new(SMSBOX).arg(&conf_path),
            quiet.clone(),
        )?);
        if !wait_port(sendsms_port, 20).await {
            return Err(KannelError(format!(
                "smsbox did not start\n{}",
                tails(dir.path())
            )));
        }
        let smsc_lines = Arc::new(Mutex::new(Vec::new()));
        let mut fakesmsc = spawn_logged(
            Command::new(FAKESMSC).args(["-H", "127.0.0.1", "-r", &smsc.to_string()]),
            smsc_lines.clone(),
        )?;
        let stdin = fakesmsc
            .stdin
            .take()
            .ok_or_else(|| KannelError("fakesmsc has no stdin".into()))?;
        children.push(fakesmsc);
        let kannel = Self {
            dir,
            smsc_lines,
            stdin: tokio::sync::Mutex::new(stdin),
            _children: children,
        };
        // Wait until bearerbox reports the fake SMSC online, so MTs are sent, not queued.
        let status_url = format!("127.0.0.1:{admin}");
        for _ in 0..100 {
            if smsc_online(&status_url).await {
                return Ok(kannel);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(KannelError(format!(
            "the fake SMSC did not come online\n{}",
            kannel.logs()
        )))
    }

    /// Makes the SMSC deliver a consumer message (GSM text) from `from` to `to`.
    pub async fn send_mo(&self, from: &str, to: &str, text: &str) -> Result<(), KannelError> {
        self.write_line(&format!("{from} {to} text {text}\n")).await
    }

    /// Makes the SMSC deliver a UCS-2 consumer message (any Unicode text, line breaks kept).
    pub async fn send_mo_ucs2(&self, from: &str, to: &str, text: &str) -> Result<(), KannelError> {
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let escaped: String = utf16.iter().map(|b| format!("%{b:02X}")).collect();
        self.write_line(&format!("{from} {to} ucs2 {escaped}\n"))
            .await
    }

    async fn write_line(&self, line: &str) -> Result<(), KannelError> {
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| KannelError(format!("fakesmsc stdin: {e}")))
    }

    /// The messages the SMSC received so far (fakesmsc's `Got message` lines).
    pub fn mt_lines(&self) -> Vec<String> {
        self.smsc_lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains("Got message"))
            .cloned()
            .collect()
    }

    /// The last lines of Kannel's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        tails(self.dir.path())
    }
}

/// Whether bearerbox's status page shows the fake SMSC online.
async fn smsc_online(admin: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
        return false;
    };
    let request = "GET /status.txt?password=adm1n HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut body = String::new();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
        body.push_str(&line);
        line.clear();
    }
    body.lines()
        .any(|l| l.contains("fake1") && l.contains("online"))
}

fn spawn_logged(cmd: &mut Command, lines: Arc<Mutex<Vec<String>>>) -> Result<Child, KannelError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| KannelError(format!("cannot start {cmd:?}: {e}")))?;
    let outputs: [Option<Box<dyn AsyncRead + Unpin + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    for out in outputs.into_iter().flatten() {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().expect("lines").push(line);
            }
        });
    }
    Ok(child)
}

async fn wait_port(port: u16, secs: u64) -> bool {
    for _ in 0..secs * 20 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn tails(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["bearerbox.log", "smsbox.log", "access.log"] {
        if let Ok(s) = std::fs::read_to_string(dir.join(name)) {
            out.push_str(&format!("--- {name} (last lines) ---\n"));
            let lines: Vec<&str> = s.lines().collect();
            for l in &lines[lines.len().saturating_sub(30)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}
