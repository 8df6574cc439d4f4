//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
//!
//! utoipa builds it from the handlers' own annotations (and the router's registrations, so no
//! route can be missing); [`document`] then completes it with what every operation of a kind
//! answers, so that each annotation lists only what is particular to its route:
//! - the error body `{error}` on every non-2xx response;
//! - 401 on every operation with a security requirement (the bearer token of api.md §1.2);
//! - path parameters typed by name: ids with the canonical pattern of §1.3 (and 400), keys,
//!   hashes, invite codes, emoji;
//! - 400, 413, 415, 422 on JSON bodies (§1.5), 400 on query strings, 408 where the request
//!   timeout applies (§1.7), 500 and 503 on every operation that reaches the database;
//! - 429 with `Retry-After` on the rate-limited operations whose bucket is on (§1.8).
//!
//! Limits that come from the configuration (message length) are written into the document of the
//! running server, so the document is built once per server from its configuration.

use serde_json::{Value, json};

use crate::config::Config;

/// The canonical decimal form of an entity id: 1 to 9223372036854775807 without leading zeros.
pub fn id_pattern() -> String {
    format!("^{}$", decimal_at_most(&i64::MAX.to_string()))
}

/// A regular expression (without anchors) for the canonical decimal numbers 1..=`max`.
fn decimal_at_most(max: &str) -> String {
    let digits: Vec<u32> = max.chars().map(|c| c.to_digit(10).expect("decimal")).collect();
    let n = digits.len();
    // Shorter numbers: any of 1..n-1 digits.
    let mut alternatives = vec![match n {
        1 => String::new(),
        2 => "[1-9]".to_owned(),
        _ => format!("[1-9][0-9]{{0,{}}}", n - 2),
    }];
    // As long as `max`: equal to its first i digits, then a smaller digit, then anything.
    for i in 0..n {
        let low = if i == 0 { 1 } else { 0 };
        if digits[i] > low {
            let prefix: String = digits[..i].iter().map(|d| d.to_string()).collect();
            let range = if digits[i] - 1 == low { low.to_string() } else { format!("[{low}-{}]", digits[i] - 1) };
            let rest = n - i - 1;
            let tail = match rest {
                0 => String::new(),
                1 => "[0-9]".to_owned(),
                _ => format!("[0-9]{{{rest}}}"),
            };
            alternatives.push(format!("{prefix}{range}{tail}"));
        }
    }
    alternatives.push(max.to_owned());
    alternatives.retain(|a| !a.is_empty());
    format!("(?:{})", alternatives.join("|"))
}

/// The format of public keys: base58 of 32 bytes that decompress to an Ed25519 point.
pub const PUBKEY_FORMAT: &str = "ed25519-public-key";
/// Base58 (Bitcoin alphabet) of 32 bytes is 32 to 44 characters.
pub const PUBKEY_PATTERN: &str = "^[1-9A-HJ-NP-Za-km-z]{32,44}$";
/// A SHA-256 as 64 lowercase hex characters.
pub const HASH_PATTERN: &str = "^[0-9a-f]{64}$";
/// A multipart part's name travels in a header: control characters (tab aside) cannot.
pub const PART_NAME_PATTERN: &str = r"^[^\x00-\x08\x0A-\x1F\x7F]*$";
/// Whitespace as Rust's `str::trim` sees it (Unicode White_Space), spelled out because regular
/// expression dialects disagree on `\s` (U+0085, U+FEFF).
pub const WHITESPACE: &str = r"\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// An invite code.
pub const INVITE_CODE_PATTERN: &str = "^[0-9A-Za-z]{8}$";

/// Operations that never touch the database.
fn database_free(path: &str) -> bool {
    matches!(path, "/api/v1/openapi.json" | "/api/v1/server/info" | "/api/v1/docs")
}

/// Whether the 30 s request timeout (408) applies (api.md §1.7).
fn times_out(path: &str) -> bool {
    !(path.starts_with("/api/v1/media/")
        || path == "/api/v1/gateway"
        || path.ends_with("/attachments")
        || path == "/api/v1/profile/avatar")
}

/// The document of the server running with `config`.
pub fn document(config: &Config) -> Value {
    let mut doc = serde_json::to_value(super::api_routes().1).expect("the OpenAPI document serialises");
    complete(&mut doc, config);
    doc
}

fn complete(doc: &mut Value, config: &Config) {
    doc["info"]["description"] = json!(
        "The decentcom REST API v1. Every error body is `{\"error\": \"<message>\"}`; ids are decimal \
         strings; timestamps RFC 3339 in UTC with six fractional digits. Authenticated operations take \
         `Authorization: Bearer <token>` from `POST /auth/verify`."
    );
    let components = doc["components"].as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "A session token from `POST /auth/verify` (32 lowercase hex characters)."
    });
    components["schemas"]["ApiError"] = json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "a short English phrase"}},
    });
    doc["components"] = components;

    let requests = request_schemas(doc);
    for (name, schema) in doc["components"]["schemas"].as_object_mut().expect("schemas").iter_mut() {
        let is_request = requests.contains(name);
        complete_properties(schema, config, is_request);
        if is_request {
            // No text a request sends may hold U+0000 (api.md §1.1).
            forbid_nul(schema);
        }
    }
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().expect("a path item").iter_mut() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch" | "head") {
                continue;
            }
            if let Some(multipart) = op.pointer_mut("/requestBody/content/multipart~1form-data") {
                multipart["schema"] = multipart_schema(path, config);
                op["requestBody"]["required"] = json!(true);
            }
            complete_operation(path, op);
            if let Some(bucket) = super::limits::bucket_for(method, path) {
                rate_limited(op, bucket, config);
            }
        }
    }
}

/// The 429 of an operation limited by `bucket` (api.md §1.8), when the bucket is on.
fn rate_limited(op: &mut Value, bucket: super::limits::Bucket, config: &Config) {
    let figures = match bucket {
        super::limits::Bucket::Messages => config.limits.messages(),
        super::limits::Bucket::Uploads => config.limits.uploads(),
        super::limits::Bucket::Reactions => config.limits.reactions(),
        super::limits::Bucket::Auth => config.limits.auth(),
    };
    if figures.per_minute == 0 || figures.burst == 0 {
        return;
    }
    let per = if bucket.per_address() { "client address" } else { "user" };
    op["responses"]["429"] = json!({
        "description": format!(
            "rate limited: the `{}` bucket of this {per} is empty ({} a minute, {} at once); nothing was stored",
            bucket.name(), figures.per_minute, figures.burst
        ),
        "headers": {"Retry-After": {
            "description": "whole seconds until the bucket holds a token again (at least 1)",
            "required": true,
            "schema": {"type": "integer", "minimum": 1},
        }},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
    });
}

/// Upload bodies (api.md §3.5, §3.14): every part is a file, whatever its name; an attachment
/// upload takes 1 to 10 non-empty files of at most `content.max_file_size` bytes, an avatar
/// upload reads its first part.
fn multipart_schema(path: &str, config: &Config) -> Value {
    if path.ends_with("/attachments") {
        json!({
            "type": "object",
            "minProperties": 1,
            "maxProperties": 10,
            "propertyNames": {"pattern": PART_NAME_PATTERN},
            "additionalProperties": {
                "type": "string",
                "format": "binary",
                "minLength": 1,
                "maxLength": config.content.max_file_size,
            },
        })
    } else {
        json!({
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": PART_NAME_PATTERN},
            "additionalProperties": {"type": "string", "format": "binary"},
        })
    }
}

/// The component schemas request bodies refer to, directly or through other schemas.
fn request_schemas(doc: &Value) -> Vec<String> {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(SCHEMAS)) {
                    out.push(name.to_owned());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for item in doc["paths"].as_object().into_iter().flat_map(|p| p.values()) {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(body) = op.get("requestBody") {
                refs(body, &mut found);
            }
        }
    }
    let mut done = 0;
    while done < found.len() {
        let mut more = Vec::new();
        refs(&doc["components"]["schemas"][&found[done]], &mut more);
        for name in more {
            if !found.contains(&name) {
                found.push(name);
            }
        }
        done += 1;
    }
    found
}

const SCHEMAS: &str = "#/components/schemas/";

/// Every string of `schema` (properties, items, nested objects) refuses U+0000: strings without
/// a pattern get `^[^\x00]*$`; patterns of their own already exclude it (see [`complete_properties`]).
fn forbid_nul(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_string = map
                .get("type")
                .is_some_and(|t| t == "string" || t.as_array().is_some_and(|a| a.contains(&json!("string"))));
            if is_string && !map.contains_key("pattern") && !map.contains_key("format") {
                map.insert("pattern".into(), json!(NO_NUL));
            }
            for key in ["properties", "items", "additionalProperties", "oneOf", "anyOf", "allOf"] {
                match map.get_mut(key) {
                    Some(Value::Object(inner)) if key == "properties" => inner.values_mut().for_each(forbid_nul),
                    Some(Value::Array(inner)) => inner.iter_mut().for_each(forbid_nul),
                    Some(inner) => forbid_nul(inner),
                    None => {}
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_nul),
        _ => {}
    }
}

/// A string without U+0000.
pub const NO_NUL: &str = r"^[^\x00]*$";

/// Object properties typed by their names, as everywhere in the API: `id` and `*_id` are ids
/// (`*_ids` lists of them; a role id also takes `everyone` / `admin`), `pubkey` and `*_pubkey`
/// public keys. In requests, `content` (messages) is bounded by `content.max_message_length` and
/// must hold more than whitespace, and a display name is 1 to 32 characters once trimmed.
fn complete_properties(schema: &mut Value, config: &Config, is_request: bool) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        let patterned = |property: &mut Value, pattern: &str| {
            if property.get("type").is_some() || property.get("pattern").is_some() {
                property["pattern"] = json!(pattern);
            }
        };
        if name == "grant_role_id" || name == "role_id" {
            patterned(property, &role_id_pattern());
        } else if name == "id" || name.ends_with("_id") {
            patterned(property, &id_pattern());
        } else if name.ends_with("_ids") {
            if let Some(items) = property.get_mut("items") {
                patterned(items, &id_pattern());
            }
        } else if name == "pubkey" || name.ends_with("_pubkey") {
            patterned(property, PUBKEY_PATTERN);
            if property.get("type").is_some() {
                property["format"] = json!(PUBKEY_FORMAT);
            }
        } else if is_request && name == "content" && property["type"] == "string" {
            property["maxLength"] = json!(config.content.max_message_length);
            property["pattern"] = json!(format!(r"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"));
        } else if is_request && name == "display_name" {
            let (w, n) = (format!("[{WHITESPACE}]"), format!(r"[^{WHITESPACE}\x00]"));
            property["pattern"] = json!(format!(r"^{w}*{n}(?:[^\x00]{{0,30}}{n})?{w}*$"));
        }
    }
}

fn complete_operation(path: &str, op: &mut Value) {
    let mut extra: Vec<(u16, &str)> = Vec::new();

    let mut malformed_path = false;
    let mut has_query = false;
    for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        let name = param["name"].as_str().unwrap_or_default().to_owned();
        match param["in"].as_str() {
            Some("path") => {
                if let Some((schema, validated)) = path_parameter(&name) {
                    param["schema"] = schema;
                    malformed_path |= validated;
                }
            }
            Some("query") => {
                has_query = true;
                // An id cursor or filter (timestamps carry their own format).
                let is_id = matches!(name.as_str(), "before" | "after" | "cursor" | "channel_id" | "author_id");
                let schema = &mut param["schema"];
                if is_id && schema.get("format").is_none() {
                    schema["pattern"] = json!(id_pattern());
                } else if schema["type"] == "string" && schema.get("format").is_none() {
                    schema["pattern"] = json!(NO_NUL);
                }
            }
            _ => {}
        }
    }
    if malformed_path {
        extra.push((400, "a malformed path parameter (invalid id, public key or emoji)"));
    }
    if has_query {
        extra.push((400, "a malformed query parameter"));
    }

    if let Some(body) = op.get_mut("requestBody") {
        // An optional body is `{}` when empty, never `null`: say so with `required: false`.
        let mut optional = false;
        for media in body["content"].as_object_mut().into_iter().flat_map(|c| c.values_mut()) {
            let schema = &mut media["schema"];
            if let Some(variants) = schema.get("oneOf").and_then(Value::as_array)
                && let [only] = variants.iter().filter(|v| v["type"] != "null").collect::<Vec<_>>()[..]
            {
                *schema = only.clone();
                optional = true;
            }
        }
        if optional {
            body["required"] = json!(false);
        }
        let content = body["content"].as_object().cloned().unwrap_or_default();
        if content.contains_key("application/json") {
            extra.extend([
                (400, "invalid JSON, or a field of the wrong format"),
                (413, "request body too large"),
                (415, "expected Content-Type: application/json"),
                (422, "not a JSON object, a missing or mistyped field, or a field breaking its rules"),
            ]);
        }
        if content.contains_key("multipart/form-data") {
            extra.extend([
                (400, "invalid multipart body"),
                (413, "request body or file too large"),
                (415, "expected multipart/form-data, or a file type that is not allowed"),
            ]);
        }
    }
    if op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty()) {
        extra.push((401, "missing, invalid or expired session"));
    }
    if times_out(path) {
        extra.push((408, "request timed out"));
    }
    if !database_free(path) {
        extra.push((500, "internal error"));
        extra.push((503, "database unavailable / media store unavailable"));
    }

    let responses = op["responses"].as_object_mut().expect("responses");
    for (status, description) in extra {
        responses.entry(status.to_string()).or_insert_with(|| json!({ "description": description }));
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.parse::<u16>().is_ok_and(|s| s >= 400);
        if is_error && response.get("content").is_none() {
            response["content"] = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}});
        }
    }
}

/// A role id: an id, or the aliases of the built-in roles.
fn role_id_pattern() -> String {
    format!("^(?:{}|everyone|admin)$", decimal_at_most(&i64::MAX.to_string()))
}

/// The schema of a path parameter by its name, and whether a malformed value is a 400 (rather
/// than a 404, as for media ids and invite codes, which are looked up as they are).
fn path_parameter(name: &str) -> Option<(Value, bool)> {
    Some(match name {
        "channel_id" | "message_id" | "thread_id" | "user_id" => {
            (json!({"type": "string", "pattern": id_pattern(), "description": "an id (a decimal string)"}), true)
        }
        "role_id" => (
            json!({"type": "string", "pattern": role_id_pattern(), "description": "a role id, or `everyone` / `admin`"}),
            true,
        ),
        "pubkey" | "device_pubkey" => (
            json!({
                "type": "string",
                "format": PUBKEY_FORMAT,
                "pattern": PUBKEY_PATTERN,
                "description": "base58 of a 32-byte Ed25519 public key (a valid curve point)",
            }),
            true,
        ),
        "media_id" => {
            (json!({"type": "string", "pattern": HASH_PATTERN, "description": "SHA-256 of the bytes"}), false)
        }
        "code" => (json!({"type": "string", "pattern": INVITE_CODE_PATTERN}), false),
        "emoji" => (
            json!({
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": NO_NUL,
                "description": "1 to 64 bytes of UTF-8",
            }),
            true,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn the_id_pattern_accepts_exactly_the_canonical_i64_range() {
        let pattern = regex::Regex::new(&id_pattern()).unwrap();
        for good in ["1", "9", "10", "42", "999999999999999999", "9223372036854775807", "9223372036854775799"] {
            assert!(pattern.is_match(good), "{good} should match {pattern}");
        }
        for bad in ["0", "01", "9223372036854775808", "9999999999999999999", "10000000000000000000", "-1", "1a", ""] {
            assert!(!pattern.is_match(bad), "{bad} should not match {pattern}");
        }
        assert_eq!(decimal_at_most("25"), "(?:[1-9]|1[0-9]|2[0-4]|25)");
        let small = regex::Regex::new(&format!("^{}$", decimal_at_most("250"))).unwrap();
        let accepted: Vec<u32> = (0..1000).filter(|n| small.is_match(&n.to_string())).collect();
        assert_eq!(accepted, (1..=250).collect::<Vec<u32>>());
    }
}
