//! The agent console: one self-contained HTML page driving the `/sim` API, kept live by
//! `GET /sim/events` (server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use crate::SimState;

const PAGE: &str = include_str!("console.html");

/// `GET /console`
pub(crate) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// `GET /sim/events`: a `change` event (`{"version": n}`) right away and after every change of
/// the simulator's state (conversations, messages, webhook deliveries); bursts are coalesced.
/// The stream ends when the server shuts down.
pub(crate) async fn events(
    State(sim): State<SimState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let version = sim.shared.version.subscribe();
    let stopping = sim.shared.stopping.subscribe();
    let stream = futures::stream::unfold(
        (version, stopping, true),
        |(mut version, mut stopping, first)| async move {
            if *stopping.borrow_and_update() {
                return None;
            }
            if !first {
                tokio::select! {
                    changed = version.changed() => changed.ok()?,
                    _ = stopping.changed() => return None,
                }
                // Let a burst of changes settle into one event.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let n = *version.borrow_and_update();
            let event = Event::default()
                .event("change")
                .retry(Duration::from_millis(1000))
                .data(format!("{{\"version\":{n}}}"));
            Some((Ok(event), (version, stopping, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A picture for the console's sample card, so that the demo needs no internet access.
const SAMPLE_IMAGE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="270" viewBox="0 0 480 270">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#6366f1"/><stop offset="1" stop-color="#06b6d4"/></linearGradient></defs>
<rect width="480" height="270" fill="url(#g)"/>
<rect x="190" y="40" width="100" height="190" rx="16" fill="#111827"/>
<rect x="198" y="52" width="84" height="160" rx="8" fill="#e0e7ff"/>
<circle cx="240" cy="221" r="5" fill="#374151"/>
<text x="24" y="250" font-family="sans-serif" font-size="22" fill="#fff">Switchboard simulator</text>
</svg>"##;

/// `GET /sim/sample-image.svg`
pub(crate) async fn sample_image() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        SAMPLE_IMAGE,
    )
        .into_response()
}
