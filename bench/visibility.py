"""Cross-instance visibility: how long after instance A answers a write does
instance B show it? A user changes their status message on A; a watcher polls
B back to back over one keep-alive connection until the new message shows.
Prints "p50_ms p99_ms max_ms" over SAMPLES writes.

Usage: python3 bench/visibility.py HOST:PORT_A HOST:PORT_B WRITER_TOKEN WRITER_ID WATCHER_TOKEN
"""

import http.client
import json
import sys
import time

SAMPLES = 200


def main():
    a, b, writer_token, writer_id, watcher_token = sys.argv[1:6]
    writer = http.client.HTTPConnection(a)
    watcher = http.client.HTTPConnection(b)

    def put(message):
        body = json.dumps({"deviceId": "probe", "statusMessage": message})
        writer.request("PUT", "/api/status", body, {
            "Authorization": f"Bearer {writer_token}",
            "Content-Type": "application/json",
        })
        response = writer.getresponse()
        response.read()
        assert response.status == 200, response.status

    def shown():
        watcher.request("GET", f"/api/status/{writer_id}", headers={
            "Authorization": f"Bearer {watcher_token}",
        })
        response = watcher.getresponse()
        return json.loads(response.read())["statusMessage"]

    delays = []
    for n in range(SAMPLES):
        message = f"visibility {n}"
        shown()  # B holds the previous message in its cache
        put(message)
        answered = time.perf_counter()
        while shown() != message:
            if time.perf_counter() - answered > 10:
                raise SystemExit(f"never shown on B: {message}")
        delays.append((time.perf_counter() - answered) * 1000)
    delays.sort()
    pick = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
    print(f"{pick(0.5):.2f} {pick(0.99):.2f} {delays[-1]:.2f}")


if __name__ == "__main__":
    main()
