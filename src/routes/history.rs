//! Presence history (`GET /api/status/history`) and the admin routes that
//! answer the truth about any user (`/api/admin/...`, service tokens only).

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::status_body::StatusBody;
use crate::auth::{Service, Viewer};
use crate::domain::{Platform, Timestamp, UserId, parse_timestamp};
use crate::error::ApiError;
use crate::jobs::{
    self,
    history::{Bucket, MAX_BUCKETS},
};
use crate::openapi::{AdminErrors, CommonErrors};
use crate::presence::history::{self, Segment, Session};
use crate::presence::{Status, calculate_effective_status};
use crate::state::AppState;
use crate::store::{self, BucketStats};

/// The longest range one history request covers.
const MAX_HISTORY_RANGE: TimeDelta = TimeDelta::days(31);
/// The range a history request covers when it names no `from`.
const DEFAULT_HISTORY_RANGE: TimeDelta = TimeDelta::hours(24);
/// How many users `GET /api/admin/online` lists by default, and at most.
const DEFAULT_ONLINE_LIMIT: i64 = 1000;
const MAX_ONLINE_LIMIT: i64 = 10_000;

/// The query string of the history routes.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A user's past: their self-view status over time and their device sessions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryBody {
    /// The start of the range asked for.
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// The end of the range asked for.
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
    /// The self-view status over the part of the range history covers, in order.
    segments: Vec<SegmentBody>,
    /// Every device session overlapping the range, oldest first.
    sessions: Vec<SessionBody>,
}

/// One stretch of time with one status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentBody {
    /// The self-view status throughout.
    status: Status,
    /// Its first instant.
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// Its end (exclusive).
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
}

/// A span during which one device was live.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody {
    /// The device.
    device_id: String,
    /// Its platform.
    platform: Platform,
    /// When it became live.
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// When it stopped being live; `null` while it lasts.
    #[schema(value_type = Option<String>, format = DateTime)]
    to: Option<Timestamp>,
}

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

/// The query string of `GET /api/admin/online`.
#[derive(Debug, Deserialize)]
pub struct OnlineQuery {
    at: Option<String>,
    limit: Option<String>,
    after: Option<String>,
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
    let offline_after = state.thresholds.offline_after;
    let buckets = state
        .statuses
        .database()
        .run(async |connection| {
            jobs::history::bucket_stats(connection, bucket, &starts, now, offline_after).await
        })
        .await?;
    Ok(no_store(HttpResponse::Ok()).json(StatsBody {
        bucket: bucket.as_str(),
        from: from.into(),
        to: to.into(),
        buckets: buckets.iter().map(BucketBody::from).collect(),
    }))
}

/// `GET /api/status/history`: the caller's own past, as their self view showed it.
#[utoipa::path(
    get, path = "/api/status/history", tag = "history",
    params(
        ("from" = Option<String>, Query, description = "Start of the range (default: `to` minus 24 hours)"),
        ("to" = Option<String>, Query, description = "End of the range (default: now); at most 31 days after `from`"),
    ),
    responses(
        (status = 200, description = "The caller's history over the range", body = HistoryBody),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn own_history(
    Viewer(viewer): Viewer,
    query: web::Query<RangeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history_response(&state, viewer, &query).await
}

/// `GET /api/admin/users/{userId}/history`: any user's history (service tokens only).
#[utoipa::path(
    get, path = "/api/admin/users/{userId}/history", tag = "admin",
    params(
        ("userId" = uuid::Uuid, Path, description = "The user"),
        ("from" = Option<String>, Query, description = "Start of the range (default: `to` minus 24 hours)"),
        ("to" = Option<String>, Query, description = "End of the range (default: now); at most 31 days after `from`"),
    ),
    responses(
        (status = 200, description = "The user's history over the range", body = HistoryBody),
        CommonErrors,
        AdminErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(service = %service.0))]
pub async fn user_history(
    service: Service,
    path: web::Path<String>,
    query: web::Query<RangeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::parse(&path).map_err(ApiError::InvalidUserId)?;
    history_response(&state, user, &query).await
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
    query: web::Query<OnlineQuery>,
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
    let limit = match &query.limit {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_ONLINE_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::InvalidBody(format!(
                    "limit must be a whole number from 1 to {MAX_ONLINE_LIMIT}, not {text:?}"
                ))
            })?,
        None => DEFAULT_ONLINE_LIMIT,
    };
    let after = query
        .after
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(ApiError::InvalidUserId)?;
    let offline_after = state.thresholds.offline_after;
    let user_ids = state
        .statuses
        .database()
        .run(async |connection| {
            store::users_live_at(connection, at, after, limit, offline_after).await
        })
        .await?;
    let next = (i64::try_from(user_ids.len()).unwrap_or(i64::MAX) >= limit)
        .then(|| user_ids.last().copied())
        .flatten();
    Ok(no_store(HttpResponse::Ok()).json(OnlineBody {
        at: at.into(),
        user_ids,
        next,
    }))
}

/// The history of `user` over the query's range, as the answer of a route.
async fn history_response(
    state: &AppState,
    user: UserId,
    query: &RangeQuery,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let (from, to) = parse_range(
        query.from.as_deref(),
        query.to.as_deref(),
        now,
        DEFAULT_HISTORY_RANGE,
    )?;
    if to - from > MAX_HISTORY_RANGE {
        return Err(ApiError::InvalidTimestamp(
            "from and to may be at most 31 days apart".to_owned(),
        ));
    }
    let offline_after = state.thresholds.offline_after;
    let (records, covered_from) = state
        .statuses
        .database()
        .run(async |connection| {
            // One snapshot: a span or session closing between two reads
            // would otherwise show twice or not at all.
            let mut transaction = sqlx::Connection::begin(connection).await?;
            sqlx::query("set transaction isolation level repeatable read, read only")
                .execute(&mut *transaction)
                .await?;
            let row = store::fetch_status(&mut *transaction, user).await?;
            let active_since = store::active_since(&mut *transaction, user).await?;
            let started = store::history_start(&mut *transaction, user).await?;
            let records = store::fetch_history(
                &mut transaction,
                user,
                row.as_ref(),
                active_since,
                from,
                to,
                offline_after,
            )
            .await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>((records, started))
        })
        .await?;
    let mut covered = (from, to.min(now));
    if let Some(started) = covered_from {
        covered.0 = covered.0.max(started);
    } else {
        covered.0 = covered.1;
    }
    if let Some(retention) = state.history_retention {
        covered.0 = covered.0.max(now - retention);
    }
    let segments = history::segments(&records, covered.0, covered.1, &state.thresholds);
    let body = HistoryBody {
        from: from.into(),
        to: to.into(),
        segments: segments.iter().map(segment_body).collect(),
        sessions: records
            .sessions
            .into_iter()
            .map(|session| session_body(session, now))
            .collect(),
    };
    Ok(no_store(HttpResponse::Ok()).json(body))
}

/// `from` and `to` of a query string: `to` defaults to now, `from` to
/// `default_range` before `to`; `from` must come first.
fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    default_range: TimeDelta,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let parse = |field: &str, text: Option<&str>| {
        text.map(|text| parse_timestamp(field, text))
            .transpose()
            .map_err(ApiError::InvalidTimestamp)
    };
    let to = parse("to", to)?.unwrap_or(now);
    let from = parse("from", from)?.unwrap_or(to - default_range);
    if from >= to {
        return Err(ApiError::InvalidTimestamp(
            "from must be before to".to_owned(),
        ));
    }
    Ok((from, to))
}

fn segment_body(segment: &Segment) -> SegmentBody {
    SegmentBody {
        status: segment.status,
        from: segment.from.into(),
        to: segment.to.into(),
    }
}

/// A session as the API shows it: one that is live now has no end yet.
fn session_body(session: Session, now: DateTime<Utc>) -> SessionBody {
    SessionBody {
        device_id: session.device_id,
        platform: session.platform,
        from: session.from.into(),
        to: session.to.filter(|to| *to <= now).map(Timestamp::from),
    }
}

/// `Cache-Control: private, no-store`: history and admin answers are not for caches.
fn no_store(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response.insert_header(CacheControl(vec![
        CacheDirective::Private,
        CacheDirective::NoStore,
    ]));
    response
}
