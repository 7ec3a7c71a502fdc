// velocity, in JavaScript: a line-for-line port of the bundled Rust
// detector `plugins/velocity` (read that file beside this one), the same
// logic as examples/python-detector/velocity.py.
//
// How much an account, an API key and a payment instrument send over
// sliding windows of event time, against configured budgets, weighed by
// how young the account is. The counters live in the host (`counter-add`).
//
// This module is plain JavaScript: `node --test` runs test.js over it
// without Wasm, and app.js is the thin shell that exports it as a
// component. It gives the same scores, labels and reasons as the Rust
// plugin: scores are rounded to f32 at the same steps (Math.fround), state
// keys are the Rust SDK's (FNV-1a and SplitMix64 over BigInt), and the
// account age is printed with Rust's rounding (`fixed1`).

const M64 = (1n << 64n) - 1n;
const U32 = 2 ** 32 - 1;

/** The SplitMix64 finaliser (`vigil_sdk::hash::mix`). */
export function mix(z) {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** A 64-bit tag for a name (`vigil_sdk::hash::tag`): FNV-1a, mixed. */
export function tag(name) {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(name)) {
    h = ((h ^ BigInt(b)) * 0x100000001b3n) & M64;
  }
  return mix(h);
}

/** The state key for (tag, value) (`vigil_sdk::hash::key`). */
export const key = (t, value) => mix(t ^ mix(value));

const ACCOUNT_REQS = tag("velocity/account-requests");
const ACCOUNT_TOKENS = tag("velocity/account-tokens");
const KEY_REQS = tag("velocity/key-requests");
const PAYMENT_REQS = tag("velocity/payment-requests");

export const DEFAULTS = {
  window_ms: 3_600_000,
  account_requests: 240,
  account_tokens: 600_000,
  key_requests: 600,
  payment_window_ms: 86_400_000,
  payment_requests: 4_000,
  young_account_days: 7.0,
  old_account_factor: 0.5,
  unknown_age_factor: 0.8,
  org_factor: 0.5,
};
const U32_KEYS = ["window_ms", "payment_window_ms"];
const F32_KEYS = ["old_account_factor", "unknown_age_factor", "org_factor"];

/** The config as the Rust plugin's serde reads it (unknown keys and wrong
 * types refused, missing keys defaulted); throws a string. One difference:
 * JSON.parse reads `240.0` as 240, which serde refuses for an integer. */
export function parseConfig(json) {
  const cfg = json.trim() ? JSON.parse(json) : {};
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) throw "config: expected a table";
  const out = { ...DEFAULTS };
  for (const [k, v] of Object.entries(cfg)) {
    if (!(k in DEFAULTS)) throw `config: unknown field \`${k}\`, expected one of ${Object.keys(DEFAULTS).join(", ")}`;
    if (typeof v !== "number") throw `config: ${k}: expected a number, got ${JSON.stringify(v)}`;
    const integer = Number.isInteger(DEFAULTS[k]) && k !== "young_account_days";
    if (integer && !(Number.isSafeInteger(v) && v >= 0 && (!U32_KEYS.includes(k) || v <= U32))) {
      throw `config: ${k}: expected a non-negative integer, got ${v}`;
    }
    out[k] = F32_KEYS.includes(k) ? Math.fround(v) : v;
  }
  for (const k of F32_KEYS) out[k] = Math.fround(out[k]);
  if (out.window_ms === 0 || out.payment_window_ms === 0) throw "config: windows must be positive";
  return out;
}

/** The share of the window's volume over budget, as an f32. */
export function excess(count, limit) {
  return limit === 0 || count <= limit ? 0 : Math.fround(1 - limit / count);
}

export function humanWindow(ms) {
  for (const [unit, suffix] of [[86_400_000, "d"], [3_600_000, "h"], [60_000, "m"]]) {
    if (ms % unit === 0) return `${ms / unit}${suffix}`;
  }
  return `${ms}ms`;
}

/** x with one decimal as Rust's `{:.1}` prints it: the nearest, ties (x.25,
 * x.75: the only exact ties a double can hold) to even. toFixed rounds
 * ties away from zero. */
export function fixed1(x) {
  const a = Math.abs(x);
  if (Number.isInteger(a * 4) && (a * 4) % 2 === 1) {
    let n = Math.floor(a * 10); // exact: a is a multiple of 1/4
    if (n % 2 === 1) n += 1;
    return (x < 0 ? "-" : "") + (n / 10).toFixed(1);
  }
  return x.toFixed(1);
}

export class Velocity {
  constructor(configJson) {
    const c = (this.cfg = parseConfig(configJson));
    this.dims = [
      ["account-rate", "requests by this account", c.account_requests, c.window_ms],
      ["account-tokens", "tokens by this account", c.account_tokens, c.window_ms],
      ["key-rate", "requests on this API key", c.key_requests, c.window_ms],
      ["payment-rate", "requests on this payment instrument", c.payment_requests, c.payment_window_ms],
    ];
  }

  /** Scores a batch of columns (contract 0.2's `batch` as jco lifts it:
   * `len`, `tsMs`, `account`, ...; an ungranted column is empty; handles
   * and times are BigInts). `counterAdd(keys, nowMs, windowMs, deltas)` is
   * the host's sliding-window counter call, one for the batch.
   * Returns { scores, notes: [{ index, labels, reason }] }. */
  score(b, counterAdd) {
    const n = b.len;
    const has = (col) => col && col.length > 0;
    const { tsMs: ts, account, org, apiKey, paymentFingerprint: card } = b;
    const ptok = has(b.promptTokens) ? b.promptTokens : null;
    const ctok = has(b.completionTokens) ? b.completionTokens : null;
    const created = has(b.accountCreatedMs) ? b.accountCreatedMs : null;
    const [hasAccount, hasOrg, hasKey, hasCard] = [account, org, apiKey, card].map(has);
    const { window_ms: w, payment_window_ms: pw } = this.cfg;

    // All counter steps of the batch go to the host in one call; slots
    // holds (dimension, step) pairs, four per request (-1: no step).
    const keys = new BigUint64Array(4 * n);
    const nows = new BigInt64Array(4 * n);
    const windows = new Uint32Array(4 * n);
    const deltas = new Uint32Array(4 * n);
    const slots = new Int32Array(4 * n).fill(-1);
    let m = 0;
    const push = (i, d, k, window, delta) => {
      slots[4 * i + d] = m;
      keys[m] = k;
      nows[m] = ts[i];
      windows[m] = window;
      deltas[m] = delta;
      m += 1;
    };
    for (let i = 0; i < n; i++) {
      if (hasAccount && account[i] !== 0n) {
        push(i, 0, key(ACCOUNT_REQS, account[i]), w, 1);
        const tokens = (ptok ? ptok[i] ?? 0 : 0) + (ctok ? ctok[i] ?? 0 : 0);
        push(i, 1, key(ACCOUNT_TOKENS, account[i]), w, Math.min(tokens, U32));
      }
      if (hasKey && apiKey[i] !== 0n) push(i, 2, key(KEY_REQS, apiKey[i]), w, 1);
      if (hasCard && card[i] !== 0n) push(i, 3, key(PAYMENT_REQS, card[i]), pw, 1);
    }
    const totals =
      m > 0 ? counterAdd(keys.subarray(0, m), nows.subarray(0, m), windows.subarray(0, m), deltas.subarray(0, m)) : [];

    const cfg = this.cfg;
    const scores = new Float32Array(n);
    const notes = [];
    for (let i = 0; i < n; i++) {
      let best = null;
      for (let d = 0; d < 4; d++) {
        const s = slots[4 * i + d];
        if (s < 0) continue;
        const count = s < totals.length ? Number(totals[s]) : 0;
        const e = excess(count, this.dims[d][2]);
        if (e > 0 && (best === null || e > best[0])) best = [e, d, count];
      }
      if (best === null) continue;
      const [e, d, count] = best;
      const c = created ? created[i] : undefined;
      let days = null;
      let factor;
      if (c !== undefined && c !== null) {
        days = Number(BigInt(ts[i]) - BigInt(c)) / 86_400_000;
        factor = days < cfg.young_account_days ? 1 : cfg.old_account_factor;
      } else {
        factor = cfg.unknown_age_factor;
      }
      if (hasOrg && org[i] !== 0n) factor = Math.fround(factor * cfg.org_factor);
      const [label, what, limit, window] = this.dims[d];
      const ageText = days !== null ? `account age ${fixed1(days)} days` : "account age unknown";
      const labels = [label];
      if (factor >= 1 && days !== null) labels.push("young-account");
      scores[i] = Math.min(Math.max(Math.fround(e * factor), 0), 1);
      notes.push({ index: i, labels, reason: `${count} ${what} in ${humanWindow(window)} (budget ${limit}); ${ageText}` });
    }
    return { scores, notes };
  }
}
