//! Upload/download through the fake swift.

use std::time::Duration;

use serde_json::json;
use switchboard_lp_sim::SimConfig;

use crate::common::{Client, start, start_default};

#[tokio::test]
async fn upload_publish_download() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("mia").await;
    let png = vec![0x89u8, b'P', b'N', b'G', 1, 2, 3, 4];
    let r = c
        .send(
            &app,
            &jws,
            json!({"kind": "req", "id": 3, "type": "ms.GenerateURLForUploadFile",
            "body": {"fileSize": png.len().to_string(), "fileType": "PNG"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let path = r.body["body"]["relativePath"].as_str().unwrap().to_string();
    assert!(path.starts_with('/'));
    let sig = r.body["body"]["queryParams"]["temp_url_sig"]
        .as_str()
        .unwrap()
        .to_string();
    let exp = r.body["body"]["queryParams"]["temp_url_expires"]
        .as_str()
        .unwrap()
        .to_string();
    let swift = c.host("swift").await;

    // Bad signature.
    let bad = c
        .http
        .put(format!(
            "{swift}{path}?temp_url_sig=00&temp_url_expires={exp}"
        ))
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let put = c
        .http
        .put(format!(
            "{swift}{path}?temp_url_sig={sig}&temp_url_expires={exp}"
        ))
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    let publish = json!({"kind": "req", "id": "f", "type": "ms.PublishEvent",
        "body": {"dialogId": conv, "conversationId": conv,
                 "event": {"type": "ContentEvent", "contentType": "hosted/file",
                           "message": {"caption": "pic", "relativePath": path, "fileType": "PNG"}}}});
    assert_eq!(
        c.send(&app, &jws, publish).await.body["body"]["sequence"],
        0
    );

    let r = c.send(&app, &jws, json!({"kind": "req", "id": "d", "type": "ms.GenerateURLForDownloadFile", "body": {"relativePath": path}})).await;
    let q = &r.body["body"]["queryParams"];
    let got = c
        .http
        .get(format!(
            "{swift}{path}?temp_url_sig={}&temp_url_expires={}",
            q["temp_url_sig"].as_str().unwrap(),
            q["temp_url_expires"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);

    // Validation: bad type, too big.
    let r = c.send(&app, &jws, json!({"kind": "req", "id": 4, "type": "ms.GenerateURLForUploadFile", "body": {"fileSize": "10", "fileType": "PDF"}})).await;
    assert_eq!(r.status, 400);
    let r = c.send(&app, &jws, json!({"kind": "req", "id": 5, "type": "ms.GenerateURLForUploadFile", "body": {"fileSize": 4_000_000, "fileType": "JPG"}})).await;
    assert_eq!(r.status, 400);

    // Agent file: download through the same flow.
    let (_seq, agent_path) = sim
        .agent_send_file(&conv, "logo", "JPEG", vec![9; 100])
        .unwrap();
    let r = c.send(&app, &jws, json!({"kind": "req", "id": "d2", "type": "ms.GenerateURLForDownloadFile", "body": {"relativePath": agent_path}})).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn temp_urls_expire() {
    let sim = start(SimConfig {
        swift_url_ttl_secs: 1,
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    let (app, jws, _conv) = c.open("noah").await;
    let r = c.send(&app, &jws, json!({"kind": "req", "id": 3, "type": "ms.GenerateURLForUploadFile", "body": {"fileSize": "4", "fileType": "GIF"}})).await;
    let path = r.body["body"]["relativePath"].as_str().unwrap().to_string();
    let q = &r.body["body"]["queryParams"];
    let url = format!(
        "{}{path}?temp_url_sig={}&temp_url_expires={}",
        c.host("swift").await,
        q["temp_url_sig"].as_str().unwrap(),
        q["temp_url_expires"].as_str().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let put = c.http.put(url).body(vec![1, 2, 3, 4]).send().await.unwrap();
    assert_eq!(put.status(), 401);
}
