// Native tests of velocity.js (`node --test`): the Rust plugin's tests
// (plugins/velocity/src/lib.rs), ported, and what must match Rust exactly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Velocity, excess, fixed1, humanWindow, key, tag } from "./velocity.js";

const T0 = 1_760_000_000_000;
const DAY = 86_400_000;

/** Sliding-window counters in memory (exact windows). */
class MemHost {
  constructor() {
    this.seen = new Map();
  }
  counterAdd = (keys, nowMs, windowMs, deltas) => {
    const out = new BigUint64Array(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const k = `${keys[i]}/${windowMs[i]}`;
      const now = Number(nowMs[i]);
      const events = (this.seen.get(k) ?? []).filter(([t]) => t > now - windowMs[i]);
      events.push([now, deltas[i]]);
      this.seen.set(k, events);
      out[i] = BigInt(events.reduce((s, [, d]) => s + d, 0));
    }
    return out;
  };
}

/** Columns as jco lifts them, for requests given as objects. */
function batch(rows) {
  const handles = (f) => BigUint64Array.from(rows.some((r) => f in r) ? rows.map((r) => BigInt(r[f] ?? 0)) : []);
  const options = (f, big) => (rows.some((r) => f in r) ? rows.map((r) => (r[f] == null ? undefined : big ? BigInt(r[f]) : r[f])) : []);
  return {
    len: rows.length,
    tsMs: BigInt64Array.from(rows.map((r) => BigInt(r.ts_ms))),
    account: handles("account"),
    org: handles("org"),
    apiKey: handles("api_key"),
    paymentFingerprint: handles("payment_fingerprint"),
    promptTokens: options("prompt_tokens"),
    completionTokens: options("completion_tokens"),
    accountCreatedMs: options("account_created_ms", true),
  };
}

const req = (account, ts, created = T0 - DAY) => ({
  account, ts_ms: ts, account_created_ms: created, prompt_tokens: 100, completion_tokens: 100,
});

function signals(v, rows, host) {
  const { scores, notes } = v.score(batch(rows), host.counterAdd);
  const by = new Map(notes.map((n) => [n.index, n]));
  return Array.from(scores, (s, i) => ({ score: s, labels: by.get(i)?.labels ?? [], reason: by.get(i)?.reason ?? "" }));
}

test("keys, scores and numbers are Rust's", () => {
  assert.equal(tag("requests"), 0x0f6c0520bde9cc7en); // pinned in guest-sdk/src/hash.rs
  assert.notEqual(key(tag("a"), 1n), key(tag("b"), 1n));
  assert.equal(excess(480, 240), 0.5);
  assert.equal(excess(7, 3), Math.fround(1 - 3 / 7));
  assert.deepEqual([86_400_000, 3_600_000, 120_000, 1500].map(humanWindow), ["1d", "1h", "2m", "1500ms"]);
  // Rust's {:.1}: ties to even; toFixed would give 0.3, 1.3, -0.3.
  assert.deepEqual([0.25, 0.75, 1.25, -0.25, 0.05, 3.45, -0.04, 612.0].map(fixed1),
    ["0.2", "0.8", "1.2", "-0.2", "0.1", "3.5", "-0.0", "612.0"]);
});

test("a quiet account scores zero and a burst scores high", () => {
  const v = new Velocity("{}");
  const h = new MemHost();
  assert.ok(signals(v, Array.from({ length: 50 }, (_, i) => req(1, T0 + i * 60_000)), h).every((s) => s.score === 0));
  const last = signals(v, Array.from({ length: 2400 }, (_, i) => req(2, T0 + i * 1000)), h).at(-1);
  assert.ok(last.score > 0.85, JSON.stringify(last));
  assert.deepEqual(last.labels, ["account-rate", "young-account"]);
  assert.match(last.reason, /requests by this account in 1h/);
});

test("counters continue across batches and instances", () => {
  const h = new MemHost();
  new Velocity("{}").score(batch(Array.from({ length: 300 }, (_, i) => req(3, T0 + i * 1000))), h.counterAdd);
  const s = signals(new Velocity("{}"), Array.from({ length: 300 }, (_, i) => req(3, T0 + (300 + i) * 1000)), h).at(-1);
  assert.ok(s.reason.startsWith("600 requests"), s.reason);
  assert.ok(Math.abs(s.score - 0.6) < 0.01);
});

test("old accounts weigh less and shared cards add up", () => {
  const rows = [];
  for (let a = 0; a < 200; a++) {
    for (let i = 0; i < 30; i++) {
      rows.push({ ...req(100 + a, T0 + (a * 30 + i) * 10_000, T0 - 400 * DAY), payment_fingerprint: 77 });
    }
  }
  const s = signals(new Velocity("{}"), rows, new MemHost()).at(-1);
  assert.deepEqual(s.labels, ["payment-rate"]);
  assert.ok(Math.abs(s.score - 1 / 6) < 0.01, JSON.stringify(s));
});

test("an organisation and an unknown age weigh less", () => {
  const rows = Array.from({ length: 6 }, (_, i) => ({ account: 5, org: 9, ts_ms: T0 + i }));
  const s = signals(new Velocity('{"account_requests": 3}'), rows, new MemHost()).at(-1);
  assert.equal(s.score, Math.fround(0.5 * Math.fround(Math.fround(0.8) * 0.5)));
  assert.equal(s.reason, "6 requests by this account in 1h (budget 3); account age unknown");
});

test("ungranted fields mean no signal", () => {
  const h = new MemHost();
  const { scores, notes } = new Velocity("{}").score(batch(Array.from({ length: 5000 }, (_, i) => ({ ts_ms: T0 + i }))), h.counterAdd);
  assert.ok(scores.every((s) => s === 0));
  assert.deepEqual([notes.length, h.seen.size], [0, 0]);
});

test("config typos are refused", () => {
  assert.throws(() => new Velocity('{"acount_requests": 5}'), /acount_requests/);
  assert.throws(() => new Velocity('{"window_ms": 0}'));
  assert.throws(() => new Velocity('{"window_ms": 1.5}'));
  new Velocity("{}");
  new Velocity("");
});
