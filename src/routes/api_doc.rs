//! `GET /openapi.json`: the OpenAPI document of this API.

use actix_web::HttpResponse;
use utoipa::OpenApi;

/// `GET /openapi.json`: the OpenAPI document of this API.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}
