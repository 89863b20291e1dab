//! The browser client script (`/client/presence.js`) and, in development mode, the demo page and its tokens.

use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::{TokenSettings, issue_room_token};
use crate::domain::UserId;
use crate::error::ApiError;

/// The browser client, `web/presence.js`.
const CLIENT_SCRIPT: &str = include_str!("../../web/presence.js");
/// The demo page, `web/demo.html`.
const DEMO_PAGE: &str = include_str!("../../web/demo.html");
/// How long a demo token lasts.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// The rooms a demo token grants.
const DEMO_ROOMS: &str = "demo:*";

/// `GET /client/presence.js`: the browser client as an ES module.
pub async fn client_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(300),
        ]))
        .body(CLIENT_SCRIPT)
}

/// `GET /demo` (`serve --dev` only): pick users, watch a roster, change your status.
pub async fn demo_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DEMO_PAGE)
}

/// The query of `GET /demo/token`.
#[derive(Debug, Deserialize)]
pub struct DemoTokenQuery {
    user: String,
}

/// `GET /demo/token?user=<uuid>` (`serve --dev` only): a token for any user,
/// granting the rooms `demo:*`, as plain text.
pub async fn demo_token(
    query: web::Query<DemoTokenQuery>,
    tokens: web::Data<TokenSettings>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::parse(&query.user).map_err(ApiError::InvalidUserId)?;
    let rooms = [DEMO_ROOMS.to_owned()];
    let token = issue_room_token(&tokens, &user.to_string(), &rooms, None, DEMO_TOKEN_TTL)
        .map_err(|error| ApiError::Internal(Box::new(error)))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(token))
}
