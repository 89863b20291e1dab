//! Sign-outs after the pings before them.
//!
//! A page that closes right after its first ping sends its sign-out while the
//! ping still waits in the ping writer's queue. Written at once, the sign-out
//! found no device (`404`), and the ping that committed after it left the
//! device live until it expired. So a sign-out waits, on this instance, for
//! the pings of its user still being written, and pings that arrive during the
//! sign-out wait for it in turn: each user's writes commit in the order they
//! arrived. Users share a fixed number of stripes, so a sign-out holds up the
//! pings of a few other users for as long as it takes.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::domain::UserId;

/// How many stripes users share.
const STRIPES: usize = 256;

/// The order of each user's pings and sign-outs on this instance.
pub struct WriteOrder {
    hasher: RandomState,
    stripes: Box<[RwLock<()>]>,
}

impl Default for WriteOrder {
    fn default() -> Self {
        Self {
            hasher: RandomState::default(),
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }
}

impl WriteOrder {
    fn stripe(&self, user: UserId) -> &RwLock<()> {
        let hash = usize::try_from(self.hasher.hash_one(user)).unwrap_or_default();
        &self.stripes[hash % STRIPES]
    }

    /// Held while a ping of `user` is written: pings never wait for each other.
    pub async fn ping(&self, user: UserId) -> RwLockReadGuard<'_, ()> {
        self.stripe(user).read().await
    }

    /// Held while a sign-out of `user` is written: once every ping of the
    /// user that arrived before it is written, and before any that came after.
    pub async fn sign_out(&self, user: UserId) -> RwLockWriteGuard<'_, ()> {
        self.stripe(user).write().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sign_out_waits_for_the_pings_before_it_and_the_next_ping_for_it() {
        let order = WriteOrder::default();
        let user = UserId::from(uuid::Uuid::new_v4());
        let first = order.ping(user).await;
        let second = order.ping(user).await;
        assert!(order.stripe(user).try_write().is_err(), "pings in flight");
        drop((first, second));
        let sign_out = order.sign_out(user).await;
        assert!(
            order.stripe(user).try_read().is_err(),
            "the next ping waits"
        );
        drop(sign_out);
        assert!(order.stripe(user).try_read().is_ok());
    }
}
