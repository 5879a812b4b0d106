//! Secrets never reach the logs, at any level: the real binary runs at `trace` with a known
//! client secret, through conversations, webhooks (genuine and forged) and refused
//! credentials, and its whole output is searched for the secret and for any token.

use std::process::{Command, Stdio};
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
