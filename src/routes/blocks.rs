//! Blocks: `PUT`/`DELETE /api/blocks/{userId}` and the paged `GET /api/blocks`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::paging::PageQuery;
use super::responses::{CommonErrors, LimitErrors};
use crate::auth::Viewer;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::state::AppState;
use crate::statuses::BlockError;

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
pub const MAX_BLOCKS_PAGE: i64 = 1000;

/// A page of the users the caller blocks, in ascending id order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = BlocksResponse)]
pub struct BlocksBody {
    /// The blocked users of this page, in ascending id order.
    #[schema(value_type = Vec<uuid::Uuid>)]
    user_ids: Vec<UserId>,
    /// The `after` for the next page: the last id of a full page, else `null`.
    #[schema(value_type = Option<uuid::Uuid>)]
    next: Option<UserId>,
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
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page(MAX_BLOCKS_PAGE, MAX_BLOCKS_PAGE)?;
    let user_ids = state
        .statuses
        .list_blocks(viewer, page.after, page.limit)
        .await?;
    Ok(HttpResponse::Ok().json(BlocksBody {
        next: page.next(&user_ids),
        user_ids,
    }))
}
