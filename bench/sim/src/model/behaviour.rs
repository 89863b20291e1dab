//! What simulated people do: sessions, tabs, bursts of activity, settings and blocks.

use super::*;

impl Simulation {
    pub(super) fn fire(&mut self, u: u32, event: Event) {
        let now = self.now();
        let model = self.setup.model;
        let session = self.users[u as usize].session;
        let current = |s: u32| s == session && self.users[u as usize].present();
        match event {
            Event::Open => self.open(u, now),
            Event::Leave { session: s } if current(s) => self.leave(u, now),
            Event::Heartbeat { tab, timer } => {
                let t = &self.users[u as usize].tabs[tab as usize];
                if t.open && t.heartbeat_timer == timer {
                    self.ping(u, tab, Kind::Heartbeat, json!({ "active": false }));
                }
            }
            Event::Poll { tab, timer } => {
                let t = &self.users[u as usize].tabs[tab as usize];
                if t.open && t.poll_timer == timer {
                    self.poll(u, tab);
                }
            }
            Event::BurstStart { session: s } if current(s) => {
                let user = &mut self.users[u as usize];
                user.bursting = true;
                user.burst += 1;
                let burst = user.burst;
                let throttled = user
                    .last_activity_ping
                    .is_some_and(|last| now < last + model.activity_every);
                if !throttled {
                    self.activity(u, now);
                }
                self.at(
                    now + model.activity_every,
                    u,
                    Event::ActivityTick { session, burst },
                );
                let end = self.after(model.burst_mean, false);
                self.at(end, u, Event::BurstEnd { session });
            }
            Event::ActivityTick { session: s, burst } if current(s) => {
                let user = &self.users[u as usize];
                if user.bursting && user.burst == burst {
                    self.activity(u, now);
                    self.at(
                        now + model.activity_every,
                        u,
                        Event::ActivityTick { session, burst },
                    );
                }
            }
            Event::BurstEnd { session: s } if current(s) => {
                self.users[u as usize].bursting = false;
                let next = self.after(model.pause_mean, false);
                self.at(next, u, Event::BurstStart { session });
            }
            Event::Dnd { session: s } if current(s) => {
                let dnd = !self.users[u as usize].truth.current().dnd;
                let status = if dnd { json!("dnd") } else { json!(null) };
                self.setting(
                    u,
                    now,
                    json!({ "active": true, "manualStatus": status }),
                    |state| {
                        state.dnd = dnd;
                    },
                );
                let next = self.after(if dnd { model.dnd_mean } else { model.dnd_every }, true);
                self.at(next, u, Event::Dnd { session });
            }
            Event::Message { session: s } if current(s) => {
                let user = &mut self.users[u as usize];
                user.message = !user.message;
                let message = if user.message {
                    json!("In a meeting")
                } else {
                    json!(null)
                };
                self.setting(
                    u,
                    now,
                    json!({ "active": true, "statusMessage": message }),
                    |_| {},
                );
                let next = self.after(model.message_every, true);
                self.at(next, u, Event::Message { session });
            }
            Event::Invisible { session: s } if current(s) => {
                let invisible = !self.users[u as usize].truth.current().invisible;
                self.setting(
                    u,
                    now,
                    json!({ "active": true, "invisible": invisible }),
                    |state| {
                        state.invisible = invisible;
                    },
                );
                let mean = if invisible {
                    model.invisible_mean
                } else {
                    model.invisible_every
                };
                let next = self.after(mean, true);
                self.at(next, u, Event::Invisible { session });
            }
            Event::Block { session: s } if current(s) => {
                self.block(u, now);
                let next = self.after(model.block_every, true);
                self.at(next, u, Event::Block { session });
            }
            Event::Unblock { whom } => self.unblock(u, whom, now),
            Event::TabClose { tab, opened } => {
                let t = &self.users[u as usize].tabs[tab as usize];
                if t.open && t.opened == opened {
                    self.sign_out(u, tab);
                    self.close_tab(u, tab);
                    let next = self.after(model.tab_mean, true);
                    self.at(next, u, Event::TabOpen { session, tab });
                }
            }
            Event::TabOpen { session: s, tab }
                if current(s) && !self.users[u as usize].tabs[tab as usize].open =>
            {
                self.open_tab(u, tab, now);
            }
            Event::RoomPoll { .. }
            | Event::RoomRenew { .. }
            | Event::TypingStart { .. }
            | Event::TypingTick { .. }
            | Event::TypingEnd { .. } => self.fire_room(u, event),
            _ => {}
        }
    }

    /// The user opens the app: 1–3 tabs, the first one in front.
    pub(super) fn open(&mut self, u: u32, now: Micros) {
        let model = self.setup.model;
        let tabs = 1 + self.rng.u8(..3);
        // Someone coming back starts a burst of interaction. The users of the
        // ramp start as the model's steady state has them: a burst's share of
        // the time are in one, the rest in a pause.
        let initial = now < self.setup.ramp.as_micros() as Micros;
        let burst_share = model.burst_mean as f64 / (model.burst_mean + model.pause_mean) as f64;
        let bursting = !initial || self.rng.f64() < burst_share;
        let user = &mut self.users[u as usize];
        user.session += 1;
        user.bursting = bursting;
        user.burst += 1;
        user.last_activity_ping = Some(now);
        let (session, burst) = (user.session, user.burst);
        for tab in 0..tabs {
            self.open_tab(u, tab, now);
            let t = &mut self.users[u as usize].tabs[tab as usize];
            if initial && t.hidden {
                t.ramp_heartbeat = true;
                t.ramp_poll = true;
            }
        }
        for tab in tabs..3 {
            let next = self.after(model.tab_mean, true);
            self.at(next, u, Event::TabOpen { session, tab });
        }
        if bursting {
            self.at(
                now + model.activity_every,
                u,
                Event::ActivityTick { session, burst },
            );
            let end = self.after(model.burst_mean, false);
            self.at(end, u, Event::BurstEnd { session });
        } else {
            let start = self.after(model.pause_mean, false);
            self.at(start, u, Event::BurstStart { session });
        }
        let events = [
            (model.session_mean, true, Event::Leave { session }),
            (model.message_every, true, Event::Message { session }),
            (model.invisible_every, true, Event::Invisible { session }),
            (model.block_every, true, Event::Block { session }),
        ];
        for (mean, rare, event) in events {
            let at = self.after(mean, rare);
            self.at(at, u, event);
        }
        if let Some(rooms) = self.setup.rooms {
            let at = self.after(rooms.typing_every, false);
            self.at(at, u, Event::TypingStart { session });
        }
        let state = self.users[u as usize].truth.current();
        let dnd_wait = if state.dnd {
            model.dnd_mean
        } else {
            model.dnd_every
        };
        let at = self.after(dnd_wait, true);
        self.at(at, u, Event::Dnd { session });
        if state.invisible {
            let at = self.after(model.invisible_mean, true);
            self.at(at, u, Event::Invisible { session });
        }
    }

    /// Opens one tab: its first ping (which counts as activity) and its first poll.
    pub(super) fn open_tab(&mut self, u: u32, tab: u8, now: Micros) {
        let model = self.setup.model;
        let user = &mut self.users[u as usize];
        let t = &mut user.tabs[tab as usize];
        t.open = true;
        t.hidden = tab > 0;
        t.opened += 1;
        t.etag = None;
        t.known.clear();
        t.failures = 0;
        t.acknowledged = false;
        t.ramp_heartbeat = false;
        t.ramp_poll = false;
        t.poll_timer += 1;
        let (opened, timer) = (t.opened, t.poll_timer);
        self.update_truth(u, now, |state| {
            state.present = true;
            state.last_active = now;
        });
        self.ping(u, tab, Kind::Activity, json!({ "active": tab == 0 }));
        self.at(now, u, Event::Poll { tab, timer });
        if tab == 0 {
            self.join_rooms(u, now);
        }
        if tab > 0 {
            let at = self.after(model.tab_mean, true);
            self.at(at, u, Event::TabClose { tab, opened });
        }
    }

    pub(super) fn close_tab(&mut self, u: u32, tab: u8) {
        let t = &mut self.users[u as usize].tabs[tab as usize];
        t.open = false;
        t.heartbeat_timer += 1;
        t.poll_timer += 1;
        if tab == 0 {
            self.forget_rooms(u);
        }
    }

    /// The user leaves: every tab signs out, or (a share of the time) just vanishes.
    pub(super) fn leave(&mut self, u: u32, now: Micros) {
        let crash = self.rng.f64() < self.setup.model.crash_share;
        for tab in 0..3 {
            if self.users[u as usize].tabs[tab as usize].open {
                if !crash {
                    self.sign_out(u, tab);
                }
                self.close_tab(u, tab);
            }
        }
        let user = &mut self.users[u as usize];
        user.session += 1;
        user.bursting = false;
        user.pending.clear();
        if crash {
            // Not a change a watcher can see at once: the device expires later.
            user.truth.set(
                now,
                State {
                    present: false,
                    ..user.truth.current()
                },
            );
        } else {
            self.update_truth(u, now, |state| state.present = false);
        }
        let at = self.after(self.setup.model.absence_mean, true);
        self.at(at, u, Event::Open);
    }

    pub(super) fn activity(&mut self, u: u32, now: Micros) {
        self.users[u as usize].last_activity_ping = Some(now);
        self.update_truth(u, now, |state| state.last_active = now);
        self.ping(u, 0, Kind::Activity, json!({ "active": true }));
    }

    pub(super) fn setting(
        &mut self,
        u: u32,
        now: Micros,
        fields: serde_json::Value,
        change: impl FnOnce(&mut State),
    ) {
        self.users[u as usize].last_activity_ping = Some(now);
        self.update_truth(u, now, |state| {
            state.last_active = now;
            change(state);
        });
        self.ping(u, 0, Kind::Setting, fields);
    }

    pub(super) fn block(&mut self, u: u32, now: Micros) {
        let user = &self.users[u as usize];
        let free: Vec<u32> = user
            .contacts
            .iter()
            .copied()
            .filter(|c| !user.blocking.contains(c))
            .collect();
        if free.is_empty() {
            return;
        }
        let whom = free[self.rng.usize(..free.len())];
        let visible = !self.blocks.blocked_now(u, whom);
        self.users[u as usize].blocking.push(whom);
        self.blocks.block(u, whom, now);
        let path = format!("/api/blocks/{}", self.users[whom as usize].id);
        self.send(u, 0, Kind::Block, Method::PUT, path, None, None);
        if visible {
            self.expect_pair(u, whom, now, Status::Offline.bit());
        }
        let at = self.after(self.setup.model.block_mean, true);
        self.at(at, u, Event::Unblock { whom });
    }

    pub(super) fn unblock(&mut self, u: u32, whom: u32, now: Micros) {
        self.users[u as usize].blocking.retain(|c| *c != whom);
        self.blocks.unblock(u, whom, now);
        let path = format!("/api/blocks/{}", self.users[whom as usize].id);
        self.send(u, 0, Kind::Block, Method::DELETE, path, None, None);
        if !self.blocks.blocked_now(u, whom) {
            self.expect_pair(u, whom, now, 0);
        }
    }
}
