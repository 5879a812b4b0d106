//! The engine's readers of LivePerson's answers, property-based, over real HTTP against a
//! scripted fake: the Domain API's service list, the AppJWT and the ConsumerJWS (their claims)
//! and the Send API's answers. Valid shapes are generated (in any order, with unknown fields
//! added everywhere) and must be read as generated; answers of random bytes must never panic.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use switchboard_core::Secret;
use switchboard_liveperson::{
    ConsumerIdentity, DialogRef, Engine, EngineConfig, EngineError, SendRequest, Services,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "12345678";

/// One scripted answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(value: &Value) -> Self {
        Self {
            status: 200,
            body: value.to_string().into_bytes(),
        }
    }
}

/// What the fake answers, per endpoint, and what it saw.
#[derive(Debug, Default)]
struct Script {
    domain: Option<Reply>,
    token: Option<Reply>,
    jws: Option<Reply>,
    send: Option<Reply>,
    /// `Authorization` headers of the IdP and Send API calls.
    authorizations: Vec<String>,
}

/// A minimal HTTP/1.1 server answering every LivePerson endpoint the engine calls from the
/// script (one request per connection), on a runtime of its own.
struct Fake {
    port: u16,
    script: Arc<Mutex<Script>>,
    runtime: tokio::runtime::Runtime,
}

impl Fake {
    fn start() -> Fake {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = script.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Fake {
            port,
            script,
            runtime,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A new engine (empty caches) for this fake.
    fn engine(&self) -> Engine {
        Engine::new(
            EngineConfig::new(
                ACCOUNT,
                "75588e18-0213-4e33-8174-883acac7e3c4",
                Secret::new("client-secret"),
            )
            .with_domain_api(format!("http://{}", self.host())),
        )
        .unwrap()
    }

    fn set(&self, edit: impl FnOnce(&mut Script)) {
        edit(&mut self.script.lock().unwrap());
    }

    /// A Domain API answer listing every service at this fake, and a plain token and JWS.
    fn working(&self) {
        let host = self.host();
        let services = ["asyncMessagingEnt", "sentinel", "idp", "swift"]
            .map(|s| json!({ "service": s, "account": ACCOUNT, "baseURI": host }));
        let domain = json!({ "baseURIs": services });
        self.set(|s| {
            s.domain = Some(Reply::json(&domain));
            s.token = Some(Reply::json(&json!({ "access_token": jwt(
                &json!({ "alg": "RS256" }),
                &json!({ "iat": 1_700_000_000, "exp": 1_700_003_600 }),
            ) })));
            s.jws = Some(Reply::json(
                &json!({ "token": jwt(&json!({}), &json!({ "lp_consumer_id": "lp-1" })) }),
            ));
            s.authorizations.clear();
        });
    }
}

async fn serve(mut stream: tokio::net::TcpStream, script: Arc<Mutex<Script>>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, mut body) = loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&data[..end]).into_owned(),
                data[end + 4..].to_vec(),
            );
        }
    };
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_owned();
    let reply = {
        let mut script = script.lock().unwrap();
        if path.ends_with("/consumer") || path.ends_with("/conversation/send") {
            let authorization = header("authorization").unwrap_or_default();
            script.authorizations.push(authorization);
        }
        if path.ends_with("/service/baseURI.json") {
            script.domain.clone()
        } else if path.contains("/app/token") {
            script.token.clone()
        } else if path.ends_with("/consumer") {
            script.jws.clone()
        } else if path.ends_with("/conversation/send") {
            script.send.clone()
        } else {
            None
        }
    }
    .unwrap_or(Reply {
        status: 404,
        body: b"{}".to_vec(),
    });
    let response = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.write_all(&reply.body).await;
    let _ = stream.shutdown().await;
}

/// A compact JWT with these header and claims (the signature is never checked).
fn jwt(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A JSON value of any kind, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Fields LivePerson might add one day: names no reader knows, any values.
fn unknown_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x[A-Z][a-zA-Z]{0,8}", any_json(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn with_fields(mut value: Value, extra: Map<String, Value>) -> Value {
    if let Value::Object(object) = &mut value {
        for (k, v) in extra {
            object.entry(k).or_insert(v);
        }
    }
    value
}

/// How a Domain API answer may write a host: bare, with a trailing slash, or with a scheme.
fn host_form(host: String) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(host.clone()),
        Just(format!("{host}/")),
        Just(format!("http://{host}")),
    ]
}

#[test]
fn domain_api_answers_are_read_as_generated() {
    let fake = Fake::start();
    let host = fake.host();
    let entry = |service: String| {
        (host_form(host.clone()), unknown_fields()).prop_map(move |(base, extra)| {
            with_fields(json!({ "service": service, "baseURI": base }), extra)
        })
    };
    let strategy = (
        entry("asyncMessagingEnt".into()),
        entry("sentinel".into()),
        entry("idp".into()),
        prop::option::of(entry("swift".into())),
        // Services nobody asked for, some listed with an empty host.
        prop::collection::vec(
            (
                "[a-z]{3,12}",
                prop_oneof![Just(String::new()), "[a-z]{1,10}\\.example:[0-9]{2,4}"],
            )
                .prop_map(|(s, b)| json!({ "service": format!("other{s}"), "baseURI": b })),
            0..4,
        ),
        unknown_fields(),
    )
        .prop_flat_map(|(messaging, sentinel, idp, swift, others, extra)| {
            let has_swift = swift.is_some();
            let entries: Vec<Value> = [messaging, sentinel, idp]
                .into_iter()
                .chain(swift)
                .chain(others)
                .collect();
            (Just(entries).prop_shuffle(), Just(has_swift), Just(extra))
        });
    runner(64)
        .run(&strategy, |(entries, has_swift, extra)| {
            let answer = with_fields(json!({ "baseURIs": entries }), extra);
            fake.set(|s| s.domain = Some(Reply::json(&answer)));
            let services = fake.runtime.block_on(fake.engine().services());
            let url = format!("http://{host}");
            prop_assert_eq!(
                services.map_err(|e| e.to_string()),
                Ok(Services {
                    messaging: url.clone(),
                    sentinel: url.clone(),
                    idp: url.clone(),
                    swift: has_swift.then_some(url),
                }),
                "answer: {}",
                answer
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn tokens_are_used_as_issued_and_their_claims_read_whatever_else_they_carry() {
    let fake = Fake::start();
    let strategy = (
        unknown_fields(),
        unknown_fields(),
        1_500_000_000u64..2_000_000_000,
        3_600u64..86_400,
        "[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}",
        unknown_fields(),
        unknown_fields(),
        prop::option::of(3_600u64..86_400),
    );
    runner(48)
        .run(
            &strategy,
            |(header, claims, iat, lifetime, lp_id, jws_claims, answer_extra, expires_in)| {
                fake.working();
                let app_jwt = jwt(
                    &with_fields(json!({ "alg": "RS256", "typ": "JWT" }), header),
                    &with_fields(
                        json!({ "iat": iat, "exp": iat + lifetime, "aud": "acc:12345678" }),
                        claims,
                    ),
                );
                let mut token_answer = json!({ "access_token": app_jwt, "token_type": "Bearer" });
                if let Some(seconds) = expires_in {
                    token_answer["expires_in"] = json!(seconds);
                }
                let jws = jwt(
                    &json!({ "alg": "RS256", "kid": "0000000001" }),
                    &with_fields(json!({ "lp_consumer_id": lp_id, "exp": 0 }), jws_claims),
                );
                fake.set(|s| {
                    s.token = Some(Reply::json(&with_fields(
                        token_answer,
                        answer_extra.clone(),
                    )));
                    s.jws = Some(Reply::json(&with_fields(
                        json!({ "token": jws }),
                        answer_extra,
                    )));
                });
                let engine = fake.engine();
                let identity = fake.runtime.block_on(async {
                    engine.check_ready().await?;
                    engine.check_ready().await?;
                    engine.consumer_identity("ext-1").await
                });
                let identity = identity.map_err(|e| TestCaseError::fail(e.to_string()))?;
                // `exp` and `iat` read: a token good for an hour or more is fetched once.
                prop_assert_eq!(engine.app_jwt_fetches(), 1);
                prop_assert_eq!(&identity.lp_consumer_id, &lp_id);
                prop_assert_eq!(identity.jws.expose(), jws.as_str());
                let authorizations = fake.script.lock().unwrap().authorizations.clone();
                prop_assert_eq!(authorizations, vec![app_jwt]);
                Ok(())
            },
        )
        .unwrap();
}

/// A Send API `code` that says OK, in each form LivePerson uses.
fn ok_code() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("OK")),
        Just(json!("ok")),
        (200u64..300).prop_map(Value::from),
        (200u64..300).prop_map(|n| Value::from(n.to_string())),
    ]
}

fn identity() -> ConsumerIdentity {
    ConsumerIdentity {
        ext_consumer_id: "ext-1".into(),
        lp_consumer_id: "lp-1".into(),
        jws: Secret::new("jws-1"),
    }
}

fn text_request() -> SendRequest {
    SendRequest::Text {
        to: DialogRef::main("conversation-1"),
        text: "hello".into(),
        metadata: None,
    }
}

#[test]
fn send_answers_are_read_as_generated() {
    let fake = Fake::start();
    fake.working();
    #[derive(Debug, Clone)]
    enum Kind {
        Sequence(i64),
        StringBody(String),
        Refused(String),
    }
    let kind = prop_oneof![
        (0i64..i64::from(u32::MAX)).prop_map(Kind::Sequence),
        "[ -~]{0,20}".prop_map(Kind::StringBody),
        "[a-z]{1,20}".prop_map(|m| Kind::Refused(format!("refused {m}"))),
    ];
    let strategy = (kind, ok_code(), unknown_fields(), unknown_fields());
    runner(64)
        .run(&strategy, |(kind, code, body_extra, answer_extra)| {
            let (status, answer) = match &kind {
                Kind::Sequence(n) => (
                    200,
                    json!({ "reqId": "1", "code": code, "body": with_fields(json!({ "sequence": n }), body_extra) }),
                ),
                Kind::StringBody(s) => (200, json!({ "reqId": "1", "code": code, "body": s })),
                Kind::Refused(msg) => (
                    400,
                    json!({ "reqId": "1", "code": 400, "body": with_fields(json!({ "msg": msg }), body_extra) }),
                ),
            };
            let answer = with_fields(answer, answer_extra);
            fake.set(|s| {
                s.send = Some(Reply {
                    status,
                    body: answer.to_string().into_bytes(),
                })
            });
            let engine = fake.engine();
            let mut consumer = identity();
            let outcome = fake
                .runtime
                .block_on(engine.send(&mut consumer, &text_request()));
            match (kind, outcome) {
                (Kind::Sequence(n), Ok(outcome)) => prop_assert_eq!(outcome.sequence, Some(n)),
                (Kind::StringBody(s), Ok(outcome)) => {
                    prop_assert_eq!(outcome.sequence, None);
                    prop_assert_eq!(outcome.body, Value::from(s));
                }
                (Kind::Refused(msg), Err(EngineError::Permanent { reason })) => {
                    prop_assert!(reason.contains(&msg), "{reason} lacks {msg}");
                }
                (kind, outcome) => {
                    return Err(TestCaseError::fail(format!("{kind:?} → {outcome:?} ({answer})")));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn answers_of_random_bytes_never_panic() {
    let fake = Fake::start();
    let strategy = (
        prop::sample::select(vec!["domain", "token", "jws", "send"]),
        prop_oneof![Just(200u16), Just(201), Just(400), Just(401), Just(503)],
        prop::collection::vec(any::<u8>(), 0..256),
    );
    runner(128)
        .run(&strategy, |(endpoint, status, body)| {
            fake.working();
            let reply = Some(Reply { status, body });
            fake.set(|s| match endpoint {
                "domain" => s.domain = reply,
                "token" => s.token = reply,
                "jws" => s.jws = reply,
                _ => s.send = reply,
            });
            let engine = fake.engine();
            let mut consumer = identity();
            // Any outcome but a panic; the engine must not loop either.
            let finished = fake.runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(20), async {
                    let _ = engine.check_ready().await;
                    let _ = engine.consumer_identity("ext-1").await;
                    engine.send(&mut consumer, &text_request()).await
                })
                .await
            });
            prop_assert!(finished.is_ok(), "the engine never answered");
            Ok(())
        })
        .unwrap();
}
