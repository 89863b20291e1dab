"""A Citus worker down under load: what clients of its users and of the others see.

Probe users, each on a thread of its own, ping every 600 ms (`PUT
/api/status` from device "probe", under the default rate limit) and read their own status (`GET
/api/status/{id}`), like a front end's pings and polls, while
bench/citus-worker-down.sh keeps the simulator's load on the server. After a
baseline, one worker is stopped at once (as a crash would), left down, then
started again. The probe checks, and prints:

- while it is down, every answer to a user whose shard is on it is a `200`
  (a read the cache could answer) or a `503` `DATABASE_UNAVAILABLE` with
  `Retry-After`, within 2 s: never a `500`, never a hang;
- every request of a user on the other worker answers `200`;
- after it is started, every user is served again within 5 s;
- no acknowledged write is lost: each user's stored last ping of the probe
  device is the last one acknowledged, or a later one.

Exits 1 when any of these fails. Only the standard library; it sends traffic to
127.0.0.1 only, for a bounded time.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

WRITE_EVERY = 0.6
ANSWER_WITHIN = 2.0
RECOVER_WITHIN = 5.0


def request(method, url, token, body=None):
    """(status, Retry-After, seconds, JSON body or None) of one request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, headers=headers, method=method), timeout=10
        ) as response:
            return response.status, None, time.monotonic() - started, json.load(response)
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = None
        return error.code, error.headers.get("Retry-After"), time.monotonic() - started, payload
    except OSError:
        return None, None, time.monotonic() - started, None


class Probe(threading.Thread):
    """One user: numbered writes and self reads until told to stop."""

    def __init__(self, base, user, token, stop):
        super().__init__(daemon=True)
        self.base, self.user, self.token, self.stop = base, user, token, stop
        self.answers = []  # (at, kind, status, retry_after, seconds, code)
        self.acknowledged = ""  # the last acknowledged ping's lastPing (RFC 3339, UTC)
        self.writes = 0

    def run(self):
        while not self.stop.is_set():
            at = time.monotonic()
            status, retry, seconds, body = request(
                "PUT", f"{self.base}/api/status", self.token, {"deviceId": "probe"}
            )
            self.answers.append((at, "write", status, retry, seconds, code_of(body)))
            if status == 200:
                self.acknowledged = probe_ping(body)
                self.writes += 1
            at = time.monotonic()
            status, retry, seconds, body = request(
                "GET", f"{self.base}/api/status/{self.user}", self.token
            )
            self.answers.append((at, "read", status, retry, seconds, code_of(body)))
            self.stop.wait(max(0.0, WRITE_EVERY - (time.monotonic() - at)))


def probe_ping(body):
    """The probe device's lastPing in a self view ("" when it has none)."""
    for device in (body or {}).get("devices") or []:
        if device.get("deviceId") == "probe":
            return device.get("lastPing") or ""
    return ""


def code_of(body):
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


def workers_of(database_url, users):
    """Each user's worker port, from Citus's metadata."""
    listed = ",".join(users)
    out = subprocess.run(
        [
            "psql", "-X", "-At", "-F", " ", database_url, "-c",
            "select u, p.nodeport from unnest(string_to_array($$" + listed + "$$, ',')::uuid[]) as u "
            "join pg_dist_shard_placement as p "
            "on p.shardid = get_shard_id_for_distribution_column('user_status', u)",
        ],
        check=True, capture_output=True, text=True,
    ).stdout
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--cluster-dir", required=True)
    parser.add_argument("--binary", required=True, help="the presence binary, to sign tokens")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--baseline", type=float, default=10)
    parser.add_argument("--down", type=float, default=20)
    parser.add_argument("--after", type=float, default=15)
    args = parser.parse_args()

    users = [str(uuid.uuid4()) for _ in range(args.users)]
    tokens = {
        user: subprocess.run(
            [args.binary, "token", user], check=True, capture_output=True, text=True
        ).stdout.strip()
        for user in users
    }
    stop = threading.Event()
    probes = [Probe(args.url, user, tokens[user], stop) for user in users]
    for probe in probes:
        probe.start()
    time.sleep(2)  # every user has a row: its shard is known
    worker_of = workers_of(args.database_url, users)
    ports = sorted(set(worker_of.values()))
    down_port = max(ports)
    time.sleep(max(0.0, args.baseline - 2))

    cluster = ["bash", "bench/citus-cluster.sh"]
    down_at = time.monotonic()
    subprocess.run(cluster + ["stop-node", args.cluster_dir, "2"], check=True)
    stopped_at = time.monotonic()
    time.sleep(args.down)
    subprocess.run(cluster + ["start-node", args.cluster_dir, "2"], check=True)
    up_at = time.monotonic()
    time.sleep(args.after)
    stop.set()
    for probe in probes:
        probe.join(15)

    failures = []
    affected = [p for p in probes if worker_of.get(p.user) == down_port]
    others = [p for p in probes if worker_of.get(p.user) != down_port]

    def during(probe):
        return [a for a in probe.answers if stopped_at <= a[0] and a[0] + a[4] <= up_at]

    tally = {}
    slowest = 0.0
    for probe in affected:
        for at, kind, status, retry, seconds, code in during(probe):
            tally[(kind, status)] = tally.get((kind, status), 0) + 1
            slowest = max(slowest, seconds)
            if status == 503 and code == "DATABASE_UNAVAILABLE" and retry:
                continue
            if status == 200:
                continue
            failures.append(f"user on the stopped worker: {kind} answered {status} {code}")
        if any(a[4] > ANSWER_WITHIN for a in during(probe)):
            failures.append(f"a request took over {ANSWER_WITHIN} s while the worker was down")
    other_answers = [a for p in others for a in during(p)]
    other_bad = [a for a in other_answers if a[2] != 200]
    if other_bad:
        failures.append(
            f"{len(other_bad)} of {len(other_answers)} requests of users on the other worker "
            f"did not answer 200: {sorted(set((a[1], a[2], a[5]) for a in other_bad))}"
        )
    recovered = []
    for probe in affected:
        served = [a for a in probe.answers if a[0] >= up_at and a[2] == 200 and a[1] == "write"]
        recovered.append(served[0][0] + served[0][4] - up_at if served else float("inf"))
    recovery = max(recovered, default=0.0)
    if recovery > RECOVER_WITHIN:
        failures.append(f"a user on the restarted worker was served only {recovery:.1f} s after")

    lost = 0
    for probe in probes:
        status, _, _, body = request("GET", f"{args.url}/api/status/{probe.user}", probe.token)
        stored = probe_ping(body) if status == 200 else ""
        # Same format and zone: RFC 3339 strings at millisecond precision order as the instants.
        if stored < probe.acknowledged:
            lost += 1
    if lost:
        failures.append(f"{lost} users lost an acknowledged write")

    print(f"\n== a worker down for {args.down:.0f} s under load ({args.users} probe users, "
          f"{len(affected)} on the stopped worker, {len(others)} on the other)")
    print(f"stopping it took {stopped_at - down_at:.2f} s")
    print("answers to users on the stopped worker while it was down: " + ", ".join(
        f"{kind} {status}: {count}" for (kind, status), count in sorted(tally.items(), key=str)))
    print(f"  slowest {slowest * 1000:.0f} ms")
    print(f"users on the other worker: {len(other_answers) - len(other_bad)} of "
          f"{len(other_answers)} answers 200")
    print(f"after the worker started: every user written again within {recovery:.2f} s")
    print(f"acknowledged writes: {sum(p.writes for p in probes)}; users that lost one: {lost}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(sorted(set(failures))))
        sys.exit(1)
    print("held: 503 with Retry-After within 2 s, the other worker's users served, "
          "back within 5 s, no acknowledged write lost")


if __name__ == "__main__":
    main()
