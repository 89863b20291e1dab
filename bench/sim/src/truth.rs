//! Ground truth: what each simulated user's status really was, moment by moment, and
//! the two checks against it (accuracy of every observation, propagation of changes).

use std::collections::{HashMap, VecDeque};

/// Microseconds since the simulation started.
pub type Micros = u64;

/// An effective status, as a bit so that sets of them are masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Online = 1,
    Idle = 2,
    Away = 4,
    Dnd = 8,
    Offline = 16,
}

impl Status {
    /// The status named as in the contract (`"online"`...), if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "online" => Self::Online,
            "idle" => Self::Idle,
            "away" => Self::Away,
            "dnd" => Self::Dnd,
            "offline" => Self::Offline,
            _ => return None,
        })
    }

    /// This status as a one-bit mask.
    pub fn bit(self) -> u8 {
        self as u8
    }
}

/// The server's thresholds as the simulator must assume them, and the allowed lag.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub idle_after: Micros,
    pub away_after: Micros,
    pub precision: Micros,
    /// How far back an observation may reflect: poll interval + precision + offline threshold.
    pub lag: Micros,
}

/// What the simulator knows of one user at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// At least one tab is open (its device signed in and pinging).
    pub present: bool,
    pub invisible: bool,
    pub dnd: bool,
    /// When the user last interacted (an activity ping, a setting, a new tab).
    pub last_active: Micros,
}

impl State {
    /// A user who never opened the app.
    pub const ABSENT: State = State {
        present: false,
        invisible: false,
        dnd: false,
        last_active: 0,
    };

    /// The statuses another viewer may be shown at some moment in `[from, to]`
    /// while this state holds. Others age activity from a time floored to the
    /// precision, so their ages run up to one precision step ahead.
    pub fn shown(&self, from: Micros, to: Micros, rules: &Rules) -> u8 {
        if !self.present || self.invisible {
            return Status::Offline.bit();
        }
        if self.dnd {
            return Status::Dnd.bit();
        }
        let youngest = from.saturating_sub(self.last_active);
        let oldest = to.saturating_sub(self.last_active) + rules.precision;
        let mut mask = 0;
        if youngest < rules.idle_after {
            mask |= Status::Online.bit();
        }
        if youngest < rules.away_after && oldest >= rules.idle_after {
            mask |= Status::Idle.bit();
        }
        if oldest >= rules.away_after {
            mask |= Status::Away.bit();
        }
        mask
    }

    /// The exact status at `at` (no precision): what a change is judged by.
    pub fn exact(&self, at: Micros, rules: &Rules) -> Status {
        let exact = Rules {
            precision: 0,
            ..*rules
        };
        match self.shown(at, at, &exact) {
            1 => Status::Online,
            2 => Status::Idle,
            4 => Status::Away,
            8 => Status::Dnd,
            _ => Status::Offline,
        }
    }
}

/// One user's states over time, back as far as the allowed lag needs.
#[derive(Debug)]
pub struct Timeline {
    /// `(since, state)`, oldest first; never empty.
    segments: VecDeque<(Micros, State)>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            segments: VecDeque::from([(0, State::ABSENT)]),
        }
    }
}

impl Timeline {
    /// The state now.
    pub fn current(&self) -> State {
        self.segments
            .back()
            .map_or(State::ABSENT, |(_, state)| *state)
    }

    /// From `at` on, the user is in `state`.
    pub fn set(&mut self, at: Micros, state: State) {
        if self.current() == state {
            return;
        }
        match self.segments.back_mut() {
            Some((since, last)) if *since >= at => *last = state,
            _ => self.segments.push_back((at, state)),
        }
    }

    /// Drops what ended before `at`.
    pub fn forget_before(&mut self, at: Micros) {
        while self.segments.len() > 1 && self.segments[1].0 <= at {
            self.segments.pop_front();
        }
    }

    /// Every status another viewer may rightly be shown at some moment in `[from, to]`.
    ///
    /// The server may read a row as it stood at any moment of the window (a
    /// write still in flight, a change not yet propagated) and judges it at
    /// the moment it answers, up to `to`: a state that ended within the
    /// window may be shown aged to `to`, as the server would age the row it
    /// read.
    pub fn shown(&self, from: Micros, to: Micros, rules: &Rules) -> u8 {
        let mut mask = 0;
        for (index, (since, state)) in self.segments.iter().enumerate() {
            let until = self
                .segments
                .get(index + 1)
                .map_or(Micros::MAX, |(next, _)| *next);
            if until <= from || *since > to {
                continue;
            }
            mask |= state.shown(from.max(*since), to, rules);
        }
        mask
    }
}

/// One user blocking another, from `since` until `until` (still on: `None`).
#[derive(Debug)]
struct Span {
    blocker: u32,
    since: Micros,
    until: Option<Micros>,
}

/// Blocks between pairs of users over time (either one blocking the other).
#[derive(Debug, Default)]
pub struct Blocks {
    /// Per unordered pair.
    spans: HashMap<(u32, u32), Vec<Span>>,
}

fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl Blocks {
    /// `blocker` blocks `blocked` from `at` on.
    pub fn block(&mut self, blocker: u32, blocked: u32, at: Micros) {
        self.spans
            .entry(pair(blocker, blocked))
            .or_default()
            .push(Span {
                blocker,
                since: at,
                until: None,
            });
    }

    /// `blocker` lifts their block of `blocked` at `at`.
    pub fn unblock(&mut self, blocker: u32, blocked: u32, at: Micros) {
        if let Some(spans) = self.spans.get_mut(&pair(blocker, blocked)) {
            for span in spans.iter_mut() {
                if span.blocker == blocker && span.until.is_none() {
                    span.until = Some(at);
                }
            }
        }
    }

    /// Whether either of the two blocks the other now.
    pub fn blocked_now(&self, a: u32, b: u32) -> bool {
        self.spans
            .get(&pair(a, b))
            .is_some_and(|spans| spans.iter().any(|span| span.until.is_none()))
    }

    /// Narrows what `shown` allows by the pair's blocks within `[from, to]`:
    /// blocked throughout, only `offline`; blocked for part of it, `offline` too.
    pub fn restrict(&self, a: u32, b: u32, from: Micros, to: Micros, shown: u8) -> u8 {
        let Some(spans) = self.spans.get(&pair(a, b)) else {
            return shown;
        };
        let mut any = false;
        let mut covered_until = from;
        let mut sorted: Vec<_> = spans
            .iter()
            .map(|span| (span.since, span.until.unwrap_or(Micros::MAX)))
            .filter(|(since, until)| *until > from && *since <= to)
            .collect();
        sorted.sort_unstable();
        for (since, until) in sorted {
            any = true;
            if since <= covered_until {
                covered_until = covered_until.max(until);
            }
        }
        if covered_until > to {
            Status::Offline.bit()
        } else if any {
            shown | Status::Offline.bit()
        } else {
            shown
        }
    }
}

/// A change a watcher should come to see: `user`'s status entering `mask`.
#[derive(Clone, Copy, Debug)]
pub struct Expectation {
    pub user: u32,
    pub mask: u8,
    pub since: Micros,
    /// The user's change counter when it happened: a later change supersedes it.
    pub change: u32,
    /// Whether watcher and user are served by different instances.
    pub across: bool,
}

/// What became of a watcher's expectations after one of their polls.
#[derive(Debug, Default, PartialEq)]
pub struct Settled {
    /// Delays from change to the poll that showed it, with whether it crossed instances.
    pub seen: Vec<(Micros, bool)>,
    /// Expectations not met within the allowed lag.
    pub missed: u32,
}

/// Checks a watcher's pending expectations against a poll answered at `at`.
/// `observed(user)` is the status the poll showed for that user (if asked);
/// `current_change(user)` is the user's change counter now.
pub fn settle(
    pending: &mut Vec<Expectation>,
    at: Micros,
    lag: Micros,
    observed: impl Fn(u32) -> Option<Status>,
    current_change: impl Fn(u32) -> u32,
) -> Settled {
    let mut settled = Settled::default();
    pending.retain(|expectation| {
        if current_change(expectation.user) != expectation.change {
            return false;
        }
        if observed(expectation.user).is_some_and(|status| status.bit() & expectation.mask != 0) {
            settled
                .seen
                .push((at.saturating_sub(expectation.since), expectation.across));
            return false;
        }
        if at > expectation.since + lag {
            settled.missed += 1;
            return false;
        }
        true
    });
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Micros = 1_000_000;

    fn rules(precision: Micros) -> Rules {
        Rules {
            idle_after: 300 * S,
            away_after: 1800 * S,
            precision,
            lag: 123 * S,
        }
    }

    fn live(last_active: Micros) -> State {
        State {
            present: true,
            last_active,
            ..State::ABSENT
        }
    }

    #[test]
    fn a_live_user_ages_from_online_through_idle_to_away() {
        let rules = rules(0);
        let state = live(10 * S);
        assert_eq!(state.exact(10 * S, &rules), Status::Online);
        assert_eq!(state.exact(309 * S, &rules), Status::Online);
        assert_eq!(state.exact(310 * S, &rules), Status::Idle);
        assert_eq!(state.exact(1810 * S, &rules), Status::Away);
    }

    #[test]
    fn invisible_absent_and_dnd_win_over_activity() {
        let rules = rules(0);
        let now = 20 * S;
        let invisible = State {
            invisible: true,
            dnd: true,
            ..live(now)
        };
        assert_eq!(invisible.exact(now, &rules), Status::Offline);
        assert_eq!(State::ABSENT.exact(now, &rules), Status::Offline);
        let dnd = State {
            dnd: true,
            ..live(0)
        };
        assert_eq!(dnd.exact(3600 * S, &rules), Status::Dnd);
    }

    #[test]
    fn precision_lets_others_see_idle_up_to_one_step_early() {
        let state = live(0);
        // 4m30s after the activity: exactly online, but floored activity may be 5m old.
        let at = 270 * S;
        assert_eq!(state.shown(at, at, &rules(0)), Status::Online.bit());
        assert_eq!(
            state.shown(at, at, &rules(60 * S)),
            Status::Online.bit() | Status::Idle.bit()
        );
    }

    #[test]
    fn a_state_that_ended_in_the_window_may_be_shown_aged_to_its_end() {
        // Active at 0, idle after 300 s, away after 1800 s; signed out at
        // 1799 s. A poll answered at 1801 s may have read the row before the
        // sign-out committed, and the server ages that row to its answer.
        let rules = rules(0);
        let mut timeline = Timeline::default();
        timeline.set(0, live(0));
        timeline.set(
            1799 * S,
            State {
                present: false,
                ..live(0)
            },
        );
        let away = Status::Away.bit();
        assert_eq!(timeline.shown(1790 * S, 1801 * S, &rules) & away, away);
        // Once the window starts after the sign-out, the old row is gone.
        assert_eq!(
            timeline.shown(1800 * S, 1900 * S, &rules),
            Status::Offline.bit()
        );
    }

    #[test]
    fn a_window_allows_every_state_it_overlaps() {
        let rules = rules(0);
        let mut timeline = Timeline::default();
        timeline.set(10 * S, live(10 * S));
        timeline.set(
            50 * S,
            State {
                dnd: true,
                ..live(50 * S)
            },
        );
        let online = Status::Online.bit();
        let dnd = Status::Dnd.bit();
        let offline = Status::Offline.bit();
        assert_eq!(timeline.shown(0, 5 * S, &rules), offline);
        assert_eq!(timeline.shown(20 * S, 40 * S, &rules), online);
        assert_eq!(timeline.shown(40 * S, 60 * S, &rules), online | dnd);
        assert_eq!(timeline.shown(0, 60 * S, &rules), online | dnd | offline);
        // Forgetting the past keeps the state that covers the moment kept.
        timeline.forget_before(55 * S);
        assert_eq!(timeline.shown(55 * S, 60 * S, &rules), dnd);
        assert!(timeline.current().dnd);
    }

    #[test]
    fn setting_the_same_state_twice_keeps_one_segment() {
        let rules = rules(0);
        let mut timeline = Timeline::default();
        timeline.set(10 * S, live(10 * S));
        timeline.set(20 * S, live(10 * S));
        timeline.forget_before(15 * S);
        assert_eq!(timeline.shown(12 * S, 12 * S, &rules), Status::Online.bit());
    }

    #[test]
    fn blocks_hide_a_pair_only_while_they_last() {
        let mut blocks = Blocks::default();
        let online = Status::Online.bit();
        let offline = Status::Offline.bit();
        blocks.block(1, 2, 10 * S);
        assert!(blocks.blocked_now(2, 1));
        assert_eq!(blocks.restrict(2, 1, 0, 5 * S, online), online);
        assert_eq!(
            blocks.restrict(2, 1, 5 * S, 15 * S, online),
            online | offline
        );
        assert_eq!(blocks.restrict(1, 2, 11 * S, 15 * S, online), offline);
        // The other side blocks too; one unblock still leaves the pair blocked.
        blocks.block(2, 1, 20 * S);
        blocks.unblock(1, 2, 30 * S);
        assert!(blocks.blocked_now(1, 2));
        assert_eq!(blocks.restrict(1, 2, 31 * S, 40 * S, online), offline);
        blocks.unblock(2, 1, 50 * S);
        assert!(!blocks.blocked_now(1, 2));
        assert_eq!(
            blocks.restrict(1, 2, 45 * S, 55 * S, online),
            online | offline
        );
        assert_eq!(blocks.restrict(1, 2, 51 * S, 55 * S, online), online);
    }

    #[test]
    fn settling_counts_seen_changes_misses_and_drops_superseded_ones() {
        let lag = 10 * S;
        let expect = |user, mask, since, change| Expectation {
            user,
            mask,
            since,
            change,
            across: user == 3,
        };
        let mut pending = vec![
            expect(1, Status::Dnd.bit(), S, 7),
            expect(2, Status::Offline.bit(), S, 1),
            expect(3, Status::Online.bit(), 2 * S, 4),
            expect(4, Status::Online.bit(), 0, 2),
        ];
        let observed = |user| match user {
            1 => Some(Status::Dnd),
            2 => Some(Status::Online),
            3 => Some(Status::Online),
            _ => Some(Status::Offline),
        };
        // User 3 changed again since (counter 5): that expectation no longer holds.
        let change = |user| {
            if user == 3 {
                5
            } else {
                [0, 7, 1, 0, 2][user as usize]
            }
        };
        let settled = settle(&mut pending, 4 * S, lag, observed, change);
        assert_eq!(settled.seen, vec![(3 * S, false)]);
        assert_eq!(settled.missed, 0);
        assert_eq!(pending.len(), 2, "users 2 and 4 are still awaited");
        let settled = settle(&mut pending, 10 * S + 1, lag, observed, change);
        assert_eq!(settled.missed, 1, "user 4's change was due by 10 s");
        assert_eq!(pending.len(), 1);
    }
}
