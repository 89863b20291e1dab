//! The extractors handlers take: `Viewer` (a user) and `Service` (a service token).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use super::verify::{Caller, TokenVerifier, Unverified, bearer_token};
use crate::domain::{RoomGrants, UserId};
use crate::error::ApiError;

/// A request's caller, known at once or after a JWKS re-fetch.
enum PendingCaller {
    /// Verified or refused with the keys held.
    Known(Result<Caller, ApiError>),
    /// The token names a `kid` not held: re-fetch the JWKS document, then check again.
    AfterRefetch(web::Data<TokenVerifier>, String),
}

impl PendingCaller {
    /// Starts verifying a request's bearer token.
    fn of(request: &HttpRequest) -> Self {
        let Some(verifier) = request.app_data::<web::Data<TokenVerifier>>() else {
            return Self::Known(Err(ApiError::Internal(
                "no token verifier configured".into(),
            )));
        };
        let token = match bearer_token(request) {
            Ok(token) => token,
            Err(error) => return Self::Known(Err(error)),
        };
        match verifier.check(token) {
            Err(Unverified::UnknownKid) if verifier.jwks.is_some() => {
                Self::AfterRefetch(verifier.clone(), token.to_owned())
            }
            checked => Self::Known(checked.map_err(ApiError::from)),
        }
    }

    /// The caller, once known.
    async fn caller(self) -> Result<Caller, ApiError> {
        match self {
            Self::Known(caller) => caller,
            Self::AfterRefetch(verifier, token) => verifier.verify_caller_fetching(&token).await,
        }
    }
}

/// An extractor's future.
type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// The service calling an `/api/admin/...` route: `401` without a valid
/// token, `403 FORBIDDEN` with a token that lacks the `presence:admin` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service(pub String);

impl FromRequest for Service {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let pending = PendingCaller::of(request);
        Box::pin(async move {
            let caller = pending.caller().await?;
            if caller.admin {
                Ok(Service(caller.subject))
            } else {
                Err(ApiError::Forbidden)
            }
        })
    }
}

/// The authenticated caller of an `/api` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer(pub UserId);

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let pending = PendingCaller::of(request);
        Box::pin(async move { pending.caller().await?.user().map(Viewer) })
    }
}

/// The caller of a room route: a user with the rooms their token grants,
/// and whether the token is a service token (which reads every room and sees
/// the truth, whatever its subject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCaller {
    /// The user the token speaks for, when its subject is a user id.
    pub user: Option<UserId>,
    /// The rooms the token grants.
    pub grants: std::sync::Arc<RoomGrants>,
    /// Whether the token carries the `presence:admin` scope.
    pub service: bool,
}

impl RoomCaller {
    /// The user, for the routes only users call (joining, leaving, their own rooms).
    pub fn user(&self) -> Result<UserId, ApiError> {
        self.user.ok_or(ApiError::Unauthorized(
            "the token's sub claim must be a user id (a UUID)",
        ))
    }
}

impl FromRequest for RoomCaller {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let pending = PendingCaller::of(request);
        Box::pin(async move {
            let caller = pending.caller().await?;
            let user = if caller.admin {
                caller.user().ok()
            } else {
                Some(caller.user()?)
            };
            Ok(Self {
                user,
                grants: caller.rooms,
                service: caller.admin,
            })
        })
    }
}
