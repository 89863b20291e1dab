//! What one step measured, per kind of request and for the changes watchers saw.

use std::collections::BTreeMap;

use crate::client::Kind;
use crate::truth::Micros;

/// Per-kind request figures.
#[derive(Debug, Default)]
pub struct KindFigures {
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
    /// The failed answers by status code (0: no answer).
    pub failures: BTreeMap<u16, u64>,
    /// Sign-outs answered `404` because they overtook their tab's first ping
    /// (see `Job::unacknowledged`); not errors.
    pub overtook: u64,
    /// Polls answered `304`, and bytes of poll answers.
    pub not_modified: u64,
    pub bytes: u64,
    /// Latencies in microseconds, from the client's timer to the whole answer.
    pub latencies: Vec<u32>,
}

/// What one step measured.
#[derive(Debug, Default)]
pub struct Figures {
    pub kinds: Vec<(Kind, KindFigures)>,
    /// Change-to-poll delays, within one instance and across instances (µs).
    pub propagation_same: Vec<Micros>,
    pub propagation_across: Vec<Micros>,
    pub propagation_missed: u64,
    pub observations: u64,
    pub wrong: u64,
    /// A few wrong observations, described, to debug with.
    pub wrong_examples: Vec<String>,
    /// How late the simulator ran its timers (µs): it must keep up for the figures to hold.
    pub timer_lateness: Vec<u32>,
    /// The latest a timer ran (µs) by the Unix second it ran in: a slow
    /// second whose timers ran late was the simulator's own.
    pub late_seconds: BTreeMap<i64, u32>,
    /// Users present (with the app open) at the end.
    pub present: usize,
    /// Typing start to its first showing in a member's poll of the room (µs),
    /// and typing starts a member polling the room never saw while they lasted.
    pub typing_propagation: Vec<Micros>,
    pub typing_missed: u64,
    /// Measured requests slower than [`SLOW_MICROS`], by the Unix second
    /// they were answered in: (how many, the slowest µs). Shows whether slow
    /// answers are spread out or come in stalls, and when.
    pub slow_seconds: BTreeMap<i64, (u64, u32)>,
    /// Of those, the longest a slow request queued for a free connection
    /// of the simulator's pool (µs), by the same second.
    pub queued_seconds: BTreeMap<i64, u32>,
    /// The time measured requests held a connection of the pool, from when
    /// one took the request to the whole answer (µs, summed).
    pub held_micros: u64,
    /// Measured requests by the Unix second their client wanted them in:
    /// (how many, how many were polls answered in full, not `304`). Shows
    /// whether clients' timers bunch up, as before a stall.
    pub wanted_seconds: BTreeMap<i64, (u64, u64)>,
}

/// A request slower than this (µs) counts in [`Figures::slow_seconds`]: the
/// p99 bound of a served step.
pub const SLOW_MICROS: u32 = 50_000;

impl Figures {
    pub(super) fn kind(&mut self, kind: Kind) -> &mut KindFigures {
        let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &mut self.kinds[index].1
    }
}
