use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::auth::Viewer;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::openapi::*;
use crate::startup::AppState;
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlocksBody {
    user_ids: Vec<UserId>,
}

/// `GET /api/blocks`: the users the caller blocks, most recent first.
#[utoipa::path(
    get, path = "/api/blocks", tag = "blocks",
    responses(
        (status = 200, description = "The users the caller blocks, most recent first", body = BlocksResponse),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn get_blocks(
    Viewer(viewer): Viewer,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user_ids = store::list_blocks(state.statuses.pool(), viewer).await?;
    Ok(HttpResponse::Ok().json(BlocksBody { user_ids }))
}
