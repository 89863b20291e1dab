//! Rooms, as the shipped client's `joinRoom` uses them: the visible tab joins
//! the user's rooms, renews them on the server's interval, polls the room on
//! screen with its ETag, and types there in bursts (renewed every half TTL);
//! and how soon the other members polling that room see the typing.

use super::*;

impl Simulation {
    /// The visible tab opened: join every room, renew them, poll the one on screen.
    pub(super) fn join_rooms(&mut self, u: u32, now: Micros) {
        if self.setup.rooms.is_none() {
            return;
        }
        for index in 0..self.users[u as usize].rooms.len() {
            let room = self.users[u as usize].rooms[index];
            self.room_ping(u, room, Kind::RoomPing, json!({}));
        }
        let user = &mut self.users[u as usize];
        user.room_etag = None;
        user.room_failures = 0;
        user.room_poll_timer += 1;
        user.room_renew_timer += 1;
        let (poll, renew, every) = (
            user.room_poll_timer,
            user.room_renew_timer,
            user.room_renew_every,
        );
        self.at(now, u, Event::RoomPoll { timer: poll });
        let wait = self.room_renew_wait(every);
        self.at(now + wait, u, Event::RoomRenew { timer: renew });
    }

    /// The shipped client's wait between a room's renewals: the server's
    /// interval or up to a tenth less, at random, counted from the last
    /// renewal's send (`afterPoll`).
    fn room_renew_wait(&mut self, every: Micros) -> Micros {
        self.setup.model.after_poll(every, self.rng.f64(), 0)
    }

    /// The visible tab closed (its sign-out takes the device out of its rooms).
    pub(super) fn forget_rooms(&mut self, u: u32) {
        let user = &mut self.users[u as usize];
        user.room_poll_timer += 1;
        user.room_renew_timer += 1;
        user.typing_episode += 1;
        user.typing_pending.clear();
        if std::mem::take(&mut user.typing) {
            self.forget_typist(u);
        }
    }

    pub(super) fn room_ping(
        &mut self,
        u: u32,
        room: u32,
        kind: Kind,
        mut fields: serde_json::Value,
    ) {
        fields["deviceId"] = json!(self.device(u, 0));
        let path = format!("{}/presence", self.room_paths[room as usize]);
        self.send(
            u,
            0,
            kind,
            Method::PUT,
            path,
            Some(Bytes::from(fields.to_string())),
            None,
        );
    }

    pub(super) fn fire_room(&mut self, u: u32, event: Event) {
        let Some(rooms) = self.setup.rooms else {
            return;
        };
        let now = self.now();
        let user = &self.users[u as usize];
        match event {
            Event::RoomPoll { timer } if user.present() && user.room_poll_timer == timer => {
                let screen = user.rooms[0];
                let path = format!("{}?limit=100", self.room_paths[screen as usize]);
                let etag = user.room_etag.clone();
                self.send(u, 0, Kind::RoomPoll, Method::GET, path, None, etag);
            }
            Event::RoomRenew { timer } if user.present() && user.room_renew_timer == timer => {
                for index in 0..user.rooms.len() {
                    let room = self.users[u as usize].rooms[index];
                    self.room_ping(u, room, Kind::RoomPing, json!({}));
                }
                let wait = self.room_renew_wait(self.users[u as usize].room_renew_every);
                self.at(now + wait, u, Event::RoomRenew { timer });
            }
            Event::TypingStart { session } if user.session == session && user.present() => {
                if user.bursting && !user.typing {
                    let user = &mut self.users[u as usize];
                    user.typing = true;
                    user.typing_episode += 1;
                    let episode = user.typing_episode;
                    let room = user.rooms[0];
                    self.room_ping(u, room, Kind::Typing, json!({ "typing": true }));
                    self.expect_typing(u, room, now);
                    self.at(now + rooms.typing_ttl / 2, u, Event::TypingTick { episode });
                    let end = self.after(rooms.typing_mean, false);
                    self.at(end, u, Event::TypingEnd { episode });
                }
                let next = self.after(rooms.typing_every, false);
                self.at(next, u, Event::TypingStart { session });
            }
            Event::TypingTick { episode } if user.typing && user.typing_episode == episode => {
                let room = user.rooms[0];
                self.room_ping(u, room, Kind::Typing, json!({ "typing": true }));
                self.at(now + rooms.typing_ttl / 2, u, Event::TypingTick { episode });
            }
            Event::TypingEnd { episode } if user.typing && user.typing_episode == episode => {
                // A message sent: the client's stopTyping().
                let room = user.rooms[0];
                self.users[u as usize].typing = false;
                self.room_ping(u, room, Kind::Typing, json!({ "typing": false }));
                self.forget_typist(u);
            }
            _ => {}
        }
    }

    /// `u` started typing in `room` at `now`: each member with the room on
    /// screen who may see `u` (no block between them, `u` not invisible) should.
    fn expect_typing(&mut self, u: u32, room: u32, now: Micros) {
        if self.users[u as usize].truth.current().invisible {
            return;
        }
        for index in 0..self.room_members[room as usize].len() {
            let member = self.room_members[room as usize][index];
            let viewer = &self.users[member as usize];
            if member != u
                && viewer.present()
                && viewer.rooms.first() == Some(&room)
                && !self.blocks.blocked_now(u, member)
            {
                self.users[member as usize].typing_pending.push((u, now));
            }
        }
    }

    /// `u` stopped typing: what was not seen by then is no longer to be seen.
    fn forget_typist(&mut self, u: u32) {
        let Some(&room) = self.users[u as usize].rooms.first() else {
            return;
        };
        for index in 0..self.room_members[room as usize].len() {
            let member = self.room_members[room as usize][index];
            self.users[member as usize]
                .typing_pending
                .retain(|(typist, _)| *typist != u);
        }
    }

    pub(super) fn room_poll_answered(&mut self, done: Done, at: Micros, measured: bool) {
        let u = done.job.user;
        let sent = done.job.wanted_at.duration_since(self.started).as_micros() as Micros;
        let model = self.setup.model;
        let lag = self
            .setup
            .rooms
            .map_or(10 * SECOND, |rooms| rooms.typing_lag);
        let Some(answer) = done.answer else {
            return self.room_poll_failed(u, None);
        };
        if measured {
            let figures = self.figures.kind(Kind::RoomPoll);
            figures.bytes += answer.bytes as u64;
            figures.not_modified += u64::from(answer.code == 304);
        }
        match answer.code {
            304 => {}
            200 => {
                let typing: Vec<u32> = answer
                    .typing
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|id| self.index.get(id).copied())
                    .collect();
                self.users[u as usize].room_etag = answer.etag;
                let pending = std::mem::take(&mut self.users[u as usize].typing_pending);
                let mut kept = Vec::with_capacity(pending.len());
                for (typist, since) in pending {
                    if typing.contains(&typist) {
                        if measured {
                            self.figures
                                .typing_propagation
                                .push(at.saturating_sub(since));
                        }
                    } else {
                        kept.push((typist, since));
                    }
                }
                self.users[u as usize].typing_pending = kept;
            }
            code => return self.room_poll_failed(u, answer.retry_after.filter(|_| code == 429)),
        }
        // What should have shown by now and did not is missed.
        let user = &mut self.users[u as usize];
        let before = user.typing_pending.len();
        user.typing_pending
            .retain(|(_, since)| at.saturating_sub(*since) <= lag);
        if measured {
            self.figures.typing_missed += (before - user.typing_pending.len()) as u64;
        }
        user.room_failures = 0;
        user.room_poll_timer += 1;
        let timer = user.room_poll_timer;
        let now = self.now();
        let elapsed = now.saturating_sub(sent);
        let wait = model.after_poll(model.poll_interval, self.rng.f64(), elapsed);
        self.at(now + wait, u, Event::RoomPoll { timer });
    }

    /// The shipped client's backoff, as for status polls.
    fn room_poll_failed(&mut self, u: u32, retry_after: Option<u64>) {
        let jitter = 0.5 + self.rng.f64();
        let user = &mut self.users[u as usize];
        user.room_failures += 1;
        let wait = match retry_after {
            Some(seconds) if seconds > 0 => seconds * SECOND,
            _ => {
                let base = (SECOND << (user.room_failures - 1).min(16)).min(60 * SECOND);
                (base as f64 * jitter) as Micros
            }
        };
        user.room_poll_timer += 1;
        let timer = user.room_poll_timer;
        let now = self.now();
        self.at(now + wait, u, Event::RoomPoll { timer });
    }
}
