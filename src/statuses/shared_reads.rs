//! Reads of rows the cache lacks, shared: while a row is being read, every
//! other request for it waits for that read instead of sending its own.
//!
//! When PostgreSQL pauses (a checkpoint's flush, a lock queue), the change
//! listener's probes stop coming back and every cached row goes stale at the
//! same moment; without sharing, every poll would then read PostgreSQL at
//! once, and a short pause would end in a stampede. With it, a pause costs at
//! most one read per row, in batches: a read runs on its own task, with a
//! longer deadline than a request's, so that it lands (and fills the cache)
//! even when the requests that wait for it have given up.
//!
//! A request may use what a read started before it found only if that read
//! started less than the cache TTL earlier: a write committed a TTL before the
//! request then shows, as the contract's consistency clause promises.
//! Otherwise it asks the cache again once the read has landed, and reads what
//! is still stale itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::domain::UserId;
use crate::presence::StoredStatus;

/// What a shared read found: a value for each user (users without one are
/// left out), or why it failed (a copy of its error, for each waiter).
pub type Found<V> = Result<HashMap<UserId, V>, String>;

/// One read in flight, of a batch of users.
pub struct Flight<V = Arc<StoredStatus>> {
    /// When it started, on the freshness clock.
    pub started: u64,
    /// Whether the read's error, if any, was the database being unavailable.
    unavailable: OnceLock<bool>,
    found: OnceLock<Found<V>>,
    landed: Notify,
}

impl<V> Flight<V> {
    fn new(started: u64) -> Self {
        Self {
            started,
            unavailable: OnceLock::new(),
            found: OnceLock::new(),
            landed: Notify::new(),
        }
    }

    /// What the read found, once it has landed.
    pub async fn landed(&self) -> &Found<V> {
        loop {
            let landed = self.landed.notified();
            tokio::pin!(landed);
            // Registered before looking, so a landing in between is not missed.
            landed.as_mut().enable();
            if let Some(found) = self.found.get() {
                return found;
            }
            landed.await;
        }
    }

    /// The error a waiter answers with when the read failed: unavailable (a `503`) or not.
    pub fn error(&self, message: &str) -> sqlx::Error {
        let cause = std::io::Error::other(message.to_owned());
        if self.unavailable.get().copied().unwrap_or(true) {
            sqlx::Error::Io(cause)
        } else {
            sqlx::Error::Configuration(Box::new(cause))
        }
    }
}

/// The reads in flight, by user: of rows, or (`V = bool`) of whether a viewer is in any block.
pub struct SharedReads<V = Arc<StoredStatus>> {
    flights: Mutex<HashMap<UserId, Arc<Flight<V>>>>,
}

impl<V> Default for SharedReads<V> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

/// The flights a request waits for: one per user asked, and the new flight it
/// must start (with its users), if some user had none.
pub struct Boarding<V> {
    /// The flight reading each user, in the order asked.
    pub flights: Vec<Arc<Flight<V>>>,
    /// A flight this request starts, for the users no flight was reading.
    pub started: Option<(Arc<Flight<V>>, Vec<UserId>)>,
}

impl<V> SharedReads<V> {
    /// The flight reading each of `users` (distinct), starting one at `now` for
    /// those no flight is reading.
    pub fn board(&self, users: &[UserId], now: u64) -> Boarding<V> {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut new: Option<Arc<Flight<V>>> = None;
        let mut new_users = Vec::new();
        let boarded = users
            .iter()
            .map(|user| {
                flights
                    .entry(*user)
                    .or_insert_with(|| {
                        new_users.push(*user);
                        new.get_or_insert_with(|| Arc::new(Flight::new(now)))
                            .clone()
                    })
                    .clone()
            })
            .collect();
        Boarding {
            flights: boarded,
            started: new.map(|flight| (flight, new_users)),
        }
    }

    /// Publishes what `flight` found for `users`, and forgets it: later requests start new reads.
    pub fn land(
        &self,
        flight: &Arc<Flight<V>>,
        users: &[UserId],
        found: Found<V>,
        unavailable: bool,
    ) {
        {
            let mut flights = self
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for user in users {
                if flights
                    .get(user)
                    .is_some_and(|held| Arc::ptr_eq(held, flight))
                {
                    flights.remove(user);
                }
            }
        }
        let _ = flight.unavailable.set(unavailable);
        let _ = flight.found.set(found);
        flight.landed.notify_waiters();
    }

    /// How many users are being read now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(count: usize) -> Vec<UserId> {
        (0..count)
            .map(|_| UserId::from(uuid::Uuid::new_v4()))
            .collect()
    }

    #[test]
    fn a_user_being_read_is_read_once_whoever_asks() {
        let reads = SharedReads::<bool>::default();
        let [a, b, c]: [UserId; 3] = users(3).try_into().expect("three");
        let first = reads.board(&[a, b], 10);
        let (flight, started) = first.started.expect("a new read");
        assert_eq!(started, vec![a, b]);
        let second = reads.board(&[b, c], 20);
        let (other, started) = second.started.expect("c needs a read");
        assert_eq!(started, vec![c], "b is already being read");
        assert!(Arc::ptr_eq(&second.flights[0], &flight));
        assert!(Arc::ptr_eq(&second.flights[1], &other));
        assert_eq!(reads.in_flight(), 3);

        reads.land(&flight, &[a, b], Ok(HashMap::new()), false);
        assert_eq!(reads.in_flight(), 1, "a and b may be read again");
        let third = reads.board(&[a], 30);
        assert!(third.started.is_some(), "a landed read is not joined");
    }

    #[tokio::test]
    async fn waiters_learn_what_the_read_found_when_it_lands() {
        let reads = Arc::new(SharedReads::<bool>::default());
        let user = users(1)[0];
        let (flight, started) = reads.board(&[user], 0).started.expect("a new read");
        let waiter = {
            let flight = flight.clone();
            tokio::spawn(async move { flight.landed().await.clone().map(|found| found.len()) })
        };
        tokio::task::yield_now().await;
        reads.land(
            &flight,
            &started,
            Err("the database is away".to_owned()),
            true,
        );
        assert_eq!(
            waiter.await.expect("joins"),
            Err("the database is away".to_owned())
        );
        assert!(crate::error::database_unavailable(&flight.error("x")));
    }
}
