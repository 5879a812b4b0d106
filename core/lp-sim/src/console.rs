//! The agent console: one self-contained HTML page driving the `/sim` API.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("console.html");

/// `GET /console`
pub(crate) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}
