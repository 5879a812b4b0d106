//! `switchboard trace` through the real binary: the timeline of an SMS through a LivePerson
//! outage (attempts with 503, then sent and confirmed by LivePerson's echo), of an agent
//! message delivered to Telegram and of one dead-lettered there; a key matching nothing
//! exits 1, a store that cannot be opened exits 2 without its password.

mod harness;

use std::time::Duration;

use serde_json::Value;
use switchboard_lp_sim::PathClass;
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, Failure, FakeTelegram};
use switchboard_testkit::{eventually, free_port};

use self::harness::{
    event, events_when, fast_simulator, kannel_for, sms_config, stages, start_connector,
    store_only_config, trace,
};
use crate::sms::conversation_of;
use crate::support::{run_binary, switchboard_command};

const CONSUMER: &str = "+15551234567";
const CHAT: i64 = 555_000_222;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_through_a_liveperson_outage_is_traced_from_receipt_to_echo() {
    let sim = fast_simulator().await;
    let (port, sendsms) = (free_port(), free_port());
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let setup = sms_config(&sim, port, sendsms, None);
    let kannel = kannel_for(&setup.1, sendsms).await;
    let connector = start_connector(setup, port).await;
    let config = connector.config.clone();

    // LivePerson is down for the first two tries at opening the conversation.
    sim.fail_next(PathClass::Conversation, 2, 503, None);
    kannel
        .send_mo(CONSUMER, "1000", "where is my parcel?")
        .await
        .unwrap();
    let arrived = sim
        .wait_for_consumer_message("where is my parcel", Duration::from_secs(60))
        .await;
    assert!(arrived.is_some(), "the SMS never reached LivePerson");

    let address = format!("sms:{CONSUMER}");
    let events = events_when(&config, &address, |events| {
        stages(events, "to_liveperson").contains(&"confirmed")
    })
    .await;
    let to_lp: Vec<&Value> = events
        .iter()
        .filter(|e| e["direction"] == "to_liveperson")
        .collect();
    let names = stages(&events, "to_liveperson");
    assert_eq!(&names[..2], ["received", "stored"], "{events:#?}");
    let attempts: Vec<&&Value> = to_lp.iter().filter(|e| e["stage"] == "attempt").collect();
    assert_eq!(attempts.len(), 3, "{events:#?}");
    for failed in &attempts[..2] {
        assert_eq!(failed["detail"]["outcome"], "retry");
        assert_eq!(failed["detail"]["status"], 503);
        assert!(failed["detail"]["retry_in_ms"].is_u64());
        assert_eq!(failed["detail"]["target"], "liveperson");
    }
    assert_eq!(attempts[2]["detail"]["outcome"], "delivered");
    let sent = to_lp.iter().find(|e| e["stage"] == "sent").unwrap();
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    assert!(sent["detail"]["sequence"].is_i64(), "{sent}");
    let confirmed = to_lp.iter().find(|e| e["stage"] == "confirmed").unwrap();
    assert_eq!(confirmed["conversation_id"], conversation.as_str());
    assert_eq!(confirmed["detail"]["sequence"], sent["detail"]["sequence"]);
    let received = to_lp[0];
    assert_eq!(received["channel"], "sms");
    assert_eq!(received["detail"]["duplicate"], false);
    let platform_id = received["platform_id"].as_str().unwrap().to_owned();
    for e in &events {
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(!e["instance"].as_str().unwrap().is_empty());
    }
    // Oldest first.
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The same event by its Kannel id and by its conversation; the table for the docs.
    let by_id = events_when(&config, &platform_id, |e| !e.is_empty()).await;
    assert_eq!(stages(&by_id, "to_liveperson"), names);
    let by_conversation = events_when(&config, &conversation, |e| !e.is_empty()).await;
    assert!(stages(&by_conversation, "to_liveperson").contains(&"received"));

    // The agent answers: the handset's delivery report confirms it.
    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, "It ships today.")
        .unwrap();
    let events = events_when(&config, &address, |events| {
        stages(events, "to_channel").contains(&"confirmed")
    })
    .await;
    let to_channel = stages(&events, "to_channel");
    for stage in ["received", "stored", "attempt", "sent", "confirmed"] {
        assert!(to_channel.contains(&stage), "{stage} missing: {events:#?}");
    }
    let (code, table, _) = trace(&config, &address, false);
    assert_eq!(code, 0);
    assert!(table.starts_with("at "), "{table}");
    println!("switchboard trace --config switchboard.toml {address}\n{table}");

    // Nothing for an unknown key: exit 1, and a message saying what a key is.
    let (code, out, err) = trace(&config, "no-such-message", false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no event found for `no-such-message`"),
        "{err}"
    );
    drop(connector);
}

/// Two instances sharing one PostgreSQL store: the SMS arrives at one, LivePerson's webhooks
/// at the other, and the trace (read through either) says which instance did what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_each_appear_in_the_trace() {
    let Some((admin, schema)) = crate::sms::postgres_schema("sb_trace").await else {
        return;
    };
    let separator = if admin.contains('?') { '&' } else { '?' };
    let store = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
    let sim = fast_simulator().await;
    let (port_a, port_b, sendsms) = (free_port(), free_port(), free_port());
    let setup_a = sms_config(&sim, port_a, sendsms, Some(&store));
    let setup_b = sms_config(&sim, port_b, sendsms, Some(&store));
    // Kannel calls A; LivePerson's webhooks go to B.
    let kannel = kannel_for(&setup_a.1, sendsms).await;
    let a = start_connector(setup_a, port_a).await;
    let b = start_connector(setup_b, port_b).await;
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port_b}/webhooks/liveperson"));

    sim.fail_next(PathClass::Conversation, 2, 503, None);
    kannel
        .send_mo(CONSUMER, "1000", "two instances")
        .await
        .unwrap();
    let conversation = conversation_of(&sim, "two instances")
        .await
        .expect("the SMS reached LivePerson");
    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, "answer through B")
        .unwrap();

    let address = format!("sms:{CONSUMER}");
    // Complete once the delivery report's ACCEPT reached LivePerson, the last step.
    let complete = |events: &[Value]| {
        stages(events, "to_liveperson").contains(&"confirmed")
            && stages(events, "to_channel").contains(&"confirmed")
            && events
                .iter()
                .any(|e| e["stage"] == "sent" && e["detail"]["kind"] == "accept_status")
    };
    let events = events_when(&b.config, &address, complete).await;
    let instance_of = |direction: &str, stage: &str| -> String {
        event(&events, direction, stage)
            .and_then(|e| e["instance"].as_str())
            .unwrap_or_else(|| panic!("no {direction} {stage}: {events:#?}"))
            .to_owned()
    };
    let (pid_a, pid_b) = (format!(":{}", a.pid()), format!(":{}", b.pid()));
    assert!(
        instance_of("to_liveperson", "received").ends_with(&pid_a),
        "{events:#?}"
    );
    assert!(
        instance_of("to_channel", "received").ends_with(&pid_b),
        "{events:#?}"
    );
    // LivePerson's echo came through B's webhook, for the event A received.
    assert!(
        instance_of("to_liveperson", "confirmed").ends_with(&pid_b),
        "{events:#?}"
    );
    let attempts = events
        .iter()
        .filter(|e| e["direction"] == "to_liveperson" && e["stage"] == "attempt")
        .filter(|e| e["detail"]["status"] == 503)
        .count();
    assert_eq!(attempts, 2, "{events:#?}");
    for e in &events {
        let instance = e["instance"].as_str().unwrap();
        assert!(
            instance.ends_with(&pid_a) || instance.ends_with(&pid_b),
            "{e}"
        );
    }
    // Read through A: the same timeline.
    let through_a = events_when(&a.config, &address, complete).await;
    assert_eq!(through_a, events);
    let (_, table, _) = trace(&a.config, &address, false);
    println!("{table}");
    drop((a, b));
    crate::sms::drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_messages_to_telegram_are_traced_delivered_or_dead_lettered() {
    let sim = fast_simulator().await;
    let fake = FakeTelegram::start().await;
    let channel = format!(
        "[channels.tg]\nkind = \"telegram\"\nbot_token = \"{FAKE_TOKEN}\"\napi_base_url = \"{}\"\nmode = \"polling\"\npoll_timeout_secs = 1\n",
        fake.base
    );
    let running = run_binary(&sim, &channel, &[]).await;
    let config = running.config_path();
    fake.push_update(FakeTelegram::text_update(CHAT, "hello from telegram"))
        .await;
    let conversation = conversation_of(&sim, "hello from telegram")
        .await
        .expect("the Telegram message reached LivePerson");
    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, "delivered answer")
        .unwrap();
    let address = format!("tg:{CHAT}");
    let events = events_when(&config, &address, |events| {
        stages(events, "to_channel").contains(&"sent")
    })
    .await;
    let sent = event(&events, "to_channel", "sent").unwrap();
    assert_eq!(sent["channel"], "tg");
    assert_eq!(sent["conversation_id"], conversation.as_str());
    let message_id = sent["platform_id"]
        .as_str()
        .expect("Telegram's message_id")
        .to_owned();
    // By Telegram's message_id: the whole agent event, from the webhook to the send.
    let by_id = events_when(&config, &message_id, |e| !e.is_empty()).await;
    let names = stages(&by_id, "to_channel");
    assert_eq!(
        names,
        ["received", "stored", "attempt", "sent"],
        "{by_id:#?}"
    );
    assert_eq!(by_id[2]["detail"]["outcome"], "delivered");

    // The consumer's message by its `update_id`.
    let received = event(&events, "to_liveperson", "received").unwrap();
    let update_id = received["platform_alias"]
        .as_str()
        .expect("the update_id")
        .to_owned();
    assert_eq!(received["platform_id"], format!("tg:{update_id}").as_str());
    let by_update = events_when(&config, &update_id, |events| {
        stages(events, "to_liveperson").contains(&"sent")
    })
    .await;
    assert!(
        by_update.iter().all(|e| e["direction"] == "to_liveperson"),
        "{by_update:#?}"
    );

    // The consumer blocked the bot: the next answer is dead-lettered, with the reason.
    fake.fail_next(&[Failure::Blocked]);
    sim.agent_send_text(&conversation, "never arrives").unwrap();
    let events = events_when(&config, &address, |events| {
        stages(events, "to_channel").contains(&"dead_lettered")
    })
    .await;
    let dead = events
        .iter()
        .find(|e| e["stage"] == "dead_lettered")
        .unwrap();
    assert!(
        dead["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("blocked"),
        "{dead}"
    );
    let attempt = events
        .iter()
        .rfind(|e| e["stage"] == "attempt" && e["direction"] == "to_channel")
        .unwrap();
    assert_eq!(attempt["detail"]["outcome"], "dead_letter");
    assert_eq!(attempt["detail"]["status"], 403);

    // The operator requeues it (the block was once): requeued, then sent.
    let list = switchboard_command()
        .args(["deadletters", "list", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let letter: Value = serde_json::from_str(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .next()
            .expect("a dead letter"),
    )
    .unwrap();
    let id = letter["id"].as_i64().unwrap().to_string();
    let retried = switchboard_command()
        .args(["deadletters", "retry", "--config"])
        .arg(&config)
        .arg(&id)
        .output()
        .unwrap();
    assert!(retried.status.success(), "{retried:?}");
    let event_id = dead["platform_id"].as_str().unwrap().to_owned();
    let again = events_when(&config, &event_id, |events| {
        let names = stages(events, "to_channel");
        names.contains(&"requeued") && names.iter().filter(|s| **s == "sent").count() == 1
    })
    .await;
    let names = stages(&again, "to_channel");
    let requeued = names.iter().position(|s| *s == "requeued").unwrap();
    assert!(names[..requeued].contains(&"dead_lettered"), "{again:#?}");
    assert_eq!(names.last(), Some(&"sent"), "{again:#?}");
    let requeue = again.iter().find(|e| e["stage"] == "requeued").unwrap();
    assert!(
        requeue["instance"].as_str().unwrap().ends_with("(cli)"),
        "{requeue}"
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_exits_2_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = store_only_config(
        &dir,
        &format!("url = \"postgres://bob:s3cr3t-pw@127.0.0.1:{port}/nothing\""),
    );
    let (code, out, err) = trace(&config, "sms:+15550000000", false);
    assert_eq!(code, 2, "{out}{err}");
    assert!(!err.contains("s3cr3t-pw"), "{err}");
    assert!(
        err.contains("cannot open the store at `postgres://bob:***@127.0.0.1"),
        "{err}"
    );
}

/// A mistyped SQLite path is not a new, empty store: exit 2, nothing created.
#[test]
fn a_missing_sqlite_file_exits_2_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo").join("sb.db");
    let config = store_only_config(&dir, &format!("url = \"sqlite://{}\"", db.display()));
    let (code, _, err) = trace(&config, "sms:+15550000000", false);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no store at"), "{err}");
    assert!(!db.exists() && !db.parent().unwrap().exists());
}

#[tokio::test]
async fn with_tracing_off_the_command_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sb.db");
    let config = store_only_config(
        &dir,
        &format!(
            "url = \"sqlite://{}\"\ntrace_retention = \"off\"",
            db.display()
        ),
    );
    let (code, _, err) = trace(&config, "sms:+15550000000", false);
    assert_eq!(code, 1);
    assert!(err.contains("tracing is off"), "{err}");
}

/// Slack: a DM found by its `ts` (Slack's redelivery shows as a dropped duplicate) and the
/// agent's answer by the `ts` Slack gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_messages_are_found_by_their_ts() {
    use switchboard_testkit::fake_slack::{FAKE_BOT_TOKEN, FakeSlack};
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    let sim = fast_simulator().await;
    let fake = FakeSlack::start().await;
    let channel = format!(
        "[channels.sl]\nkind = \"slack\"\napi_base_url = \"{}\"\n",
        fake.api_base
    );
    let env = [
        ("SWITCHBOARD_CHANNELS__SL__BOT_TOKEN", FAKE_BOT_TOKEN),
        ("SWITCHBOARD_CHANNELS__SL__SIGNING_SECRET", SECRET),
    ];
    let running = run_binary(&sim, &channel, &env).await;
    let config = running.config_path();
    let url = format!("http://127.0.0.1:{}/channels/sl/events", running.port);
    let envelope = FakeSlack::envelope(
        "EvTRACE001",
        FakeSlack::dm(
            "U2147483697",
            "D024BE91L",
            "hi from slack",
            "1795384800.000100",
        ),
    );
    assert_eq!(fake.send_event(&url, SECRET, &envelope).await, 200);
    assert_eq!(fake.send_event(&url, SECRET, &envelope).await, 200);
    let conversation = conversation_of(&sim, "hi from slack")
        .await
        .expect("the DM reached LivePerson");
    let events = events_when(&config, "1795384800.000100", |events| {
        stages(events, "to_liveperson").contains(&"confirmed")
    })
    .await;
    let received: Vec<&Value> = events.iter().filter(|e| e["stage"] == "received").collect();
    assert_eq!(received.len(), 2, "{events:#?}");
    assert_eq!(received[0]["detail"]["duplicate"], false);
    assert_eq!(received[1]["detail"]["duplicate"], true);
    assert_eq!(
        stages(&events, "to_liveperson")
            .iter()
            .filter(|s| **s == "stored")
            .count(),
        1
    );

    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, "answer in slack")
        .unwrap();
    assert!(
        eventually(30, || fake
            .conversation("D024BE91L")
            .iter()
            .any(|p| p.text.contains("answer in slack")))
        .await
    );
    let ts = fake
        .conversation("D024BE91L")
        .into_iter()
        .find(|p| p.text.contains("answer in slack"))
        .unwrap()
        .ts;
    let by_ts = events_when(&config, &ts, |events| {
        stages(events, "to_channel").contains(&"sent")
    })
    .await;
    assert_eq!(
        stages(&by_ts, "to_channel"),
        ["received", "stored", "attempt", "sent"],
        "{by_ts:#?}"
    );
    assert!(
        by_ts
            .iter()
            .all(|e| e["conversation_id"] == conversation.as_str())
    );
}

/// `store.trace_retention`: seconds or a duration text; `off` and 0 turn tracing off; a bad
/// value is an error naming the key and the file.
#[test]
fn trace_retention_reads_durations_and_off() {
    let read = |value: &str| {
        let toml =
            format!("[store]\ntrace_retention = {value}\n[liveperson]\nmode = \"simulator\"\n");
        let (_dir, path, loaded) = crate::support::load_toml(&toml);
        loaded
            .map(|l| l.config.store.trace_retention())
            .map_err(|e| (e.to_string(), path.display().to_string()))
    };
    let secs = |s: u64| Ok(Some(Duration::from_secs(s)));
    assert_eq!(read("\"7d\""), secs(7 * 86_400));
    assert_eq!(read("\"12h\""), secs(12 * 3600));
    assert_eq!(read("\"30m\""), secs(1800));
    assert_eq!(read("\"90s\""), secs(90));
    assert_eq!(read("3600"), secs(3600));
    assert_eq!(read("\"off\""), Ok(None));
    assert_eq!(read("0"), Ok(None));
    let (_dir, _path, default) = crate::support::load_toml("[liveperson]\nmode = \"simulator\"\n");
    assert_eq!(
        default.unwrap().config.store.trace_retention(),
        Some(Duration::from_secs(7 * 86_400))
    );
    for bad in ["\"7w\"", "\"soon\"", "-1", "true"] {
        let (message, file) = read(bad).expect_err(bad);
        assert!(
            message.contains("store.trace_retention"),
            "{bad}: {message}"
        );
        assert!(message.contains(&file), "{bad}: {message}");
    }
}
