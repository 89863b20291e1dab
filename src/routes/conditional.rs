//! Conditional polling: the `ETag` of a status body and `If-None-Match`.

use std::hash::{BuildHasher, Hash, Hasher};

use actix_web::http::header::{self, CacheControl, CacheDirective, ETag, EntityTag, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::error::ApiError;

/// How a body's tag is hashed: foldhash with a fixed seed, the same on every
/// instance of one build. (It was the standard library's SipHash: a `304`
/// poll of twenty users then took 11% more instructions, counted by
/// `bench/instructions.sh`. A tag needs no secret key: it reveals nothing the
/// body would not, and SipHash with its fixed key resisted no crafted
/// collision either.)
const TAGS: foldhash::quality::FixedState =
    foldhash::quality::FixedState::with_seed(0x7072_6573_656e_6365);

/// A JSON response for polling: an `ETag` over the exact body this viewer gets,
/// `304` when `If-None-Match` already names it, and `Cache-Control: private, no-cache`.
///
/// The tag is a hash of the body bytes, so it changes exactly when the body
/// does, including when time alone moves a status (the body's `status` and
/// `nextChangeAt` change), and it can reveal nothing the body would not.
pub fn conditional_json<T: Serialize>(
    request: &HttpRequest,
    body: &T,
) -> Result<HttpResponse, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|error| ApiError::Internal(Box::new(error)))?;
    let mut hasher = TAGS.build_hasher();
    hasher.write(&bytes);
    answer(request, hasher.finish(), || Ok(bytes))
}

/// [`conditional_json`] for a body whose `Hash` covers exactly what it shows
/// (status bodies): the tag is a hash of the body's values, so a `304`, most
/// polls' answer, costs no JSON. It changes exactly when the body does, as
/// the other's, and is the same on every instance of one build.
pub fn conditional_view<T: ViewJson + Hash>(
    request: &HttpRequest,
    body: &T,
) -> Result<HttpResponse, ApiError> {
    let hash = TAGS.hash_one(body);
    answer(request, hash, || {
        body.to_json()
            .map_err(|error| ApiError::Internal(Box::new(error)))
    })
}

/// A status body that writes its own JSON, the same bytes `serde_json` writes from its `Serialize`.
pub trait ViewJson {
    /// The body as JSON.
    fn to_json(&self) -> serde_json::Result<Vec<u8>>;
}

/// `304` when `If-None-Match` names the tag of `hash`, else `200` with the body `bytes` makes.
fn answer(
    request: &HttpRequest,
    hash: u64,
    bytes: impl FnOnce() -> Result<Vec<u8>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let tag = EntityTag::new_strong(format!("{hash:016x}"));
    let cache_control = CacheControl(vec![CacheDirective::Private, CacheDirective::NoCache]);
    if already_has(request, &tag) {
        return Ok(HttpResponse::NotModified()
            .insert_header(ETag(tag))
            .insert_header(cache_control)
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header(ETag(tag))
        .insert_header(cache_control)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(bytes()?))
}

/// Whether `If-None-Match` lists `tag` (weakly compared, as RFC 9110 asks) or is `*`.
fn already_has(request: &HttpRequest, tag: &EntityTag) -> bool {
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| {
            candidate == "*"
                || candidate
                    .parse::<EntityTag>()
                    .is_ok_and(|candidate| candidate.weak_eq(tag))
        })
}
