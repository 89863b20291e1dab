use actix_web::HttpResponse;

/// `GET /healthz`: the process serves; no database call.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}
