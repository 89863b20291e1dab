//! The simulated front ends: each user's tabs, timers and choices (the interaction
//! model), run in one event loop that also keeps the ground truth and the figures.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use presence::domain::UserId;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

use crate::client::{Done, Job, Kind};
use crate::truth::{Blocks, Expectation, Micros, Rules, State, Status, Timeline, settle};

const SECOND: Micros = 1_000_000;

/// How simulated people use the app. Means of exponential waits; the rare
/// events (sessions, tabs, settings, blocks) are sped up by `churn`.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// The shipped client's poll interval (`pollIntervalMs`).
    pub poll_interval: Micros,
    /// How often a background tab's timers may run (Chrome: once a minute).
    pub hidden_timer: Micros,
    /// The shipped client's activity throttle: at most one activity ping per this.
    pub activity_every: Micros,
    /// A burst of interaction (input events all along), then a pause.
    pub burst_mean: Micros,
    pub pause_mean: Micros,
    /// How long a user keeps the app open, and stays away once they close it.
    pub session_mean: Micros,
    pub absence_mean: Micros,
    /// The share of departures without a sign-out (a laptop lid, a lost network).
    pub crash_share: f64,
    /// How long a background tab stays open, and stays closed.
    pub tab_mean: Micros,
    /// Do-not-disturb: how often it is set, and for how long.
    pub dnd_every: Micros,
    pub dnd_mean: Micros,
    /// A status message is set or cleared this often.
    pub message_every: Micros,
    /// Invisibility: how often it is switched on, and for how long.
    pub invisible_every: Micros,
    pub invisible_mean: Micros,
    /// Blocking a contact: how often, and for how long.
    pub block_every: Micros,
    pub block_mean: Micros,
    /// Speeds up the rare events (1 = the rates above).
    pub churn: f64,
}

impl Default for Model {
    fn default() -> Self {
        let minutes = |m: u64| m * 60 * SECOND;
        Self {
            poll_interval: 3 * SECOND,
            hidden_timer: 60 * SECOND,
            activity_every: 10 * SECOND,
            burst_mean: minutes(1),
            pause_mean: minutes(9),
            session_mean: minutes(120),
            absence_mean: minutes(10),
            crash_share: 0.1,
            tab_mean: minutes(30),
            dnd_every: minutes(240),
            dnd_mean: minutes(30),
            message_every: minutes(120),
            invisible_every: minutes(480),
            invisible_mean: minutes(10),
            block_every: minutes(1440),
            block_mean: minutes(30),
            churn: 1.0,
        }
    }
}

/// One step of the simulation: who takes part and for how long.
pub struct Setup {
    pub users: usize,
    pub contacts: usize,
    /// Users open the app at random moments over this long.
    pub ramp: Duration,
    /// Then this long passes before anything is measured.
    pub warmup: Duration,
    /// Then this long is measured.
    pub duration: Duration,
    pub rules: Rules,
    pub model: Model,
    pub seed: u64,
    pub secret: SecretString,
    /// How many instances the users are spread over (user `i` uses instance `i % n`).
    pub instances: usize,
}

/// Per-kind request figures.
#[derive(Debug, Default)]
pub struct KindFigures {
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
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
    /// Users present (with the app open) at the end.
    pub present: usize,
    /// Measured requests slower than [`SLOW_MICROS`], by the Unix second
    /// they were answered in: (how many, the slowest µs). Shows whether slow
    /// answers are spread out or come in stalls, and when.
    pub slow_seconds: BTreeMap<i64, (u64, u32)>,
}

/// A request slower than this (µs) counts in [`Figures::slow_seconds`]: the
/// p99 bound of a served step.
pub const SLOW_MICROS: u32 = 50_000;

impl Figures {
    fn kind(&mut self, kind: Kind) -> &mut KindFigures {
        let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &mut self.kinds[index].1
    }
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Open,
    Leave { session: u32 },
    Heartbeat { tab: u8, timer: u32 },
    Poll { tab: u8, timer: u32 },
    BurstStart { session: u32 },
    ActivityTick { session: u32, burst: u32 },
    BurstEnd { session: u32 },
    Dnd { session: u32 },
    Message { session: u32 },
    Invisible { session: u32 },
    Block { session: u32 },
    Unblock { whom: u32 },
    TabClose { tab: u8, opened: u32 },
    TabOpen { session: u32, tab: u8 },
}

struct Timer {
    at: Micros,
    user: u32,
    event: Event,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    /// The earliest timer first (`BinaryHeap` pops the greatest).
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

#[derive(Default)]
struct Tab {
    open: bool,
    hidden: bool,
    /// Counts openings: the device id, and which answers still belong to this tab.
    opened: u32,
    heartbeat_timer: u32,
    poll_timer: u32,
    etag: Option<HeaderValue>,
    /// What the last full answer showed, with the earliest `nextChangeAt` (Unix ms).
    known: Vec<(u32, Status)>,
    next_change_ms: Option<i64>,
    failures: u32,
}

struct User {
    id: Uuid,
    authorization: HeaderValue,
    instance: usize,
    contacts: Vec<u32>,
    query: Bytes,
    session: u32,
    tabs: [Tab; 3],
    bursting: bool,
    burst: u32,
    last_activity_ping: Option<Micros>,
    message: bool,
    blocking: Vec<u32>,
    truth: Timeline,
    /// Counts changes of status others can see.
    change: u32,
    /// Changes of contacts this user's visible tab should come to see.
    pending: Vec<Expectation>,
    clock_offset_ms: i64,
    ping_interval: Micros,
}

impl User {
    fn present(&self) -> bool {
        self.tabs[0].open
    }
}

/// One running step.
pub struct Simulation {
    setup: Setup,
    users: Vec<User>,
    index: HashMap<Uuid, u32>,
    watchers: Vec<Vec<u32>>,
    blocks: Blocks,
    timers: BinaryHeap<Timer>,
    rng: fastrand::Rng,
    started: Instant,
    window: (Micros, Micros),
    pools: Vec<flume::Sender<Job>>,
    figures: Figures,
}

impl Simulation {
    /// Creates the users (ids, tokens, contact lists) of one step.
    pub fn new(setup: Setup, pools: Vec<flume::Sender<Job>>) -> Self {
        let mut rng = fastrand::Rng::with_seed(setup.seed);
        let count = setup.users;
        // Fresh users every run: what earlier runs left in the database is not theirs.
        let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
        let mut watchers = vec![Vec::new(); count];
        let mut users = Vec::with_capacity(count);
        for (me, id) in ids.iter().enumerate() {
            let wanted = setup.contacts.min(count.saturating_sub(1));
            let mut contacts: Vec<u32> = Vec::with_capacity(wanted);
            while contacts.len() < wanted {
                let other = rng.u32(..count as u32);
                if other as usize != me && !contacts.contains(&other) {
                    contacts.push(other);
                }
            }
            for contact in &contacts {
                watchers[*contact as usize].push(me as u32);
            }
            let query =
                json!({ "userIds": contacts.iter().map(|c| ids[*c as usize]).collect::<Vec<_>>() });
            let token = presence::auth::issue_token(
                &setup.secret,
                UserId::from(*id),
                Duration::from_secs(24 * 3600),
            )
            .expect("a token signs");
            users.push(User {
                id: *id,
                authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                    .expect("a token is a valid header"),
                instance: me % setup.instances.max(1),
                contacts,
                query: Bytes::from(query.to_string()),
                session: 0,
                tabs: Default::default(),
                bursting: false,
                burst: 0,
                last_activity_ping: None,
                message: false,
                blocking: Vec::new(),
                truth: Timeline::default(),
                change: 0,
                pending: Vec::new(),
                clock_offset_ms: 0,
                ping_interval: 30 * SECOND,
            });
        }
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let warm = (setup.ramp + setup.warmup).as_micros() as Micros;
        let window = (warm, warm + setup.duration.as_micros() as Micros);
        let figures = Figures {
            kinds: Kind::ALL
                .iter()
                .map(|k| (*k, KindFigures::default()))
                .collect(),
            ..Figures::default()
        };
        Self {
            setup,
            users,
            index,
            watchers,
            blocks: Blocks::default(),
            timers: BinaryHeap::new(),
            rng,
            started: Instant::now(),
            window,
            pools,
            figures,
        }
    }

    /// When the measured window starts and ends, on the clock of `started`.
    pub fn window(&self) -> (Duration, Duration) {
        (
            Duration::from_micros(self.window.0),
            Duration::from_micros(self.window.1),
        )
    }

    /// Runs the step to its end and returns what it measured.
    pub async fn run(mut self, done: &mut UnboundedReceiver<Done>, started: Instant) -> Figures {
        self.started = started;
        let ramp = self.setup.ramp.as_micros() as Micros;
        for user in 0..self.users.len() as u32 {
            let at = self.rng.u64(..ramp.max(1));
            self.at(at, user, Event::Open);
        }
        let end = self.window.1;
        loop {
            let now = self.now();
            if now >= end {
                break;
            }
            while self.timers.peek().is_some_and(|timer| timer.at <= now) {
                let Some(timer) = self.timers.pop() else {
                    break;
                };
                if self.measuring(timer.at) {
                    let late = now.saturating_sub(timer.at);
                    self.figures
                        .timer_lateness
                        .push(late.min(u32::MAX as u64) as u32);
                }
                self.fire(timer.user, timer.event);
            }
            while let Ok(answer) = done.try_recv() {
                self.answered(answer);
            }
            let next = self.timers.peek().map_or(end, |timer| timer.at).min(end);
            let deadline = self.started + Duration::from_micros(next);
            tokio::select! {
                biased;
                Some(answer) = done.recv() => self.answered(answer),
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
        // Answers to what was sent in the window may still come, for a little while.
        let grace = Instant::now() + Duration::from_secs(5);
        while self.outstanding() > 0 {
            match tokio::time::timeout_at(grace.into(), done.recv()).await {
                Ok(Some(answer)) => self.answered(answer),
                _ => break,
            }
        }
        self.figures.present = self.users.iter().filter(|u| u.present()).count();
        self.figures
    }

    fn outstanding(&self) -> u64 {
        self.figures
            .kinds
            .iter()
            .map(|(_, k)| k.sent - k.answered)
            .sum()
    }

    fn now(&self) -> Micros {
        self.started.elapsed().as_micros() as Micros
    }

    fn measuring(&self, at: Micros) -> bool {
        at >= self.window.0 && at < self.window.1
    }

    fn at(&mut self, at: Micros, user: u32, event: Event) {
        self.timers.push(Timer { at, user, event });
    }

    fn after(&mut self, mean: Micros, rare: bool) -> Micros {
        let mean = if rare {
            mean as f64 / self.setup.model.churn
        } else {
            mean as f64
        };
        let wait = -mean * (1.0 - self.rng.f64()).ln();
        self.now() + wait as Micros
    }

    fn fire(&mut self, u: u32, event: Event) {
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
            _ => {}
        }
    }

    /// The user opens the app: 1–3 tabs, the first one in front.
    fn open(&mut self, u: u32, now: Micros) {
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
    fn open_tab(&mut self, u: u32, tab: u8, now: Micros) {
        let model = self.setup.model;
        let user = &mut self.users[u as usize];
        let t = &mut user.tabs[tab as usize];
        t.open = true;
        t.hidden = tab > 0;
        t.opened += 1;
        t.etag = None;
        t.known.clear();
        t.next_change_ms = None;
        t.failures = 0;
        t.poll_timer += 1;
        let (opened, timer) = (t.opened, t.poll_timer);
        self.update_truth(u, now, |state| {
            state.present = true;
            state.last_active = now;
        });
        self.ping(u, tab, Kind::Activity, json!({ "active": tab == 0 }));
        self.at(now, u, Event::Poll { tab, timer });
        if tab > 0 {
            let at = self.after(model.tab_mean, true);
            self.at(at, u, Event::TabClose { tab, opened });
        }
    }

    fn close_tab(&mut self, u: u32, tab: u8) {
        let t = &mut self.users[u as usize].tabs[tab as usize];
        t.open = false;
        t.heartbeat_timer += 1;
        t.poll_timer += 1;
    }

    /// The user leaves: every tab signs out, or (a share of the time) just vanishes.
    fn leave(&mut self, u: u32, now: Micros) {
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

    fn activity(&mut self, u: u32, now: Micros) {
        self.users[u as usize].last_activity_ping = Some(now);
        self.update_truth(u, now, |state| state.last_active = now);
        self.ping(u, 0, Kind::Activity, json!({ "active": true }));
    }

    fn setting(
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

    fn block(&mut self, u: u32, now: Micros) {
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

    fn unblock(&mut self, u: u32, whom: u32, now: Micros) {
        self.users[u as usize].blocking.retain(|c| *c != whom);
        self.blocks.unblock(u, whom, now);
        let path = format!("/api/blocks/{}", self.users[whom as usize].id);
        self.send(u, 0, Kind::Block, Method::DELETE, path, None, None);
        if !self.blocks.blocked_now(u, whom) {
            self.expect_pair(u, whom, now, 0);
        }
    }

    /// After a block (`mask` offline) or an unblock (`mask` 0: each as they are
    /// now), each of the two who watches the other should come to see it.
    fn expect_pair(&mut self, a: u32, b: u32, now: Micros, mask: u8) {
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
    fn update_truth(&mut self, u: u32, now: Micros, change: impl FnOnce(&mut State)) {
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

    fn device(&self, u: u32, tab: u8) -> String {
        format!(
            "sim-{tab}-{}",
            self.users[u as usize].tabs[tab as usize].opened
        )
    }

    fn ping(&mut self, u: u32, tab: u8, kind: Kind, mut fields: serde_json::Value) {
        fields["deviceId"] = json!(self.device(u, tab));
        fields["platform"] = json!("web");
        self.schedule_heartbeat(u, tab);
        let body = Bytes::from(fields.to_string());
        self.send(
            u,
            tab,
            kind,
            Method::PUT,
            "/api/status".to_owned(),
            Some(body),
            None,
        );
    }

    /// The shipped client's heartbeat: `pingIntervalSeconds` after the last
    /// ping (sent or answered); a background tab's timer waits at least a minute.
    fn schedule_heartbeat(&mut self, u: u32, tab: u8) {
        let hidden_timer = self.setup.model.hidden_timer;
        let now = self.now();
        let user = &mut self.users[u as usize];
        let interval = user.ping_interval;
        let t = &mut user.tabs[tab as usize];
        t.heartbeat_timer += 1;
        let wait = if t.hidden {
            interval.max(hidden_timer)
        } else {
            interval
        };
        let timer = t.heartbeat_timer;
        self.at(now + wait, u, Event::Heartbeat { tab, timer });
    }

    fn sign_out(&mut self, u: u32, tab: u8) {
        let path = format!("/api/status/devices/{}", self.device(u, tab));
        self.send(u, tab, Kind::SignOut, Method::DELETE, path, None, None);
    }

    fn poll(&mut self, u: u32, tab: u8) {
        let user = &self.users[u as usize];
        let kind = if tab == 0 {
            Kind::Poll
        } else {
            Kind::HiddenPoll
        };
        let body = user.query.clone();
        let etag = user.tabs[tab as usize].etag.clone();
        self.send(
            u,
            tab,
            kind,
            Method::POST,
            "/api/status/query".to_owned(),
            Some(body),
            etag,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        u: u32,
        tab: u8,
        kind: Kind,
        method: Method,
        path: String,
        body: Option<Bytes>,
        if_none_match: Option<HeaderValue>,
    ) {
        let now = self.now();
        if self.measuring(now) {
            self.figures.kind(kind).sent += 1;
        }
        let user = &self.users[u as usize];
        let job = Job {
            user: u,
            tab,
            generation: user.tabs[tab as usize].opened,
            kind,
            method,
            path,
            body,
            authorization: user.authorization.clone(),
            if_none_match,
            wanted_at: self.started + Duration::from_micros(now),
        };
        // A closed pool means the step is over; the request is simply not made.
        let _ = self.pools[user.instance].send(job);
    }

    fn answered(&mut self, done: Done) {
        let job = &done.job;
        let wanted = job.wanted_at.duration_since(self.started).as_micros() as Micros;
        let at = done.finished_at.duration_since(self.started).as_micros() as Micros;
        let measured = self.measuring(wanted);
        let code = done.answer.as_ref().map(|a| a.code);
        let ok = matches!(code, Some(200..=299 | 304));
        if measured {
            let figures = self.figures.kind(job.kind);
            figures.answered += 1;
            figures.errors += u64::from(!ok);
            let latency = (at - wanted).min(u32::MAX as u64) as u32;
            figures.latencies.push(latency);
            if latency > SLOW_MICROS {
                let second = chrono::Utc::now().timestamp();
                let slow = self.figures.slow_seconds.entry(second).or_default();
                slow.0 += 1;
                slow.1 = slow.1.max(latency);
            }
        }
        let (u, tab) = (job.user, job.tab);
        let user = &mut self.users[u as usize];
        let t = &user.tabs[tab as usize];
        if !t.open || t.opened != job.generation {
            return;
        }
        if let Some(date) = done.answer.as_ref().and_then(|a| a.server_date_ms) {
            user.clock_offset_ms = date - chrono::Utc::now().timestamp_millis();
        }
        match job.kind {
            Kind::Heartbeat | Kind::Activity | Kind::Setting => {
                if let Some(seconds) = done.answer.as_ref().and_then(|a| a.ping_interval_seconds) {
                    user.ping_interval = seconds.max(1) * SECOND;
                }
                self.schedule_heartbeat(u, tab);
            }
            Kind::Poll | Kind::HiddenPoll => self.poll_answered(done, at, measured),
            Kind::SignOut | Kind::Block => {}
        }
    }

    fn poll_answered(&mut self, done: Done, at: Micros, measured: bool) {
        let (u, tab, kind) = (done.job.user, done.job.tab, done.job.kind);
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
                t.next_change_ms = statuses
                    .iter()
                    .filter_map(|s| s.next_change_at.map(|n| n.timestamp_millis()))
                    .min();
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
        let user = &mut self.users[u as usize];
        let t = &mut user.tabs[tab as usize];
        t.known = known;
        // The shipped client's nextPollIn: the interval, or soon after the next
        // scheduled change (on the server's clock), but not within 250 ms.
        let mut wait = model.poll_interval;
        if let Some(next) = t.next_change_ms {
            let server_now = chrono::Utc::now().timestamp_millis() + user.clock_offset_ms;
            let due = (next - server_now + 50).max(250) as Micros * 1000;
            wait = wait.min(due);
        }
        if t.hidden {
            wait = wait.max(model.hidden_timer);
        }
        t.poll_timer += 1;
        let timer = t.poll_timer;
        let now = self.now();
        self.at(now + wait, u, Event::Poll { tab, timer });
    }

    /// The shipped client's backoff: `Retry-After`, or about 1 s, 2 s, 4 s... up to a minute.
    fn poll_failed(&mut self, u: u32, tab: u8, retry_after: Option<u64>) {
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
