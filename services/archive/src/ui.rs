//! The web console at `/ui/`: an HTML page, a script and a style sheet, embedded in the
//! binary so that it runs with no build step, no Node toolchain and no network.
//!
//! The assets hold no data and are served to anyone; everything the page shows it asks the
//! public JSON API for, with the token the person pasted, so the server's permissions and
//! masking apply to the console exactly as to the CLI. The headers forbid inline scripts,
//! framing and content sniffing, and keep every request on this origin.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// `script-src 'self'` keeps scripts to the embedded file: an injected `<script>` or
/// `onclick` does not run. `connect-src 'self'`: the page talks to this server only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; \
base-uri 'none'; frame-ancestors 'none'";

/// (file name, content type, content) of every asset.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
];

/// `/ui/` and its assets. Open to anyone: see the module's comment.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(file: &str) -> Response {
    let Some((_, content_type, content)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        let known: Vec<&str> = ASSETS.iter().map(|(name, _, _)| *name).collect();
        return (
            StatusCode::NOT_FOUND,
            format!(
                "the console has no file {file:?} (it has {}); open /ui/",
                known.join(", ")
            ),
        )
            .into_response();
    };
    let mut response = (*content).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, *content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // A new binary brings new assets: the browser checks rather than keeping old ones.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
#[path = "ui_tests.rs"]
mod tests;
