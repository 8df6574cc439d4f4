//! `docs/api/routes.md` is generated from the OpenAPI document: one table per tag, in the
//! document's tag order, with each operation's method, path, summary, authentication, request,
//! success and error statuses. The test fails on any drift between the two, with a diff;
//! `DECENTCOM_UPDATE_DOCS=1` (or `just docs`) rewrites the file instead.

use std::collections::BTreeSet;
use std::fmt::Write;

use decentcom::config::Config;
use pretty_assertions::assert_str_eq;
use serde_json::Value;

const ROUTES_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api/routes.md");
const UPDATE: &str = "DECENTCOM_UPDATE_DOCS";
const METHODS: [&str; 6] = ["get", "head", "post", "put", "patch", "delete"];

#[test]
fn the_route_tables_are_the_openapi_documents() {
    let rendered = render(&decentcom::http::openapi::document(&Config::default()));
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(ROUTES_MD, &rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(ROUTES_MD).unwrap_or_default();
    assert_str_eq!(
        committed,
        rendered,
        "docs/api/routes.md differs from the OpenAPI document (left: the file, right: the document); \
         regenerate it with `scripts/just docs` (or {UPDATE}=1 cargo test -p decentcom --test docs) and commit it"
    );
}

#[test]
fn every_operation_has_a_summary_and_a_known_tag() {
    let doc = decentcom::http::openapi::document(&Config::default());
    let tags: BTreeSet<&str> =
        doc["tags"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    let mut wanting = Vec::new();
    for (path, method, op) in operations(&doc) {
        if op["summary"].as_str().is_none_or(str::is_empty) {
            wanting.push(format!("{method} {path}: no summary (the handler's doc comment)"));
        }
        if !op["tags"].as_array().is_some_and(|t| t.iter().any(|t| t.as_str().is_some_and(|t| tags.contains(t)))) {
            wanting.push(format!("{method} {path}: no tag among the document's tags"));
        }
    }
    assert_eq!(wanting, Vec::<String>::new());
}

/// Every operation of the document: (path, METHOD, operation), in path order.
fn operations(doc: &Value) -> Vec<(&str, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((path.as_str(), method.to_uppercase(), op));
            }
        }
    }
    out
}

fn render(doc: &Value) -> String {
    let mut out = String::from(
        "# REST routes\n\
         \n\
         <!-- Generated from the OpenAPI document by server/tests/docs/routes.rs: do not edit by hand.\n     \
         Regenerate with `scripts/just docs`; `scripts/just test` fails while this file and the document differ. -->\n\
         \n\
         Every operation of `GET /api/v1/openapi.json`, grouped as the document groups them. **Auth**:\n\
         `bearer` needs `Authorization: Bearer <token>` (see [authentication](auth.md)), `—` needs\n\
         nothing. **Request**: the JSON body's schema (`?` when the body may be left out), `multipart`\n\
         for uploads, and the query parameters. **Success** and **Errors** list every status the\n\
         operation can answer, with the schema of a successful body; every error body is\n\
         `{\"error\": \"…\"}` ([errors](errors-and-limits.md)). The schemas themselves are in the document,\n\
         most readable on the server's own page, `/api/v1/docs`.\n",
    );
    let ops = operations(doc);
    for tag in doc["tags"].as_array().expect("the document lists its tags") {
        let name = tag["name"].as_str().expect("a tag name");
        let mine: Vec<_> = ops.iter().filter(|(_, _, op)| op["tags"][0] == name).collect();
        if mine.is_empty() {
            continue;
        }
        write!(out, "\n## {name}\n\n").unwrap();
        if let Some(description) = tag["description"].as_str() {
            write!(out, "{}\n\n", one_line(description)).unwrap();
        }
        out.push_str("| Method | Path | Summary | Auth | Request | Success | Errors |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for (path, method, op) in mine {
            let (success, errors) = statuses(op);
            writeln!(
                out,
                "| {method} | `{path}` | {} | {} | {} | {success} | {errors} |",
                cell(op["summary"].as_str().unwrap_or_default()),
                auth(op),
                request(op),
            )
            .unwrap();
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Table cell text: one line, pipes escaped.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn auth(op: &Value) -> String {
    let alternatives = op["security"].as_array().cloned().unwrap_or_default();
    let bearer = alternatives.iter().any(|a| a.get("bearer").is_some());
    let optional = alternatives.iter().any(|a| a.as_object().is_some_and(|o| o.is_empty()));
    let token_query = parameters(op, "query").iter().any(|p| p == "token");
    match (bearer, optional) {
        (false, _) => "—".to_owned(),
        (true, false) => "bearer".to_owned(),
        (true, true) if token_query => "bearer or `?token=`".to_owned(),
        (true, true) => "optional bearer".to_owned(),
    }
}

fn parameters(op: &Value, location: &str) -> Vec<String> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == location)
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

fn request(op: &Value) -> String {
    let mut parts = Vec::new();
    let body = &op["requestBody"];
    if let Some(content) = body["content"].as_object() {
        let optional = if body["required"] == true { "" } else { "?" };
        for (media, schema) in content {
            parts.push(match media.as_str() {
                "application/json" => format!("{}{optional}", schema_name(&schema["schema"])),
                "multipart/form-data" => "multipart".to_owned(),
                other => format!("`{other}`"),
            });
        }
    }
    let query = parameters(op, "query");
    if !query.is_empty() {
        let names: Vec<String> = query.iter().map(|q| format!("`{q}`")).collect();
        parts.push(format!("query {}", names.join(", ")));
    }
    if parts.is_empty() { "—".to_owned() } else { parts.join("; ") }
}

/// A schema as a short name: a component's name, `[Name]` for arrays, else its type.
fn schema_name(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if schema["type"] == "array" {
        return format!("[{}]", schema_name(&schema["items"]));
    }
    match &schema["type"] {
        Value::String(t) => t.clone(),
        _ => "object".to_owned(),
    }
}

/// "200 Channel" and "400 401 …": successes with their body's schema, then every error status.
fn statuses(op: &Value) -> (String, String) {
    let responses = op["responses"].as_object().expect("responses");
    let mut codes: Vec<(&String, &Value)> = responses.iter().collect();
    codes.sort_by_key(|(code, _)| code.parse::<u16>().unwrap_or(u16::MAX));
    let (mut success, mut errors) = (Vec::new(), Vec::new());
    for (code, response) in codes {
        if code.parse::<u16>().is_ok_and(|c| c >= 400) {
            errors.push(code.clone());
            continue;
        }
        let body = response["content"].as_object().and_then(|c| c.get("application/json"));
        success.push(match body {
            Some(media) if media.get("schema").is_some() => format!("{code} {}", schema_name(&media["schema"])),
            _ => code.clone(),
        });
    }
    (success.join(", "), errors.join(" "))
}
