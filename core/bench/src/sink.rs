//! The SMS gateway's send side as the load sees it: Kannel's `POST /cgi-bin/sendsms`
//! (text/plain body, `X-Kannel-*` headers), answered `202 0: Accepted for delivery` at once,
//! with the arrival of every message reported to the load driver.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;

/// A message the gateway received: its text and when.
pub(crate) type Arrival = (String, Instant);

/// Starts the sink on a free loopback port; returns its sendsms URL and the arrivals.
pub(crate) async fn start() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Arrival>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/cgi-bin/sendsms", axum::routing::post(sendsms))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/cgi-bin/sendsms"), rx))
}

async fn sendsms(
    State(tx): State<mpsc::UnboundedSender<Arrival>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let at = Instant::now();
    if headers.get("x-kannel-to").is_none() {
        return (StatusCode::BAD_REQUEST, "Missing receiver number, rejected");
    }
    let _ = tx.send((String::from_utf8_lossy(&body).into_owned(), at));
    (StatusCode::ACCEPTED, "0: Accepted for delivery")
}
