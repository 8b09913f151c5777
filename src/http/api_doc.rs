//! The API description, generated (utoipa) from the handlers' annotations and the types they
//! take and answer with, and collected by the router itself (`utoipa_axum`), so a route cannot
//! be served without being described, nor described without being served. Served at
//! `/openapi.json`.

use utoipa::openapi::schema::{AdditionalProperties, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Object, RefOr, Schema};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

/// The part of the description the handlers do not give: what it is, its credentials and the
/// error body every 4xx and 5xx has.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "screenrec",
        description = "Chunked MediaRecorder ingest into object storage, merge, presigned downloads. Every error is `{\"error\": {\"code\", \"message\"}}` with a stable code."
    ),
    components(schemas(ErrorBody, ErrorDetail), responses(ApiError)),
    modifiers(&Credentials)
)]
pub struct ApiDoc;

/// `{"error": {"code", "message", …}}`: every 4xx and 5xx.
#[derive(ToSchema)]
#[allow(dead_code)] // described, not built: errors are built from `Error::to_json`
pub struct ErrorBody {
    error: ErrorDetail,
}

/// An error: its stable `code`, a message for people, and details some codes add (`index`,
/// `missing`, `retryAfterMs`, …).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// One of the codes listed here; it never changes for a given failure.
    code: String,
    message: String,
}

/// The error answer.
#[derive(ToResponse)]
#[response(description = "Error", content_type = "application/json")]
#[allow(dead_code)]
pub struct ApiError(ErrorBody);

struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "uploadToken",
            bearer("The uploadToken returned at create: one recording's chunks, stop, status and events."),
        );
        components.add_security_scheme(
            "ownerCredential",
            bearer("The owner's credential: an API key (AUTH_MODE=api-key; `screenrec keygen TENANT`) or a JWT (AUTH_MODE=jwt). With AUTH_MODE=none, create and the owner's routes need none."),
        );
    }
}

/// What the code itself holds, put where the schemas name it: the error codes
/// ([`crate::error::CODES`]) and the media types create takes
/// ([`crate::domain::MIME_TYPE_PATTERN`]).
struct FromCode;

impl FromCode {
    /// The property `property` of the object schema `schema`, if both are there.
    fn property<'a>(
        doc: &'a mut utoipa::openapi::OpenApi,
        schema: &str,
        property: &str,
    ) -> Option<&'a mut Object> {
        let components = doc.components.as_mut()?;
        let RefOr::T(Schema::Object(object)) = components.schemas.get_mut(schema)? else {
            return None;
        };
        match object.properties.get_mut(property)? {
            RefOr::T(Schema::Object(p)) => Some(p),
            _ => None,
        }
    }
}

impl Modify for FromCode {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(code) = Self::property(doc, "ErrorDetail", "code") {
            code.enum_values = Some(crate::error::CODES.iter().map(|c| (*c).into()).collect());
        }
        if let Some(mime_type) = Self::property(doc, "CreateRequest", "mimeType") {
            mime_type.pattern = Some(crate::domain::MIME_TYPE_PATTERN.to_owned());
        }
        if let Some(metadata) = Self::property(doc, "CreateRequest", "metadata") {
            use crate::domain::{
                MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS,
                NO_CONTROLS_PATTERN,
            };
            let string = |min: usize, max: usize| {
                let mut s = Object::with_type(Type::String);
                s.min_length = (min > 0).then_some(min);
                s.max_length = Some(max);
                s.pattern = Some(NO_CONTROLS_PATTERN.to_owned());
                s
            };
            metadata.max_properties = Some(MAX_METADATA_ENTRIES);
            metadata.property_names =
                Some(Box::new(Schema::Object(string(1, MAX_METADATA_KEY_CHARS))));
            metadata.additional_properties = Some(Box::new(AdditionalProperties::RefOr(RefOr::T(
                Schema::Object(string(0, MAX_METADATA_VALUE_CHARS)),
            ))));
        }
    }
}

/// The whole description, as `/openapi.json` serves it: what [`FromCode`] adds goes in last,
/// after the routes' own schemas are in.
pub fn json(mut doc: utoipa::openapi::OpenApi) -> String {
    FromCode.modify(&mut doc);
    doc.to_pretty_json().expect("the description serializes")
}
