//! Shared helpers: a minimal connector client and a webhook receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use tokio::sync::Mutex;

pub(crate) async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

pub(crate) async fn start_default() -> SimHandle {
    start(SimConfig::default()).await
}

/// A minimal connector: resolves hosts via the Domain API and calls endpoints like LP clients do.
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) domain: String,
    pub(crate) acc: String,
    pub(crate) client_id: String,
    pub(crate) secret: String,
    /// `Client-Properties` features sent on every messaging call, as a faithful connector
    /// does (`None`: no header at all).
    pub(crate) features: Option<Vec<&'static str>>,
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

impl Client {
    pub(crate) fn new(sim: &SimHandle) -> Self {
        Self {
            http: reqwest::Client::new(),
            domain: sim.domain_api(),
            acc: sim.account_id(),
            client_id: sim.client_id(),
            secret: sim.client_secret(),
            features: Some(vec!["RICH_CONTENT", "QUICK_REPLIES", "MULTI_DIALOG"]),
        }
    }

    pub(crate) async fn host(&self, service: &str) -> String {
        let r = self
            .get(&format!(
                "{}/api/account/{}/service/{service}/baseURI.json?version=1.0",
                self.domain, self.acc
            ))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        format!("http://{}", r.body["baseURI"].as_str().expect("baseURI"))
    }

    pub(crate) async fn get(&self, url: &str) -> Resp {
        to_resp(self.http.get(url).send().await.expect("request")).await
    }

    pub(crate) async fn app_jwt(&self) -> String {
        let sentinel = self.host("sentinel").await;
        let r = self
            .http
            .post(format!(
                "{sentinel}/sentinel/api/account/{}/app/token?v=1.0",
                self.acc
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.as_str()),
            ])
            .send()
            .await
            .expect("token request");
        let r = to_resp(r).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["access_token"].as_str().expect("token").to_string()
    }

    pub(crate) async fn jws(&self, app_jwt: &str, ext: &str) -> String {
        let idp = self.host("idp").await;
        let r = self
            .http
            .post(format!("{idp}/api/account/{}/consumer?v=1.0", self.acc))
            .header("authorization", app_jwt)
            .json(&json!({"ext_consumer_id": ext}))
            .send()
            .await
            .expect("jws request");
        let r = to_resp(r).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }

    pub(crate) async fn post_raw(
        &self,
        path: &str,
        app_jwt: Option<&str>,
        jws: Option<&str>,
        body: String,
    ) -> Resp {
        let base = self.host("asyncMessagingEnt").await;
        let mut req = self
            .http
            .post(format!(
                "{base}/api/account/{}/messaging/consumer/{path}",
                self.acc
            ))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = app_jwt {
            req = req.header("authorization", a);
        }
        if let Some(j) = jws {
            req = req.header("x-lp-on-behalf", j);
        }
        if let Some(features) = &self.features {
            let properties = json!({"type": ".ClientProperties", "features": features});
            req = req.header("client-properties", properties.to_string());
        }
        to_resp(req.send().await.expect("send")).await
    }

    pub(crate) async fn create(&self, app: &str, jws: &str) -> Resp {
        let body = json!([
            {"kind": "req", "id": "1,", "type": "userprofile.SetUserProfile", "body": {}},
            {"kind": "req", "id": "2,", "type": "cm.ConsumerRequestConversation",
             "body": {"brandId": self.acc, "channelType": "MESSAGING", "skillId": "-1"}}
        ]);
        self.post_raw("conversation?v=3", Some(app), Some(jws), body.to_string())
            .await
    }

    pub(crate) async fn send(&self, app: &str, jws: &str, req: Value) -> Resp {
        self.post_raw(
            "conversation/send?v=3",
            Some(app),
            Some(jws),
            req.to_string(),
        )
        .await
    }

    /// Token + JWS + new conversation; returns (app, jws, conversation id).
    pub(crate) async fn open(&self, ext: &str) -> (String, String, String) {
        let app = self.app_jwt().await;
        let jws = self.jws(&app, ext).await;
        let r = self.create(&app, &jws).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let conv = r.body[1]["body"]["conversationId"]
            .as_str()
            .expect("conversationId")
            .to_string();
        (app, jws, conv)
    }
}

pub(crate) fn text(id: &str, dialog: &str, msg: &str) -> Value {
    json!({"kind": "req", "id": id, "type": "ms.PublishEvent",
           "body": {"dialogId": dialog, "conversationId": dialog,
                    "event": {"type": "ContentEvent", "contentType": "text/plain", "message": msg}}})
}

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("notification is JSON")
    }
}

#[derive(Clone)]
struct RxState {
    got: Arc<Mutex<Vec<Received>>>,
    fail_next: Arc<AtomicU32>,
    attempts: Arc<AtomicU32>,
}

/// A tiny webhook endpoint recording every notification; can fail the next N requests with 500.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
    pub(crate) fail_next: Arc<AtomicU32>,
    pub(crate) attempts: Arc<AtomicU32>,
}

async fn receive(State(s): State<RxState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    s.attempts.fetch_add(1, Ordering::SeqCst);
    if s.fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    s.got.lock().await.push(Received { headers, body });
    StatusCode::OK
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let st = RxState {
            got: Arc::default(),
            fail_next: Arc::default(),
            attempts: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(st.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            got: st.got,
            fail_next: st.fail_next,
            attempts: st.attempts,
        }
    }

    pub(crate) async fn all(&self) -> Vec<Received> {
        self.got.lock().await.clone()
    }

    /// Waits until `pred` holds for the received list (5 s).
    pub(crate) async fn wait(&self, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..500 {
            let all = self.all().await;
            if pred(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "webhook condition not met; got {:#?}",
            self.all()
                .await
                .iter()
                .map(Received::json)
                .collect::<Vec<_>>()
        );
    }
}

/// Notifications of one change kind: ms event type, or `ExConversation`.
pub(crate) fn kind(r: &Received) -> String {
    let v = r.json();
    if v["type"] == "cqm.ExConversationChangeNotification" {
        "ExConversation".into()
    } else {
        v["body"]["changes"][0]["event"]["type"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }
}
