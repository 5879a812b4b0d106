//! OpenTelemetry traces through the released binary (issue #25, section 2): an OTLP/HTTP
//! receiver in this process decodes what the connector exports (`opentelemetry-proto`), and
//! the tests check the spans' names, instances and parent links.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use switchboard_lp_sim::PathClass;
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::fake_kannel::FakeKannel;
use switchboard_testkit::{eventually, free_port};
use tokio::net::TcpListener;

use crate::sms::kannel_channel_table;
use crate::support::{liveperson_toml, switchboard_command};

const CONSUMER: &str = "+15551234567";
const SHORT_CODE: &str = "1000";
const TOKEN: &str = "kannel-callback-token-0123456789";
/// The W3C `traceparent` an ingress in front of the connector would have started.
const INGRESS_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INGRESS_SPAN: &str = "00f067aa0ba902b7";
/// The one the proxy in front of the LivePerson webhook gives the agent's answer.
const WEBHOOK_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const WEBHOOK_SPAN: &str = "b7ad6b7169203331";

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    trace: String,
    id: String,
    parent: String,
    name: String,
    /// `service.instance.id` of the process that sent it.
    instance: String,
    service: String,
    attributes: BTreeMap<String, String>,
    /// The span's events, each its name and attributes.
    events: Vec<String>,
    failed: bool,
}

/// An OTLP/HTTP traces endpoint (`POST /v1/traces`, protobuf) keeping every span it gets.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start(&self) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
}

async fn receive(
    State(collector): State<Collector>,
    headers: http::HeaderMap,
    body: Bytes,
) -> http::Response<Body> {
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    trace: hex::encode(&span.trace_id),
                    id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    name: span.name,
                    instance: resource
                        .get("service.instance.id")
                        .cloned()
                        .unwrap_or_default(),
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    attributes: attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| format!("{}: {:?}", e.name, attributes(&e.attributes)))
                        .collect(),
                    // STATUS_CODE_ERROR
                    failed: span.status.is_some_and(|s| s.code == 2),
                });
            }
        }
    }
    http::Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Body::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        ))
        .unwrap()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A `switchboard run` process; its stderr goes to a file the test reads.
struct Instance {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

/// The standard variables a developer's shell may hold, which must not leak into the tests.
const OTEL_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
];

impl Instance {
    async fn start(
        dir: &std::path::Path,
        (name, port): (&str, u16),
        toml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{toml}"),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut cmd = switchboard_command();
        for var in OTEL_VARS {
            cmd.env_remove(var);
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            // Export every 100 ms instead of 5 s: the test waits for spans, not for the clock.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let instance = Self { child, port, log };
        assert!(
            eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok())
            .await,
            "{name} did not start: {}",
            instance.logs()
        );
        instance
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as an orchestrator stops it; returns once it exited (its spans sent).
    async fn stop(mut self) -> String {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut child = std::mem::replace(
            &mut self.child,
            std::process::Command::new("true").spawn().unwrap(),
        );
        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success(), "exited with {exit}: {}", self.logs());
        self.logs()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kannel's MO get-url call for `text`, as smsbox makes it, with the `traceparent` an ingress
/// in front of the connector added.
async fn send_mo(port: u16, text: &str, id: &str, traceparent: Option<&str>) -> u16 {
    let query = serde_urlencoded::to_string([
        ("token", TOKEN),
        ("from", CONSUMER),
        ("to", SHORT_CODE),
        ("text", text),
        ("ts", "1767268800"),
        ("id", id),
        ("smsc", "fake1"),
        ("coding", "0"),
        ("charset", "UTF-8"),
        ("udh", ""),
    ])
    .unwrap();
    let mut request =
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/channels/sms/mo?{query}"));
    if let Some(parent) = traceparent {
        request = request.header("traceparent", parent);
    }
    request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The `[channels.sms]` (Kannel) and `[liveperson]` tables of the tests.
fn sms_tables(sim: &SimHandle, sendsms: u16, callback_port: u16) -> String {
    liveperson_toml(sim, 0.001) + &kannel_channel_table(callback_port, sendsms)
}

/// A proxy in front of the connector's LivePerson webhook, as an ingress that starts traces
/// would be: the notification carrying `marker` gets the [`WEBHOOK_TRACE`] `traceparent`.
async fn webhook_proxy(target: Arc<Mutex<String>>, marker: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: http::Request<Body>| {
        let (http, target) = (http.clone(), target.lock().unwrap().clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut headers = parts.headers.clone();
            headers.remove("host");
            if String::from_utf8_lossy(&body).contains(marker) {
                let parent = format!("00-{WEBHOOK_TRACE}-{WEBHOOK_SPAN}-01");
                headers.insert("traceparent", parent.parse().unwrap());
            }
            let answer = http
                .request(parts.method, format!("{target}{}", parts.uri))
                .headers(headers)
                .body(body)
                .send()
                .await;
            let status = answer.map(|a| a.status().as_u16()).unwrap_or(502);
            http::Response::builder()
                .status(status)
                .body(Body::empty())
                .unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Issue #25: one SMS is one trace, from the `traceparent` it came with, across two instances
/// on one PostgreSQL store: instance A takes the SMS in and tries LivePerson (which fails),
/// then stops; instance B, started afterwards, sends it. The agent's answer, which reaches B's
/// webhook with a `traceparent` of its own, is one trace as well, through to the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sms_is_one_trace_from_its_traceparent_across_two_instances() {
    let Some((admin, schema)) = crate::sms::postgres_schema("sb_otel").await else {
        return;
    };
    let separator = if admin.contains('?') { '&' } else { '?' };
    let store = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
    let collector = Collector::default();
    let collector_addr = collector.start().await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let webhook_target = Arc::new(Mutex::new(String::new()));
    const AGENT_TEXT: &str = "Your parcel ships today";
    let proxy = webhook_proxy(webhook_target.clone(), AGENT_TEXT).await;
    sim.set_webhook_endpoint(&format!("http://{proxy}/webhooks/liveperson"));
    let sendsms = free_port();
    let dir = tempfile::tempdir().unwrap();
    let tables = |extra: &str| {
        format!(
            "[store]\nurl = \"{store}\"\n{}[telemetry]\notlp_endpoint = \"http://{collector_addr}\"\n{extra}",
            sms_tables(&sim, sendsms, 9),
        )
    };
    // The gateway's side of the MT (the agent's answer), from the groups the connector's
    // `sms kannel-config` would print.
    let (_config_dir, _config, loaded) = crate::support::load_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:9\"\n{}",
        sms_tables(&sim, sendsms, 9)
    ));
    let snippet = switchboard::kannel_config(&loaded.unwrap(), None).unwrap();
    let kannel = FakeKannel::start(&snippet, sendsms).await.unwrap();

    // Instance A takes the SMS in; LivePerson refuses to open its conversation meanwhile.
    sim.fail_next(PathClass::Conversation, 1_000_000, 503, None);
    let a = Instance::start(
        dir.path(),
        ("a", free_port()),
        &tables(""),
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=a"),
            ("OTEL_SERVICE_NAME", "sb-otel-test"),
        ],
    )
    .await;
    let ingress = format!("00-{INGRESS_TRACE}-{INGRESS_SPAN}-01");
    assert_eq!(
        send_mo(a.port, "where is my parcel", "mo-1", Some(&ingress)).await,
        200
    );
    let failed_on_a = || {
        collector
            .named("outbox.attempt")
            .iter()
            .any(|s| s.instance == "a" && s.attributes["outbox.outcome"] == "retry")
    };
    assert!(
        eventually(30, failed_on_a).await,
        "A's failed attempt was not traced: {:?}\n{}",
        collector.spans(),
        a.logs()
    );
    a.stop().await;

    // Instance B only starts now, and sends it.
    sim.clear_faults();
    let b_port = free_port();
    *webhook_target.lock().unwrap() = format!("http://127.0.0.1:{b_port}");
    let b = Instance::start(
        dir.path(),
        ("b", b_port),
        &tables("service_name = \"sb-otel-test\"\n"),
        &[("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=b")],
    )
    .await;
    let conversation = crate::sms::conversation_of(&sim, "where is my parcel")
        .await
        .unwrap_or_else(|| panic!("the SMS never reached LivePerson: {}", b.logs()));

    // The agent answers; B's webhook gets it through the proxy, with a traceparent.
    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, AGENT_TEXT).unwrap();
    assert!(
        eventually(30, || kannel
            .requests()
            .iter()
            .any(|r| r.params["text"] == AGENT_TEXT))
        .await,
        "the agent's answer never reached the gateway: {}",
        b.logs()
    );
    let delivered_to_channel = || {
        collector
            .named("channel.deliver")
            .iter()
            .any(|s| s.trace == WEBHOOK_TRACE)
    };
    assert!(
        eventually(30, delivered_to_channel).await,
        "{:?}",
        collector.spans()
    );
    b.stop().await;

    let spans = collector.spans();
    let only = |name: &str, trace: &str, instance: &str| -> Received {
        let found: Vec<&Received> = spans
            .iter()
            .filter(|s| s.name == name && s.trace == trace && s.instance == instance)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {name} of {instance} in {trace}: {spans:#?}"
        );
        found[0].clone()
    };
    for s in &spans {
        assert_eq!(s.service, "sb-otel-test", "{s:?}");
    }

    // Consumer → LivePerson: the ingress's span is the parent of A's server span.
    let request = only("GET /channels/{instance}/{*rest}", INGRESS_TRACE, "a");
    assert_eq!(request.parent, INGRESS_SPAN);
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.attributes["switchboard.channel"], "sms");
    for s in &spans {
        assert!(
            !format!("{:?}{:?}", s.attributes, s.events).contains("5551234567"),
            "no phone number in a span: {s:?}"
        );
    }
    let stored = only("store.enqueue", INGRESS_TRACE, "a");
    assert_eq!(stored.parent, request.id);
    assert_eq!(stored.attributes["db.system.name"], "postgresql");
    // Every attempt, on either instance, continues from the stored context.
    let attempts: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "outbox.attempt" && s.trace == INGRESS_TRACE)
        .collect();
    assert!(
        attempts.iter().all(|s| s.parent == stored.id),
        "{attempts:#?}"
    );
    // A tried (as often as its retry delays allowed before it stopped), and failed each time.
    let on_a: Vec<&&Received> = attempts.iter().filter(|s| s.instance == "a").collect();
    assert!(
        on_a.iter().any(|s| s.attributes["outbox.attempt"] == "1"),
        "{on_a:#?}"
    );
    for failed in &on_a {
        assert_eq!(failed.attributes["outbox.outcome"], "retry");
        assert!(failed.failed, "{failed:?}");
        let refused: Vec<&Received> = spans
            .iter()
            .filter(|s| s.name == "liveperson.create_conversation" && s.parent == failed.id)
            .collect();
        assert!(
            matches!(&refused[..], [r] if r.failed && r.instance == "a"),
            "{refused:#?}"
        );
    }
    let sent = only("outbox.attempt", INGRESS_TRACE, "b");
    assert_eq!(sent.attributes["outbox.outcome"], "delivered");
    assert!(!sent.failed);
    assert_eq!(
        only("liveperson.create_conversation", INGRESS_TRACE, "b").parent,
        sent.id
    );
    let send = only("liveperson.send", INGRESS_TRACE, "b");
    assert_eq!(send.parent, sent.id);
    assert_eq!(send.attributes["liveperson.request"], "text");
    // One SMS, one trace: no other trace holds work done for it.
    for s in spans.iter().filter(|s| {
        s.name == "liveperson.create_conversation"
            || (s.name == "liveperson.send" && s.attributes["liveperson.request"] == "text")
    }) {
        assert_eq!(s.trace, INGRESS_TRACE, "{s:?}");
    }

    // LivePerson → consumer: the webhook's traceparent is the root of the agent's answer.
    let webhook = only("POST /webhooks/liveperson", WEBHOOK_TRACE, "b");
    assert_eq!(webhook.parent, WEBHOOK_SPAN);
    let queued = only("store.enqueue", WEBHOOK_TRACE, "b");
    assert_eq!(queued.parent, webhook.id);
    assert_eq!(queued.attributes["outbox.direction"], "to_channel");
    let attempt = only("outbox.attempt", WEBHOOK_TRACE, "b");
    assert_eq!(attempt.parent, queued.id);
    assert_eq!(attempt.attributes["outbox.outcome"], "delivered");
    let deliver = only("channel.deliver", WEBHOOK_TRACE, "b");
    assert_eq!(deliver.parent, attempt.id);
    assert_eq!(deliver.attributes["switchboard.channel"], "sms");
    crate::sms::drop_schema(&admin, &schema).await;
}

/// Issue #25: a collector that cannot be reached costs the connector nothing but one warning
/// a minute: every message is still delivered, and the failed exports after the first are
/// not logged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_nothing_but_a_warning_a_minute() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let collector = free_port();
    let toml = format!(
        "[store]\nurl = \"sqlite://{}\"\n{}[telemetry]\notlp_endpoint = \"http://127.0.0.1:{collector}\"\n",
        dir.path().join("sb.db").display(),
        sms_tables(&sim, free_port(), 9),
    );
    let instance = Instance::start(dir.path(), ("one", free_port()), &toml, &[]).await;
    const WARNING: &str = "cannot export traces";
    let mut warned = false;
    for n in 0..5 {
        let text = format!("message number {n}");
        assert_eq!(
            send_mo(instance.port, &text, &format!("mo-{n}"), None).await,
            200
        );
        let arrived = sim
            .wait_for_consumer_message(&text, Duration::from_secs(30))
            .await;
        assert!(
            arrived.is_some(),
            "{text} was not delivered: {}",
            instance.logs()
        );
        if !warned {
            // The first failed export is reported; every later one falls within the minute.
            warned = eventually(30, || instance.logs().contains(WARNING)).await;
            assert!(warned, "no warning: {}", instance.logs());
        }
    }
    let logs = instance.stop().await;
    assert_eq!(logs.matches(WARNING).count(), 1, "{logs}");
    let line = logs.lines().find(|l| l.contains(WARNING)).unwrap();
    assert!(line.contains(&format!("127.0.0.1:{collector}")), "{line}");
}
