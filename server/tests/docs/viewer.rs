//! `/api/v1/docs` in a real browser: Debian's chromium (installed by
//! `scripts/install-chromium.sh`, which fails rather than letting this test skip) loads the page
//! from a real `decentcom serve` with every other host unresolvable, runs Swagger UI, and the
//! rendered DOM must show the server's operations. The page and its assets are checked over plain
//! HTTP too: the vendored version is the one the page loads, and nothing outside the server is.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pretty_assertions::assert_eq;

use crate::server_process;

fn chromium() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/install-chromium.sh");
    let output = Command::new("bash").arg(script).stderr(Stdio::inherit()).output().unwrap();
    assert!(output.status.success(), "{script} failed: chromium is needed to check the page at /api/v1/docs");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The DOM of `url` once its scripts have run (virtual time lets the page's requests and timers
/// finish before the dump). No host but the loopback resolves, so a page that needed the network
/// would render nothing.
async fn rendered_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args(["--headless", "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-dev-shm-usage"])
        .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=15000", "--dump-dom", url])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Chromium's sandbox cannot start as root (CI runs as root).
    if running_as_root() {
        cmd.arg("--no-sandbox");
    }
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium did not finish within 120 s")
        .expect("run chromium");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_the_operations_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_process::start(dir.path(), &[]).await;
    let dom = rendered_dom(&format!("{}/api/v1/docs", server.base)).await;

    // Swagger UI built the page from the document: the document's title, operations' blocks
    // (tag and operation id) with a path and a summary.
    let expected = [
        r#"<h1 class="title">decentcom REST API"#,
        r#"id="operations-messages-create_message""#,
        r#"data-path="/api/v1/channels/{channel_id}/messages""#,
        "Posts a message",
        r#"id="operations-auth-verify""#,
    ];
    let missing: Vec<&str> = expected.iter().copied().filter(|e| !dom.contains(e)).collect();
    assert_eq!(missing, Vec::<&str>::new(), "not in the rendered page:\n{dom}");
    // Swagger UI says so in the page when it cannot load or parse the document.
    assert!(!dom.contains("Failed to load API definition"), "{dom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_loads_only_the_vendored_viewer_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_process::start(dir.path(), &[]).await;
    let page = reqwest::get(format!("{}/api/v1/docs", server.base)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();

    let vendored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/swagger-ui/package.json")).unwrap(),
    )
    .unwrap();
    let version = vendored["version"].as_str().unwrap();
    let references: Vec<&str> =
        html.split(['"', '\'']).filter(|s| s.starts_with("docs/") || s.contains("://") || s.starts_with('/')).collect();
    let assets = format!("docs/swagger-ui-{version}");
    assert_eq!(
        references,
        vec![format!("{assets}/swagger-ui.css"), format!("{assets}/swagger-ui-bundle.js"), format!("{assets}/init.js")],
        "the page must load the vendored version, from this server only"
    );
    for asset in &references {
        let resp = reqwest::get(format!("{}/api/v1/{asset}", server.base)).await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert_eq!(resp.headers()["cache-control"], "public, max-age=31536000, immutable", "{asset}");
    }
    let bundle = reqwest::get(format!("{}/api/v1/{assets}/swagger-ui-bundle.js", server.base)).await.unwrap();
    let served = bundle.bytes().await.unwrap();
    let on_disk =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/swagger-ui/swagger-ui-bundle.js")).unwrap();
    assert!(served == on_disk, "the served bundle is not the vendored file");
}
