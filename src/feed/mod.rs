//! The change feed service handlers call (`GET /api/admin/changes`), and
//! the cursors it gives. The feed itself is written by the database's
//! triggers and the feed job (see `sql/feed.sql` and `jobs/feed.rs`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::database::Database;
use crate::store::{self, StoredChange};

/// A place in the feed: after the change of this number. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(i64);

/// Why a cursor is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this feed gives.
    #[error("{0}")]
    Invalid(String),
    /// Older than the feed keeps changes.
    #[error("the cursor is older than the feed's retention")]
    Expired,
}

impl Cursor {
    /// Reads a cursor as [`Cursor::encode`] writes it.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let bad = || CursorError::Invalid(format!("{text:?} is not a cursor this feed gave"));
        let bytes: [u8; 8] = URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(bad)?;
        let number = i64::from_be_bytes(bytes);
        if number < 0 {
            return Err(bad());
        }
        Ok(Self(number))
    }

    /// The cursor as clients pass it.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_be_bytes())
    }
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// The changes, in the feed's order.
    pub changes: Vec<StoredChange>,
    /// Where to go on from, also when `changes` is empty.
    pub next: Cursor,
}

/// Why a page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The cursor is refused.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Reads of the change feed, within the request path's deadline.
#[derive(Clone)]
pub struct Feed {
    db: Database,
}

impl Feed {
    /// The feed over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Up to `limit` changes after `after` (from the oldest retained without
    /// one), in order, and the cursor to go on from.
    pub async fn changes(&self, after: Option<Cursor>, limit: i64) -> Result<FeedPage, FeedError> {
        let start = after.map_or(0, |cursor| cursor.0);
        let (changes, bounds) = self
            .db
            .run(async |connection| store::read_changes(connection, start, limit).await)
            .await?;
        if let Some(Cursor(number)) = after {
            if number < bounds.deleted_through {
                return Err(CursorError::Expired.into());
            }
            if number > bounds.last_id {
                return Err(CursorError::Invalid(
                    "the cursor is past the end of this feed: it is not one this feed gave"
                        .to_owned(),
                )
                .into());
            }
        }
        let next = changes.last().map_or_else(
            || Cursor(after.map_or(bounds.last_id, |cursor| cursor.0)),
            |change| Cursor(change.id),
        );
        Ok(FeedPage { changes, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_encode_and_refuse_anything_else() {
        for number in [0, 1, 42, i64::MAX] {
            let cursor = Cursor(number);
            assert_eq!(Cursor::parse(&cursor.encode()), Ok(cursor));
        }
        let negative = URL_SAFE_NO_PAD.encode((-1_i64).to_be_bytes());
        for text in [
            "",
            "abc",
            "!!!!!!!!!!!",
            "AAAAAAAAAAAAAAA",
            negative.as_str(),
        ] {
            assert!(
                matches!(Cursor::parse(text), Err(CursorError::Invalid(_))),
                "{text:?}"
            );
        }
    }
}
