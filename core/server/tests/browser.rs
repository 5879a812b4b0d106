//! End to end in a real browser: `switchboard demo`, its consumer web chat and the simulator's
//! agent console, both open in headless Chromium driven through chromedriver (WebDriver).
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test is skipped, except
//! under `CI=true` where it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::webdriver::Session;

/// How long any one expectation may take to come true.
const WAIT: Duration = Duration::from_secs(20);

/// Kills (and reaps) a child process when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first of `names` found in `PATH` (or at an absolute path).
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        let candidate = Path::new(name);
        if candidate.is_absolute() {
            if candidate.is_file() {
                return Some(candidate.to_owned());
            }
            continue;
        }
        for dir in std::env::split_paths(&path) {
            let full = dir.join(name);
            if full.is_file() {
                return Some(full);
            }
        }
    }
    None
}

/// A free loopback port `p` whose neighbour `p + 1` is free too (the demo's simulator).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two adjacent free ports");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `GET url` answers 200.
async fn wait_http_ok(url: &str, what: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer at {url}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `script` (a function body returning a value) in the current window until it returns
/// something truthy, for up to [`WAIT`]; fails with `what` and the page's text otherwise.
async fn wait_js(c: &Session, what: &str, script: &str, args: Vec<Value>) -> Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = c.execute(script, args.clone()).await;
        match &value {
            Ok(Value::Null | Value::Bool(false)) | Err(_) => {}
            Ok(Value::String(s)) if s.is_empty() => {}
            Ok(v) => return Ok(v.clone()),
        }
        if Instant::now() > deadline {
            let text = c
                .execute("return document.body.innerText", vec![])
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            bail!("timed out waiting for {what} (last result {value:?}); the page shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// True when an element matching `selector` contains `text`.
const HAS_TEXT: &str = "return [...document.querySelectorAll(arguments[0])]\
    .some((e) => e.textContent.includes(arguments[1]));";

async fn wait_text(c: &Session, selector: &str, text: &str) -> Result<()> {
    wait_js(
        c,
        &format!("`{text}` in `{selector}`"),
        HAS_TEXT,
        vec![json!(selector), json!(text)],
    )
    .await
    .map(drop)
}

/// Clicks the first element matching `selector` whose text contains `text`.
async fn click_text(c: &Session, selector: &str, text: &str) -> Result<()> {
    let script = "const e = [...document.querySelectorAll(arguments[0])]\
        .find((e) => e.textContent.includes(arguments[1]) && !e.disabled); \
        if (!e) return false; e.click(); return true;";
    wait_js(
        c,
        &format!("a clickable `{selector}` with `{text}`"),
        script,
        vec![json!(selector), json!(text)],
    )
    .await
    .map(drop)
}

/// Types into the field `selector` (replacing its value through key presses).
async fn type_into(c: &Session, selector: &str, text: &str) -> Result<()> {
    let field = c
        .wait_for(selector, WAIT)
        .await
        .with_context(|| format!("no `{selector}`"))?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

async fn click(c: &Session, selector: &str) -> Result<()> {
    // Wait for it to be enabled first: the console enables its buttons once it has data.
    wait_js(
        c,
        &format!("`{selector}` enabled"),
        "const e = document.querySelector(arguments[0]); return !!e && !e.disabled;",
        vec![json!(selector)],
    )
    .await?;
    c.find(selector).await?.click().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_agent_talk_through_real_browsers() {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "chromium and chromedriver are required under CI: \
                 apt-get install chromium chromium-driver"
            );
        }
        eprintln!("skipping: install chromium chromium-driver");
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let port = free_port_pair();
    let log_path = dir.path().join("switchboard.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _demo = Reaped(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start switchboard demo"),
    );
    let driver_port = free_port();
    let _driver = Reaped(
        Command::new(&driver)
            .arg(format!("--port={driver_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver"),
    );

    let started = Instant::now();
    let outcome = run(&chromium, port, driver_port).await;
    let demo_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Err(e) = outcome {
        panic!("{e:#}\n--- switchboard demo output ---\n{demo_log}");
    }
    eprintln!("browser test took {:?}", started.elapsed());
}

/// Everything that needs the browser; the session is always closed.
async fn run(chromium: &Path, port: u16, driver_port: u16) -> Result<()> {
    let chat_url = format!("http://127.0.0.1:{port}/channels/web/");
    let console_url = format!("http://127.0.0.1:{}/console", port + 1);
    wait_http_ok(
        &format!("http://127.0.0.1:{driver_port}/status"),
        "chromedriver",
    )
    .await?;
    wait_http_ok(
        &format!("http://127.0.0.1:{port}/readyz"),
        "switchboard demo",
    )
    .await?;
    wait_http_ok(&console_url, "the agent console").await?;

    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900",
                // Both windows stay live while the other one has the focus.
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
            ],
        },
    });
    let c = Session::start(&format!("http://127.0.0.1:{driver_port}"), caps)
        .await
        .context("cannot open a WebDriver session")?;
    let result = conversation(&c, &chat_url, &console_url).await;
    if let Some(dir) = std::env::var_os("SWITCHBOARD_BROWSER_SCREENSHOTS") {
        screenshots(&c, Path::new(&dir)).await;
    }
    let _ = c.close().await;
    result
}

/// Saves a PNG of every window into `dir` (set `SWITCHBOARD_BROWSER_SCREENSHOTS` to look at
/// the pages the test drove).
async fn screenshots(c: &Session, dir: &Path) {
    let _ = std::fs::create_dir_all(dir);
    for (i, window) in c
        .windows()
        .await
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if c.switch_to_window(&window).await.is_ok()
            && let Ok(png) = c.screenshot().await
        {
            let _ = std::fs::write(dir.join(format!("window-{i}.png")), png);
        }
    }
}

/// The web page the agent's link button opens.
const HELP_URL: &str = "https://example.com/help";

/// Sends the open conversation structured content with a web link and a `javascript:` link,
/// through the simulator's control API (what an agent's widget would send).
async fn agent_sends_links(sim: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let conversations: Value = http
        .get(format!("{sim}/sim/conversations"))
        .send()
        .await?
        .json()
        .await?;
    let id = conversations
        .as_array()
        .and_then(|all| all.iter().rev().find(|c| c["stage"] == "OPEN"))
        .and_then(|c| c["conversation_id"].as_str())
        .context("no open conversation in the simulator")?
        .to_owned();
    let link = |title: &str, uri: &str| {
        json!({ "type": "button", "title": title,
                "click": { "actions": [{ "type": "link", "name": title, "uri": uri }] } })
    };
    let content = json!({ "type": "vertical", "elements": [
        { "type": "text", "text": "Useful links" },
        link("Help page", HELP_URL),
        link("Free gift", "javascript:alert(document.cookie)"),
    ]});
    let sent = http
        .post(format!("{sim}/sim/conversations/{id}/messages"))
        .json(&json!({ "content": content }))
        .send()
        .await?;
    if !sent.status().is_success() {
        bail!("the simulator refused the links: {}", sent.text().await?);
    }
    Ok(())
}

async fn conversation(c: &Session, chat_url: &str, console_url: &str) -> Result<()> {
    // The consumer opens the chat and writes.
    c.goto(chat_url).await?;
    let chat = c.window().await?;
    type_into(c, "#text", "Hello from a real browser").await?;
    click(c, "#send button").await?;
    wait_text(c, "#log .me", "Hello from a real browser").await?;

    // The agent opens the console in a second window and picks the conversation up.
    let console = c.new_tab().await?;
    c.switch_to_window(&console).await?;
    c.goto(console_url).await?;
    // The console follows the simulator through server-sent events.
    wait_text(c, "#live", "live").await?;
    click_text(c, "#list .conv", "stage OPEN").await?;
    wait_text(c, "#transcript .msg.CONSUMER", "Hello from a real browser").await?;
    click(c, "#accept").await?;
    wait_text(c, "#list .conv", "agent ").await?;
    type_into(c, "#text", "Hi, this is the agent").await?;
    click(c, "#send").await?;
    wait_text(c, "#transcript .msg.agent", "Hi, this is the agent").await?;

    // The consumer sees the reply.
    c.switch_to_window(&chat).await?;
    wait_text(c, "#log .agent", "Hi, this is the agent").await?;

    // The agent offers quick replies; the consumer picks one.
    c.switch_to_window(&console).await?;
    type_into(c, "#text", "Did that help?").await?;
    type_into(c, "#qr", "Yes thanks, Not really").await?;
    click(c, "#send").await?;
    c.switch_to_window(&chat).await?;
    wait_text(c, "#log .agent", "Did that help?").await?;
    click_text(c, "#log button.choice", "Yes thanks").await?;

    // The agent sees the choice as the consumer's message, reads it and closes.
    c.switch_to_window(&console).await?;
    wait_text(c, "#transcript .msg.CONSUMER", "Yes thanks").await?;
    click(c, "#read").await?;
    c.switch_to_window(&chat).await?;
    wait_text(c, "#log .receipt", "Read").await?;

    // The agent types: the consumer sees the indicator.
    c.switch_to_window(&console).await?;
    click(c, "#typingBtn").await?;
    c.switch_to_window(&chat).await?;
    wait_js(
        c,
        "the typing indicator",
        "return !!document.querySelector('#typing.on');",
        vec![],
    )
    .await?;

    // The agent sends a card with an image and buttons; the consumer picks one.
    c.switch_to_window(&console).await?;
    click(c, "#sendCard").await?;
    c.switch_to_window(&chat).await?;
    wait_text(c, "#log .card", "Our new phone").await?;
    wait_js(
        c,
        "the card's image",
        "const i = document.querySelector('#log .card img'); return !!i && i.complete && i.naturalWidth > 0;",
        vec![],
    )
    .await?;
    click_text(c, "#log .card button.choice", "Tell me more").await?;
    c.switch_to_window(&console).await?;
    wait_text(c, "#transcript .msg.CONSUMER", "Tell me more").await?;

    // The agent sends two links, a web page and a `javascript:` one: only the first is a link
    // in the consumer's page.
    let sim = console_url.trim_end_matches("/console");
    agent_sends_links(sim).await?;
    c.switch_to_window(&chat).await?;
    wait_text(c, "#log a.link", "Help page").await?;
    let hrefs = c
        .execute(
            "return [...document.querySelectorAll('#log a')].map((a) => a.href);",
            vec![],
        )
        .await?;
    let hrefs: Vec<String> = serde_json::from_value(hrefs)?;
    if hrefs.iter().any(|h| !h.starts_with("http")) || !hrefs.iter().any(|h| h == HELP_URL) {
        bail!("the page shows links other than the web one: {hrefs:?}");
    }

    // The consumer reloads the page: the whole conversation is back, both sides in order,
    // and the buttons already used stay used.
    c.refresh().await?;
    wait_text(c, "#log a.link", "Help page").await?;
    let shown = c
        .execute(
            "return [...document.querySelectorAll('#log .msg')].map((e) => \
             (e.classList.contains('me') ? 'me: ' : 'agent: ') + e.textContent);",
            vec![],
        )
        .await?;
    let shown: Vec<String> = serde_json::from_value(shown)?;
    let expected = [
        ("me: ", "Hello from a real browser"),
        ("agent: ", "Hi, this is the agent"),
        ("agent: ", "Did that help?"),
        ("me: ", "Yes thanks"),
        ("agent: ", "Our new phone"),
        ("me: ", "Tell me more"),
        ("agent: ", "Help page"),
    ];
    let mut at = 0;
    for (side, text) in expected {
        match shown[at..]
            .iter()
            .position(|s| s.starts_with(side) && s.contains(text))
        {
            Some(i) => at += i + 1,
            None => bail!("after a reload, `{side}{text}` is missing or out of order in {shown:?}"),
        }
    }
    let used = c
        .execute(
            "return [...document.querySelectorAll('#log button.choice')].map((b) => \
             [b.textContent, b.disabled, b.classList.contains('chosen')]);",
            vec![],
        )
        .await?;
    let used: Vec<(String, bool, bool)> = serde_json::from_value(used)?;
    if used.iter().any(|(_, disabled, _)| !disabled)
        || !["Yes thanks", "Tell me more"]
            .iter()
            .all(|t| used.iter().any(|(title, _, chosen)| title == t && *chosen))
    {
        bail!("after a reload, the choices made are not shown as made: {used:?}");
    }
    wait_text(c, "#log .receipt", "Read").await?;
    // The page's icon is served.
    let icon = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(document.querySelector('link[rel=icon]').href) \
               .then((r) => done([r.status, r.headers.get('content-type')])) \
               .catch((e) => done(String(e)));",
            vec![],
        )
        .await?;
    if icon != json!([200, "image/svg+xml"]) {
        bail!("the page's icon is not served: {icon}");
    }
    c.switch_to_window(&console).await?;

    click(c, "#close").await?;
    wait_text(c, "#list .conv", "stage CLOSE").await?;

    // The consumer sees that the conversation is over.
    c.switch_to_window(&chat).await?;
    wait_text(c, "#log .note", "closed").await?;
    Ok(())
}
