//! Conditional polling: the `ETag` of a status body and `If-None-Match`.

use std::hash::{BuildHasher, Hash, Hasher};

use actix_web::http::header::{self, HeaderValue};
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
///
/// The headers are written as bytes, not through actix's typed headers: on a
/// `304` poll those formatted, allocated and parsed the tag several times.
fn answer(
    request: &HttpRequest,
    hash: u64,
    bytes: impl FnOnce() -> Result<Vec<u8>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let tag = entity_tag(hash);
    let etag =
        HeaderValue::from_bytes(&tag).map_err(|error| ApiError::Internal(Box::new(error)))?;
    let cache_control = HeaderValue::from_static("private, no-cache");
    if already_has(request, &tag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(bytes()?))
}

/// The strong entity tag of `hash`, quotes included: sixteen hex digits.
fn entity_tag(hash: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tag = [b'"'; 18];
    for (index, byte) in tag[1..17].iter_mut().enumerate() {
        *byte = DIGITS[usize::try_from((hash >> (60 - 4 * index)) & 0xf).unwrap_or_default()];
    }
    tag
}

/// Whether `If-None-Match` lists `tag` (weakly compared, as RFC 9110 asks) or is `*`.
fn already_has(request: &HttpRequest, tag: &[u8]) -> bool {
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .any(|candidate| {
            candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == tag
        })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_tag_is_the_hash_in_sixteen_hex_digits_and_is_named_weakly_or_strongly() {
        let tag = entity_tag(0x0123_4567_89ab_cdef);
        assert_eq!(&tag, br#""0123456789abcdef""#);
        assert_eq!(&entity_tag(0xf), br#""000000000000000f""#);
        let asking = |value: &str| {
            TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, value))
                .to_http_request()
        };
        for named in [
            r#""0123456789abcdef""#,
            r#"W/"0123456789abcdef""#,
            r#""other", W/"0123456789abcdef""#,
            "*",
        ] {
            assert!(already_has(&asking(named), &tag), "{named}");
        }
        for other in [r#""0123456789abcde""#, r#"0123456789abcdef"#, "", r#""x""#] {
            assert!(!already_has(&asking(other), &tag), "{other}");
        }
        assert!(!already_has(
            &TestRequest::default().to_http_request(),
            &tag
        ));
    }
}
