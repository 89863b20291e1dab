use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Viewer;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::openapi::{CommonErrors, LimitErrors};
use crate::state::AppState;
use crate::store::{self, BlockError};

/// The other user in a block route, who may not be the caller.
fn other_user(path: &str, viewer: UserId) -> Result<UserId, ApiError> {
    let user = UserId::parse(path).map_err(ApiError::InvalidUserId)?;
    if user == viewer {
        return Err(ApiError::InvalidUserId(
            "you cannot block yourself".to_owned(),
        ));
    }
    Ok(user)
}

/// `PUT /api/blocks/{userId}`: hides the caller and the user from each other (idempotent).
#[utoipa::path(
    put, path = "/api/blocks/{userId}", tag = "blocks",
    params(("userId" = uuid::Uuid, Path, description = "The user to block")),
    responses(
        (status = 204, description = "Blocked (idempotent)"),
        CommonErrors,
        LimitErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn put_block(
    Viewer(viewer): Viewer,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = other_user(&path, viewer)?;
    state.limit_settings(viewer)?;
    state
        .statuses
        .block(viewer, user)
        .await
        .map_err(|error| match error {
            BlockError::TooMany => ApiError::TooManyBlocks(error.to_string()),
            BlockError::Database(error) => error.into(),
        })?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/blocks/{userId}`: lifts the caller's block (idempotent).
#[utoipa::path(
    delete, path = "/api/blocks/{userId}", tag = "blocks",
    params(("userId" = uuid::Uuid, Path, description = "The user to unblock")),
    responses(
        (status = 204, description = "Unblocked (idempotent)"),
        CommonErrors,
        LimitErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn delete_block(
    Viewer(viewer): Viewer,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = other_user(&path, viewer)?;
    state.limit_settings(viewer)?;
    state.statuses.unblock(viewer, user).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The most ids one page of `GET /api/blocks` holds, and the default page size.
pub const MAX_BLOCKS_PAGE: u32 = 1000;

/// A page of the users the caller blocks, in ascending id order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = BlocksResponse)]
pub struct BlocksBody {
    /// The blocked users of this page, in ascending id order.
    #[schema(value_type = Vec<uuid::Uuid>)]
    user_ids: Vec<UserId>,
    /// The `after` for the next page; `null` on the last one.
    #[schema(value_type = Option<uuid::Uuid>)]
    next: Option<UserId>,
}

/// The query string of `GET /api/blocks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocksQuery {
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /api/blocks?limit=&after=`: the users the caller blocks, a page at a time, in ascending id order.
#[utoipa::path(
    get, path = "/api/blocks", tag = "blocks",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 1000)"),
        ("after" = Option<uuid::Uuid>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the users the caller blocks", body = BlocksBody),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn get_blocks(
    Viewer(viewer): Viewer,
    query: web::Query<BlocksQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(MAX_BLOCKS_PAGE);
    if !(1..=MAX_BLOCKS_PAGE).contains(&limit) {
        return Err(ApiError::InvalidBody(format!(
            "limit must be between 1 and {MAX_BLOCKS_PAGE}"
        )));
    }
    let after = query
        .after
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(ApiError::InvalidUserId)?;
    // One more than the page: whether there is a next page.
    let mut user_ids = state
        .statuses
        .database()
        .run(async |connection| {
            store::list_blocks(connection, viewer, after, i64::from(limit) + 1).await
        })
        .await?;
    let next = if user_ids.len() > limit as usize {
        user_ids.truncate(limit as usize);
        user_ids.last().copied()
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(BlocksBody { user_ids, next }))
}
