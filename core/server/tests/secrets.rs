//! Secrets never reach the logs, at any level: the real binary runs at `trace` with known
//! secrets (LivePerson's client secret, and every channel kind's tokens and signing secrets),
//! through conversations, webhooks (genuine, forged and stale), platform errors, refused
//! deliveries and refused credentials, and its whole output is searched for each secret and
//! for any token.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use switchboard_lp_sim::{SimConfig, Simulator};

const SECRET: &str = "s3cr3t-client-value-9f8e7d6c5b";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_is_ever_logged() {
    let sim = Simulator::start(SimConfig {
        client_secret: SECRET.into(),
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut outputs = Vec::new();
    for secret in [SECRET, "wrong-secret-also-private-123"] {
        let port = free_port();
        sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
        let config = dir.path().join(format!("{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n\
                 [liveperson]\nmode = \"live\"\naccount_id = \"{}\"\nclient_id = \"{}\"\ndomain_api = \"{}\"\n\
                 retry_scale = 0.01\n[channels.web]\nkind = \"webchat\"\n",
                dir.path().join(format!("{port}.db")).display(),
                sim.account_id(),
                sim.client_id(),
                sim.domain_api()
            ),
        )
        .unwrap();
        let log = dir.path().join(format!("{port}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("SWITCHBOARD_LIVEPERSON__CLIENT_SECRET", secret)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join(format!("{port}.out"))).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..400 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // A conversation both ways (with the wrong secret it never gets through: errors logged).
        let session = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let sent = http
            .post(format!("{base}/channels/web/messages"))
            .json(&serde_json::json!({ "session": session, "id": format!("m-{port}-1"), "text": "hello" }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
        if secret == SECRET {
            let entry = sim
                .wait_for_consumer_message("hello", Duration::from_secs(20))
                .await
                .unwrap();
            let conversation = sim
                .conversations()
                .into_iter()
                .find(|c| c.transcript.iter().any(|t| t.event == entry.event))
                .unwrap();
            sim.agent_accept(&conversation.conversation_id).unwrap();
            sim.agent_send_text(&conversation.conversation_id, "hi there")
                .unwrap();
            // Token refused once: the engine logs the refresh.
            sim.revoke_tokens();
            sim.agent_send_text(&conversation.conversation_id, "more")
                .unwrap();
            for _ in 0..400 {
                let events = http
                    .get(format!(
                        "{base}/channels/web/events?session={session}&after=0"
                    ))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if events.contains("more") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // A forged webhook and a malformed one.
        let forged = http
            .post(format!("{base}/webhooks/liveperson"))
            .header("x-liveperson-account-id", sim.account_id())
            .header("x-liveperson-client-id", sim.client_id())
            .header(
                "x-liveperson-signature",
                "sha1=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )
            .body("{\"kind\":\"notification\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401);
        let _ = std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        outputs.push(
            std::fs::read_to_string(&log).unwrap()
                + &std::fs::read_to_string(dir.path().join(format!("{port}.out"))).unwrap(),
        );
    }
    let all = outputs.join("\n");
    assert!(
        all.len() > 10_000,
        "trace logging produced output ({} bytes)",
        all.len()
    );
    assert!(
        all.contains("TRACE") || all.contains("DEBUG"),
        "the logs are at trace level"
    );
    for secret in [SECRET, "wrong-secret-also-private-123"] {
        assert!(!all.contains(secret), "a client secret appears in the logs");
    }
    // JWTs (AppJWT, ConsumerJWS) all begin with a base64 JSON header.
    assert!(!all.contains("eyJ"), "a token appears in the logs");
}

// ---------------------------------------------------------------------------------------------
// Every channel kind at once: known secrets for each, success and error paths for each.

/// The secrets of the second test, each a distinctive string that must never be logged.
const LP_SECRET: &str = "lpclientsecretx7y8z9w0v1u2t3";
const SLACK_SIGNING: &str = "slack-signing-secret-7a8b9c0d1e";
const TG_SECRET_TOKEN: &str = "tg-secret-token_5e6f7a8b9c";
const KANNEL_PASSWORD: &str = "kannel-sendsms-password-3c4d5e";
const KANNEL_TOKEN: &str = "kannel-callback-token-1a2b3c4d5e";
const VONAGE_API_SECRET: &str = "vonage-api-secret-9f8e7d6c";
const VONAGE_SIGNATURE: &str = "vonage-signature-secret-6d5c4b3a";
const VONAGE_KEY: &str = "vkey1234";
const VONAGE_NUMBER: &str = "447700900001";

/// What the minimal Vonage fake saw and is told to answer.
#[derive(Default)]
struct VonageState {
    /// Parameters of each `POST /sms/json`.
    sent: std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>,
    /// Answers for the next calls: an HTTP status, or 200 with a message `status`.
    script: std::sync::Mutex<std::collections::VecDeque<(u16, &'static str)>>,
}

/// A minimal Vonage SMS API (`POST /sms/json`, form or JSON): checks the credentials and
/// answers as scripted (else accepts). The thorough fake lives in `channels/sms/tests`.
async fn start_vonage() -> (String, Arc<VonageState>) {
    async fn sms_json(
        axum::extract::State(state): axum::extract::State<Arc<VonageState>>,
        headers: http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let params: std::collections::HashMap<String, String> = if json {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_default()))
                .collect()
        } else {
            serde_urlencoded::from_bytes(&body).unwrap_or_default()
        };
        state.sent.lock().unwrap().push(params.clone());
        let scripted = state.script.lock().unwrap().pop_front();
        let status = match scripted {
            Some((http_status, _)) if http_status != 200 => {
                return (
                    http::StatusCode::from_u16(http_status).unwrap(),
                    "<html>error</html>",
                )
                    .into_response();
            }
            Some((_, status)) => status,
            None if params.get("api_secret").map(String::as_str) != Some(VONAGE_API_SECRET) => "4",
            None => "0",
        };
        let message = if status == "0" {
            serde_json::json!({ "to": params.get("to"), "message-id": "0A0000000000ABCD", "status": "0" })
        } else {
            serde_json::json!({ "status": status, "error-text": "Bad Credentials" })
        };
        axum::Json(serde_json::json!({ "message-count": "1", "messages": [message] }))
            .into_response()
    }
    let state = Arc::new(VonageState::default());
    let app = axum::Router::new()
        .route("/sms/json", axum::routing::post(sms_json))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), state)
}

/// Vonage's signed webhook parameters (`sha256` HMAC, a timestamp `age_secs` old, a nonce).
fn vonage_signed(
    mut params: Vec<(String, String)>,
    secret: &str,
    age_secs: i64,
) -> Vec<(String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    params.push(("timestamp".into(), (now - age_secs).to_string()));
    params.push(("nonce".into(), uuid_like()));
    let raw: Vec<(Vec<u8>, Vec<u8>)> = params
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    let sig = switchboard_channel_sms::vonage::signature::sign(
        switchboard_channel_sms::SignatureMethod::Sha256,
        secret,
        &raw,
    );
    params.push(("sig".into(), sig));
    params
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "5f0c2a3b-{:04x}-4c5d-8e9f-{:012x}",
        N.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

/// The conversation a consumer's text opened, once it reached LivePerson.
async fn conversation_of(sim: &switchboard_lp_sim::SimHandle, text: &str) -> String {
    let entry = sim
        .wait_for_consumer_message(text, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("`{text}` never reached LivePerson"));
    let conversation = sim
        .conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap()
        .conversation_id;
    sim.agent_accept(&conversation).unwrap();
    conversation
}

/// Every channel kind with known secrets (Slack's bot token and signing secret, Telegram's bot
/// token and secret token, Kannel's password and callback token, Vonage's API secret and
/// signature secret, LivePerson's client secret), the real binary at `trace`: conversations
/// both ways on each, forged and stale requests, platform errors and refused deliveries. No
/// secret (nor a percent-encoded form of one) is anywhere in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_secret_is_ever_logged_on_any_path() {
    use switchboard_testkit::fake_kannel::FakeKannel;
    use switchboard_testkit::fake_slack::{FAKE_BOT_TOKEN, FakeSlack, SlackFailure};
    use switchboard_testkit::fake_telegram::{FAKE_TOKEN, Failure, FakeTelegram};

    let sim = Simulator::start(SimConfig {
        client_secret: LP_SECRET.into(),
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let slack = FakeSlack::start().await;
    let telegram = FakeTelegram::start().await;
    let (vonage_url, vonage) = start_vonage().await;
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("SWITCHBOARD_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("connector log: {}", dir.path().display());
    }
    let port = free_port();
    let sendsms = free_port();
    let base = format!("http://127.0.0.1:{port}");
    sim.set_webhook_endpoint(&format!("{base}/webhooks/liveperson"));
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
[store]
url = "sqlite://{db}"
{liveperson}
[channels.sl]
kind = "slack"
api_base_url = "{slack_api}"
[channels.tg]
kind = "telegram"
api_base_url = "{telegram_api}"
mode = "webhook"
[channels.kannel]
kind = "sms"
gateway = "kannel"
from = "1000"
sendsms_url = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms"
username = "switchboard"
[channels.vonage]
kind = "sms"
gateway = "vonage"
from = "+{VONAGE_NUMBER}"
api_key = "{VONAGE_KEY}"
api_base_url = "{vonage_url}"
signature_method = "sha256"
"#,
            db = dir.path().join("sb.db").display(),
            liveperson = crate::support::liveperson_toml(&sim, 0.01),
            slack_api = slack.api_base,
            telegram_api = telegram.base,
        ),
    )
    .unwrap();
    // Every channel secret comes from the environment, as the docs recommend.
    let env = [
        ("SWITCHBOARD_CHANNELS__SL__BOT_TOKEN", FAKE_BOT_TOKEN),
        ("SWITCHBOARD_CHANNELS__SL__SIGNING_SECRET", SLACK_SIGNING),
        ("SWITCHBOARD_CHANNELS__TG__BOT_TOKEN", FAKE_TOKEN),
        ("SWITCHBOARD_CHANNELS__TG__SECRET_TOKEN", TG_SECRET_TOKEN),
        ("SWITCHBOARD_CHANNELS__KANNEL__PASSWORD", KANNEL_PASSWORD),
        ("SWITCHBOARD_CHANNELS__KANNEL__CALLBACK_TOKEN", KANNEL_TOKEN),
        (
            "SWITCHBOARD_CHANNELS__VONAGE__API_SECRET",
            VONAGE_API_SECRET,
        ),
        (
            "SWITCHBOARD_CHANNELS__VONAGE__SIGNATURE_SECRET",
            VONAGE_SIGNATURE,
        ),
    ];
    let snippet = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sms", "kannel-config", "--instance", "kannel", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .unwrap();
    assert!(
        snippet.status.success(),
        "{}",
        String::from_utf8_lossy(&snippet.stderr)
    );
    let kannel = FakeKannel::start(&String::from_utf8(snippet.stdout).unwrap(), sendsms)
        .await
        .unwrap();
    let log = dir.path().join("switchboard.log");
    let out = dir.path().join("switchboard.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .envs(env)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    struct KillOnDrop<'a>(&'a mut std::process::Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = KillOnDrop(&mut child);
    let http = reqwest::Client::new();
    assert!(
        switchboard_testkit::eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard did not start"
    );
    assert!(
        switchboard_testkit::eventually(30, || telegram.webhook().is_some()).await,
        "no setWebhook"
    );

    // Slack: the URL check, a DM, a forged and a stale request, the agent's answers through a
    // 503, a rate limit and a refusal.
    let events = format!("{base}/channels/sl/events");
    let (status, _) = slack
        .post_signed(
            &events,
            SLACK_SIGNING,
            "application/json",
            br#"{"token":"x","challenge":"c","type":"url_verification"}"#.to_vec(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let dm = FakeSlack::envelope(
        "EvS1",
        FakeSlack::dm(
            "U0CONSUMER",
            "D0DM",
            "hello from slack",
            "1795384800.000100",
        ),
    );
    assert_eq!(slack.send_event(&events, SLACK_SIGNING, &dm).await, 200);
    let body = serde_json::to_vec(&dm).unwrap();
    let (forged, _) = slack
        .post_signed(
            &events,
            "not-the-signing-secret",
            "application/json",
            body.clone(),
            None,
        )
        .await;
    assert_eq!(forged, 401);
    let (stale, _) = slack
        .post_signed(
            &events,
            SLACK_SIGNING,
            "application/json",
            body,
            Some(1_600_000_000),
        )
        .await;
    assert_eq!(stale, 401);
    let slack_conversation = conversation_of(&sim, "hello from slack").await;
    slack.fail_next(&[
        SlackFailure::Unavailable,
        SlackFailure::RateLimited(1),
        SlackFailure::App("invalid_auth"),
    ]);
    for text in ["slack answer 1", "slack answer 2"] {
        sim.agent_send_text(&slack_conversation, text).unwrap();
    }

    // Telegram: an update, a forged one, the agent's answers through a bad gateway and a block.
    telegram
        .push_update(FakeTelegram::text_update(4242, "hello from telegram"))
        .await;
    let forged = http
        .post(format!("{base}/channels/tg/webhook"))
        .header("x-telegram-bot-api-secret-token", "not-the-secret-token")
        .json(&FakeTelegram::text_update(4242, "forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let telegram_conversation = conversation_of(&sim, "hello from telegram").await;
    telegram.fail_next(&[Failure::BadGateway, Failure::Flood(1)]);
    sim.agent_send_text(&telegram_conversation, "telegram answer 1")
        .unwrap();

    // Kannel: a consumer SMS, a forged callback, the agent's answers through an outage.
    kannel
        .send_mo("+15550001111", "1000", "hello from kannel")
        .await
        .unwrap();
    let forged = http
        .get(format!(
            "{base}/channels/kannel/mo?token=not-the-token&from=%2B15550001111&to=1000&text=forged"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let kannel_conversation = conversation_of(&sim, "hello from kannel").await;
    kannel.set_unavailable(true);
    sim.agent_send_text(&kannel_conversation, "kannel answer 1")
        .unwrap();
    assert!(
        switchboard_testkit::eventually(30, || kannel.requests().iter().any(|r| r.status == 503))
            .await,
        "the refused sendsms"
    );
    kannel.set_unavailable(false);

    // Vonage: a signed message, a forged and a stale one, the agent's answers through a 500
    // and a refusal of the credentials.
    let inbound = format!("{base}/channels/vonage/inbound");
    let message = |id: &str, text: &str| -> Vec<(String, String)> {
        vec![
            ("api-key".into(), VONAGE_KEY.into()),
            ("msisdn".into(), "447700900123".into()),
            ("to".into(), VONAGE_NUMBER.into()),
            ("messageId".into(), id.into()),
            ("text".into(), text.into()),
            ("type".into(), "text".into()),
            ("message-timestamp".into(), "2020-01-01 12:00:00".into()),
        ]
    };
    let post_form = |params: Vec<(String, String)>| {
        http.post(&inbound)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(params).unwrap())
            .send()
    };
    let sent = post_form(vonage_signed(
        message("V001", "hello from vonage"),
        VONAGE_SIGNATURE,
        0,
    ))
    .await
    .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    let forged = post_form(vonage_signed(
        message("V002", "forged"),
        "not-the-signature-secret",
        0,
    ))
    .await
    .unwrap();
    assert_eq!(forged.status(), 401);
    // Older than Vonage's 24 hours of retries of one push (the channel takes 25 h).
    let stale = post_form(vonage_signed(
        message("V003", "stale"),
        VONAGE_SIGNATURE,
        26 * 3600,
    ))
    .await
    .unwrap();
    assert_eq!(stale.status(), 401);
    let vonage_conversation = conversation_of(&sim, "hello from vonage").await;
    vonage
        .script
        .lock()
        .unwrap()
        .extend([(500, ""), (200, "4")]);
    sim.agent_send_text(&vonage_conversation, "vonage answer 1")
        .unwrap();
    sim.agent_send_text(&vonage_conversation, "vonage answer 2")
        .unwrap();

    // LivePerson: every token revoked, a forged webhook.
    sim.revoke_tokens();
    sim.agent_send_text(&slack_conversation, "slack answer 3")
        .unwrap();
    let forged = http
        .post(format!("{base}/webhooks/liveperson"))
        .header("x-liveperson-account-id", sim.account_id())
        .header("x-liveperson-client-id", sim.client_id())
        .header(
            "x-liveperson-signature",
            "sha1=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body("{\"kind\":\"notification\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Every platform was reached, through its errors.
    let posted = |text: &str| {
        slack
            .conversation("D0DM")
            .iter()
            .any(|p| p.text.contains(text))
    };
    assert!(
        switchboard_testkit::eventually(60, || posted("slack answer 3")).await,
        "Slack never got the answers"
    );
    assert!(
        switchboard_testkit::eventually(60, || telegram
            .calls("sendMessage")
            .iter()
            .any(|c| c.params["text"] == "telegram answer 1"))
        .await,
        "Telegram never got the answer"
    );
    assert!(
        switchboard_testkit::eventually(60, || kannel.requests().iter().any(|r| r.status == 202
            && r.params.get("text").map(String::as_str) == Some("kannel answer 1")))
        .await,
        "Kannel never got the answer"
    );
    assert!(
        switchboard_testkit::eventually(60, || vonage.sent.lock().unwrap().len() >= 3).await,
        "Vonage never got the answers"
    );

    let _ = Command::new("kill").arg(guard.0.id().to_string()).status();
    let _ = guard.0.wait();
    drop(guard);
    let all = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(&out).unwrap();
    assert!(
        all.contains("TRACE") && all.len() > 10_000,
        "the logs are at trace level ({} bytes)",
        all.len()
    );
    // The error paths were taken: each platform's failures retried or dead-lettered.
    assert!(slack.calls("chat.postMessage").len() >= 4);
    assert!(telegram.calls("sendMessage").len() >= 3);
    assert!(vonage.sent.lock().unwrap().len() >= 3);
    assert!(
        all.matches("will retry").count() >= 6 && all.matches("dead-lettered").count() >= 2,
        "the platforms' failures went through the router's retries and dead letters"
    );
    let (_, tg_after_colon) = FAKE_TOKEN.split_once(':').unwrap();
    for secret in [
        LP_SECRET,
        FAKE_BOT_TOKEN,
        SLACK_SIGNING,
        FAKE_TOKEN,
        tg_after_colon,
        TG_SECRET_TOKEN,
        KANNEL_PASSWORD,
        KANNEL_TOKEN,
        VONAGE_API_SECRET,
        VONAGE_SIGNATURE,
    ] {
        assert!(
            !all.contains(secret),
            "a secret appears in the logs: {secret}"
        );
    }
    assert!(!all.contains("eyJ"), "a token appears in the logs");
}

/// `--log-format json`: every line the connector logs, from start to shutdown, through a
/// conversation and a forged webhook, is one JSON object with its level, time and target (for
/// log shippers), and none carries the client secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let sim = Simulator::start(SimConfig {
        client_secret: LP_SECRET.into(),
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    sim.set_webhook_endpoint(&format!("{base}/webhooks/liveperson"));
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n{}\
             [channels.web]\nkind = \"webchat\"\n",
            dir.path().join("sb.db").display(),
            crate::support::liveperson_toml(&sim, 0.01),
        ),
    )
    .unwrap();
    let log = dir.path().join("switchboard.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let started = switchboard_testkit::eventually(30, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    if !started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("switchboard did not start");
    }
    let sent = http
        .post(format!("{base}/channels/web/messages"))
        .json(&serde_json::json!({ "session": "json-logs-session-1", "id": "json-logs-m1", "text": "hello in json" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let arrived = sim
        .wait_for_consumer_message("hello in json", Duration::from_secs(30))
        .await;
    let forged = http
        .post(format!("{base}/webhooks/liveperson"))
        .header("x-liveperson-account-id", sim.account_id())
        .header("x-liveperson-client-id", sim.client_id())
        .header(
            "x-liveperson-signature",
            "sha1=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let exit = child.wait().unwrap();
    assert!(arrived.is_some(), "the message never reached LivePerson");
    assert_eq!(forged.status(), 401);
    assert!(exit.success(), "switchboard exited with {exit}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let mut messages = Vec::new();
    for line in logged.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(value.get(key).is_some(), "no `{key}`: {line}");
        }
        if let Some(message) = value["message"].as_str() {
            messages.push(message.to_owned());
        }
    }
    for expected in [
        "switchboard listening",
        "LivePerson webhook refused",
        "switchboard stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "no `{expected}` among {} JSON lines",
            messages.len()
        );
    }
    assert!(
        !logged.contains(LP_SECRET),
        "the client secret is in the logs"
    );
}

// ---------------------------------------------------------------------------------------------
// `check`, `run` and failing connects at debug level, with secrets given in every way.

/// Distinctive secrets of the test below; none may be printed.
const PG_PASSWORD: &str = "Pg-Pass-Distinct-8e7f";
const FILE_CLIENT_SECRET: &str = "client-secret-from-file-3b2a1c";
const SLACK_BOT: &str = "xoxb-distinct-bot-token-5d4c";
const SLACK_SIGNING_2: &str = "slack-signing-distinct-0f1e2d3c";
const TG_BOT: &str = "424242:distinct-telegram-bot-token";
const SMS_PASSWORD: &str = "sms-sendsms-pass-distinct-7a6b";
const SMS_TOKEN: &str = "sms-callback-token-distinct-9c8d";

/// The binary at `RUST_LOG=debug` through `check` (a valid file, then a mistyped store URL),
/// `run` with a PostgreSQL store that refuses the connection, and `run` against a LivePerson
/// and channel platforms that cannot be reached: no password, client secret or channel
/// token in anything it prints, the store URL shown masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_run_and_failing_connects_print_no_secret_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port(); // nothing listens here
    let secret_file = dir.path().join("client_secret");
    std::fs::write(&secret_file, format!("{FILE_CLIENT_SECRET}\n")).unwrap();
    let bot_file = dir.path().join("slack_bot");
    std::fs::write(&bot_file, SLACK_BOT).unwrap();
    let config = |store: &str, port: u16| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [store]\nurl = \"{store}\"\n\
             [liveperson]\nmode = \"live\"\naccount_id = \"12345678\"\nclient_id = \"client-1\"\n\
             client_secret_file = \"{secret}\"\ndomain_api = \"http://127.0.0.1:{closed}\"\n\
             retry_scale = 0.01\n\
             [channels.sl]\nkind = \"slack\"\napi_base_url = \"http://127.0.0.1:{closed}/api\"\n\
             bot_token_file = \"{bot}\"\nsigning_secret = \"{SLACK_SIGNING_2}\"\n\
             [channels.tg]\nkind = \"telegram\"\napi_base_url = \"http://127.0.0.1:{closed}\"\n\
             mode = \"polling\"\npoll_timeout_secs = 1\n\
             [channels.sms]\nkind = \"sms\"\ngateway = \"kannel\"\nfrom = \"1000\"\n\
             sendsms_url = \"http://127.0.0.1:{closed}/cgi-bin/sendsms\"\nusername = \"sb\"\n",
            secret = secret_file.display(),
            bot = bot_file.display(),
        )
    };
    let secrets_env = [
        ("SWITCHBOARD_CHANNELS__TG__BOT_TOKEN", TG_BOT),
        ("SWITCHBOARD_CHANNELS__SMS__PASSWORD", SMS_PASSWORD),
        ("SWITCHBOARD_CHANNELS__SMS__CALLBACK_TOKEN", SMS_TOKEN),
    ];
    let run = |args: &[&str], file: &std::path::Path, wait: Option<Duration>| {
        let mut child = crate::support::switchboard_command()
            .args(args)
            .arg(file)
            .current_dir(dir.path())
            .env("RUST_LOG", "debug")
            .envs(secrets_env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(wait) = wait {
            // Running: let the failing connects happen, then stop it.
            std::thread::sleep(wait);
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let write = |name: &str, toml: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        path
    };
    let pg = format!("postgres://sb:{PG_PASSWORD}@127.0.0.1:{closed}/switchboard");
    let mut printed = Vec::new();

    let valid = write("valid.toml", config(&pg, free_port()));
    let checked = run(&["check", "--config"], &valid, None);
    assert!(checked.contains("configuration is valid"), "{checked}");
    assert!(
        checked.contains(&format!(
            "store: postgres://sb:***@127.0.0.1:{closed}/switchboard"
        )),
        "{checked}"
    );
    printed.push(checked);
    let mistyped = write(
        "mistyped.toml",
        config(&pg.replace("postgres://", "postgress://"), free_port()),
    );
    let refused = run(&["check", "--config"], &mistyped, None);
    assert!(refused.contains("store.url"), "{refused}");
    printed.push(refused);
    let no_database = run(&["run", "--config"], &valid, None);
    assert!(
        no_database.contains("cannot connect to the database"),
        "{no_database}"
    );
    printed.push(no_database);
    let sqlite = format!("sqlite://{}", dir.path().join("sb.db").display());
    let unreachable = write("unreachable.toml", config(&sqlite, free_port()));
    let running = run(
        &["run", "--config"],
        &unreachable,
        Some(Duration::from_secs(4)),
    );
    assert!(running.contains("switchboard listening"), "{running}");
    assert!(running.contains("DEBUG"), "debug logging is on: {running}");
    printed.push(running);

    let all = printed.join("\n");
    for secret in [
        PG_PASSWORD,
        FILE_CLIENT_SECRET,
        SLACK_BOT,
        SLACK_SIGNING_2,
        TG_BOT,
        SMS_PASSWORD,
        SMS_TOKEN,
    ] {
        assert!(!all.contains(secret), "`{secret}` was printed:\n{all}");
    }
}
