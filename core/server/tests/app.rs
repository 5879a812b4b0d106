//! The HTTP app, driven with `oneshot` (no port bound).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use switchboard::app::{AppState, app};
use switchboard::inbox::MemoryInbox;
use switchboard::runtime::ChannelSet;
use switchboard_core::Inbound;
use tower::ServiceExt;

use crate::support::load_toml;

struct Fixture {
    state: AppState,
    inbox: Arc<MemoryInbox>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let (dir, _path, loaded) = load_toml(
        "[liveperson]\nmode = \"simulator\"\n\
         [channels.web]\nkind = \"test-echo\"\ntoken = \"s3cret\"\ngreeting = \"thanks\"\n",
    );
    let loaded = loaded.unwrap();
    let inbox = Arc::new(MemoryInbox::new(100));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let channels = Arc::new(ChannelSet::build(&loaded, inbox.clone(), rx).unwrap());
    let state = AppState::new(channels);
    state.readiness.set("inbox", true, "");
    Fixture {
        state,
        inbox,
        _dir: dir,
    }
}

async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, text)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn health_and_readiness() {
    let f = fixture();
    let (status, body, _) = call(&f.state, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, body, _) = call(&f.state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["components"]["inbox"]["ready"], true);
    f.state.readiness.set("store", false, "connecting");
    let (status, body, _) = call(&f.state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["components"]["store"]["detail"], "connecting");
}

#[tokio::test]
async fn channel_requests_are_dispatched_and_submitted() {
    let f = fixture();
    let req = Request::post("/channels/web/in?from=alice")
        .header("x-token", "s3cret")
        .header("x-id", "m-1")
        .body(Body::from("hello"))
        .unwrap();
    let (status, _, text) = call(&f.state, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, "thanks");
    let events = f.inbox.take(10);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].consumer.instance, "web");
    assert_eq!(events[0].consumer.id, "alice");
    assert_eq!(events[0].body, Inbound::text("hello"));

    // The path the channel sees is relative to its mount point, query included.
    let req = Request::get("/channels/web/echo-path?a=1&b=2")
        .header("x-token", "s3cret")
        .body(Body::empty())
        .unwrap();
    let (_, _, text) = call(&f.state, req).await;
    assert_eq!(text, "/echo-path?a=1&b=2");
}

#[tokio::test]
async fn forged_channel_requests_are_refused_and_nothing_is_submitted() {
    let f = fixture();
    let req = Request::post("/channels/web/in?from=mallory")
        .header("x-token", "guess")
        .body(Body::from("hi"))
        .unwrap();
    let (status, body, _) = call(&f.state, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(f.inbox.is_empty());
}

#[tokio::test]
async fn errors_are_json() {
    let f = fixture();
    let (status, body, _) = call(&f.state, get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    let (status, body, _) = call(&f.state, get("/channels/ghost/in")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("ghost"));

    let (status, body, _) = call(
        &f.state,
        Request::delete("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // The LivePerson webhook answers 503 with a JSON body until the engine is configured.
    let (status, body, _) = call(
        &f.state,
        Request::post("/webhooks/liveperson")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
}

#[tokio::test]
async fn oversized_bodies_get_413_json() {
    let mut f = fixture();
    f.state.body_limit = 16;
    let req = Request::post("/channels/web/in?from=a")
        .header("x-token", "s3cret")
        .body(Body::from(vec![b'x'; 17]))
        .unwrap();
    let (status, body, _) = call(&f.state, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(f.inbox.is_empty());
    let req = Request::post("/webhooks/liveperson")
        .body(Body::from(vec![b'x'; 17]))
        .unwrap();
    // Size is checked before anything else, even before the handler exists.
    let (status, _, _) = call(&f.state, req).await;
    assert!(status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn slow_requests_time_out_with_json() {
    let mut f = fixture();
    f.state.request_timeout = Duration::from_millis(50);
    let req = Request::get("/channels/web/slow")
        .header("x-token", "s3cret")
        .body(Body::empty())
        .unwrap();
    let (status, body, _) = call(&f.state, req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "timeout");
}

#[tokio::test]
async fn a_panicking_channel_gets_500_json_and_the_app_keeps_serving() {
    let f = fixture();
    let req = Request::get("/channels/web/panic")
        .header("x-token", "s3cret")
        .body(Body::empty())
        .unwrap();
    let (status, body, _) = call(&f.state, req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "internal");
    let (status, _, _) = call(&f.state, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let f = fixture();
    let req = Request::post("/channels/web/in?from=bob")
        .header("x-token", "s3cret")
        .body(Body::from("x"))
        .unwrap();
    call(&f.state, req).await;
    let (status, _, text) = call(&f.state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("switchboard_http_requests_total"), "{text}");
    assert!(
        text.contains("switchboard_events_in_total{channel=\"web\",kind=\"text\"}"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_queue_depth{queue=\"inbox\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn serve_drains_and_stops_when_told() {
    let store = tempfile::tempdir().unwrap();
    let (_dir, _path, loaded) = load_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n",
        store.path().join("sb.db").display()
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchboard::serve(loaded.unwrap(), listener, async {
        let _ = stop_rx.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Runs the connector of `toml` (with an SQLite store of its own) on both listeners until the
/// returned sender is used.
async fn serve_both(
    toml: &str,
    admin: bool,
) -> (
    std::net::SocketAddr,
    Option<std::net::SocketAddr>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), switchboard::RunError>>,
    tempfile::TempDir,
) {
    let store = tempfile::tempdir().unwrap();
    let admin_line = if admin {
        "admin_listen = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let (_dir, _path, loaded) = load_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{admin_line}{toml}[store]\nurl = \"sqlite://{}\"\n",
        store.path().join("sb.db").display()
    ));
    let loaded = loaded.unwrap();
    let listeners = switchboard::Listeners::bind(&loaded.config.server)
        .await
        .unwrap();
    let public = listeners.public.local_addr().unwrap();
    let admin = listeners.admin.as_ref().map(|l| l.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = switchboard::start(loaded, listeners).await.unwrap();
    let server = tokio::spawn(started.serve(async {
        let _ = stop_rx.await;
    }));
    (public, admin, stop_tx, server, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_metrics_and_readiness_and_the_public_one_does_not() {
    let (public, admin, stop, server, _store) = serve_both("", true).await;
    let admin = admin.unwrap();
    let http = reqwest::Client::new();
    let status = |addr: std::net::SocketAddr, path: &str| {
        let http = http.clone();
        let url = format!("http://{addr}{path}");
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(public, "/metrics").await, 404);
    assert_eq!(status(public, "/readyz").await, 404);
    assert_eq!(status(public, "/healthz").await, 200);
    assert_eq!(status(admin, "/metrics").await, 200);
    assert!([200, 503].contains(&status(admin, "/readyz").await));
    assert_eq!(status(admin, "/healthz").await, 200);
    // Nothing else is on the admin listener.
    assert_eq!(status(admin, "/webhooks/liveperson").await, 404);
    assert_eq!(status(admin, "/media/x").await, 404);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // Without it, the one listener serves everything.
    let (public, none, stop, server, _store) = serve_both("", false).await;
    assert!(none.is_none());
    assert_eq!(status(public, "/metrics").await, 200);
    assert!([200, 503].contains(&status(public, "/readyz").await));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A web chat poll that finds nothing must come back empty, not as the request timeout's
/// 503: a `poll_secs` as long as the timeout is refused, a shorter one answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_web_chat_poll_ends_before_the_request_timeout() {
    let web = |poll: u64| {
        format!(
            "request_timeout_secs = 3\n[liveperson]\nmode = \"simulator\"\n\
             [channels.web]\nkind = \"webchat\"\npoll_secs = {poll}\n"
        )
    };
    let (_dir, _path, refused) = load_toml(&format!("[server]\n{}", web(3)));
    let err = refused.unwrap_err();
    assert_eq!(err.0[0].key, "channels.web.poll_secs", "{err}");

    let (public, _, stop, server, _store) = serve_both(&web(2), false).await;
    let answer = reqwest::get(format!(
        "http://{public}/channels/web/events?session=0f8fad5b-d9cb-469f-a165-70867728950e&after=0"
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["events"], serde_json::json!([]));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// `/readyz` follows the store, checked again and again: not ready while another process holds
/// SQLite's write lock longer than a check waits, ready again once it lets go, and not ready
/// once the store is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_checked_periodically() {
    use sqlx::Connection as _;
    use switchboard::readiness::watch_store;
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sb.db").display());
    let store = switchboard_store::Store::connect(&url).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_store(
        store.clone(),
        f.state.readiness.clone(),
        Duration::from_millis(100),
        stopped,
    ));
    let store_is = |ready: bool| {
        let readiness = f.state.readiness.clone();
        move || {
            let (_, components) = readiness.snapshot();
            (components.get("store").map(|c| c.ready) == Some(ready)).then_some(())
        }
    };
    crate::support::eventually("the store ready", store_is(true)).await;
    assert_eq!(call(&f.state, get("/readyz")).await.0, StatusCode::OK);

    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    crate::support::eventually("the store not ready while locked", store_is(false)).await;
    let (status, body, _) = call(&f.state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["store"]["ready"], false);
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    drop(blocker);
    crate::support::eventually("the store ready again", store_is(true)).await;
    assert_eq!(call(&f.state, get("/readyz")).await.0, StatusCode::OK);

    store.close().await;
    crate::support::eventually("a closed store not ready", store_is(false)).await;
    assert_eq!(
        call(&f.state, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    stop.send(true).unwrap();
    watcher.await.unwrap();
}
