//! Statuses: the ping (`PUT /api/status`) and the reads, single, batch and query.

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::conditional::{ViewJson, conditional_view};
use super::responses::{BodyErrors, CommonErrors, LimitErrors};
use super::status_body::{StatusBody, StatusesBody};
use crate::auth::Viewer;
use crate::domain::{PingBody, UserId};
use crate::error::ApiError;
use crate::presence::{EffectiveStatus, calculate_effective_status};
use crate::state::AppState;

/// The most ids `GET /api/status?ids=` takes.
pub const MAX_IDS_IN_QUERY: usize = 100;
/// The most ids `POST /api/status/query` takes.
pub const MAX_IDS_IN_BODY: usize = 1000;

/// `PUT /api/status`: an activity ping or heartbeat, with optional settings.
#[utoipa::path(
    put, path = "/api/status", tag = "status",
    request_body = PingBody,
    responses(
        (status = 200, description = "The caller's self view", body = StatusBody),
        CommonErrors,
        BodyErrors,
        LimitErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn put_status(
    Viewer(viewer): Viewer,
    body: web::Json<PingBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.limit_pings(viewer)?;
    let now = state.clock.now();
    let ping = body.into_inner().parse(now)?;
    if ping.changes_settings() {
        state.limit_settings(viewer)?;
    }
    let row = state.statuses.ping(viewer, &ping, now).await?;
    let view = calculate_effective_status(viewer, Some(&row), viewer, None, now, &state.thresholds);
    let body = StatusBody::new(&view)
        .with_ping_interval(state.ping_interval_seconds)
        .to_json()
        .map_err(|error| ApiError::Internal(Box::new(error)))?;
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![
            CacheDirective::Private,
            CacheDirective::NoCache,
        ]))
        .content_type(ContentType::json())
        .body(body))
}

/// `GET /api/status/{userId}`: one user's effective status as the caller is allowed to see it.
#[utoipa::path(
    get, path = "/api/status/{userId}", tag = "status",
    params(
        ("userId" = uuid::Uuid, Path, description = "The user"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the last answer"),
    ),
    responses(
        (status = 200, description = "The user's status as the caller may see it", body = StatusBody, headers(("ETag" = String, description = "Tag of this body"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Unchanged since the ETag sent"),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn get_status(
    Viewer(viewer): Viewer,
    path: web::Path<String>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::parse(&path).map_err(ApiError::InvalidUserId)?;
    let (row, hidden) = state.statuses.fetch_for(viewer, user).await?;
    let view = calculate_effective_status(
        user,
        row.as_deref(),
        viewer,
        hidden,
        state.clock.now(),
        &state.thresholds,
    );
    conditional_view(&request, &StatusBody::new(&view))
}

/// The query string of `GET /api/status`.
#[derive(Debug, Deserialize)]
pub struct IdsQuery {
    ids: Option<String>,
}

/// `GET /api/status?ids=a,b,c`: up to 100 users at once.
#[utoipa::path(
    get, path = "/api/status", tag = "status",
    params(
        ("ids" = String, Query, description = "Up to 100 comma-separated user ids"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the last answer"),
    ),
    responses(
        (status = 200, description = "One status per distinct id, in the order first asked", body = StatusesBody, headers(("ETag" = String, description = "Tag of this body"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Unchanged since the ETag sent"),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn get_statuses(
    Viewer(viewer): Viewer,
    query: web::Query<IdsQuery>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ids = query.ids.as_deref().ok_or_else(|| {
        ApiError::InvalidUserId(
            "the ids query parameter is required: ?ids=<uuid>,<uuid>".to_owned(),
        )
    })?;
    let requested: Vec<&str> = if ids.is_empty() {
        Vec::new()
    } else {
        ids.split(',').collect()
    };
    let users = distinct_ids(
        requested.iter().map(|id| UserId::parse(id)),
        MAX_IDS_IN_QUERY,
        "the ids query parameter",
    )?;
    batch_response(&request, &state, viewer, &users).await
}

/// The body of `POST /api/status/query`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = QueryRequest)]
pub struct QueryBody {
    /// Up to 1000 user ids.
    #[schema(max_items = 1000, value_type = Vec<String>)]
    user_ids: Vec<RequestedId>,
}

/// One id of a query body, parsed as it is read: no copy of its text is
/// made (a poll's twenty ids were twenty strings allocated, then parsed).
#[derive(Debug)]
struct RequestedId(Result<UserId, String>);

impl<'de> Deserialize<'de> for RequestedId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = RequestedId;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RequestedId, E> {
                Ok(RequestedId(UserId::parse(text)))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// `POST /api/status/query`: up to 1000 users at once.
#[utoipa::path(
    post, path = "/api/status/query", tag = "status",
    request_body = QueryBody,
    params(
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the last answer"),
    ),
    responses(
        (status = 200, description = "One status per distinct id, in the order first asked", body = StatusesBody, headers(("ETag" = String, description = "Tag of this body"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Unchanged since the ETag sent"),
        CommonErrors,
        BodyErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn query_statuses(
    Viewer(viewer): Viewer,
    body: web::Json<QueryBody>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let users = distinct_ids(
        body.into_inner().user_ids.into_iter().map(|id| id.0),
        MAX_IDS_IN_BODY,
        "userIds",
    )?;
    batch_response(&request, &state, viewer, &users).await
}

/// Checks the count as sent, then every id in order, and keeps the first of each.
fn distinct_ids(
    requested: impl ExactSizeIterator<Item = Result<UserId, String>>,
    limit: usize,
    field: &str,
) -> Result<Vec<UserId>, ApiError> {
    if requested.len() > limit {
        return Err(ApiError::TooManyIds(format!(
            "{field} holds {} ids; at most {limit} are allowed",
            requested.len()
        )));
    }
    let mut users = Vec::with_capacity(requested.len());
    for id in requested {
        let user = id.map_err(ApiError::InvalidUserId)?;
        if !users.contains(&user) {
            users.push(user);
        }
    }
    Ok(users)
}

async fn batch_response(
    request: &HttpRequest,
    state: &AppState,
    viewer: UserId,
    users: &[UserId],
) -> Result<HttpResponse, ApiError> {
    let rows = state.statuses.fetch_many_for(viewer, users).await?;
    let now = state.clock.now();
    let views: Vec<EffectiveStatus> = users
        .iter()
        .zip(&rows)
        .map(|(user, (row, hidden))| {
            let hidden = *hidden;
            calculate_effective_status(
                *user,
                row.as_deref(),
                viewer,
                hidden,
                now,
                &state.thresholds,
            )
        })
        .collect();
    conditional_view(
        request,
        &StatusesBody {
            statuses: views.iter().map(StatusBody::new).collect(),
        },
    )
}
