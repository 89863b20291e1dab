//! `GET /api/admin/changes`: the change feed, for backends (service tokens only).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::history::no_store;
use super::paging::parse_limit;
use super::responses::{AdminErrors, CommonErrors, FeedErrors};
use crate::auth::Service;
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::feed::{Cursor, CursorError, FeedError};
use crate::presence::Status;
use crate::state::AppState;
use crate::store::StoredChange;

/// How many changes a page holds by default, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// The query string of `GET /api/admin/changes`.
#[derive(Debug, Deserialize)]
pub struct ChangesQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// One page of the change feed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesBody {
    /// The changes, in the order of `id`.
    changes: Vec<ChangeBody>,
    /// The cursor to pass as `after` next time (also when `changes` is empty).
    next: String,
}

/// One change of a user's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeBody {
    /// The change's place in the feed (a decimal number, as a string).
    id: String,
    /// Whose status changed.
    user_id: uuid::Uuid,
    /// The instant of the change, to the millisecond (for a change by the clock, the instant the rules say).
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The user's self-view status after the change.
    #[schema(value_type = Status)]
    status: String,
    /// The self-view status before it.
    #[schema(value_type = Status)]
    previous_status: String,
    /// What a viewer in no block sees after it.
    #[schema(value_type = Status)]
    public_status: String,
    /// What a viewer in no block saw before it.
    #[schema(value_type = Status)]
    previous_public_status: String,
    /// What made it: `activity`, `idle`, `away`, `manual`, `manual-expired`,
    /// `invisible`, `visible`, `signed-out` or `timed-out`.
    cause: String,
}

impl From<StoredChange> for ChangeBody {
    fn from(change: StoredChange) -> Self {
        Self {
            id: change.id.to_string(),
            user_id: change.user_id,
            at: change.at.into(),
            status: change.status,
            previous_status: change.previous_status,
            public_status: change.public_status,
            previous_public_status: change.previous_public_status,
            cause: change.cause,
        }
    }
}

/// `GET /api/admin/changes?after=&limit=`: every change of users' statuses, in order (service tokens only).
#[utoipa::path(
    get, path = "/api/admin/changes", tag = "admin",
    params(
        ("after" = Option<String>, Query, description = "The `next` of the previous page (default: from the oldest change kept)"),
        ("limit" = Option<i64>, Query, description = "At most this many changes (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "One page of the feed", body = ChangesBody),
        CommonErrors,
        AdminErrors,
        FeedErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(service = %service.0))]
pub async fn changes(
    service: Service,
    query: web::Query<ChangesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref(), 1, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = query
        .after
        .as_deref()
        .map(Cursor::parse)
        .transpose()
        .map_err(cursor_error)?;
    let page = state
        .feed
        .changes(after, limit)
        .await
        .map_err(|error| match error {
            FeedError::Cursor(error) => cursor_error(error),
            FeedError::Database(error) => ApiError::from(error),
        })?;
    Ok(no_store(HttpResponse::Ok()).json(ChangesBody {
        changes: page.changes.into_iter().map(ChangeBody::from).collect(),
        next: page.next.encode(),
    }))
}

fn cursor_error(error: CursorError) -> ApiError {
    match error {
        CursorError::Invalid(message) => ApiError::InvalidCursor(message),
        CursorError::Expired => ApiError::CursorExpired,
    }
}
