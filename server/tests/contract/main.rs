//! Property-based contract tests: schemathesis (PyPI, installed into `.tools/` by
//! `scripts/install-schemathesis.sh`) generates requests from `/api/v1/openapi.json` and holds a
//! real server to the document with every check it has — statuses, headers, content types,
//! response schemas, valid data accepted, invalid data refused, authentication enforced —
//! on SQLite and on PostgreSQL.
//!
//! Each backend gets three passes with a fixed seed and a bounded number of examples:
//! as an administrator (every operation but those ending the session), with no token at all, and
//! the operations that end the caller's session (logout, leaving) with a member's token of their
//! own. Zero failures is the bar. The few checks relaxed for a reason are in
//! `schemathesis.toml` beside this file, each with its reason; `hooks.py` generates valid
//! Ed25519 public keys. The gateway is not fuzzed: it is a WebSocket (tests/api/gateway.rs).

#[path = "../common/server_process.rs"]
mod server_process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use decentcom::testing::ScratchPg;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

/// Examples per operation: keeps a backend's three passes within five minutes on two cores. The
/// pass without a token needs fewer (every operation that takes one answers 401 before reading
/// anything else).
const EXAMPLES: u32 = 25;
const EXAMPLES_WITHOUT_TOKEN: u32 = 8;
const SEED: u32 = 20261207;
/// Operations no pass fuzzes: the gateway is a WebSocket upgrade, which an HTTP fuzzer cannot
/// complete.
const NEVER: &[&str] = &["/api/v1/gateway"];
/// Operations that end the caller's session or membership: fuzzed in a pass of their own.
const SESSION_ENDING: &[&str] = &["/api/v1/auth/logout", "/api/v1/members/me"];

fn schemathesis() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/install-schemathesis.sh");
            let output = Command::new("bash").arg(script).stderr(Stdio::inherit()).output().unwrap();
            assert!(output.status.success(), "{script} failed: schemathesis is needed by the contract tests");
            let path = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
            assert!(path.is_file(), "{script} did not produce {}", path.display());
            path
        })
        .clone()
}

/// The passes run one at a time (each keeps both cores busy).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_honours_its_openapi_document() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    honours_the_document("sqlite", dir.path(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_honours_its_openapi_document() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let pg = ScratchPg::create("contract").await;
    let env = [
        ("DECENTCOM_STORAGE__BACKEND", "postgres".to_owned()),
        ("DECENTCOM_STORAGE__DATABASE_URL", pg.url().to_owned()),
    ];
    honours_the_document("postgres", dir.path(), &env).await;
}

async fn honours_the_document(backend: &str, dir: &Path, env: &[(&str, String)]) {
    let binary = schemathesis();
    // Schemathesis floods every operation: the rate limits stay on (their 429s are in the
    // document it checks) with buckets it cannot empty.
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    for bucket in ["MESSAGES", "UPLOADS", "REACTIONS", "AUTH"] {
        for figure in ["PER_MINUTE", "BURST"] {
            env.push((format!("DECENTCOM_LIMITS__{bucket}_{figure}"), "1000000".to_owned()));
        }
    }
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let server = server_process::start(dir, &env).await;
    let http = reqwest::Client::new();
    let admin = login(&http, &server.base, 1).await;
    let member = login(&http, &server.base, 2).await;
    seed(&http, &server.base, &admin).await;

    let everything_else: Vec<&str> = NEVER.iter().chain(SESSION_ENDING).copied().collect();
    let passes = [
        ("administrator", Some(admin.as_str()), Selection::Excluding(&everything_else), EXAMPLES),
        ("no token", None, Selection::Excluding(NEVER), EXAMPLES_WITHOUT_TOKEN),
        ("session-ending", Some(member.as_str()), Selection::Only(SESSION_ENDING), EXAMPLES),
    ];
    let mut failures = Vec::new();
    for (name, token, selection, examples) in passes {
        let started = Instant::now();
        let outcome = run_pass(&binary, &server.base, token, &selection, examples, &dir.join(name));
        println!(
            "{backend}, {name}: {} operations, {} requests, {} failures {:?}, {:.0} s",
            outcome.operations,
            outcome.requests,
            outcome.failures.values().sum::<u64>(),
            outcome.failures,
            started.elapsed().as_secs_f64()
        );
        if !outcome.passed {
            failures.push(format!("{name}:\n{}", outcome.output));
        }
    }
    assert!(failures.is_empty(), "schemathesis found contract failures on {backend}:\n{}", failures.join("\n"));
}

enum Selection<'a> {
    Excluding(&'a [&'a str]),
    Only(&'a [&'a str]),
}

struct Outcome {
    passed: bool,
    operations: u64,
    requests: u64,
    /// Failing check results by check name.
    failures: BTreeMap<String, u64>,
    /// schemathesis's own report, for a failed pass.
    output: String,
}

fn run_pass(
    binary: &Path,
    base: &str,
    token: Option<&str>,
    selection: &Selection<'_>,
    examples: u32,
    reports: &Path,
) -> Outcome {
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract");
    std::fs::create_dir_all(reports).unwrap();
    let mut cmd = Command::new(binary);
    // schemathesis keeps a cache in its working directory: a temporary one, never the checkout.
    cmd.current_dir(reports);
    cmd.arg("--config-file")
        .arg(format!("{here}/schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", base, "--seed", &SEED.to_string(), "-n", &examples.to_string()])
        .args(["--continue-on-failure", "--no-color", "--report", "ndjson", "--report-dir"])
        .arg(reports)
        // The hooks module (valid Ed25519 keys), imported by name from this directory.
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", here)
        .stdin(Stdio::null());
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    match selection {
        Selection::Excluding(paths) => paths.iter().for_each(|p| {
            cmd.args(["--exclude-path", p]);
        }),
        Selection::Only(paths) => paths.iter().for_each(|p| {
            cmd.args(["--include-path", p]);
        }),
    }
    let out = cmd.output().expect("run schemathesis");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (operations, requests, failures) = tally(reports);
    Outcome { passed: out.status.success(), operations, requests, failures, output }
}

/// Operations, requests and failing checks of a run, from its NDJSON report.
fn tally(reports: &Path) -> (u64, u64, BTreeMap<String, u64>) {
    let (mut operations, mut requests, mut failures) = (0, 0, BTreeMap::new());
    let Ok(entries) = std::fs::read_dir(reports) else {
        return (0, 0, failures);
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
            if let Some(selected) = event.pointer("/LoadingFinished/statistic/operations/selected") {
                operations = selected.as_u64().unwrap_or(0);
            }
            let Some(recorder) = event.pointer("/ScenarioFinished/recorder") else { continue };
            requests += recorder["interactions"].as_object().map_or(0, |i| i.len() as u64);
            for checks in recorder["checks"].as_object().into_iter().flat_map(|c| c.values()) {
                for check in checks.as_array().into_iter().flatten() {
                    if check["status"] == "failure" {
                        *failures.entry(check["name"].as_str().unwrap_or("?").to_owned()).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    (operations, requests, failures)
}

/// The real login flow; the first user of the server becomes its administrator.
async fn login(http: &reqwest::Client, base: &str, seed: u8) -> String {
    use base64::Engine;
    let key = SigningKey::from_bytes(&[seed; 32]);
    let pubkey = bs58::encode(key.verifying_key().to_bytes()).into_string();
    let challenge: Value = http
        .post(format!("{base}/api/v1/auth/challenge"))
        .json(&json!({"pubkey": pubkey}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = challenge["challenge"].as_str().unwrap();
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(text.as_bytes()).to_bytes());
    let verify: Value = http
        .post(format!("{base}/api/v1/auth/verify"))
        .json(&json!({"pubkey": pubkey, "signature": signature}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    verify["token"].as_str().expect("a session token").to_owned()
}

/// A little of everything, so that generated ids sometimes name real resources.
async fn seed(http: &reqwest::Client, base: &str, admin: &str) {
    let post =
        |path: &str, body: Value| http.post(format!("{base}/api/v1{path}")).bearer_auth(admin).json(&body).send();
    let channel: Value = post("/channels", json!({"name": "contract"})).await.unwrap().json().await.unwrap();
    let channel = channel["id"].as_str().unwrap().to_owned();
    for i in 0..5 {
        post(&format!("/channels/{channel}/messages"), json!({"content": format!("seed message {i}")})).await.unwrap();
    }
    post("/roles", json!({"name": "seeded", "permissions": 3})).await.unwrap();
    post("/invites", json!({"max_uses": 5})).await.unwrap();
}
