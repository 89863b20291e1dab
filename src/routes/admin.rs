//! The admin routes that answer the truth about any user (`/api/admin/...`,
//! service tokens only): a user's self view, who was online at an instant,
//! and stats by bucket. Anyone's history is in `history.rs`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::history::{no_store, parse_range};
use super::paging::PageQuery;
use super::responses::{AdminErrors, CommonErrors};
use super::status_body::StatusBody;
use crate::auth::Service;
use crate::domain::{Timestamp, UserId, parse_timestamp};
use crate::error::ApiError;
use crate::history::{Bucket, BucketStats, MAX_BUCKETS};
use crate::presence::calculate_effective_status;
use crate::state::AppState;

/// How many users `GET /api/admin/online` lists by default, and at most.
const DEFAULT_ONLINE_LIMIT: i64 = 1000;
const MAX_ONLINE_LIMIT: i64 = 10_000;

/// The users who were not offline at an instant, one page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineBody {
    /// The instant.
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// Their ids, ascending.
    #[schema(value_type = Vec<uuid::Uuid>)]
    user_ids: Vec<UserId>,
    /// The id to pass as `after` for the next page; `null` on the last.
    #[schema(value_type = Option<uuid::Uuid>)]
    next: Option<UserId>,
}

/// The instant `GET /api/admin/online` asks about (its paging is a [`PageQuery`]).
#[derive(Debug, Deserialize)]
pub struct AtQuery {
    at: Option<String>,
}

/// The query string of `GET /api/admin/stats`.
#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

/// History stats by aligned UTC bucket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsBody {
    /// `hour` or `day`.
    bucket: &'static str,
    /// The start of the range asked for.
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// The end of the range asked for.
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
    /// One entry per bucket overlapping the range and started by now, in order.
    buckets: Vec<BucketBody>,
}

/// The stats of one bucket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketBody {
    /// The bucket's first instant.
    #[schema(value_type = String, format = DateTime)]
    start: Timestamp,
    /// Distinct users with an activity in the bucket.
    active_users: i64,
    /// Distinct users with a live device at some instant of it.
    connected_users: i64,
    /// Seconds in it during which each user had a live device, summed over users (to the millisecond).
    connected_seconds: f64,
    /// Device sessions that started in it.
    sessions: i64,
}

impl From<&BucketStats> for BucketBody {
    fn from(stats: &BucketStats) -> Self {
        Self {
            start: stats.start.into(),
            active_users: stats.active_users,
            connected_users: stats.connected_users,
            connected_seconds: (stats.connected_seconds * 1000.0).round() / 1000.0,
            sessions: stats.sessions,
        }
    }
}

/// `GET /api/admin/stats?from=&to=&bucket=hour|day`: activity and connection counts by bucket (service tokens only).
#[utoipa::path(
    get, path = "/api/admin/stats", tag = "admin",
    params(
        ("from" = Option<String>, Query, description = "Start of the range (default: `to` minus 7 days for days, 24 hours for hours)"),
        ("to" = Option<String>, Query, description = "End of the range (default: now)"),
        ("bucket" = Option<String>, Query, description = "`hour` or `day` (default); at most 366 buckets"),
    ),
    responses(
        (status = 200, description = "The stats of each bucket", body = StatsBody),
        CommonErrors,
        AdminErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(service = %service.0))]
pub async fn stats(
    service: Service,
    query: web::Query<StatsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let bucket = match query.bucket.as_deref() {
        None => Bucket::Day,
        Some(text) => Bucket::parse(text).ok_or_else(|| {
            ApiError::InvalidBody(format!("bucket must be hour or day, not {text:?}"))
        })?,
    };
    let (from, to) = parse_range(
        query.from.as_deref(),
        query.to.as_deref(),
        now,
        bucket.default_range(),
    )?;
    let starts = bucket.starts(from, to, now).ok_or_else(|| {
        ApiError::InvalidTimestamp(format!(
            "from and to may span at most {MAX_BUCKETS} buckets"
        ))
    })?;
    let buckets = state.history.stats(bucket, &starts, now).await?;
    Ok(no_store(HttpResponse::Ok()).json(StatsBody {
        bucket: bucket.as_str(),
        from: from.into(),
        to: to.into(),
        buckets: buckets.iter().map(BucketBody::from).collect(),
    }))
}

/// `GET /api/admin/status/{userId}`: any user's self view, the truth (service tokens only).
#[utoipa::path(
    get, path = "/api/admin/status/{userId}", tag = "admin",
    params(("userId" = uuid::Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The user's self view", body = StatusBody),
        CommonErrors,
        AdminErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(service = %service.0))]
pub async fn user_status(
    service: Service,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::parse(&path).map_err(ApiError::InvalidUserId)?;
    let (row, _) = state.statuses.fetch_for(user, user).await?;
    let view = calculate_effective_status(
        user,
        row.as_deref(),
        user,
        None,
        state.clock.now(),
        &state.thresholds,
    );
    Ok(no_store(HttpResponse::Ok()).json(StatusBody::new(&view)))
}

/// `GET /api/admin/online?at=`: the users not offline at an instant (service tokens only).
#[utoipa::path(
    get, path = "/api/admin/online", tag = "admin",
    params(
        ("at" = Option<String>, Query, description = "The instant (default: now; not in the future)"),
        ("limit" = Option<i64>, Query, description = "At most this many ids (default 1000, at most 10000)"),
        ("after" = Option<uuid::Uuid>, Query, description = "List ids after this one (the previous page's `next`)"),
    ),
    responses(
        (status = 200, description = "One page of the users not offline at the instant", body = OnlineBody),
        CommonErrors,
        AdminErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(service = %service.0))]
pub async fn online_at(
    service: Service,
    query: web::Query<AtQuery>,
    page: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let at = match &query.at {
        Some(text) => parse_timestamp("at", text).map_err(ApiError::InvalidTimestamp)?,
        None => now,
    };
    if at > now {
        return Err(ApiError::InvalidTimestamp(
            "at must not be in the future".to_owned(),
        ));
    }
    let page = page.page(DEFAULT_ONLINE_LIMIT, MAX_ONLINE_LIMIT)?;
    let user_ids = state.history.live_at(at, page.after, page.limit).await?;
    Ok(no_store(HttpResponse::Ok()).json(OnlineBody {
        at: at.into(),
        next: page.next(&user_ids),
        user_ids,
    }))
}
