//! What the binary does when it is told little: `run` with nothing to run, `run` with real
//! channels and no LivePerson mode, the embedded simulator's webhook secret, and `demo` on a
//! port that is taken. Each is safe, says what to do, and exits non-zero.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::SignatureAlgorithm;
use switchboard_testkit::{eventually, free_port};

use crate::support::switchboard_command as switchboard;

/// Runs `cmd` to its end, or kills it after 30 s (what the code before these fixes did: it
/// started serving), returning what it printed.
fn finish(cmd: &mut std::process::Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn run_without_a_config_file_exits_2_and_points_at_demo() {
    let dir = tempfile::tempdir().unwrap();
    let out = finish(switchboard().arg("run").current_dir(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for said in [
        "SWITCHBOARD_CONFIG",
        "./switchboard.toml",
        "switchboard demo",
        "--config",
    ] {
        assert!(err.contains(said), "`{said}` not in: {err}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created: no store"
    );
}

/// The file is found in `SWITCHBOARD_CONFIG`, then as ./switchboard.toml (shown by the
/// problem it holds, named with its path).
#[test]
fn run_reads_switchboard_config_then_the_file_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let named = dir.path().join("named.toml");
    std::fs::write(&named, "[server]\nlistn = 1\n").unwrap();
    let out = finish(
        switchboard()
            .arg("run")
            .env("SWITCHBOARD_CONFIG", &named)
            .current_dir(dir.path()),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listn") && err.contains("named.toml"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("switchboard.toml"),
        "[store]\nurl = \"x\"\n",
    )
    .unwrap();
    let out = finish(switchboard().arg("run").current_dir(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store.url") && err.contains("switchboard.toml"),
        "{err}"
    );
}

/// Real channels with no `liveperson.mode` used to run against the embedded simulator, where
/// no consumer's message reaches an agent: now `run` and `check` refuse, naming the key and
/// the file.
#[test]
fn run_with_channels_and_no_mode_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    let port = free_port();
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[channels.web]\nkind = \"webchat\"\n"),
    )
    .unwrap();
    for command in ["run", "check"] {
        let out = finish(
            switchboard()
                .args([command, "--config"])
                .arg(&path)
                .current_dir(dir.path()),
        );
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("`liveperson.mode`"), "{command}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "{command}: {err}"
        );
    }
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

/// Before, the embedded simulator signed its webhooks with a secret written in the source:
/// anyone could sign an "agent" message into a consumer's chat. Now it is random per start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_simulators_webhooks_cannot_be_signed_from_outside() {
    /// The secret the simulator used by default until it was random.
    const OLD_CONSTANT: &str = "q3v8k2m9x7p4w1z6t5r0n8j2hc";
    let dir = tempfile::tempdir().unwrap();
    let (port, sim_port) = (free_port(), free_port());
    let path = dir.path().join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n\
             [liveperson]\nmode = \"simulator\"\nsimulator_listen = \"127.0.0.1:{sim_port}\"\n\
             [channels.web]\nkind = \"webchat\"\npoll_secs = 1\n",
            dir.path().join("sb.db").display()
        ),
    )
    .unwrap();
    let mut child = switchboard()
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let sim = format!("http://127.0.0.1:{sim_port}");
    let http = reqwest::Client::new();
    let up = eventually(30, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "switchboard did not start");

    // A consumer writes; the agent answers: a genuine notification to copy.
    let session = "4b1c2d3e-0000-4000-8000-00000000abcd";
    let sent = http
        .post(format!("{base}/channels/web/messages"))
        .json(&json!({ "session": session, "id": "m-000001", "text": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let mut conversation = None;
    for _ in 0..400 {
        let all: Value = get_json(&http, format!("{sim}/sim/conversations")).await;
        conversation = all[0]["conversation_id"].as_str().map(str::to_owned);
        if conversation.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conversation = conversation.expect("the message reached the simulator");
    let conv = format!("{sim}/sim/conversations/{conversation}");
    http.post(format!("{conv}/accept")).send().await.unwrap();
    http.post(format!("{conv}/messages"))
        .json(&json!({ "text": "genuine answer" }))
        .send()
        .await
        .unwrap();
    let events = |after: u64| {
        let http = http.clone();
        let url = format!("{base}/channels/web/events?session={session}&after={after}");
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // The page's history answers at once (it holds the consumer's own "hello"), so the poll
    // is paced: the agent's answer comes through the webhook a moment later.
    let mut seen = String::new();
    for _ in 0..400 {
        seen = events(0).await;
        if seen.contains("genuine answer") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains("genuine answer"), "{seen}");
    let deliveries: Value = get_json(&http, format!("{sim}/sim/webhooks")).await;
    let genuine = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["body"].clone())
        .find(|b| b.to_string().contains("genuine answer"))
        .expect("the simulator logged its notification");

    // The same notification with another text and later sequences, signed with the old
    // constant, as an outsider would.
    let mut forged: Value = serde_json::from_str(
        &genuine
            .to_string()
            .replace("genuine answer", "FORGED: send your card number"),
    )
    .unwrap();
    bump_sequences(&mut forged);
    let body = forged.to_string();
    let info: Value = get_json(&http, format!("{sim}/sim")).await;
    let answer = http
        .post(format!("{base}/webhooks/liveperson"))
        .header("content-type", "application/json")
        .header(
            "x-liveperson-account-id",
            info["account_id"].as_str().unwrap(),
        )
        .header(
            "x-liveperson-client-id",
            info["client_id"].as_str().unwrap(),
        )
        .header(
            "x-liveperson-signature",
            switchboard_lp_sim::signature_header(
                OLD_CONSTANT,
                body.as_bytes(),
                SignatureAlgorithm::Sha1,
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shown = events(0).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !shown.contains("FORGED"),
        "a forged agent message reached the chat: {shown}"
    );
    assert_eq!(status, 401, "the forged notification was taken");
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Adds 1000 to every `sequence` in a notification (so it is not a duplicate of the one it
/// was copied from).
fn bump_sequences(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "sequence"
                    && let Some(n) = v.as_u64()
                {
                    *v = json!(n + 1000);
                } else {
                    bump_sequences(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bump_sequences),
        _ => {}
    }
}

/// `demo` on a taken port (its own, or the agent console's next to it) prints no URLs, says
/// which `--listen` to use and that the console takes the next port, and exits 1.
#[test]
fn demo_on_a_taken_port_prints_no_banner_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    for taken_offset in [0u16, 1] {
        let (listener, port) = loop {
            let base = free_port();
            if base == u16::MAX {
                continue;
            }
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", base + taken_offset)) {
                break (l, base);
            }
        };
        let out = finish(
            switchboard()
                .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
                .current_dir(dir.path()),
        );
        drop(listener);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("http://"),
            "a banner before listening: {stdout}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--listen 127.0.0.1:PORT"), "{err}");
        assert!(err.contains("PORT+1"), "{err}");
        assert!(err.contains(&format!("{}", port + taken_offset)), "{err}");
    }
}
