//! `GET /api/v1/docs`: this server's OpenAPI document rendered for browsing by Swagger UI.
//!
//! The viewer (npm `swagger-ui-dist`, vendored byte for byte under `server/assets/swagger-ui/` by
//! `scripts/vendor-swagger-ui.sh`) is compiled into the binary: the page loads its own files and
//! `openapi.json` from this server and nothing else, so it works offline, behind any proxy and
//! under a strict Content-Security-Policy. Its URLs are relative, so a path prefix added by a
//! proxy is kept; the assets' path carries the version, so they may be cached for good.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The vendored version (`server/assets/swagger-ui/package.json`), a macro so that it can be
/// spliced into the page at compile time.
macro_rules! swagger_ui_version {
    () => {
        "5.36.0"
    };
}
/// Where the assets are served, relative to the page.
macro_rules! assets {
    () => {
        concat!("docs/swagger-ui-", swagger_ui_version!())
    };
}

const BUNDLE: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const STYLESHEET: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// The page: Swagger UI's stylesheet and bundle, and [`INIT`], which points it at the document.
const PAGE: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>decentcom REST API v1</title>
<link rel="stylesheet" href=""#,
    assets!(),
    r#"/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>This page needs JavaScript. The document it shows is <a href="openapi.json">openapi.json</a>.</noscript>
<script src=""#,
    assets!(),
    r#"/swagger-ui-bundle.js"></script>
<script src=""#,
    assets!(),
    r#"/init.js"></script>
</body>
</html>
"#
);

/// Swagger UI's settings, in a file of its own because the policy forbids inline scripts. No
/// online validator (the default would send the document to a third party) and no top bar
/// (it offers to load other documents).
const INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
  displayOperationId: false,
  defaultModelsExpandDepth: 0,
});
"##;

/// Scripts only from this server and no inline ones; Swagger UI sets inline styles and draws
/// some icons as `data:` images; requests ("Try it out") only to this server.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

pub fn router() -> OpenApiRouter<AppState> {
    let asset = |file: &str| format!("/{}/{file}", assets!());
    OpenApiRouter::new()
        .routes(routes!(docs))
        .route(&asset("swagger-ui-bundle.js"), get(|| async { immutable("text/javascript; charset=utf-8", BUNDLE) }))
        .route(&asset("swagger-ui.css"), get(|| async { immutable("text/css; charset=utf-8", STYLESHEET) }))
        .route(&asset("init.js"), get(|| async { immutable("text/javascript; charset=utf-8", INIT) }))
}

/// A page that renders this OpenAPI document (Swagger UI, served by this server; no network).
#[utoipa::path(get, path = "/docs", tag = "meta",
    responses((status = 200, description = "an HTML page", content_type = "text/html", body = String)))]
pub async fn docs() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

/// A vendored asset: its path names the version, so it never changes.
fn immutable(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
}
