//! OpenAPI 3.1 document generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "oneinbox-edge API", description = "Phone numbers, agents, integrations, calls and voicemails."),
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
        crate::voicemails::list,
        crate::voicemails::get,
        crate::voicemails::recording,
        crate::voicemails::delete,
        crate::keys::list,
        crate::keys::create,
        crate::keys::revoke,
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
}
