//! The answers to requests the [`crate::head_guard`] refused before actix-http parsed them.

use actix_web::{HttpResponse, ResponseError, web};

use super::status::MAX_IDS_IN_QUERY;
use crate::error::ApiError;
use crate::head_guard::{MAX_HEAD_BYTES, MAX_URI_BYTES, Refusal};

/// `GET /_presence/rejected/{code}`: the contract's JSON error for a refused request head.
pub async fn rejected(code: web::Path<String>) -> HttpResponse {
    let refusals = [
        Refusal::Malformed,
        Refusal::UriTooLong,
        Refusal::HeadersTooLarge,
        Refusal::TooManyIds,
        Refusal::Timeout,
    ];
    let error = match refusals.into_iter().find(|refusal| refusal.code() == *code) {
        Some(Refusal::Malformed) => ApiError::InvalidBody(
            "the request is not well-formed HTTP/1.1 (request line, headers, Content-Length or Transfer-Encoding)"
                .to_owned(),
        ),
        Some(Refusal::UriTooLong) => ApiError::UriTooLong { limit: MAX_URI_BYTES },
        Some(Refusal::HeadersTooLarge) => ApiError::HeadersTooLarge {
            limit: MAX_HEAD_BYTES,
        },
        Some(Refusal::TooManyIds) => ApiError::TooManyIds(format!(
            "the ids query parameter holds more than {MAX_IDS_IN_QUERY} ids; at most {MAX_IDS_IN_QUERY} are allowed"
        )),
        Some(Refusal::Timeout) => ApiError::RequestTimeout,
        None => ApiError::NotFound("no such route".to_owned()),
    };
    error.error_response()
}
