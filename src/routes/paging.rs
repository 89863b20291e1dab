//! Paged lists of user ids (`?limit=&after=`): one parser and one rule for `next`.

use serde::Deserialize;

use crate::domain::UserId;
use crate::error::ApiError;

/// The query string of a paged list.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// One page asked for: at most `limit` ids, in ascending order, after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The most ids the page holds.
    pub limit: i64,
    /// The previous page's `next`, if any.
    pub after: Option<UserId>,
}

impl PageQuery {
    /// The page asked for: `limit` from 1 to `max` (`default` when absent),
    /// else `400 INVALID_BODY`; `after` a user id, else `400 INVALID_USER_ID`.
    pub fn page(&self, default: i64, max: i64) -> Result<Page, ApiError> {
        self.page_from(1, default, max)
    }

    /// The page asked for, `limit` from `min` to `max` (a room's `limit=0`
    /// asks for its occupancy alone); otherwise as [`PageQuery::page`].
    pub fn page_from(&self, min: i64, default: i64, max: i64) -> Result<Page, ApiError> {
        let limit = parse_limit(self.limit.as_deref(), min, default, max)?;
        let after = self
            .after
            .as_deref()
            .map(UserId::parse)
            .transpose()
            .map_err(ApiError::InvalidUserId)?;
        Ok(Page { limit, after })
    }
}

/// A list's `limit`: from `min` to `max`, `default` when absent, else `400 INVALID_BODY`.
pub fn parse_limit(text: Option<&str>, min: i64, default: i64, max: i64) -> Result<i64, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<i64>()
        .ok()
        .filter(|limit| (min..=max).contains(limit))
        .ok_or_else(|| {
            ApiError::InvalidBody(format!(
                "limit must be a whole number from {min} to {max}, not {text:?}"
            ))
        })
}

impl Page {
    /// The `next` of a page holding `ids`: its last id when it is full, else `None`.
    pub fn next(&self, ids: &[UserId]) -> Option<UserId> {
        let full = self.limit > 0 && i64::try_from(ids.len()).is_ok_and(|len| len >= self.limit);
        ids.last().copied().filter(|_| full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, after: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_owned),
            after: after.map(str::to_owned),
        }
    }

    #[test]
    fn limits_outside_the_range_and_bad_cursors_are_refused_with_their_codes() {
        for limit in ["0", "11", "-1", "2.5", "ten", ""] {
            let error = query(Some(limit), None).page(5, 10).expect_err(limit);
            assert_eq!(error.code(), "INVALID_BODY", "{limit}");
        }
        let error = query(None, Some("x")).page(5, 10).expect_err("bad after");
        assert_eq!(error.code(), "INVALID_USER_ID");
        assert_eq!(query(None, None).page(5, 10).expect("default").limit, 5);
        assert_eq!(query(Some("10"), None).page(5, 10).expect("max").limit, 10);
    }

    #[test]
    fn next_is_the_last_id_of_a_full_page_only() {
        let ids: Vec<UserId> = (0..3).map(|_| UserId::from(uuid::Uuid::new_v4())).collect();
        let page = Page {
            limit: 3,
            after: None,
        };
        assert_eq!(page.next(&ids), Some(ids[2]));
        assert_eq!(page.next(&ids[..2]), None);
        assert_eq!(page.next(&[]), None);
    }
}
