// A clock and timer queue moved by hand, for the tests under node --test web/.
import assert from "node:assert/strict";

/**
 * Timers fire only when a test says so; `wrap` runs each one (React's act()
 * for the hook's tests), and the microtasks it starts settle before the next.
 */
export function fakeTime({ start = "2026-11-23T10:00:00Z", wrap = (run) => run() } = {}) {
  let now = Date.parse(start);
  const timers = [];
  const fire = async (timer) => {
    now = timer.at;
    await wrap(async () => {
      await timer.callback();
      await new Promise((resolve) => setImmediate(resolve));
    });
  };
  return {
    now: () => now,
    setTimeout: (callback, ms) => {
      const timer = { at: now + ms, callback };
      timers.push(timer);
      return timer;
    },
    clearTimeout: (timer) => {
      const index = timers.indexOf(timer);
      if (index >= 0) timers.splice(index, 1);
    },
    /** Runs the earliest timer; returns how long it waited. */
    async next() {
      timers.sort((a, b) => a.at - b.at);
      const timer = timers.shift();
      assert.ok(timer, "a timer is scheduled");
      const waited = timer.at - now;
      await fire(timer);
      return waited;
    },
    /** Runs every timer due within `ms`, in order. */
    async advance(ms) {
      const until = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        if (!timers.length || timers[0].at > until) break;
        await fire(timers.shift());
      }
      now = until;
    },
    pending: () => timers.length,
  };
}
