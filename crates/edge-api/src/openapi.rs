//! OpenAPI 3.1 document generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "oneinbox-edge API", description = "Phone numbers, agents, integrations, calls, voicemails and webhooks."),
    paths(
        crate::numbers::search,
        crate::numbers::purchase,
        crate::numbers::register,
        crate::numbers::list,
        crate::numbers::get,
        crate::numbers::update,
        crate::numbers::delete,
        crate::checks::get,
        crate::checks::fix,
        crate::integrations::create,
        crate::integrations::list,
        crate::integrations::get,
        crate::integrations::delete,
        crate::agents::create,
        crate::agents::list,
        crate::agents::get,
        crate::agents::update,
        crate::agents::delete,
        crate::calls::list,
        crate::calls::get,
        crate::calls::create,
        crate::calls::hang_up,
        crate::calls::transfer,
        crate::traces::get,
        crate::voicemails::list,
        crate::voicemails::get,
        crate::voicemails::recording,
        crate::voicemails::delete,
        crate::keys::list,
        crate::keys::create,
        crate::keys::revoke,
        crate::webhooks::create,
        crate::webhooks::list,
        crate::webhooks::get,
        crate::webhooks::delete,
        crate::webhooks::deliveries,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("oik_<64 hex>")
                    .build(),
            ),
        );
    }
}

/// The document as JSON text, rendered once at router construction.
pub fn render() -> String {
    let text = ApiDoc::openapi().to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render OpenAPI document");
        "{}".to_owned()
    });
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut doc) => {
            complete_responses(&mut doc);
            tighten_schemas(&mut doc);
            add_links(&mut doc);
            doc.to_string()
        }
        Err(_) => text,
    }
}

/// Words for a status a response entry left without the `description` OpenAPI requires.
fn status_words(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "204" => "Done; no content",
        "400" => "Invalid request: `error.field` names the parameter or field",
        "401" => "Missing or invalid API key",
        "404" => "No such resource in this account",
        "405" => "Method not allowed on this path",
        "408" => "The request (head or body) was not received in time",
        "409" => "Conflict with the current state",
        "413" => "Request body too large",
        "414" => "Request target too long",
        "415" => "Request body is not application/json",
        "429" => "Too many requests",
        "431" => "Request headers too large",
        "500" => "Internal error",
        "502" => "The number provider failed",
        "503" => "Temporarily unavailable (including the request time-out)",
        _ => "Response",
    }
}

/// Every response gets a description, every operation documents the errors any request can
/// get (written by the server itself, not the handler), and every answer its `X-Request-Id`.
fn complete_responses(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let request_id = json!({"X-Request-Id": {
        "description": "The request's id (echoed when the client sent a sane one), also in the access log",
        "schema": {"type": "string"}
    }});
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut common = vec!["400", "401", "405", "408", "414", "431", "500", "503"];
            if matches!(method.as_str(), "post" | "patch" | "put") {
                common.extend(["413", "415"]);
            }
            for code in common {
                responses
                    .entry(code)
                    .or_insert_with(|| json!({"description": status_words(code), "content": error.clone()}));
            }
            for (code, resp) in responses.iter_mut() {
                let Some(resp) = resp.as_object_mut() else { continue };
                let missing = resp
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty);
                if missing {
                    resp.insert("description".into(), Value::String(status_words(code).into()));
                }
                resp.entry("headers").or_insert_with(|| request_id.clone());
            }
        }
    }
}

/// Characters [`crate::validate::text`] refuses anywhere: controls (Cc) and bidirectional
/// overrides, embeddings, isolates and marks. As JSON Schema (ECMA 262) character-class text.
const REFUSED: &str = r"\x00-\x1F\x7F-\x9F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069";
/// Unicode White_Space, what `str::trim` removes.
const WS: &str = r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Same for multi-line texts (messages), where `\n` is allowed.
const REFUSED_MULTILINE: &str = r"\x00-\x09\x0B-\x1F\x7F-\x9F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069";

/// Secrets checked by [`crate::validate::secret`]: not trimmed, but no control characters.
const SECRET_FIELDS: &[(&str, &str)] = &[
    ("CreateIntegrationRequest", "api_key"),
    ("ProviderConfigIn", "auth_password"),
    ("ProviderConfigPatchIn", "auth_password"),
];

/// Single-line texts checked by [`crate::validate::text`] (schema, property).
const NAME_FIELDS: &[(&str, &str)] = &[
    ("CreateAgentRequest", "name"),
    ("UpdateAgentRequest", "name"),
    ("CreateApiKeyRequest", "name"),
    ("CreateIntegrationRequest", "name"),
    ("PurchaseRequest", "friendly_name"),
    ("RegisterNumberRequest", "friendly_name"),
    ("UpdateNumberRequest", "friendly_name"),
    ("ProviderConfigIn", "auth_username"),
    ("ProviderConfigPatchIn", "auth_username"),
];

/// Multi-line texts checked by [`crate::validate::text`].
const MESSAGE_FIELDS: &[(&str, &str)] = &[
    ("CreateAgentRequest", "voicemail_message"),
    ("UpdateAgentRequest", "voicemail_message"),
    ("InboundRoutingIn", "voicemail_message"),
    ("InboundRoutingPatchIn", "voicemail_message"),
];

/// `Option` fields of partial updates that refuse `null` (absent keeps the value); utoipa
/// documents every `Option` as nullable.
const NON_NULL_FIELDS: &[(&str, &str)] = &[
    ("UpdateAgentRequest", "name"),
    ("UpdateAgentRequest", "sip_uri"),
    ("UpdateAgentRequest", "max_concurrent_calls"),
    ("UpdateAgentRequest", "status"),
    ("UpdateNumberRequest", "agent_id"),
    ("UpdateNumberRequest", "provider_config"),
    ("ProviderConfigPatchIn", "trunk_address"),
    ("ProviderConfigPatchIn", "p_charge_info"),
    ("ProviderConfigPatchIn", "media_encryption"),
    ("UpdateAgentRequest", "media_encryption"),
];

/// What the validators enforce and the derive cannot say: the text rules of names and
/// messages (trimmed, not blank, no control or bidi characters) and the non-null partial
/// updates, so that a generated schema-valid request is one the API accepts.
fn tighten_schemas(doc: &mut serde_json::Value) {
    use serde_json::Value;
    // `text` trims (Rust's White_Space, controls such as `\t` and U+0085 included) before
    // checking, so those may surround the text; inside, only non-refused characters.
    let text = |refused: &str| format!(r"^[{WS}]*[^{WS}{refused}]([^{refused}]*[^{WS}{refused}])?[{WS}]*$");
    let (name, message) = (text(REFUSED), text(REFUSED_MULTILINE));
    let mut prop = |schema: &str, field: &str, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)| {
        let p = doc
            .pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            .and_then(Value::as_object_mut);
        match p {
            Some(p) => f(p),
            None => tracing::error!(schema, field, "OpenAPI tightening names a missing property"),
        }
    };
    for (schema, field) in NAME_FIELDS {
        prop(schema, field, &mut |p| {
            p.insert("pattern".into(), Value::String(name.clone()));
        });
    }
    for (schema, field) in SECRET_FIELDS {
        prop(schema, field, &mut |p| {
            p.insert("pattern".into(), Value::String(r"^[^\x00-\x1F\x7F-\x9F]+$".into()));
        });
    }
    for (schema, field) in MESSAGE_FIELDS {
        prop(schema, field, &mut |p| {
            p.insert("pattern".into(), Value::String(message.clone()));
        });
    }
    for (schema, field) in NON_NULL_FIELDS {
        prop(schema, field, &mut |p| {
            if let Some(Value::Array(types)) = p.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    p.insert("type".into(), only);
                }
            }
            for key in ["oneOf", "anyOf"] {
                let Some(Value::Array(alts)) = p.get_mut(key) else {
                    continue;
                };
                alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                if let [only] = alts.as_slice() {
                    let only = only.clone();
                    p.remove(key);
                    if let Value::Object(o) = only {
                        p.extend(o);
                    }
                }
            }
        });
    }
}

/// OpenAPI links from each create operation to the operations taking the new id, so that
/// clients (and schemathesis' stateful phase) know where a created id goes.
/// (path, operation ids taking `{id}`).
const LINKS: &[(&str, &[&str])] = &[
    ("/v1/agents", &["get_agent", "update_agent", "delete_agent"]),
    ("/v1/api-keys", &["revoke_api_key"]),
    (
        "/v1/webhooks",
        &["get_webhook", "delete_webhook", "list_webhook_deliveries"],
    ),
    ("/v1/integrations", &["get_integration", "delete_integration"]),
    ("/v1/calls", &["get_call", "hang_up_call", "transfer_call"]),
    (
        "/v1/phone-numbers",
        &[
            "get_phone_number",
            "update_phone_number",
            "delete_phone_number",
            "check_phone_number",
            "fix_phone_number",
        ],
    ),
    (
        "/v1/phone-numbers/purchase",
        &[
            "get_phone_number",
            "update_phone_number",
            "delete_phone_number",
            "check_phone_number",
            "fix_phone_number",
        ],
    ),
];

/// Operations whose request body takes a created agent as `agent_id` (merged into the body).
const AGENT_BODY_LINKS: &[&str] = &["register_phone_number", "purchase_phone_number", "create_call"];

fn add_links(doc: &mut serde_json::Value) {
    use serde_json::{json, Map, Value};
    for (path, targets) in LINKS {
        let pointer = format!("/paths/{}/post/responses/201", path.replace('/', "~1"));
        let Some(created) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            tracing::error!(path, "OpenAPI link source has no 201 response");
            continue;
        };
        let links: Map<String, Value> = targets
            .iter()
            .map(|op| {
                let link = json!({
                    "operationId": op,
                    "parameters": {"id": "$response.body#/id"},
                    "description": "The created resource's `id`",
                });
                ((*op).to_owned(), link)
            })
            .collect();
        created.insert("links".into(), Value::Object(links));
    }
    if let Some(Value::Object(links)) = doc.pointer_mut("/paths/~1v1~1agents/post/responses/201/links") {
        for op in AGENT_BODY_LINKS {
            let link = json!({
                "operationId": op,
                "requestBody": {"agent_id": "$response.body#/id"},
                "description": "The created agent as the request's `agent_id`",
            });
            links.insert(format!("{op}_with_agent"), link);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_response_is_described() {
        let doc: serde_json::Value = serde_json::from_str(&super::render()).unwrap();
        let mut n = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for (code, r) in op["responses"].as_object().unwrap() {
                    assert!(!r["description"].as_str().unwrap_or("").is_empty(), "{code}");
                    n += 1;
                }
                for code in ["405", "414", "500", "503"] {
                    assert!(op["responses"].get(code).is_some(), "{code} undocumented");
                }
            }
        }
        assert!(n > 100);
    }

    /// Every tightened property exists and none of the non-null ones still admits `null`.
    #[test]
    fn tightened_properties_exist() {
        let doc: serde_json::Value = serde_json::from_str(&super::render()).unwrap();
        let all = super::NAME_FIELDS
            .iter()
            .chain(super::SECRET_FIELDS)
            .chain(super::MESSAGE_FIELDS)
            .chain(super::NON_NULL_FIELDS);
        for (schema, field) in all {
            let p = doc
                .pointer(&format!("/components/schemas/{schema}/properties/{field}"))
                .unwrap_or_else(|| panic!("{schema}.{field} missing"));
            let text = p.to_string();
            if super::NON_NULL_FIELDS.contains(&(schema, field)) {
                assert!(!text.contains("\"null\""), "{schema}.{field} still nullable: {text}");
            } else {
                assert!(p.get("pattern").is_some(), "{schema}.{field}");
            }
        }
    }

    /// Every link leaves a documented 201 and names an operation of the document.
    #[test]
    fn links_name_operations() {
        let doc: serde_json::Value = serde_json::from_str(&super::render()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.insert(op["operationId"].as_str().unwrap().to_owned());
            }
        }
        for (path, targets) in super::LINKS {
            let links = &doc["paths"][*path]["post"]["responses"]["201"]["links"];
            let extra = if *path == "/v1/agents" {
                super::AGENT_BODY_LINKS.len()
            } else {
                0
            };
            assert_eq!(
                links.as_object().map(|l| l.len()),
                Some(targets.len() + extra),
                "{path}"
            );
            for op in *targets {
                assert!(ids.contains(*op), "{op}");
            }
        }
        for op in super::AGENT_BODY_LINKS {
            assert!(ids.contains(*op), "{op}");
        }
    }

    /// The name, message and secret patterns accept exactly what `validate::text` and
    /// `validate::secret` accept.
    #[test]
    fn text_patterns_match_validator() {
        use crate::validate::{secret, text, MAX_MESSAGE_LEN, MAX_NAME_LEN};
        let doc: serde_json::Value = serde_json::from_str(&super::render()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let pattern = |schema: &str, field: &str| {
            regex::Regex::new(schemas[schema]["properties"][field]["pattern"].as_str().unwrap()).unwrap()
        };
        let name = pattern("CreateAgentRequest", "name");
        let message = pattern("CreateAgentRequest", "voicemail_message");
        let key = pattern("CreateIntegrationRequest", "api_key");
        let samples = [
            "Sales bot",
            " Sales bot ",
            "Zoë – 客服",
            "",
            " ",
            " \n ",
            "\u{6}d",
            "a\nb",
            "a\tb",
            "\tx\r\n",
            "x\u{1F}",
            "x\u{202E}y",
            "x\u{2067}y",
            "\u{200F}",
            "x\u{7F}",
            "x\u{85}",
            "a\u{85}b",
            "d\u{a0}",
            "\u{2028}x\u{2029}y",
            "\u{feff}x",
        ];
        for s in samples {
            assert_eq!(name.is_match(s), text("n", s, MAX_NAME_LEN).is_ok(), "name {s:?}");
            let ok = text("m", s, MAX_MESSAGE_LEN).is_ok();
            assert_eq!(message.is_match(s), ok, "message {s:?}");
            // Only short samples: the length limit is maxLength's business.
            assert_eq!(key.is_match(s), secret("s", s).is_ok(), "secret {s:?}");
        }
    }
}
