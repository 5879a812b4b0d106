//! A small W3C WebDriver client for the browser test: only the commands it sends, as JSON over
//! the workspace's reqwest (W3C WebDriver, <https://www.w3.org/TR/webdriver2/>), so the tests
//! need no WebDriver crate and its own HTTP stack.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

/// The key of a web element reference in a command's result ("Elements": the web element
/// identifier, <https://www.w3.org/TR/webdriver2/#elements>).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one command may take, page loads included: a driver that stopped answering fails
/// the test instead of hanging it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How often [`Session::wait_for`] looks for its element again.
const POLL: Duration = Duration::from_millis(250);

/// One WebDriver session (one browser); [`Session::close`] ends it.
#[derive(Debug)]
pub(crate) struct Session {
    http: reqwest::Client,
    /// `{driver}/session/{session id}`, the prefix of every command.
    url: String,
}

/// An element of the current page, as [`Session::find`] found it.
#[derive(Debug)]
pub(crate) struct Element<'s> {
    session: &'s Session,
    id: String,
}

/// Sends one command and returns its `value`; a WebDriver error (any status but success,
/// "Handling errors", <https://www.w3.org/TR/webdriver2/#handling-errors>) is an `Err` with
/// its error code and message.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    let mut answer: Value = serde_json::from_str(&text)
        .with_context(|| format!("{method} {url} answered {status} and not JSON: {text}"))?;
    let value = answer["value"].take();
    if !status.is_success() {
        bail!(
            "{method} {url}: {status} {}: {}",
            value["error"].as_str().unwrap_or("(no error code)"),
            value["message"].as_str().unwrap_or(&text),
        );
    }
    Ok(value)
}

impl Session {
    /// "New Session" (<https://www.w3.org/TR/webdriver2/#new-session>) on the driver at
    /// `driver` (`http://host:port`), with `capabilities` required (`alwaysMatch`).
    pub(crate) async fn start(driver: &str, capabilities: Value) -> Result<Self> {
        // Straight to the driver on the loopback interface, whatever the proxy settings.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()?;
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let value = send(
            &http,
            Method::POST,
            &format!("{driver}/session"),
            Some(body),
        )
        .await?;
        let id = value["sessionId"]
            .as_str()
            .with_context(|| format!("New Session answered no sessionId: {value}"))?;
        Ok(Self {
            http,
            url: format!("{driver}/session/{id}"),
        })
    }

    /// A command of this session: `path` follows `/session/{id}`. A POST without parameters
    /// still sends an empty object, as the spec's commands read their parameters from one.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let body = match (&method, body) {
            (&Method::POST, None) => Some(json!({})),
            (_, body) => body,
        };
        send(&self.http, method, &format!("{}{path}", self.url), body).await
    }

    /// "Navigate To" (<https://www.w3.org/TR/webdriver2/#navigate-to>): loads `url` in the
    /// current window.
    pub(crate) async fn goto(&self, url: &str) -> Result<()> {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// "Refresh" (<https://www.w3.org/TR/webdriver2/#refresh>): reloads the current page.
    pub(crate) async fn refresh(&self) -> Result<()> {
        self.command(Method::POST, "/refresh", None).await.map(drop)
    }

    /// "Get Window Handle" (<https://www.w3.org/TR/webdriver2/#get-window-handle>): the
    /// current window's handle.
    pub(crate) async fn window(&self) -> Result<String> {
        let value = self.command(Method::GET, "/window", None).await?;
        serde_json::from_value(value).context("a window handle")
    }

    /// "Get Window Handles" (<https://www.w3.org/TR/webdriver2/#get-window-handles>): every
    /// open window's handle.
    pub(crate) async fn windows(&self) -> Result<Vec<String>> {
        let value = self.command(Method::GET, "/window/handles", None).await?;
        serde_json::from_value(value).context("window handles")
    }

    /// "New Window" (<https://www.w3.org/TR/webdriver2/#new-window>) as a tab; returns its
    /// handle (the current window stays current).
    pub(crate) async fn new_tab(&self) -> Result<String> {
        let value = self
            .command(Method::POST, "/window/new", Some(json!({ "type": "tab" })))
            .await?;
        value["handle"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("New Window answered no handle: {value}"))
    }

    /// "Switch To Window" (<https://www.w3.org/TR/webdriver2/#switch-to-window>).
    pub(crate) async fn switch_to_window(&self, handle: &str) -> Result<()> {
        self.command(Method::POST, "/window", Some(json!({ "handle": handle })))
            .await
            .map(drop)
    }

    /// "Execute Script" (<https://www.w3.org/TR/webdriver2/#execute-script>): runs `script`
    /// (a function body, its arguments in `arguments`) and returns what it returned.
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.command(Method::POST, "/execute/sync", Some(body))
            .await
    }

    /// "Execute Async Script" (<https://www.w3.org/TR/webdriver2/#execute-async-script>):
    /// as [`Session::execute`], the result being what the script passes to its last argument.
    pub(crate) async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.command(Method::POST, "/execute/async", Some(body))
            .await
    }

    /// "Find Element" (<https://www.w3.org/TR/webdriver2/#find-element>): the first element
    /// matching the CSS selector `css`.
    pub(crate) async fn find(&self, css: &str) -> Result<Element<'_>> {
        let body = json!({ "using": "css selector", "value": css });
        let value = self.command(Method::POST, "/element", Some(body)).await?;
        let id = value[ELEMENT_KEY]
            .as_str()
            .with_context(|| format!("Find Element answered no element: {value}"))?;
        Ok(Element {
            session: self,
            id: id.to_owned(),
        })
    }

    /// [`Session::find`] until the element is there, for up to `timeout`.
    pub(crate) async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.find(css).await {
                Ok(element) => return Ok(element),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// "Take Screenshot" (<https://www.w3.org/TR/webdriver2/#take-screenshot>): the current
    /// window as PNG.
    pub(crate) async fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self.command(Method::GET, "/screenshot", None).await?;
        let encoded = value
            .as_str()
            .context("Take Screenshot answered no image")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(encoded)?)
    }

    /// "Delete Session" (<https://www.w3.org/TR/webdriver2/#delete-session>): closes the
    /// browser.
    pub(crate) async fn close(self) -> Result<()> {
        self.command(Method::DELETE, "", None).await.map(drop)
    }
}

impl Element<'_> {
    /// A command on this element: `path` follows `/element/{id}`.
    async fn command(&self, path: &str, body: Option<Value>) -> Result<()> {
        let path = format!("/element/{}{path}", self.id);
        self.session
            .command(Method::POST, &path, body)
            .await
            .map(drop)
    }

    /// "Element Click" (<https://www.w3.org/TR/webdriver2/#element-click>).
    pub(crate) async fn click(&self) -> Result<()> {
        self.command("/click", None).await
    }

    /// "Element Clear" (<https://www.w3.org/TR/webdriver2/#element-clear>): empties a field.
    pub(crate) async fn clear(&self) -> Result<()> {
        self.command("/clear", None).await
    }

    /// "Element Send Keys" (<https://www.w3.org/TR/webdriver2/#element-send-keys>): types
    /// `text` into the element, key by key.
    pub(crate) async fn send_keys(&self, text: &str) -> Result<()> {
        self.command("/value", Some(json!({ "text": text }))).await
    }
}
