//! HTTP: the status page, /healthz, /diagnose, /api/v1/timeline and the
//! metrics endpoint.
//!
//! Every handler reads the latest snapshot and nothing else; a scrape never
//! walks /proc or parses a log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::snapshot::Snapshot;
use crate::state::Published;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

/// Choose the format the way Prometheus' Go client does: the acceptable
/// media types by quality, the first of `application/openmetrics-text`
/// (version 1.0.0, 0.0.1 or none) and `text/plain` (version 0.0.4 or none)
/// wins; anything else, or no `Accept`, is the text format. Protocol
/// buffers are not offered.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut offers: Vec<(f32, usize, Format)> = Vec::new();
    for (i, part) in accept.split(',').enumerate() {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let (mut q, mut version) = (1.0f32, None);
        for p in params {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_string()),
                    _ => {}
                }
            }
        }
        let format = match (media.as_str(), version.as_deref()) {
            ("application/openmetrics-text", None | Some("1.0.0") | Some("0.0.1")) => {
                Format::OpenMetrics
            }
            ("text/plain", None | Some("0.0.4")) => Format::Text,
            _ => continue,
        };
        if q > 0.0 {
            offers.push((q, i, format));
        }
    }
    offers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    offers.first().map_or(Format::Text, |o| o.2)
}

/// Whether `Accept-Encoding` allows gzip (with a quality above zero).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|ae| {
        ae.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let coding = params.next().unwrap_or("");
            let q = params
                .filter_map(|p| p.strip_prefix("q="))
                .next()
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
    })
}

pub fn app(snapshot: Arc<Published<Snapshot>>, telemetry_path: &str) -> Router {
    let path = telemetry_path.to_string();
    let router = Router::new()
        .route("/", get(landing))
        .route("/healthz", get(healthz))
        .route("/diagnose", get(diagnosis))
        .route("/api/v1/timeline", get(timeline));
    let router = DOCS.iter().fold(router, |r, (path, text)| {
        r.route(
            path,
            get(move || async move { ([(CONTENT_TYPE, "text/markdown; charset=utf-8")], *text) }),
        )
    });
    router
        .route(&path, get(metrics))
        .with_state(AppState { snapshot })
}

#[derive(Clone)]
struct AppState {
    snapshot: Arc<Published<Snapshot>>,
}

/// The snapshot in the negotiated format, gzipped when allowed (the gzip is
/// made once per snapshot).
async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    let snap = s.snapshot.get();
    let header = |h| headers.get(h).and_then(|v| v.to_str().ok());
    let (body, content_type) = match negotiate(header(ACCEPT)) {
        Format::Text => (&snap.text, TEXT_CONTENT_TYPE),
        Format::OpenMetrics => (&snap.openmetrics, OPENMETRICS_CONTENT_TYPE),
    };
    let vary = (VARY, "Accept, Accept-Encoding");
    if accepts_gzip(header(ACCEPT_ENCODING)) {
        (
            [
                (CONTENT_TYPE, content_type),
                (CONTENT_ENCODING, "gzip"),
                vary,
            ],
            body.gzip(),
        )
            .into_response()
    } else {
        ([(CONTENT_TYPE, content_type), vary], body.plain.clone()).into_response()
    }
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

/// The status page, rendered with the snapshot; gzipped when allowed (a
/// busy hour is a few hundred kB of SVG).
async fn landing(State(s): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    let snap = s.snapshot.get();
    let html = (CONTENT_TYPE, "text/html; charset=utf-8");
    let vary = (VARY, "Accept-Encoding");
    let ae = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    if accepts_gzip(ae) {
        (
            [html, (CONTENT_ENCODING, "gzip"), vary],
            snap.status_html.gzip(),
        )
            .into_response()
    } else {
        ([html, vary], snap.status_html.plain.clone()).into_response()
    }
}

/// The status page's hour as JSON (docs/status-page.md).
async fn timeline(State(s): State<AppState>) -> impl IntoResponse {
    let snap = s.snapshot.get();
    (
        [(CONTENT_TYPE, "application/json")],
        snap.timeline_json.clone(),
    )
}

/// The docs the status page links to, built in: the page must work on a
/// host with no way out.
const DOCS: &[(&str, &str)] = &[
    (
        "/docs/status-page.md",
        include_str!("../docs/status-page.md"),
    ),
    ("/docs/metrics.md", include_str!("../docs/metrics.md")),
    ("/docs/runbook.md", include_str!("../docs/runbook.md")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::PoolSummary;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_body(app: Router, uri: &str) -> (StatusCode, String, String) {
        get_with(app, uri, &[]).await
    }

    /// `uri` asked for with `accept-encoding: gzip`.
    async fn get_gzipped(app: Router, uri: &str) -> axum::response::Response {
        let req = Request::builder()
            .uri(uri)
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap()
    }

    async fn get_with(
        app: Router,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
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
    async fn serves_the_snapshot_in_the_format_asked_for() {
        let snap = Published::new(Snapshot::empty("test.yml"));
        snap.publish(Snapshot {
            config_origin: "test.yml".into(),
            text: crate::snapshot::Body::new(bytes::Bytes::from_static(
                b"badgateway_pool_up{pool=\"a\",server=\"gunicorn\"} 1\n",
            )),
            openmetrics: crate::snapshot::Body::new(bytes::Bytes::from_static(
                b"badgateway_pool_up{pool=\"a\",server=\"gunicorn\"} 1\n# EOF\n",
            )),
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
            status_html: crate::snapshot::Body::new(bytes::Bytes::from_static(
                b"<!doctype html><p>the page</p>",
            )),
            timeline_json: bytes::Bytes::from_static(b"{\"schema\":1}"),
        });
        let (st, ct, body) = get_body(app(snap.clone(), "/metrics"), "/metrics").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(ct, TEXT_CONTENT_TYPE);
        assert!(body.contains("badgateway_pool_up{pool=\"a\"") && !body.contains("# EOF"));
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (_, ct, body) = get_with(
            app(snap.clone(), "/metrics"),
            "/metrics",
            &[("accept", prometheus)],
        )
        .await;
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"));
        let (st, ct, page) = get_body(app(snap.clone(), "/metrics"), "/").await;
        assert_eq!(
            (st, ct.as_str(), page.as_str()),
            (
                StatusCode::OK,
                "text/html; charset=utf-8",
                "<!doctype html><p>the page</p>"
            )
        );
        let resp = get_gzipped(app(snap.clone(), "/metrics"), "/").await;
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let (st, ct, json) = get_body(app(snap.clone(), "/metrics"), "/api/v1/timeline").await;
        assert_eq!(
            (st, ct.as_str(), json.as_str()),
            (StatusCode::OK, "application/json", "{\"schema\":1}")
        );
        let (st, ct, doc) = get_body(app(snap.clone(), "/metrics"), "/docs/status-page.md").await;
        assert_eq!(
            (st, ct.as_str()),
            (StatusCode::OK, "text/markdown; charset=utf-8")
        );
        assert!(doc.contains("/api/v1/timeline"));
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

    #[test]
    fn negotiation_as_the_go_client_does_it() {
        use Format::*;
        let cases: &[(Option<&str>, Format)] = &[
            (None, Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("text/plain;version=0.0.4"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("application/openmetrics-text; version=1.0.0; charset=utf-8"), OpenMetrics),
            (Some("application/openmetrics-text;version=0.0.1"), OpenMetrics),
            (Some("application/openmetrics-text;version=2.0.0"), Text),
            (Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"), Text),
            (Some("text/plain;q=0.5, application/openmetrics-text"), OpenMetrics),
            (Some("application/openmetrics-text;q=0, text/plain"), Text),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"), Text),
            (Some("garbage;;;=,"), Text),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "{accept:?}");
        }
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[tokio::test]
    async fn gzip_is_the_same_body() {
        let snap = Published::new(Snapshot::empty("x"));
        let mut s = Snapshot::empty("x");
        s.text = crate::snapshot::Body::new("a_metric 1\n".repeat(1000));
        s.built_at = std::time::SystemTime::now();
        snap.publish(s);
        let resp = get_gzipped(app(snap.clone(), "/metrics"), "/metrics").await;
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let zipped = resp.into_body().collect().await.unwrap().to_bytes();
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, "a_metric 1\n".repeat(1000));
        assert!(zipped.len() < plain.len() / 10);
        // Made once: the same bytes for the next scrape.
        assert_eq!(snap.get().text.gzip(), zipped);
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
