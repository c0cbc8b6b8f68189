//! The OpenAPI 3.1 document at `GET /openapi.json` (utoipa, from the handlers' `#[utoipa::path]`
//! attributes and the request and response types below) and its reading page at `GET /docs`
//! (RapiDoc, vendored in `api/assets/`, so the page works offline).
//!
//! The bodies are described in [`crate::schema`].

use std::sync::OnceLock;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Recur API",
        description = "Personalized recommendations, customer analytics, audiences and push campaigns of each merchant, \
                       and event intake. Every `/v1/merchants/{merchant_id}/…` call needs `Authorization: Bearer <key>` \
                       with a key of that merchant (`recur keys create`); scopes nest read < write < admin. \
                       Errors are always `{\"error\":{\"code\",\"message\"}}` with a stable code.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::routes::healthz,
        crate::metrics::render,
        crate::routes::recommendations,
        crate::routes::similar,
        crate::routes::post_events,
        crate::analytics::report,
        crate::analytics::profile,
        crate::analytics::list_audiences,
        crate::analytics::create_audience,
        crate::analytics::audience_members,
        crate::analytics::summary,
        crate::auth::whoami,
        crate::campaigns::list_campaigns,
        crate::campaigns::create,
        crate::campaigns::plan,
        crate::campaigns::report,
    ),
    components(schemas(crate::schema::ErrorBody, crate::schema::ErrorDetail)),
    modifiers(&BearerKeys),
    tags(
        (name = "recommendations", description = "Lists from the current snapshot"),
        (name = "events", description = "Event intake"),
        (name = "analytics", description = "Reports, profiles and audiences"),
        (name = "campaigns", description = "Push campaigns: plans and measured lift"),
        (name = "operations", description = "Health and metrics (no key needed)"),
    )
)]
pub(crate) struct ApiDoc;

/// Declares the bearer keys every merchant endpoint names in its `security`.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "merchant_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rk_<id>_<secret>")
                    .description(Some(
                        "A key of the merchant in the path, made by `recur keys create`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, rendered once.
fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /openapi.json`.
pub(crate) async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

const DOCS_PAGE: &str = include_str!("../assets/docs.html");
/// RapiDoc 9.3.8 (MIT, `api/assets/README.md`), gzip-compressed as npm ships it.
const RAPIDOC_GZ: &[u8] = include_bytes!("../assets/rapidoc-min.js.gz");

/// `GET /docs`.
pub(crate) async fn docs() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DOCS_PAGE,
    )
        .into_response()
}

/// `GET /docs/rapidoc-min.js`.
pub(crate) async fn rapidoc(headers: HeaderMap) -> Response {
    crate::assets::gzipped_script(&headers, RAPIDOC_GZ)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc: Value = serde_json::from_str(document()).expect("JSON");
        let paths = doc["paths"].as_object().expect("paths");
        for path in [
            "/healthz",
            "/metrics",
            "/v1/events",
            "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
            "/v1/merchants/{merchant_id}/items/{item_id}/similar",
            "/v1/merchants/{merchant_id}/reports/{report}",
            "/v1/merchants/{merchant_id}/users/{user_id}/profile",
            "/v1/merchants/{merchant_id}/audiences",
            "/v1/merchants/{merchant_id}/audiences/{name}/members",
            "/v1/merchants/{merchant_id}/summary",
            "/v1/whoami",
            "/v1/merchants/{merchant_id}/campaigns",
            "/v1/merchants/{merchant_id}/campaigns/{name}/plan",
            "/v1/merchants/{merchant_id}/campaigns/{name}/report",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().expect("operations") {
                let responses = operation["responses"].as_object().expect("responses");
                if path.starts_with("/v1/merchants/") {
                    for status in ["400", "401", "403", "404"] {
                        assert!(
                            responses.contains_key(status),
                            "{method} {path} does not document {status}"
                        );
                    }
                    assert!(
                        operation["security"].is_array(),
                        "{method} {path} names no key"
                    );
                }
            }
        }
    }
}
