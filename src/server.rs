//! HTTP: the landing page, /healthz and the metrics endpoint.
//!
//! Every handler reads the latest snapshot and nothing else; a scrape never
//! walks /proc or parses a log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::snapshot::Snapshot;
use crate::state::Published;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn app(snapshot: Arc<Published<Snapshot>>, telemetry_path: &str) -> Router {
    let path = telemetry_path.to_string();
    Router::new()
        .route("/", get(landing))
        .route("/healthz", get(healthz))
        .route("/diagnose", get(diagnosis))
        .route(&path, get(metrics))
        .with_state(AppState { snapshot, path })
}

#[derive(Clone)]
struct AppState {
    snapshot: Arc<Published<Snapshot>>,
    path: String,
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let snap = s.snapshot.get();
    (
        [(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        snap.body.clone(),
    )
}

#[derive(serde::Deserialize)]
struct DiagnoseQuery {
    format: Option<String>,
}

/// The diagnosis of the last hour, from the snapshot: text, or JSON with
/// `?format=json`.
async fn diagnosis(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<DiagnoseQuery>,
) -> axum::response::Response {
    let snap = s.snapshot.get();
    match q.format.as_deref() {
        None | Some("text") => (
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            snap.diagnosis_text.clone(),
        )
            .into_response(),
        Some("json") => (
            [(CONTENT_TYPE, "application/json")],
            snap.diagnosis_json.clone(),
        )
            .into_response(),
        Some(other) => (
            axum::http::StatusCode::BAD_REQUEST,
            format!("format {other:?}: expected text or json\n"),
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let snap = s.snapshot.get();
    // Healthy once the renderer has published at least one snapshot.
    if snap.built_at == std::time::SystemTime::UNIX_EPOCH {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    } else {
        (axum::http::StatusCode::OK, "ok\n")
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

async fn landing(State(s): State<AppState>) -> Html<String> {
    let snap = s.snapshot.get();
    let mut rows = String::new();
    for p in &snap.pools {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&p.name),
            p.server,
            if p.up { "up" } else { "<b>down</b>" },
            p.master_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            p.workers
        ));
    }
    if snap.pools.is_empty() {
        rows.push_str("<tr><td colspan=5>no pools configured or discovered yet</td></tr>\n");
    }
    let mut sources = String::new();
    for (name, state) in &snap.sources {
        sources.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            escape(name),
            escape(state)
        ));
    }
    Html(format!(
        "<!doctype html><html><head><title>badgateway_exporter</title></head><body>\n\
         <h1>badgateway_exporter {version}</h1>\n\
         <p><a href=\"{path}\">Metrics</a> &middot; <a href=\"/diagnose\">Diagnosis</a> &middot; <a href=\"/healthz\">Health</a></p>\n\
         <p>Config: {origin}</p>\n\
         <h2>Pools</h2>\n<table border=1 cellpadding=4>\n\
         <tr><th>pool</th><th>server</th><th>state</th><th>master pid</th><th>workers</th></tr>\n\
         {rows}</table>\n\
         <h2>Sources</h2>\n<table border=1 cellpadding=4>\n{sources}</table>\n</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        path = escape(&s.path),
        origin = escape(&snap.config_origin),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::PoolSummary;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_body(app: Router, uri: &str) -> (StatusCode, String, String) {
        let resp = app
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_the_snapshot_with_openmetrics_type() {
        let snap = Published::new(Snapshot::empty("test.yml"));
        snap.publish(Snapshot {
            config_origin: "test.yml".into(),
            body: bytes::Bytes::from_static(
                b"badgateway_pool_up{pool=\"a\",server=\"gunicorn\"} 1\n# EOF\n",
            ),
            built_at: std::time::SystemTime::now(),
            pools: vec![PoolSummary {
                name: "a<b>".into(),
                server: "gunicorn",
                up: true,
                master_pid: Some(42),
                workers: 3,
            }],
            sources: vec![("kmsg".into(), "NOT READABLE".into())],
            diagnosis_text: bytes::Bytes::from_static(b"== Verdict: OK\n"),
            diagnosis_json: bytes::Bytes::from_static(b"{\"severity\":\"ok\"}"),
        });
        let (st, ct, body) = get_body(app(snap.clone(), "/metrics"), "/metrics").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(body.contains("badgateway_pool_up{pool=\"a\""));
        let (st, _, page) = get_body(app(snap.clone(), "/metrics"), "/").await;
        assert_eq!(st, StatusCode::OK);
        assert!(page.contains("href=\"/metrics\""));
        assert!(
            page.contains("a&lt;b&gt;"),
            "pool names are escaped: {page}"
        );
        assert!(page.contains("<td>42</td><td>3</td>"));
        assert!(page.contains("<td>kmsg</td><td>NOT READABLE"), "{page}");
        let (st, _, _) = get_body(app(snap.clone(), "/m"), "/healthz").await;
        assert_eq!(st, StatusCode::OK);
        let (st, ct, text) = get_body(app(snap.clone(), "/m"), "/diagnose").await;
        assert_eq!(
            (st, ct.as_str(), text.as_str()),
            (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "== Verdict: OK\n"
            )
        );
        let (st, ct, json) = get_body(app(snap.clone(), "/m"), "/diagnose?format=json").await;
        assert_eq!((st, ct.as_str()), (StatusCode::OK, "application/json"));
        assert!(json.contains("\"severity\""));
        let (st, _, err) = get_body(app(snap, "/m"), "/diagnose?format=xml").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(err.contains("xml"));
    }

    #[tokio::test]
    async fn healthz_before_first_snapshot() {
        let snap = Published::new(Snapshot::empty("x"));
        let (st, _, _) = get_body(app(snap.clone(), "/metrics"), "/healthz").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        let (st, _, _) = get_body(app(snap, "/custom"), "/custom").await;
        assert_eq!(st, StatusCode::OK);
    }
}
