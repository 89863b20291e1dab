//! The simulated front ends: each user's tabs, timers and choices (the interaction
//! model), run in one event loop that also keeps the ground truth and the figures.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
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

mod behaviour;
mod checking;
mod figures;
mod requests;
mod rooms;

pub use figures::{Figures, KindFigures, SLOW_MICROS};

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

impl Model {
    /// The shipped client's `afterPoll`: the wait before the next regular
    /// poll or heartbeat, `interval` or up to a tenth less by `random`
    /// (uniform in 0..1), so that clients do not send in step, counted from
    /// when the last one was sent (`elapsed` ago); when that leaves less
    /// than half the interval, anywhere from half the interval to the whole
    /// of it, by `random` again (the client draws a second number; the wait
    /// is as uniform), so that clients a pause answered together spread out.
    pub fn after_poll(&self, interval: Micros, random: f64, elapsed: Micros) -> Micros {
        let left = ((interval as f64 * (1.0 - 0.1 * random)) as Micros).saturating_sub(elapsed);
        if left >= interval / 2 {
            left
        } else {
            (interval as f64 / 2.0 * (1.0 + random)) as Micros
        }
    }

    /// The wait of a background tab's timer: `wait`, but at least the
    /// browser's minute (`hidden_timer`). The first timer of a tab opened in
    /// the ramp falls anywhere in that wait (`random` uniform in 0..1): the
    /// ramp's users stand for people who opened their tabs at any time
    /// before, so their once-a-minute timers are spread over the minute. (A
    /// ramp shorter than the minute otherwise leaves them all in one part of
    /// it for the whole step: a wave of heartbeats and background polls
    /// half of each minute, and none the other half.)
    pub fn background_wait(&self, wait: Micros, opened_in_ramp: bool, random: f64) -> Micros {
        let wait = wait.max(self.hidden_timer);
        if opened_in_ramp {
            (wait as f64 * random) as Micros
        } else {
            wait
        }
    }
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

/// Rooms, when the step has them: each user is in `per_user` rooms of `size`
/// members, keeps the first on screen (polled like the contacts, with its
/// ETag) and types there in bursts while active.
#[derive(Clone, Copy, Debug)]
pub struct RoomModel {
    pub per_user: usize,
    pub size: usize,
    /// While active, a typing episode starts this often (mean), and lasts this long (mean).
    pub typing_every: Micros,
    pub typing_mean: Micros,
    /// The server's `PRESENCE_TYPING_TTL`: typing is renewed every half of it.
    pub typing_ttl: Micros,
    /// A typing change not shown to a member polling the room by then is missed.
    pub typing_lag: Micros,
}

impl Default for RoomModel {
    fn default() -> Self {
        Self {
            per_user: 3,
            size: 50,
            typing_every: 60 * SECOND,
            typing_mean: 8 * SECOND,
            typing_ttl: 6 * SECOND,
            typing_lag: 10 * SECOND,
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
    /// Rooms, if the step has them.
    pub rooms: Option<RoomModel>,
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
    RoomPoll { timer: u32 },
    RoomRenew { timer: u32 },
    TypingStart { session: u32 },
    TypingTick { episode: u32 },
    TypingEnd { episode: u32 },
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
    /// What the last full answer showed.
    known: Vec<(u32, Status)>,
    failures: u32,
    /// Whether a ping of this opening has been acknowledged (its device stored).
    acknowledged: bool,
    /// A background tab opened in the ramp whose first heartbeat, and first
    /// poll, are still to be scheduled (see [`Model::background_wait`]).
    ramp_heartbeat: bool,
    ramp_poll: bool,
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
    ping_interval: Micros,
    /// The rooms the user is in (indices into the simulation's rooms); the first is on screen.
    rooms: Vec<u32>,
    room_poll_timer: u32,
    room_renew_timer: u32,
    room_renew_every: Micros,
    room_etag: Option<HeaderValue>,
    room_failures: u32,
    typing_episode: u32,
    typing: bool,
    /// Members of the room on screen who started typing, and when: to be seen by a poll.
    typing_pending: Vec<(u32, Micros)>,
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
    /// Each room's path (`/api/rooms/<id>`) and members.
    room_paths: Vec<String>,
    room_members: Vec<Vec<u32>>,
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
            let token = presence::auth::issue_room_token(
                &presence::auth::TokenSettings::with_secret(setup.secret.clone()),
                &UserId::from(*id).to_string(),
                &["sim:*".to_owned()],
                None,
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
                ping_interval: 30 * SECOND,
                rooms: Vec::new(),
                room_poll_timer: 0,
                room_renew_timer: 0,
                room_renew_every: 20 * SECOND,
                room_etag: None,
                room_failures: 0,
                typing_episode: 0,
                typing: false,
                typing_pending: Vec::new(),
            });
        }
        // Rooms: each round shuffles the users into rooms of `size`, so every
        // user is in `per_user` rooms, each of (about) `size` members.
        let mut room_members: Vec<Vec<u32>> = Vec::new();
        if let Some(rooms) = setup.rooms {
            for _ in 0..rooms.per_user {
                let mut order: Vec<u32> = (0..count as u32).collect();
                rng.shuffle(&mut order);
                for chunk in order.chunks(rooms.size.max(1)) {
                    let room = room_members.len() as u32;
                    for member in chunk {
                        users[*member as usize].rooms.push(room);
                    }
                    room_members.push(chunk.to_vec());
                }
            }
        }
        let run = Uuid::new_v4().simple().to_string();
        let room_paths = (0..room_members.len())
            .map(|room| format!("/api/rooms/sim:{}:{room}", &run[..8]))
            .collect();
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
            room_paths,
            room_members,
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
            let wall_second = chrono::Utc::now().timestamp();
            while self.timers.peek().is_some_and(|timer| timer.at <= now) {
                let Some(timer) = self.timers.pop() else {
                    break;
                };
                if self.measuring(timer.at) {
                    let late = now.saturating_sub(timer.at).min(u32::MAX as u64) as u32;
                    self.figures.timer_lateness.push(late);
                    let latest = self.figures.late_seconds.entry(wall_second).or_default();
                    *latest = (*latest).max(late);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_a_pause_answered_together_poll_again_over_half_an_interval() {
        let model = Model::default();
        let mut rng = fastrand::Rng::with_seed(11);
        let interval = 3 * SECOND;
        // Answered in time: the interval (or up to a tenth less) counted from the send.
        assert_eq!(model.after_poll(interval, 0.0, SECOND), 2 * SECOND);
        assert_eq!(model.after_poll(interval, 1.0, SECOND), 1_700_000);
        // 1,000 polls that all waited 10 s on a pause: spread from 1.5 to 3 s.
        let mut tenths = [0_u32; 10];
        for _ in 0..1_000 {
            let wait = model.after_poll(interval, rng.f64(), 10 * SECOND);
            assert!(
                (interval / 2..=interval).contains(&wait),
                "a wait of {wait} µs"
            );
            tenths[(((wait - interval / 2) * 10 / (interval / 2)) as usize).min(9)] += 1;
        }
        assert!(
            tenths.iter().all(|&count| (60..=140).contains(&count)),
            "waits in each tenth of the half interval: {tenths:?}"
        );
    }

    #[test]
    fn background_tabs_opened_in_the_ramp_spread_their_timers_over_the_minute() {
        let model = Model::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let ramp = 30 * SECOND;
        let tabs: Micros = 6_000;
        let mut sixths = [0_u32; 6];
        for tab in 0..tabs {
            let opened = ramp * tab / tabs;
            // The second timer, the first's minute later: where in the minute the tab's timers fall.
            let first = model.background_wait(30 * SECOND, true, rng.f64());
            let second = model.background_wait(30 * SECOND, false, rng.f64());
            let fires = opened + first + second;
            sixths[((fires % (60 * SECOND)) / (10 * SECOND)) as usize] += 1;
        }
        // A thousand in each sixth of the minute, give or take the draw.
        for count in sixths {
            assert!(
                (850..=1150).contains(&count),
                "timers in each sixth of the minute: {sixths:?}"
            );
        }
    }
}
