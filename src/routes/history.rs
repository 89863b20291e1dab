//! Presence history: `GET /api/status/history` (the caller's own) and
//! `GET /api/admin/users/{userId}/history` (anyone's, service tokens only).

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::responses::{AdminErrors, CommonErrors};
use crate::auth::{Service, Viewer};
use crate::domain::{Platform, Timestamp, UserId, parse_timestamp};
use crate::error::ApiError;
use crate::presence::Status;
use crate::presence::history::{Segment, Session};
use crate::state::AppState;

/// The longest range one history request covers.
const MAX_HISTORY_RANGE: TimeDelta = TimeDelta::days(31);
/// The range a history request covers when it names no `from`.
const DEFAULT_HISTORY_RANGE: TimeDelta = TimeDelta::hours(24);

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
    let history = state.history.of_user(user, from, to, now).await?;
    Ok(no_store(HttpResponse::Ok()).json(HistoryBody {
        from: from.into(),
        to: to.into(),
        segments: history.segments.iter().map(SegmentBody::from).collect(),
        sessions: history
            .sessions
            .into_iter()
            .map(SessionBody::from)
            .collect(),
    }))
}

impl From<&Segment> for SegmentBody {
    fn from(segment: &Segment) -> Self {
        Self {
            status: segment.status,
            from: segment.from.into(),
            to: segment.to.into(),
        }
    }
}

impl From<Session> for SessionBody {
    fn from(session: Session) -> Self {
        Self {
            device_id: session.device_id,
            platform: session.platform,
            from: session.from.into(),
            to: session.to.map(Timestamp::from),
        }
    }
}

/// `from` and `to` of a query string: `to` defaults to now, `from` to
/// `default_range` before `to`; `from` must come first.
pub(super) fn parse_range(
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

/// `Cache-Control: private, no-store`: history and admin answers are not for caches.
pub(super) fn no_store(
    mut response: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    response.insert_header(CacheControl(vec![
        CacheDirective::Private,
        CacheDirective::NoStore,
    ]));
    response
}
