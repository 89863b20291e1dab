//! Checking answers against the truth the simulator keeps, and counting them.

use super::*;

impl Simulation {
    /// After a block (`mask` offline) or an unblock (`mask` 0: each as they are
    /// now), each of the two who watches the other should come to see it.
    pub(super) fn expect_pair(&mut self, a: u32, b: u32, now: Micros, mask: u8) {
        let rules = self.setup.rules;
        for (watcher, user) in [(a, b), (b, a)] {
            let w = &self.users[watcher as usize];
            if !w.present() || !w.contacts.contains(&user) {
                continue;
            }
            let target = &self.users[user as usize];
            let shown = target.truth.current().shown(now, now, &rules);
            if shown == Status::Offline.bit() {
                continue;
            }
            let expectation = Expectation {
                user,
                mask: if mask == 0 { shown } else { mask },
                since: now,
                change: target.change,
                across: target.instance != w.instance,
            };
            self.users[watcher as usize].pending.push(expectation);
        }
    }

    /// Applies a change to what the simulator knows of `u`; when others would
    /// see a different status, every watcher should come to see it.
    pub(super) fn update_truth(&mut self, u: u32, now: Micros, change: impl FnOnce(&mut State)) {
        let rules = self.setup.rules;
        let user = &mut self.users[u as usize];
        let before = user.truth.current();
        let mut after = before;
        change(&mut after);
        user.truth.set(now, after);
        user.truth
            .forget_before(now.saturating_sub(rules.lag + SECOND));
        if before.exact(now, &rules) == after.exact(now, &rules) {
            return;
        }
        user.change += 1;
        let expectation = Expectation {
            user: u,
            mask: after.shown(now, now, &rules),
            since: now,
            change: user.change,
            across: false,
        };
        let instance = user.instance;
        for i in 0..self.watchers[u as usize].len() {
            let w = self.watchers[u as usize][i];
            let watcher = &mut self.users[w as usize];
            if watcher.present() && !self.blocks.blocked_now(u, w) {
                watcher.pending.push(Expectation {
                    across: watcher.instance != instance,
                    ..expectation
                });
            }
        }
    }

    pub(super) fn answered(&mut self, done: Done) {
        let job = &done.job;
        let wanted = job.wanted_at.duration_since(self.started).as_micros() as Micros;
        let at = done.finished_at.duration_since(self.started).as_micros() as Micros;
        let measured = self.measuring(wanted);
        let code = done.answer.as_ref().map(|a| a.code);
        let (ok, overtook) = match outcome(job, code) {
            Outcome::Answered => (true, false),
            Outcome::Overtook => (true, true),
            Outcome::Failed => (false, false),
        };
        let picked = done
            .picked_at
            .saturating_duration_since(self.started)
            .as_micros() as Micros;
        self.figures.held_micros += held_within(picked, at, self.window);
        if measured {
            let figures = self.figures.kind(job.kind);
            figures.answered += 1;
            figures.errors += u64::from(!ok);
            figures.overtook += u64::from(overtook);
            if !ok {
                *figures.failures.entry(code.unwrap_or(0)).or_default() += 1;
            }
            let latency = (at - wanted).min(u32::MAX as u64) as u32;
            figures.latencies.push(latency);
            let wanted_ms = chrono::Utc::now().timestamp_millis()
                - i64::try_from(job.wanted_at.elapsed().as_millis()).unwrap_or(i64::MAX);
            let bunch = self
                .figures
                .wanted_seconds
                .entry(wanted_ms.div_euclid(1000))
                .or_default();
            bunch.0 += 1;
            bunch.1 +=
                u64::from(matches!(job.kind, Kind::Poll | Kind::HiddenPoll) && code == Some(200));
            if latency > SLOW_MICROS {
                let second = chrono::Utc::now().timestamp();
                let slow = self.figures.slow_seconds.entry(second).or_default();
                slow.0 += 1;
                slow.1 = slow.1.max(latency);
                let queued = done.picked_at.saturating_duration_since(job.wanted_at);
                let longest = self.figures.queued_seconds.entry(second).or_default();
                *longest = (*longest).max(queued.as_micros().min(u32::MAX as u128) as u32);
            }
        }
        let (u, tab) = (job.user, job.tab);
        let user = &mut self.users[u as usize];
        let t = &mut user.tabs[tab as usize];
        if t.opened == job.generation
            && code == Some(200)
            && matches!(job.kind, Kind::Heartbeat | Kind::Activity | Kind::Setting)
        {
            t.acknowledged = true;
        }
        if !t.open || t.opened != job.generation {
            return;
        }
        match job.kind {
            Kind::Heartbeat | Kind::Activity | Kind::Setting => {
                if let Some(seconds) = done.answer.as_ref().and_then(|a| a.ping_interval_seconds) {
                    user.ping_interval = seconds.max(1) * SECOND;
                }
                self.schedule_heartbeat(u, tab, wanted);
            }
            Kind::Poll | Kind::HiddenPoll => self.poll_answered(done, at, measured),
            Kind::RoomPoll => self.room_poll_answered(done, at, measured),
            Kind::RoomPing => {
                if let Some(seconds) = done
                    .answer
                    .as_ref()
                    .and_then(|a| a.heartbeat_interval_seconds)
                {
                    user.room_renew_every = seconds.max(1) * SECOND;
                }
            }
            Kind::SignOut | Kind::Block | Kind::Typing => {}
        }
    }

    pub(super) fn poll_answered(&mut self, done: Done, at: Micros, measured: bool) {
        let (u, tab, kind) = (done.job.user, done.job.tab, done.job.kind);
        let sent = done.job.wanted_at.duration_since(self.started).as_micros() as Micros;
        let model = self.setup.model;
        let rules = self.setup.rules;
        let Some(answer) = done.answer else {
            return self.poll_failed(u, tab, None);
        };
        if measured {
            let figures = self.figures.kind(kind);
            figures.bytes += answer.bytes as u64;
            figures.not_modified += u64::from(answer.code == 304);
        }
        match answer.code {
            304 => {}
            200 => {
                let statuses = answer.statuses.unwrap_or_default();
                let t = &mut self.users[u as usize].tabs[tab as usize];
                t.etag = answer.etag;
                t.known = statuses
                    .iter()
                    .filter_map(|s| Some((*self.index.get(&s.user_id)?, Status::parse(&s.status)?)))
                    .collect();
            }
            code => return self.poll_failed(u, tab, answer.retry_after.filter(|_| code == 429)),
        }
        self.users[u as usize].tabs[tab as usize].failures = 0;
        // Every status the poll showed is an observation against the truth.
        let known = std::mem::take(&mut self.users[u as usize].tabs[tab as usize].known);
        if measured {
            let from = at.saturating_sub(rules.lag);
            for (contact, status) in &known {
                let truth = self.users[*contact as usize].truth.shown(from, at, &rules);
                let allowed = self.blocks.restrict(u, *contact, from, at, truth);
                self.figures.observations += 1;
                if status.bit() & allowed == 0 {
                    self.figures.wrong += 1;
                    if self.figures.wrong_examples.len() < 5 {
                        self.figures.wrong_examples.push(format!(
                            "at {:.3}s user {} showed {:?} to {}, allowed mask {:#07b}, truth {:?}",
                            at as f64 / 1e6,
                            self.users[*contact as usize].id,
                            status,
                            self.users[u as usize].id,
                            allowed,
                            self.users[*contact as usize].truth.current(),
                        ));
                    }
                }
            }
        }
        if tab == 0 {
            let mut pending = std::mem::take(&mut self.users[u as usize].pending);
            let users = &self.users;
            let settled = settle(
                &mut pending,
                at,
                rules.lag,
                |user| known.iter().find(|(c, _)| *c == user).map(|(_, s)| *s),
                |user| users[user as usize].change,
            );
            self.users[u as usize].pending = pending;
            if measured {
                for (delay, across) in settled.seen {
                    if across {
                        self.figures.propagation_across.push(delay);
                    } else {
                        self.figures.propagation_same.push(delay);
                    }
                }
                self.figures.propagation_missed += u64::from(settled.missed);
            }
        }
        // The shipped client's watch: the interval or up to a tenth less, at
        // random, counted from when the poll was sent (afterPoll); a status
        // that changes by the clock (nextChangeAt) brings no poll forward.
        let elapsed = self.now().saturating_sub(sent);
        let mut wait = model.after_poll(model.poll_interval, self.rng.f64(), elapsed);
        let ramp_random = self.rng.f64();
        let user = &mut self.users[u as usize];
        let t = &mut user.tabs[tab as usize];
        t.known = known;
        if t.hidden {
            wait = model.background_wait(wait, std::mem::take(&mut t.ramp_poll), ramp_random);
        }
        t.poll_timer += 1;
        let timer = t.poll_timer;
        let now = self.now();
        self.at(now + wait, u, Event::Poll { tab, timer });
    }

    /// The shipped client's backoff: `Retry-After`, or about 1 s, 2 s, 4 s... up to a minute.
    pub(super) fn poll_failed(&mut self, u: u32, tab: u8, retry_after: Option<u64>) {
        let jitter = 0.5 + self.rng.f64();
        let hidden_timer = self.setup.model.hidden_timer;
        let t = &mut self.users[u as usize].tabs[tab as usize];
        t.failures += 1;
        let mut wait = match retry_after {
            Some(seconds) if seconds > 0 => seconds * SECOND,
            _ => {
                let base = (SECOND << (t.failures - 1).min(16)).min(60 * SECOND);
                (base as f64 * jitter) as Micros
            }
        };
        if t.hidden {
            wait = wait.max(hidden_timer);
        }
        t.poll_timer += 1;
        let timer = t.poll_timer;
        let now = self.now();
        self.at(now + wait, u, Event::Poll { tab, timer });
    }
}

/// How an answer counts.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A success, a `304` among them.
    Answered,
    /// A sign-out's `404`, sent before any ping of its tab was acknowledged:
    /// it overtook that ping and found no device (the client's own race).
    Overtook,
    /// An error: any other code, or no answer at all.
    Failed,
}

/// How long of `window` a connection was held from `picked` to `finished`:
/// summed over every request, the pool's busy connections times the window.
/// (A request wanted in the window but answered after it held its
/// connection partly outside: counted whole, a collapsed step showed more
/// connections busy than the pool has.)
fn held_within(picked: Micros, finished: Micros, window: (Micros, Micros)) -> Micros {
    finished.min(window.1).saturating_sub(picked.max(window.0))
}

fn outcome(job: &Job, code: Option<u16>) -> Outcome {
    match code {
        Some(200..=299 | 304) => Outcome::Answered,
        Some(404) if job.kind == Kind::SignOut && job.unacknowledged => Outcome::Overtook,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: Kind, unacknowledged: bool) -> Job {
        Job {
            user: 0,
            tab: 0,
            generation: 1,
            kind,
            method: Method::DELETE,
            path: "/api/status/devices/sim-0-1".to_owned(),
            body: None,
            authorization: HeaderValue::from_static("Bearer x"),
            if_none_match: None,
            wanted_at: Instant::now(),
            unacknowledged,
        }
    }

    #[test]
    fn a_connection_counts_as_busy_only_within_the_window() {
        let window = (10_000_000, 70_000_000);
        assert_eq!(held_within(20_000_000, 20_500_000, window), 500_000);
        // Wanted and picked before the window, answered inside it.
        assert_eq!(held_within(9_000_000, 11_000_000, window), 1_000_000);
        // Wanted in the window, answered seconds after it.
        assert_eq!(held_within(69_000_000, 75_000_000, window), 1_000_000);
        assert_eq!(held_within(71_000_000, 72_000_000, window), 0);
    }

    #[test]
    fn only_a_sign_out_ahead_of_its_tabs_first_acknowledged_ping_may_find_no_device() {
        let early = job(Kind::SignOut, true);
        let late = job(Kind::SignOut, false);
        assert_eq!(outcome(&early, Some(404)), Outcome::Overtook);
        assert_eq!(outcome(&early, Some(204)), Outcome::Answered);
        assert_eq!(outcome(&early, Some(503)), Outcome::Failed);
        assert_eq!(outcome(&early, None), Outcome::Failed);
        // Once a ping was acknowledged the device is stored: a 404 is an error.
        assert_eq!(outcome(&late, Some(404)), Outcome::Failed);
        assert_eq!(
            outcome(&job(Kind::Heartbeat, true), Some(404)),
            Outcome::Failed
        );
        assert_eq!(
            outcome(&job(Kind::Poll, false), Some(304)),
            Outcome::Answered
        );
    }
}
