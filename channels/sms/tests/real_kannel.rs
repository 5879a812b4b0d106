//! Against the real Kannel 1.4.5 (Debian `kannel` + `kannel-extras`): bearerbox + smsbox + the
//! `fakesmsc` SMSC on loopback, configured with our own `kannel_config_snippet`.
//!
//! Skipped (with a message) when Kannel is not installed, except under `CI=true`, where a
//! missing Kannel fails the test.

use switchboard_channel_sms::kannel_config_snippet;
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{Inbound, MessageRef, Outbound, OutboundEvent, ReceiptStatus};
use switchboard_testkit::kannel::RealKannel;

use crate::support::{CallbackServer, eventually, free_port, settings, setup};

const CONSUMER: &str = "+15551234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kannel_mt_mo_dlr_and_menu_choice() {
    let sendsms = free_port();
    let callbacks = CallbackServer::start().await;
    let config = settings(
        &format!("http://127.0.0.1:{sendsms}/cgi-bin/sendsms"),
        &callbacks.base,
        serde_json::json!({ "max_parts": 3 }),
    );
    let snippet = kannel_config_snippet(&config).unwrap();
    let Some(kannel) = RealKannel::start_or_skip(&snippet, sendsms).await.unwrap() else {
        return;
    };

    let s = setup(&config).await;
    callbacks.attach(&s);
    let to = s.ctx.consumer(CONSUMER);
    let got = |needle: &str| kannel.mt_lines().iter().any(|l| l.contains(needle));

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
        eprintln!("{}", kannel.logs());
        panic!(
            "MT arrived: {arrived}, receipt: {receipt}; smsc: {:?}; callbacks: {:?}; events: {:?}",
            kannel.mt_lines(),
            callbacks.log(),
            s.sink.events()
        );
    }

    // MO (GSM text with & and =) reaches submit through the get-url, with Kannel's id.
    kannel
        .send_mo(CONSUMER, "1000", "Hi there & welcome=1")
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
        eprintln!("{}", kannel.logs());
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
    kannel
        .send_mo_ucs2(CONSUMER, "1000", ucs2_text)
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
    let before = kannel.mt_lines().len();
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
    let parts_ok = eventually(15, || kannel.mt_lines().len() >= before + 4).await;
    assert!(parts_ok, "smsc output: {:?}", &kannel.mt_lines()[before..]);

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
    kannel.send_mo(CONSUMER, "1000", "2").await.unwrap();
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
}
