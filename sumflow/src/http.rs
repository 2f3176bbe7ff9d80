//! HTTP plumbing shared by the totalizer and the adder's metrics port: the
//! server loop and JSON answers for unknown routes and wrong methods.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use http::{StatusCode, header};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::metrics::metrics_handler;

/// Serves `router` on `listener` until `shutdown`, finishing requests in
/// flight.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    tracing::info!(%addr, "serving HTTP");
    // Small JSON answers: without TCP_NODELAY, Nagle's algorithm can hold
    // them back for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::HttpServe { addr, source })
}

/// A JSON error answer: `{"error": "...", "method": "...", "path": "..."}`.
fn json_error(status: StatusCode, error: &str, request: &Request) -> Response {
    let body = serde_json::json!({
        "error": error,
        "method": request.method().as_str(),
        "path": request.uri().path(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Fallback for routes that do not exist: 404 with a JSON body.
pub(crate) async fn not_found(request: Request) -> Response {
    json_error(StatusCode::NOT_FOUND, "not found", &request)
}

/// Fallback for a known route with the wrong method: 405 with a JSON body.
pub(crate) async fn method_not_allowed(request: Request) -> Response {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        &request,
    );
    // Every sumflow HTTP route is read-only.
    response
        .headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
    response
}

/// The adder's metrics port: `GET /metrics` and JSON errors.
pub(crate) fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(registry)
}
