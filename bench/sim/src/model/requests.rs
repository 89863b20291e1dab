//! The requests a simulated tab sends: pings, heartbeats, sign-outs and polls.

use super::*;

impl Simulation {
    pub(super) fn device(&self, u: u32, tab: u8) -> String {
        format!(
            "sim-{tab}-{}",
            self.users[u as usize].tabs[tab as usize].opened
        )
    }

    pub(super) fn ping(&mut self, u: u32, tab: u8, kind: Kind, mut fields: serde_json::Value) {
        fields["deviceId"] = json!(self.device(u, tab));
        fields["platform"] = json!("web");
        let now = self.now();
        self.schedule_heartbeat(u, tab, now);
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

    /// The shipped client's heartbeat, armed when a ping is sent and again
    /// when it is answered: `pingIntervalSeconds` or up to a tenth less, at
    /// random, counted from when the last ping was `sent` (`afterPoll`); a
    /// background tab's timer waits at least a minute.
    pub(super) fn schedule_heartbeat(&mut self, u: u32, tab: u8, sent: Micros) {
        let model = self.setup.model;
        let now = self.now();
        let (jitter, ramp_random) = (self.rng.f64(), self.rng.f64());
        let user = &mut self.users[u as usize];
        let interval = user.ping_interval;
        let t = &mut user.tabs[tab as usize];
        t.heartbeat_timer += 1;
        let wait = model.after_poll(interval, jitter, now.saturating_sub(sent));
        let wait = if t.hidden {
            model.background_wait(wait, std::mem::take(&mut t.ramp_heartbeat), ramp_random)
        } else {
            wait
        };
        let timer = t.heartbeat_timer;
        self.at(now + wait, u, Event::Heartbeat { tab, timer });
    }

    pub(super) fn sign_out(&mut self, u: u32, tab: u8) {
        let path = format!("/api/status/devices/{}", self.device(u, tab));
        self.send(u, tab, Kind::SignOut, Method::DELETE, path, None, None);
    }

    pub(super) fn poll(&mut self, u: u32, tab: u8) {
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
    pub(super) fn send(
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
        let t = &user.tabs[tab as usize];
        let job = Job {
            user: u,
            tab,
            generation: t.opened,
            kind,
            method,
            path,
            body,
            authorization: user.authorization.clone(),
            if_none_match,
            wanted_at: self.started + Duration::from_micros(now),
            unacknowledged: kind == Kind::SignOut && !t.acknowledged,
        };
        // A closed pool means the step is over; the request is simply not made.
        let _ = self.pools[user.instance].send(job);
    }
}
