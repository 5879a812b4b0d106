//! Against the real Kannel 1.4.5 (Debian `kannel` + `kannel-extras`): bearerbox + smsbox + the
//! `fakesmsc` SMSC on loopback, configured with our own `kannel_config_snippet`.
//!
//! Skipped (with a message) when Kannel is not installed, except under `CI=true`, where a
//! missing Kannel fails the test.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_channel_sms::kannel_config_snippet;
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{Inbound, MessageRef, Outbound, OutboundEvent, ReceiptStatus};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{CallbackServer, eventually, free_port, pct, settings, setup};

const BEARERBOX: &str = "/usr/sbin/bearerbox";
const SMSBOX: &str = "/usr/sbin/smsbox";
const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";
const CONSUMER: &str = "+15551234567";

fn kannel_installed() -> bool {
    [BEARERBOX, SMSBOX, FAKESMSC]
        .iter()
        .all(|p| Path::new(p).exists())
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

fn spawn_logged(cmd: &mut Command, lines: Arc<Mutex<Vec<String>>>) -> Child {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    for out in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
    }
    child
}

fn dump_logs(dir: &Path) {
    for name in ["bearerbox.log", "smsbox.log", "access.log"] {
        if let Ok(s) = std::fs::read_to_string(dir.join(name)) {
            let tail: Vec<&str> = s.lines().rev().take(40).collect();
            eprintln!("--- {name} (last lines, newest first) ---");
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kannel_mt_mo_dlr_and_menu_choice() {
    if !kannel_installed() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Kannel is required under CI=true: apt-get install -y kannel kannel-extras");
        }
        eprintln!(
            "skipping: install kannel kannel-extras (apt-get install -y kannel kannel-extras)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (admin, smsbox_port, sendsms, smsc) = (free_port(), free_port(), free_port(), free_port());

    let callbacks = CallbackServer::start().await;
    let config = settings(
        &format!("http://127.0.0.1:{sendsms}/cgi-bin/sendsms"),
        &callbacks.base,
        serde_json::json!({ "max_parts": 3 }),
    );
    let snippet = kannel_config_snippet(&config).unwrap();
    assert!(snippet.contains(&format!("sendsms-port = {sendsms}")));
    let log = |n: &str| dir.path().join(n).display().to_string();
    // The snippet's smsbox group gets the keys it says to add (bearerbox-host) plus test knobs.
    let snippet = snippet.replace(
        "group = smsbox\n",
        &format!(
            "group = smsbox\nbearerbox-host = 127.0.0.1\nbearerbox-port = {smsbox_port}\n\
             sendsms-interface = 127.0.0.1\nlog-file = \"{}\"\nlog-level = 0\naccess-log = \"{}\"\n",
            log("smsbox.log"),
            log("access.log")
        ),
    );
    let conf = format!(
        "group = core\nadmin-port = {admin}\nadmin-interface = 127.0.0.1\nadmin-password = adm1n\n\
         smsbox-port = {smsbox_port}\nsmsbox-interface = 127.0.0.1\nbox-allow-ip = 127.0.0.1\n\
         dlr-storage = internal\nlog-file = \"{}\"\nlog-level = 0\n\n\
         group = smsc\nsmsc = fake\nsmsc-id = fake1\nport = {smsc}\nconnect-allow-ip = 127.0.0.1\n\n\
         {snippet}",
        log("bearerbox.log")
    );
    let conf_path = dir.path().join("kannel.conf");
    std::fs::write(&conf_path, &conf).unwrap();

    let quiet = Arc::new(Mutex::new(Vec::new()));
    let _bearerbox = spawn_logged(Command::new(BEARERBOX).arg(&conf_path), quiet.clone());
    if !wait_port(admin, 20).await || !wait_port(smsc, 20).await {
        dump_logs(dir.path());
        panic!("bearerbox did not start: {:?}", quiet.lock().unwrap());
    }
    let _smsbox = spawn_logged(Command::new(SMSBOX).arg(&conf_path), quiet.clone());
    if !wait_port(sendsms, 20).await {
        dump_logs(dir.path());
        panic!("smsbox did not start");
    }
    let smsc_out = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut fakesmsc = spawn_logged(
        Command::new(FAKESMSC).args(["-H", "127.0.0.1", "-r", &smsc.to_string()]),
        smsc_out.clone(),
    );
    let mut stdin = fakesmsc.stdin.take().unwrap();
    // Let the fake SMSC connect, so MTs are "Accepted" rather than queued.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let s = setup(&config).await;
    callbacks.attach(&s);
    let to = s.ctx.consumer(CONSUMER);
    let got = |needle: &str| {
        smsc_out
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("Got message") && l.contains(needle))
    };

    // MT (GSM-7) reaches the SMSC; Kannel's DLRs (8 then 1) come back as one receipt.
    s.channel
        .deliver(
            &to,
            &OutboundEvent::new("out-42", Outbound::text("Hello from the agent")),
        )
        .await
        .expect("Kannel accepted the MT");
    let arrived = eventually(15, || got("Hello")).await;
    let receipt = eventually(15, || {
        s.sink.events().iter().any(|e| {
            e.body
                == Inbound::Receipt {
                    status: ReceiptStatus::Delivered,
                    messages: vec![MessageRef::new("out-42")],
                }
                && e.consumer.id == CONSUMER
        })
    })
    .await;
    if !arrived || !receipt {
        dump_logs(dir.path());
        panic!(
            "MT arrived: {arrived}, receipt: {receipt}; smsc: {:?}; callbacks: {:?}; events: {:?}",
            smsc_out.lock().unwrap(),
            callbacks.log(),
            s.sink.events()
        );
    }

    // MO (GSM text with & and =) reaches submit through the get-url, with Kannel's id.
    stdin
        .write_all(format!("{CONSUMER} 1000 text Hi there & welcome=1\n").as_bytes())
        .await
        .unwrap();
    let mo = eventually(15, || {
        s.sink
            .events()
            .iter()
            .any(|e| e.body == Inbound::text("Hi there & welcome=1"))
    })
    .await;
    if !mo {
        dump_logs(dir.path());
        panic!("no MO; callbacks: {:?}", callbacks.log());
    }
    let ev = s
        .sink
        .events()
        .into_iter()
        .find(|e| e.body == Inbound::text("Hi there & welcome=1"))
        .unwrap();
    assert_eq!(ev.consumer.id, CONSUMER);
    assert!(
        ev.platform_id.as_deref().is_some_and(|id| id.len() >= 8),
        "{ev:?}"
    );
    assert!(ev.occurred_at_ms.is_some());

    // UCS-2 MO with a line break and an emoji arrives exactly (raw UTF-16BE via `%b`).
    let ucs2_text = "Привет 👋\nвторая строка";
    let utf16: Vec<u8> = ucs2_text
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    stdin
        .write_all(format!("{CONSUMER} 1000 ucs2 {}\n", pct(&utf16)).as_bytes())
        .await
        .unwrap();
    let ucs2_ok = eventually(15, || {
        s.sink
            .events()
            .iter()
            .any(|e| e.body == Inbound::text(ucs2_text))
    })
    .await;
    assert!(
        ucs2_ok,
        "UCS-2 MO; callbacks: {:?}; events: {:?}",
        callbacks.log(),
        s.sink.events()
    );

    // UCS-2 MT, and a long GSM MT that Kannel concatenates into 3 parts (within max_parts).
    let before = smsc_out.lock().unwrap().len();
    s.channel
        .deliver(
            &to,
            &OutboundEvent::new("out-43", Outbound::text("Привет 👋")),
        )
        .await
        .unwrap();
    let long = "word ".repeat(80); // 400 septets: 3 parts of <= 153
    s.channel
        .deliver(&to, &OutboundEvent::new("out-44", Outbound::text(long)))
        .await
        .unwrap();
    let parts_ok = eventually(15, || {
        smsc_out.lock().unwrap()[before..]
            .iter()
            .filter(|l| l.contains("Got message"))
            .count()
            >= 4
    })
    .await;
    assert!(
        parts_ok,
        "smsc output: {:?}",
        &smsc_out.lock().unwrap()[before..]
    );

    // A numbered menu, answered with "2", becomes a choice of the second reply button.
    let reply = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
        action: ButtonAction::Reply,
    };
    let menu =
        RichContent::with_quick_replies("Pick one", vec![reply("yes", "Yes"), reply("no", "No")]);
    s.channel
        .deliver(
            &to,
            &OutboundEvent::new("out-45", Outbound::Rich { content: menu }),
        )
        .await
        .unwrap();
    stdin
        .write_all(format!("{CONSUMER} 1000 text 2\n").as_bytes())
        .await
        .unwrap();
    let choice = eventually(15, || {
        s.sink.events().iter().any(|e| {
            e.body
                == Inbound::Choice {
                    message: MessageRef::new("out-45"),
                    choice: "no".into(),
                }
        })
    })
    .await;
    assert!(choice, "events: {:?}", s.sink.events());

    drop(stdin);
    let _ = fakesmsc.kill().await;
}
