//! Domain API, Sentinel, IdP and the Send API's authorization errors.

use base64::Engine as _;
use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, lp_consumer_id};

use crate::common::{Client, start, start_default, text};

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).expect("payload part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}

fn sign_with_sim_key(claims: &Value) -> String {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../src/sim_key.pem")).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("appjwt-13-05-17".into());
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

#[tokio::test]
async fn domain_api_single_and_all() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let host = sim.base_url().trim_start_matches("http://").to_string();
    let r = c
        .get(&format!(
            "{}/api/account/{}/service/asyncMessagingEnt/baseURI.json?version=1.0",
            c.domain, c.acc
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"service": "asyncMessagingEnt", "account": c.acc, "baseURI": host})
    );
    let r = c
        .get(&format!(
            "{}/api/account/{}/service/baseURI.json?version=1.0",
            c.domain, c.acc
        ))
        .await;
    assert_eq!(r.status, 200);
    let services: Vec<&str> = r.body["baseURIs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    for s in ["asyncMessagingEnt", "sentinel", "idp", "swift"] {
        assert!(services.contains(&s), "{s} missing");
    }
    let unknown_service = c
        .get(&format!(
            "{}/api/account/{}/service/nope/baseURI.json?version=1.0",
            c.domain, c.acc
        ))
        .await;
    assert_eq!(unknown_service.status, 400);
    let unknown_account = c
        .get(&format!(
            "{}/api/account/999/service/idp/baseURI.json?version=1.0",
            c.domain
        ))
        .await;
    assert_eq!(unknown_account.status, 401);
    let no_version = c
        .get(&format!(
            "{}/api/account/{}/service/idp/baseURI.json",
            c.domain, c.acc
        ))
        .await;
    assert_eq!(no_version.status, 400);
    assert!(no_version.body.is_object());
}

#[tokio::test]
async fn sentinel_issues_documented_app_jwt() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let token = c.app_jwt().await;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "appjwt-13-05-17");
    assert_eq!(header["alg"], "RS256");
    let p = payload(&token);
    assert_eq!(p["aud"], c.acc.as_str());
    assert_eq!(p["azp"], c.client_id.as_str());
    assert_eq!(p["scope"], "msg.consumer");
    assert_eq!(p["iss"], "Sentinel");
    assert_eq!(
        p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(),
        3600
    );

    // All parameters in the query, empty body; and the v2 endpoint.
    let url = format!(
        "{}/sentinel/api/v2/account/{}/app/token?v=1.0&grant_type=client_credentials&client_id={}&client_secret={}",
        c.domain, c.acc, c.client_id, c.secret
    );
    let r = c.http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "only access_token and token_type: {body}");
    assert_eq!(body["token_type"], "Bearer");

    // Bad credentials.
    let r = c
        .http
        .post(format!(
            "{}/sentinel/api/account/{}/app/token?v=1.0",
            c.domain, c.acc
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client"})
    );

    // JWKS verifies the token.
    let jwks = c
        .get(&format!("{}/sentinel/well-known/jwks", c.domain))
        .await;
    let k = &jwks.body["keys"][0];
    let dec = jsonwebtoken::DecodingKey::from_rsa_components(
        k["n"].as_str().unwrap(),
        k["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(&token, &dec, &v).expect("JWKS key verifies the AppJWT");
}

#[tokio::test]
async fn idp_issues_consumer_jws() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let app = c.app_jwt().await;
    let jws = c.jws(&app, "telegram:42").await;
    let p = payload(&jws);
    assert_eq!(p["account_id"], c.acc.as_str());
    assert_eq!(p["ext_consumer_id"], "telegram:42");
    let lp = p["lp_consumer_id"].as_str().unwrap();
    assert_eq!(lp.len(), 64);
    assert!(
        lp.chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
    );
    assert_eq!(lp, lp_consumer_id(&c.acc, "telegram:42"));
    assert!(p.get("exp").is_none());
    // Deterministic per (account, ext id).
    let again = c.jws(&app, "telegram:42").await;
    assert_eq!(payload(&again)["lp_consumer_id"], lp);

    let idp = c.host("idp").await;
    let no_auth = c
        .http
        .post(format!("{idp}/api/account/{}/consumer?v=1.0", c.acc))
        .json(&json!({"ext_consumer_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    assert_eq!(
        no_auth.json::<Value>().await.unwrap()["body"]["errorCode"],
        40105
    );
    let no_v = c
        .http
        .post(format!("{idp}/api/account/{}/consumer", c.acc))
        .header("authorization", &app)
        .json(&json!({"ext_consumer_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_v.status(), 400);
}

#[tokio::test]
async fn send_api_authorization_errors() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("alice").await;
    let msg = text("1", &conv, "hi").to_string();

    let r = c
        .post_raw("conversation/send?v=3", None, Some(&jws), msg.clone())
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!({"kind": "resp", "code": 401,
               "body": {"title": "AppJWT is missing", "details": "AUTHORIZATION header is not present", "errorCode": 40105},
               "type": ".ReqBody$ErrorResp"})
    );
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some("garbage"),
            Some(&jws),
            msg.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["body"]["errorCode"].clone()),
        (401, json!(40102))
    );
    let r = c
        .post_raw("conversation/send?v=3", Some(&app), None, msg.clone())
        .await;
    assert_eq!(
        (r.status, r.body["body"]["errorCode"].clone()),
        (401, json!(40104))
    );
    assert_eq!(
        r.body["body"]["details"],
        "X_ON_BEHALF_HEADER is not present"
    );
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some(&app),
            Some("bad.jws.x"),
            msg.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["body"]["errorCode"].clone()),
        (401, json!(40103))
    );

    // Bearer prefix is not accepted by default.
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some(&format!("Bearer {app}")),
            Some(&jws),
            msg.clone(),
        )
        .await;
    assert_eq!(r.body["body"]["errorCode"], 40102);

    // Another consumer touching alice's conversation.
    let bob = c.jws(&app, "bob").await;
    let r = c.send(&app, &bob, text("2", &conv, "sneaky")).await;
    assert_eq!(
        (r.status, r.body["body"]["errorCode"].clone()),
        (401, json!(40103))
    );

    // iss not Sentinel → 400 / 40001; expired → 40102.
    let now = jsonwebtoken::get_current_timestamp();
    let bad_iss = sign_with_sim_key(
        &json!({"aud": c.acc, "azp": c.client_id, "scope": "msg.consumer", "iss": "Other", "iat": now, "exp": now + 600}),
    );
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some(&bad_iss),
            Some(&jws),
            msg.clone(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], 400);
    assert_eq!(r.body["body"]["errorCode"], 40001);
    let expired = sign_with_sim_key(
        &json!({"aud": c.acc, "azp": c.client_id, "scope": "msg.consumer", "iss": "Sentinel", "iat": now - 7200, "exp": now - 3600}),
    );
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some(&expired),
            Some(&jws),
            msg.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["body"]["errorCode"].clone()),
        (401, json!(40102))
    );

    // v missing or wrong.
    let r = c
        .post_raw("conversation/send", Some(&app), Some(&jws), msg.clone())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "BAD_REQUEST");
    let r = c
        .post_raw("conversation?v=2", Some(&app), Some(&jws), "[]".into())
        .await;
    assert_eq!(r.status, 400);

    // And a good one still works.
    let r = c.send(&app, &jws, text("3", &conv, "ok")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn bearer_prefix_accepted_when_configured() {
    let sim = start(SimConfig {
        accept_bearer: true,
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("carol").await;
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some(&format!("Bearer {app}")),
            Some(&jws),
            text("1", &conv, "hi").to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
