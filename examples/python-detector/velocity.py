"""velocity, in Python: a line-for-line port of the bundled Rust detector
`plugins/velocity` (read that file beside this one).

How much an account, an API key and a payment instrument send over sliding
windows of event time, against configured budgets, weighed by how young the
account is. The counters live in the host (`counter-add`), so they survive
a new version of the plugin and a restart of the host.

This module is plain Python: `test_velocity.py` runs it without Wasm, and
`app.py` is the thin shell that exports it as a component. It gives the
same scores, labels and reasons as the Rust plugin, bit for bit: the Rust
code computes scores in f32, so this port rounds to f32 at the same steps
(`f32` below), and it derives the same state keys (`tag`, `key`: FNV-1a
and SplitMix64, as `vigil_sdk::hash`).
"""

import json
import struct

M64 = (1 << 64) - 1
U32 = (1 << 32) - 1


def mix(z):
    """The SplitMix64 finaliser (`vigil_sdk::hash::mix`)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def tag(name):
    """A 64-bit tag for a name (`vigil_sdk::hash::tag`): FNV-1a, mixed."""
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return mix(h)


def key(t, value):
    """The state key for (tag, value) (`vigil_sdk::hash::key`)."""
    return mix(t ^ mix(value))


_F32 = struct.Struct("<f")


def f32(x):
    """x rounded to the nearest f32, as Rust's `as f32` (and a product of two
    f32s, exact in a Python float, rounded once: Rust's f32 `*`)."""
    return _F32.unpack(_F32.pack(x))[0]


ACCOUNT_REQS = tag("velocity/account-requests")
ACCOUNT_TOKENS = tag("velocity/account-tokens")
KEY_REQS = tag("velocity/key-requests")
PAYMENT_REQS = tag("velocity/payment-requests")

# The manifest's [config], with the Rust `Config`'s defaults and types.
DEFAULTS = {
    "window_ms": 3_600_000,
    "account_requests": 240,
    "account_tokens": 600_000,
    "key_requests": 600,
    "payment_window_ms": 86_400_000,
    "payment_requests": 4_000,
    "young_account_days": 7.0,
    "old_account_factor": 0.5,
    "unknown_age_factor": 0.8,
    "org_factor": 0.5,
}
_U32_KEYS = {"window_ms", "payment_window_ms"}
_U64_KEYS = {"account_requests", "account_tokens", "key_requests", "payment_requests"}
_F32_KEYS = {"old_account_factor", "unknown_age_factor", "org_factor"}


def parse_config(config_json):
    """The config as the Rust plugin's serde reads it: unknown keys and wrong
    types are refused (ValueError), missing keys take the defaults."""
    cfg = json.loads(config_json) if config_json.strip() else {}
    if not isinstance(cfg, dict):
        raise ValueError("config: expected a table")
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown field `{unknown[0]}`, expected one of {sorted(DEFAULTS)}")
    out = dict(DEFAULTS)
    for k, v in cfg.items():
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if k in _U32_KEYS or k in _U64_KEYS:
            top = U32 if k in _U32_KEYS else M64
            if not (number and isinstance(v, int) and 0 <= v <= top):
                raise ValueError(f"config: {k}: expected an integer in [0, {top}], got {v!r}")
        elif not number:
            raise ValueError(f"config: {k}: expected a number, got {v!r}")
        out[k] = f32(v) if k in _F32_KEYS else (float(v) if k == "young_account_days" else v)
    if out["window_ms"] == 0 or out["payment_window_ms"] == 0:
        raise ValueError("config: windows must be positive")
    return out


def excess(count, limit):
    """The share of the window's volume that is over budget, as an f32: 0 at
    the budget, 0.5 at twice it, 0.9 at ten times."""
    if limit == 0 or count <= limit:
        return 0.0
    return f32(1.0 - limit / count)


def human_window(ms):
    for unit, suffix in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m")):
        if ms % unit == 0:
            return f"{ms // unit}{suffix}"
    return f"{ms}ms"


class Velocity:
    def __init__(self, config_json):
        c = self.cfg = parse_config(config_json)
        w, pw = c["window_ms"], c["payment_window_ms"]
        # Per dimension: label, what it counts, budget, window.
        self.dims = [
            ("account-rate", "requests by this account", c["account_requests"], w),
            ("account-tokens", "tokens by this account", c["account_tokens"], w),
            ("key-rate", "requests on this API key", c["key_requests"], w),
            ("payment-rate", "requests on this payment instrument", c["payment_requests"], pw),
        ]

    def score(self, b, counter_add):
        """Scores a batch of columns (the attributes of contract 0.2's
        `batch`: `len`, `ts_ms`, `account`, ...; an ungranted column is
        empty). `counter_add(keys, now_ms, window_ms, deltas)` is the host's
        sliding-window counter call, one for the batch; it returns a total
        per step.

        Returns (scores, notes): a score per request and, for requests with
        something to say, (index, labels, reason).
        """
        n = b.len
        zeros = [0] * n
        nones = [None] * n
        account = b.account or zeros
        org = b.org or zeros
        api_key = b.api_key or zeros
        card = b.payment_fingerprint or zeros
        ptok = b.prompt_tokens or nones
        ctok = b.completion_tokens or nones
        created = b.account_created_ms or nones
        ts = b.ts_ms
        w, pw = self.cfg["window_ms"], self.cfg["payment_window_ms"]

        # All counter steps of the batch go to the host in one call; slots[i]
        # holds (dimension, step) pairs for request i.
        keys, nows, windows, deltas, slots = [], [], [], [], []

        def step(slot, dim, k, now, window, delta):
            slot.append((dim, len(keys)))
            keys.append(k)
            nows.append(now)
            windows.append(window)
            deltas.append(delta)

        for i in range(n):
            slot = []
            t = ts[i]
            if account[i]:
                step(slot, 0, key(ACCOUNT_REQS, account[i]), t, w, 1)
                step(slot, 1, key(ACCOUNT_TOKENS, account[i]), t, w, min((ptok[i] or 0) + (ctok[i] or 0), U32))
            if api_key[i]:
                step(slot, 2, key(KEY_REQS, api_key[i]), t, w, 1)
            if card[i]:
                step(slot, 3, key(PAYMENT_REQS, card[i]), t, pw, 1)
            slots.append(slot)
        totals = counter_add(keys, nows, windows, deltas) if keys else []

        cfg = self.cfg
        scores = [0.0] * n
        notes = []
        for i, slot in enumerate(slots):
            best = None
            for d, s in slot:
                count = totals[s] if s < len(totals) else 0
                e = excess(count, self.dims[d][2])
                if e > 0.0 and (best is None or e > best[0]):
                    best = (e, d, count)
            if best is None:
                continue
            e, d, count = best
            if created[i] is not None:
                days = (ts[i] - created[i]) / 86_400_000.0
                factor = 1.0 if days < cfg["young_account_days"] else cfg["old_account_factor"]
            else:
                days = None
                factor = cfg["unknown_age_factor"]
            if org[i]:
                factor = f32(factor * cfg["org_factor"])
            label, what, limit, window = self.dims[d]
            age_text = f"account age {days:.1f} days" if days is not None else "account age unknown"
            labels = [label]
            if factor >= 1.0 and days is not None:
                labels.append("young-account")
            scores[i] = min(max(f32(e * factor), 0.0), 1.0)
            notes.append((i, labels, f"{count} {what} in {human_window(window)} (budget {limit}); {age_text}"))
        return scores, notes
