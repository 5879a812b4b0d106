//! The connector against LivePerson's rarer behaviour, injected by the simulator: an account
//! without file sharing, requests acted on although their answer never came, malformed
//! answers, conversations LivePerson opened behind the connector's back, odd webhook shapes,
//! wrong webhook headers, and the automatic PAUSE after typing. Each test counts what arrived
//! against what was sent; nothing accepted may be lost or duplicated.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::{ClosedBy, Outbound};
use switchboard_lp_sim::{
    FaultRequest, InjectKind, MalformedReply, PathClass, SignatureAlgorithm, SimConfig, SimHandle,
    Simulator, WebhookInjection,
};
use tokio::net::TcpListener;

use crate::support::{TINY_PNG, delivered, eventually, liveperson_toml, load_toml};

/// One connector (`switchboard::serve`, SQLite, a `test-recorder` channel) on one simulator;
/// also used by `liveperson_fidelity`.
pub(crate) struct Connector {
    pub(crate) sim: SimHandle,
    pub(crate) base: String,
    pub(crate) instance: String,
    pub(crate) http: reqwest::Client,
    store_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), switchboard::RunError>>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Connector {
    /// `retry_scale` scales every retry delay (and the typing timeout).
    pub(crate) async fn start(instance: &str, sim: SimConfig, retry_scale: f64) -> Self {
        Self::start_with(instance, sim, retry_scale, "rich = true\n").await
    }

    /// [`Connector::start`] with `channel` as the rest of the recorder's table (`rich = true`
    /// for native rich content, nothing for a text-only channel such as SMS).
    pub(crate) async fn start_with(
        instance: &str,
        sim: SimConfig,
        retry_scale: f64,
        channel: &str,
    ) -> Self {
        let sim = Simulator::start(SimConfig {
            time_scale: 0.01,
            ..sim
        })
        .await
        .unwrap();
        let data = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", data.path().join("sb.db").display());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        sim.set_webhook_endpoint(&format!("http://{addr}/webhooks/liveperson"));
        let toml = format!(
            "[server]\nlisten = \"{addr}\"\n[store]\nurl = \"{store_url}\"\n{}\
             [channels.{instance}]\nkind = \"test-recorder\"\n{channel}",
            liveperson_toml(&sim, retry_scale),
        );
        let (config_dir, _path, loaded) = load_toml(&toml);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(switchboard::serve(loaded.unwrap(), listener, async {
            let _ = stopped.await;
        }));
        Connector {
            sim,
            base: format!("http://{addr}"),
            instance: instance.to_owned(),
            http: reqwest::Client::new(),
            store_url,
            stop: Some(stop),
            server: Some(server),
            _dirs: (data, config_dir),
        }
    }

    /// The consumer `from` sends `body` (a canonical inbound body as JSON, or plain text).
    pub(crate) async fn consumer(&self, from: &str, id: &str, body: impl Into<String>) {
        let status = self
            .http
            .post(format!(
                "{}/channels/{}/in?from={from}",
                self.base, self.instance
            ))
            .header("x-id", id)
            .body(body.into())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// The consumer's texts in `conversation`, in order.
    pub(crate) fn texts_in(&self, conversation: &str) -> Vec<String> {
        self.sim
            .conversation(conversation)
            .map(|c| {
                c.consumer_messages()
                    .filter_map(|t| t.event["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every consumer text in every conversation, with its conversation.
    pub(crate) fn all_texts(&self) -> Vec<(String, String)> {
        self.sim
            .conversations()
            .iter()
            .flat_map(|c| {
                c.consumer_messages()
                    .filter_map(|t| t.event["message"].as_str())
                    .map(|t| (c.conversation_id.clone(), t.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits until `text` reached LivePerson; returns its conversation. Generous: a test may
    /// first wait out the engine's 10-second request timeout.
    pub(crate) async fn arrived(&self, text: &str) -> String {
        self.sim
            .wait_until(Duration::from_secs(90), |_| {
                self.all_texts()
                    .into_iter()
                    .find(|(_, t)| t == text)
                    .map(|(c, _)| c)
            })
            .await
            .unwrap_or_else(|| panic!("`{text}` never reached LivePerson"))
    }

    /// What the channel delivered to `consumer`.
    pub(crate) fn delivered_to(&self, consumer: &str) -> Vec<Outbound> {
        delivered(&self.instance)
            .into_iter()
            .filter(|(to, _)| to.id == consumer)
            .map(|(_, e)| e.body)
            .collect()
    }

    pub(crate) fn texts_to(&self, consumer: &str) -> Vec<String> {
        self.delivered_to(consumer)
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Text { text } => Some(text),
                _ => None,
            })
            .collect()
    }

    pub(crate) async fn dead_letters(&self) -> Vec<switchboard_store::DeadLetter> {
        let store = switchboard_store::Store::connect(&self.store_url)
            .await
            .unwrap();
        let letters = store.dead_letters(100).await.unwrap();
        store.close().await;
        letters
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

fn closed_notices(c: &Connector, consumer: &str) -> Vec<ClosedBy> {
    c.delivered_to(consumer)
        .into_iter()
        .filter_map(|o| match o {
            Outbound::Closed { by } => Some(by),
            _ => None,
        })
        .collect()
}

fn file_event(name: &str) -> String {
    use base64::Engine as _;
    json!({ "type": "file", "file": { "name": name, "mime": "image/png",
        "body": { "kind": "inline", "data": base64::engine::general_purpose::STANDARD.encode(TINY_PNG) } } })
    .to_string()
}

/// docs/protocol/liveperson.md §13: "fall back to a text link if file sharing is disabled" — inline bytes have no link, so
/// the agent gets the file's name and size, once, in order, and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_on_an_account_without_file_sharing_reaches_the_agent_as_text() {
    let c = Connector::start(
        "nofs",
        SimConfig {
            file_sharing_enabled: false,
            ..SimConfig::default()
        },
        0.001,
    )
    .await;
    c.consumer("ann", "a1", "here is my receipt").await;
    c.consumer("ann", "a2", file_event("receipt.png")).await;
    c.consumer("ann", "a3", "did you get it?").await;
    let conversation = c.arrived("did you get it?").await;
    let fallback = format!(
        "[The consumer sent a file, but file sharing is disabled on this LivePerson account: receipt.png (image/png, {} bytes)]",
        TINY_PNG.len()
    );
    assert_eq!(
        c.texts_in(&conversation),
        vec![
            "here is my receipt".to_owned(),
            fallback,
            "did you get it?".to_owned()
        ]
    );
    assert!(c.dead_letters().await.is_empty());
    assert!(
        !c.sim
            .conversation(&conversation)
            .unwrap()
            .transcript
            .iter()
            .any(|t| t.event["contentType"] == "hosted/file"),
    );
    c.stop().await;
}

/// docs/protocol/liveperson.md §8/§12.13: a CONVERSATION whose answer never came (LivePerson created it, the engine timed
/// out after 10 s) is not created again: its webhook maps it, and the text goes into it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_never_came_yields_one_conversation_and_one_message() {
    let c = Connector::start("ctt", SimConfig::default(), 0.001).await;
    c.sim
        .delay_next(PathClass::Conversation, 1, Duration::from_secs(13));
    c.consumer("bea", "b1", "is anyone there?").await;
    let conversation = c.arrived("is anyone there?").await;
    c.consumer("bea", "b2", "thanks").await;
    c.arrived("thanks").await;
    assert_eq!(c.sim.conversations().len(), 1, "one conversation");
    assert_eq!(c.texts_in(&conversation), ["is anyone there?", "thanks"]);
    assert!(c.sim.faults().delayed.is_empty(), "the delay was used");
    assert!(c.dead_letters().await.is_empty());
    c.stop().await;
}

/// The same for a SEND: the text LivePerson published although the engine timed out is
/// recognised by its echo and not published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_answer_never_came_is_not_published_twice() {
    let c = Connector::start("stt", SimConfig::default(), 0.001).await;
    c.consumer("cid", "c1", "first").await;
    let conversation = c.arrived("first").await;
    c.sim
        .delay_next(PathClass::Send, 1, Duration::from_secs(13));
    c.consumer("cid", "c2", "second").await;
    c.consumer("cid", "c3", "third").await;
    // "third" goes only once "second" is settled: after it, nothing more can come.
    c.arrived("third").await;
    assert_eq!(c.texts_in(&conversation), ["first", "second", "third"]);
    assert!(c.sim.faults().delayed.is_empty(), "the delay was used");
    assert_eq!(c.sim.conversations().len(), 1);
    c.stop().await;
}

/// Malformed answers after LivePerson acted: readable ones (integer codes, a string body) are
/// successes; unreadable ones (not JSON, `[]`, a bare string) are retried only after the echo
/// check, so nothing is published twice. A CONVERSATION answer of `[]` hides a created
/// conversation, which the webhook maps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_are_retried_or_accepted_without_duplicates() {
    let c = Connector::start("mal", SimConfig::default(), 0.2).await;
    c.sim
        .malform_next(PathClass::Conversation, 1, MalformedReply::EmptyArray);
    c.consumer("dot", "d0", "opening").await;
    let conversation = c.arrived("opening").await;
    let cases = [
        MalformedReply::NonJson,
        MalformedReply::StringBody,
        MalformedReply::NumericCode,
        MalformedReply::EmptyArray,
        MalformedReply::JsonString,
    ];
    let mut sent = vec!["opening".to_owned()];
    for (i, reply) in cases.into_iter().enumerate() {
        // The unreadable answers leave the router unsure; LivePerson's echo of the text comes
        // late (1.5 s, after the first retry is due at 1 s): it must wait for it rather than
        // publish the text again.
        let unsure = !matches!(
            reply,
            MalformedReply::StringBody | MalformedReply::NumericCode
        );
        if unsure {
            c.sim.apply_faults(FaultRequest {
                webhook_delay_ms: Some(1500),
                ..Default::default()
            });
        }
        c.sim.malform_next(PathClass::Send, 1, reply);
        let text = format!("message {i} ({reply:?})");
        c.consumer("dot", &format!("d{}", i + 1), text.clone())
            .await;
        c.arrived(&text).await;
        c.sim.apply_faults(FaultRequest {
            webhook_delay_ms: Some(0),
            ..Default::default()
        });
        sent.push(text);
    }
    c.consumer("dot", "d9", "the end").await;
    sent.push("the end".to_owned());
    c.arrived("the end").await;
    assert_eq!(c.texts_in(&conversation), sent, "each once, in order");
    assert_eq!(c.sim.conversations().len(), 1);
    assert!(c.sim.faults().malformed.is_empty(), "every fault was used");

    // "Conversation is close" with an integer code (the close webhook lost): a new
    // conversation, the text in it once.
    c.sim.apply_faults(FaultRequest {
        drop_webhooks: Some(1),
        ..Default::default()
    });
    c.sim.agent_close(&conversation, false).unwrap();
    c.sim
        .malform_next(PathClass::Send, 1, MalformedReply::NumericCode);
    c.consumer("dot", "d10", "after the close").await;
    let next = c.arrived("after the close").await;
    assert_ne!(next, conversation);
    assert_eq!(c.texts_in(&next), ["after the close"]);
    assert!(c.dead_letters().await.is_empty());
    c.stop().await;
}

/// `consumer` writes a first time, the agent closes that conversation, then an agent opens
/// another one for them whose notifications reach the connector `delay_ms` late: the
/// connector does not know it when the consumer writes again. Returns the new conversation.
async fn agent_reopens_with_late_notifications(
    c: &Connector,
    consumer: &str,
    delay_ms: u64,
) -> String {
    c.consumer(consumer, &format!("{consumer}-1"), "first visit")
        .await;
    let first = c.arrived("first visit").await;
    c.sim.agent_close(&first, false).unwrap();
    eventually("the close notice", || {
        (closed_notices(c, consumer).len() == 1).then_some(())
    })
    .await;
    let lp_consumer = c.sim.conversation(&first).unwrap().consumer_id;
    c.sim.apply_faults(FaultRequest {
        webhook_delay_ms: Some(delay_ms),
        ..Default::default()
    });
    let second = c
        .sim
        .start_conversation_for_consumer(&lp_consumer, None)
        .unwrap();
    c.sim.apply_faults(FaultRequest {
        webhook_delay_ms: Some(0),
        ..Default::default()
    });
    second
}

/// docs/protocol/liveperson.md §5.4/§13: LivePerson says the consumer "already has open conversation" (an agent opened one
/// whose webhook is late): the router waits for the webhook, adopts that conversation and sends
/// into it, without a third conversation or a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_open_waits_for_the_webhook_and_adopts_the_conversation() {
    let c = Connector::start("ao", SimConfig::default(), 0.1).await;
    // An agent opens a conversation for her; its notifications arrive two seconds late.
    let second = agent_reopens_with_late_notifications(&c, "eve", 2_000).await;
    c.consumer("eve", "e2", "I am back").await;
    assert_eq!(c.arrived("I am back").await, second);
    assert_eq!(c.sim.conversations().len(), 2);
    assert_eq!(c.texts_in(&second), ["I am back"]);
    let conflicts = c
        .sim
        .received_requests()
        .iter()
        .filter(|r| {
            r.endpoint == "conversation"
                && r.response
                    .to_string()
                    .contains("already has open conversation")
        })
        .count();
    assert!(conflicts >= 1, "the already-open path was taken");
    assert!(c.dead_letters().await.is_empty());
    c.stop().await;
}

/// The notification of a conversation LivePerson knows and we do not can be as late as
/// LivePerson's webhook retries allow (a retry gap of up to 5 minutes): the consumer's message
/// waits for it that long, not for a fixed few conflicts. Here it comes 20 s late at a retry
/// scale of 0.1 (a 3.3-minute wait at real scale): the five conflicts 30 s (scaled: 3 s) apart
/// that used to be the limit had dead-lettered the message after 12 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_notification_of_an_unknown_open_conversation_is_awaited_as_long_as_retries_can_bring_it()
 {
    let c = Connector::start("al", SimConfig::default(), 0.1).await;
    let second = agent_reopens_with_late_notifications(&c, "gus", 20_000).await;
    c.consumer("gus", "g2", "I am back").await;
    assert_eq!(c.arrived("I am back").await, second);
    assert_eq!(c.texts_in(&second), ["I am back"]);
    assert!(c.dead_letters().await.is_empty());
    c.stop().await;
}

/// docs/protocol/liveperson.md §7.6: an agent starts a new conversation for a known consumer: the connector adopts it, the
/// agent's text reaches the consumer, and her answer goes into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_conversation_is_adopted() {
    let c = Connector::start("as", SimConfig::default(), 0.001).await;
    c.consumer("fay", "f1", "my parcel is late").await;
    let first = c.arrived("my parcel is late").await;
    c.sim.agent_close(&first, false).unwrap();
    let lp_consumer = c.sim.conversation(&first).unwrap().consumer_id;
    let second = c
        .sim
        .start_conversation_for_consumer(&lp_consumer, None)
        .unwrap();
    // The sim delivers a conversation's notifications in order: once the agent's text is at
    // the channel, the conversation was adopted.
    c.sim
        .agent_send_text(&second, "Your parcel arrived today")
        .unwrap();
    eventually("the agent's text", || {
        c.texts_to("fay")
            .contains(&"Your parcel arrived today".to_owned())
            .then_some(())
    })
    .await;
    c.consumer("fay", "f2", "great, thanks").await;
    assert_eq!(c.arrived("great, thanks").await, second);
    assert_eq!(c.sim.conversations().len(), 2, "no third conversation");
    assert_eq!(c.texts_in(&second), ["great, thanks"]);
    c.stop().await;
}

fn injection(kind: InjectKind, conversation: &str) -> WebhookInjection {
    WebhookInjection {
        kind,
        conversation_id: Some(conversation.to_owned()),
        ..Default::default()
    }
}

/// docs/protocol/liveperson.md §7.4/§7.4.1: several changes in one notification, empty `changes`, no `conversationId`,
/// rich `content` as a JSON string, unknown event types, unknown extra fields: all answered
/// 200, everything the consumer should see arrives once, in sequence order, and the unknown
/// events (which take sequences) hold nothing up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_notification_shapes_reach_the_consumer_in_order() {
    let c = Connector::start("odd", SimConfig::default(), 0.001).await;
    c.consumer("gus", "g1", "hello").await;
    let conversation = c.arrived("hello").await;
    c.sim.agent_accept(&conversation).unwrap();
    let sim = &c.sim;
    sim.inject_webhook(WebhookInjection {
        texts: vec!["one".into(), "two".into(), "three".into()],
        ..injection(InjectKind::MultipleChanges, &conversation)
    })
    .unwrap();
    sim.inject_webhook(injection(InjectKind::EmptyChanges, &conversation))
        .unwrap();
    sim.inject_webhook(WebhookInjection {
        texts: vec!["older shape".into()],
        ..injection(InjectKind::MissingConversationId, &conversation)
    })
    .unwrap();
    sim.inject_webhook(injection(InjectKind::UnknownEvents, &conversation))
        .unwrap();
    sim.inject_webhook(injection(InjectKind::RichContentString, &conversation))
        .unwrap();
    sim.inject_webhook(WebhookInjection {
        texts: vec!["with extras".into()],
        ..injection(InjectKind::ExtraFields, &conversation)
    })
    .unwrap();
    sim.agent_send_text(&conversation, "last").unwrap();
    let seen = eventually("the last text", || {
        let seen = c.delivered_to("gus");
        seen.contains(&Outbound::text("last")).then_some(seen)
    })
    .await;
    let shown: Vec<String> = seen
        .iter()
        .filter_map(|o| match o {
            Outbound::Text { text } => Some(text.clone()),
            Outbound::Rich { content } => content.cards.first().and_then(|c| c.title.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown,
        [
            "one",
            "two",
            "three",
            "older shape",
            "Injected card",
            "with extras",
            "last"
        ]
    );
    // Every notification was accepted (none refused, none retried).
    let deliveries = sim.webhook_deliveries();
    assert!(
        deliveries
            .iter()
            .all(|d| d.statuses.iter().all(|s| *s == Some(200))),
        "{:?}",
        deliveries.iter().map(|d| &d.statuses).collect::<Vec<_>>()
    );
    c.stop().await;
}

/// docs/protocol/liveperson.md §7.5: a stale ExConversation (older `metaDataLastUpdateTs`) showing a closed conversation
/// open is ignored: the next text opens a new conversation straight away, without a SEND to
/// the closed one. docs/protocol/liveperson.md §7.4.2: a `DELETE` change closes the conversation for the consumer when its
/// close notification was lost, and only once; a `DELETE` showing it open closes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_conversation_states_are_ignored_and_delete_closes_once() {
    let c = Connector::start("stl", SimConfig::default(), 0.001).await;
    c.consumer("hal", "h1", "question one").await;
    let first = c.arrived("question one").await;
    c.sim.agent_close(&first, false).unwrap();
    eventually("the close notice", || {
        (closed_notices(&c, "hal").len() == 1).then_some(())
    })
    .await;
    c.sim
        .inject_webhook(injection(InjectKind::StaleConversation, &first))
        .unwrap();
    eventually("the stale notification answered", || {
        c.sim
            .webhook_deliveries()
            .last()
            .filter(|d| d.statuses == [Some(200)])
            .map(|_| ())
    })
    .await;
    c.consumer("hal", "h2", "question two").await;
    let second = c.arrived("question two").await;
    assert_ne!(second, first);
    let refused_sends = c
        .sim
        .received_requests()
        .iter()
        .filter(|r| r.endpoint == "send" && r.status == 400)
        .count();
    assert_eq!(
        refused_sends, 0,
        "nothing was sent to the closed conversation"
    );

    // The close of the second conversation is lost; a DELETE tells instead, once.
    c.sim.apply_faults(FaultRequest {
        drop_webhooks: Some(1),
        ..Default::default()
    });
    c.sim.agent_close(&second, false).unwrap();
    c.sim
        .inject_webhook(injection(InjectKind::Delete, &second))
        .unwrap();
    c.sim
        .inject_webhook(injection(InjectKind::Delete, &second))
        .unwrap();
    eventually("the close notice from the DELETE", || {
        (closed_notices(&c, "hal").len() == 2).then_some(())
    })
    .await;
    c.consumer("hal", "h3", "question three").await;
    let third = c.arrived("question three").await;
    assert_ne!(third, second);
    assert_eq!(
        closed_notices(&c, "hal").len(),
        2,
        "one notice per conversation"
    );

    // A DELETE showing the conversation still open (it left a subscription) closes nothing:
    // no notice, and the consumer's next message goes on in the same conversation.
    let answered = c.sim.webhook_deliveries().len();
    c.sim
        .inject_webhook(injection(InjectKind::Delete, &third))
        .unwrap();
    eventually("the open DELETE answered", || {
        c.sim.webhook_deliveries()[answered..]
            .iter()
            .any(|d| d.statuses == [Some(200)])
            .then_some(())
    })
    .await;
    c.consumer("hal", "h4", "question four").await;
    assert_eq!(c.arrived("question four").await, third);
    assert_eq!(closed_notices(&c, "hal").len(), 2, "no notice for it");
    c.stop().await;
}

/// docs/protocol/liveperson.md §7.3: notifications naming another app installation or account are refused with 401 and
/// reach nobody; the next genuine one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_with_foreign_headers_are_refused() {
    let c = Connector::start("hdr", SimConfig::default(), 0.001).await;
    c.consumer("ida", "i1", "hi").await;
    let conversation = c.arrived("hi").await;
    c.sim.agent_accept(&conversation).unwrap();
    let before = c.sim.webhook_deliveries().len();
    c.sim
        .inject_webhook(WebhookInjection {
            client_id: Some("another-installation".into()),
            texts: vec!["for another app".into()],
            ..injection(InjectKind::AgentText, &conversation)
        })
        .unwrap();
    c.sim
        .inject_webhook(WebhookInjection {
            account_id: Some("87654321".into()),
            texts: vec!["for another account".into()],
            ..injection(InjectKind::AgentText, &conversation)
        })
        .unwrap();
    c.sim.agent_send_text(&conversation, "genuine").unwrap();
    eventually("the genuine text", || {
        c.texts_to("ida")
            .contains(&"genuine".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(c.texts_to("ida"), ["genuine"]);
    let deliveries = c.sim.webhook_deliveries();
    let refused: Vec<_> = deliveries[before..]
        .iter()
        .filter(|d| d.statuses.contains(&Some(401)))
        .collect();
    assert_eq!(refused.len(), 2, "both forged notifications got 401");
    c.stop().await;
}

/// Agent-only messages never reach the consumer (docs/protocol/liveperson.md §12.10) and hold nothing up; `CONTROLLER`
/// (system) messages do, as text; a system auto-close is announced as closed by the system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_only_and_system_messages_and_a_system_close() {
    let c = Connector::start("sys", SimConfig::default(), 0.001).await;
    c.consumer("jon", "j1", "hello").await;
    let conversation = c.arrived("hello").await;
    c.sim.agent_accept(&conversation).unwrap();
    c.sim
        .agent_only_message(&conversation, "internal: VIP customer")
        .unwrap();
    c.sim
        .controller_message(&conversation, "Our opening hours are 9 to 5.")
        .unwrap();
    c.sim
        .agent_send_text(&conversation, "How can I help?")
        .unwrap();
    eventually("the agent's text", || {
        c.texts_to("jon")
            .contains(&"How can I help?".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(
        c.texts_to("jon"),
        ["Our opening hours are 9 to 5.", "How can I help?"]
    );
    c.sim.system_close(&conversation).unwrap();
    eventually("the close notice", || {
        (closed_notices(&c, "jon") == [ClosedBy::System]).then_some(())
    })
    .await;
    c.stop().await;
}

/// docs/protocol/liveperson.md §7.3: an account that opted into SHA-256 signatures is served like a SHA-1 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_signed_notifications_are_accepted() {
    let c = Connector::start(
        "sha",
        SimConfig {
            signature: SignatureAlgorithm::Sha256,
            ..SimConfig::default()
        },
        0.001,
    )
    .await;
    c.consumer("kim", "k1", "hello").await;
    let conversation = c.arrived("hello").await;
    c.sim
        .agent_send_text(&conversation, "signed with sha256")
        .unwrap();
    eventually("the agent's text", || {
        c.texts_to("kim")
            .contains(&"signed with sha256".to_owned())
            .then_some(())
    })
    .await;
    assert!(
        c.sim
            .webhook_deliveries()
            .iter()
            .all(|d| d.statuses.iter().all(|s| *s == Some(200)))
    );
    c.stop().await;
}

/// docs/protocol/liveperson.md §5.5/§13: after `COMPOSING`, a `PAUSE` follows when the channel reports nothing more (the
/// agent would otherwise see "typing" for ever; a text does not clear it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composing_is_followed_by_pause_when_the_channel_says_nothing_more() {
    let c = Connector::start("typ", SimConfig::default(), 0.001).await;
    c.consumer("lea", "l1", "hello").await;
    let conversation = c.arrived("hello").await;
    c.consumer(
        "lea",
        "l2",
        json!({ "type": "chat_state", "state": "composing" }).to_string(),
    )
    .await;
    let states = eventually("COMPOSING then PAUSE", || {
        let states: Vec<Value> = c
            .sim
            .conversation(&conversation)?
            .transcript
            .iter()
            .filter(|t| t.role == "CONSUMER" && t.event["type"] == "ChatStateEvent")
            .map(|t| t.event["chatState"].clone())
            .collect();
        (states.len() >= 2).then_some(states)
    })
    .await;
    assert_eq!(states, [json!("COMPOSING"), json!("PAUSE")]);
    c.stop().await;
}

/// `switchboard sim --listen ADDR`: serves the control API, the console and the Domain API
/// (handing out its own address), and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_sim_serves_the_simulator_and_stops_on_sigterm() {
    /// Kills the simulator if the test fails before it is stopped.
    struct Sim(Option<std::process::Child>);
    impl Drop for Sim {
        fn drop(&mut self) {
            if let Some(mut child) = self.0.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let port = switchboard_testkit::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sim = Sim(Some(child));
    assert!(
        switchboard_testkit::eventually(60, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard sim did not start"
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let info: Value = http
        .get(format!("{base}/sim"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = info["account_id"].as_str().unwrap().to_owned();
    assert_eq!(info["public_host"], format!("127.0.0.1:{port}"));
    let services: Value = http
        .get(format!(
            "{base}/api/account/{account}/service/baseURI.json?version=1.0"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hosts: Vec<&str> = services["baseURIs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["baseURI"].as_str().unwrap())
        .collect();
    assert!(!hosts.is_empty());
    assert!(
        hosts.iter().all(|h| *h == format!("127.0.0.1:{port}")),
        "{hosts:?}"
    );
    let console = http.get(format!("{base}/console")).send().await.unwrap();
    assert_eq!(console.status(), 200);
    let child = sim.0.take().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("http://127.0.0.1:{port}")));
}
