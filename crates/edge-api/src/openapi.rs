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
    ApiDoc::openapi().to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render OpenAPI document");
        "{}".to_owned()
    })
}
