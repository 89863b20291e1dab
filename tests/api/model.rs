//! A model of the contract's rules (section 1), written apart from the
//! server's code: the ground truth the history and the feed tests check the
//! server against. It keeps what one user did and computes the status that
//! implies at any instant, as the user sees it and as a viewer in no block does.

use chrono::{DateTime, TimeDelta, Utc};

/// What one user did, in order: the ground truth the model computes from.
#[derive(Debug, Clone)]
pub enum Event {
    /// A ping of one of the user's devices (`active: false`: a heartbeat).
    Ping { device: u8, active: bool },
    /// The device signed out (or was pruned).
    Gone { device: u8 },
    /// The manual status set (`None`: cleared), until an instant or not.
    Manual {
        status: Option<&'static str>,
        until: Option<DateTime<Utc>>,
    },
    /// Invisibility switched on or off.
    Invisible(bool),
}

/// The thresholds a server runs with.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub idle_after: TimeDelta,
    pub away_after: TimeDelta,
    pub offline_after: TimeDelta,
    /// Others see activity times floored to this (zero: exact).
    pub precision: TimeDelta,
}

impl Rules {
    /// The thresholds of the tests' servers unless a test sets its own.
    pub const TESTS: Rules = Rules {
        idle_after: TimeDelta::minutes(5),
        away_after: TimeDelta::minutes(30),
        offline_after: TimeDelta::seconds(60),
        precision: TimeDelta::zero(),
    };

    /// The status at `t` after `events` (those up to `t` count): as the user
    /// sees it, or (`public`) as a viewer in no block does.
    pub fn status(
        &self,
        events: &[(DateTime<Utc>, Event)],
        t: DateTime<Utc>,
        public: bool,
    ) -> &'static str {
        let mut last_ping: [Option<DateTime<Utc>>; 4] = [None; 4];
        let mut last_activity = None;
        let mut manual: (Option<&'static str>, Option<DateTime<Utc>>) = (None, None);
        let mut invisible = false;
        for (at, event) in events.iter().take_while(|(at, _)| *at <= t) {
            match event {
                Event::Ping { device, active } => {
                    // A device's first ping counts as activity.
                    if *active || last_ping[usize::from(*device)].is_none() {
                        last_activity = Some(*at);
                    }
                    last_ping[usize::from(*device)] = Some(*at);
                }
                Event::Gone { device } => last_ping[usize::from(*device)] = None,
                Event::Manual { status, until } => manual = (*status, *until),
                Event::Invisible(on) => invisible = *on,
            }
        }
        if public && invisible {
            return "offline";
        }
        if !last_ping
            .iter()
            .flatten()
            .any(|ping| t - *ping < self.offline_after)
        {
            return "offline";
        }
        if let (Some(status), until) = manual
            && until.is_none_or(|until| t < until)
        {
            return status;
        }
        let seen = if public {
            last_activity.map(|at| self.floored(at))
        } else {
            last_activity
        };
        match seen.map(|at| t - at) {
            Some(age) if age < self.idle_after => "online",
            Some(age) if age < self.away_after => "idle",
            _ => "away",
        }
    }

    /// `at` floored to the precision, in whole milliseconds since the epoch.
    fn floored(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.precision.num_milliseconds();
        if step <= 0 {
            return at;
        }
        let ms = at.timestamp_millis();
        DateTime::from_timestamp_millis(ms - ms.rem_euclid(step)).expect("an instant in range")
    }

    /// Every instant in `[from, to)` where the model's views may change, and a
    /// millisecond either side: where a test compares the server with it.
    pub fn instants(
        &self,
        events: &[(DateTime<Utc>, Event)],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut instants = Vec::new();
        for (at, event) in events {
            let mut marks = vec![*at];
            match event {
                Event::Ping { .. } => {
                    for activity in [*at, self.floored(*at)] {
                        marks.extend([activity + self.idle_after, activity + self.away_after]);
                    }
                    marks.push(*at + self.offline_after);
                }
                Event::Manual {
                    until: Some(until), ..
                } => marks.push(*until),
                _ => {}
            }
            for mark in marks {
                instants.extend([
                    mark - TimeDelta::milliseconds(1),
                    mark,
                    mark + TimeDelta::milliseconds(1),
                ]);
            }
        }
        instants.retain(|t| (from..to).contains(t));
        instants.sort();
        instants.dedup();
        instants
    }
}
