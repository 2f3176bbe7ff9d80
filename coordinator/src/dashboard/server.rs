//! The dashboard's HTTP server: the page and its assets, the whole state as JSON
//! (`/state`), and the live updates as server-sent events (`/events`: an `init` event
//! with everything so far, then a `point` per closed window and a `board` with the
//! tables, each serialized once for every viewer).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures::Stream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Dashboard, assets};

/// The page, linking its assets from this server.
pub fn page() -> String {
    assets::INDEX_HTML
        .replace(
            "{{HEAD}}",
            r#"<link rel="stylesheet" href="/uPlot.min.css"><link rel="stylesheet" href="/app.css">"#,
        )
        .replace(
            "{{BODY_END}}",
            r#"<script src="/uPlot.iife.min.js"></script><script src="/app.js"></script>"#,
        )
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The dashboard's router, without a socket (tests call it directly).
pub fn app(dash: Dashboard) -> Router {
    let page = Html(page());
    let state = dash.clone();
    Router::new()
        .route("/", get(move || std::future::ready(page.clone())))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", assets::APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", assets::APP_CSS) }),
        )
        .route(
            "/uPlot.iife.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", assets::UPLOT_JS) }),
        )
        .route(
            "/uPlot.min.css",
            get(|| async { asset("text/css; charset=utf-8", assets::UPLOT_CSS) }),
        )
        .route(
            "/state",
            get(move || {
                let json = state.init_json();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route(
            "/events",
            get(move || {
                let dash = dash.clone();
                async move { Sse::new(events(dash)).keep_alive(KeepAlive::default()) }
            }),
        )
}

/// `init` first, then every event; a viewer too slow to keep up gets `init` again.
fn events(dash: Dashboard) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before reading the state, so no point falls between the two.
    let rx = dash.subscribe();
    let first: Arc<str> = format!("init\n{}", dash.init_json()).into();
    futures::stream::unfold(
        (Some(first), rx, dash),
        |(first, mut rx, dash)| async move {
            if let Some(e) = first {
                return Some((Ok(sse(&e)), (None, rx, dash)));
            }
            let e: Arc<str> = match rx.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    format!("init\n{}", dash.init_json()).into()
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(sse(&e)), (None, rx, dash)))
        },
    )
}

fn sse(e: &str) -> Event {
    let (name, data) = e.split_once('\n').unwrap_or(("message", e));
    Event::default().event(name).data(data)
}

/// Serves the dashboard on `listener` until `shutdown` is cancelled; open event
/// streams are cut after a second then.
///
/// Fails only when accepting on the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dash: Dashboard,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let grace = shutdown.clone();
    let server =
        axum::serve(listener, app(dash)).with_graceful_shutdown(shutdown.cancelled_owned());
    tokio::select! {
        r = server => r,
        // Event streams never end by themselves: do not wait on them for long.
        () = async { grace.cancelled().await; tokio::time::sleep(Duration::from_secs(1)).await } => Ok(()),
    }
}
