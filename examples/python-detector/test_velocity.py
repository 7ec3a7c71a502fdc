"""Native tests of velocity.py (`python3 -m unittest`): the Rust plugin's
tests (plugins/velocity/src/lib.rs), ported, and the pieces that must match
the Rust SDK bit for bit."""

import unittest
from collections import defaultdict, deque
from types import SimpleNamespace

from velocity import Velocity, excess, f32, human_window, key, tag

T0 = 1_760_000_000_000
DAY = 86_400_000


class MemHost:
    """Sliding-window counters in memory (exact windows; the host's have a
    resolution of a sixteenth of the window)."""

    def __init__(self):
        self.seen = defaultdict(deque)  # (key, window) -> (ts, delta), oldest first
        self.sums = defaultdict(int)

    def counter_add(self, keys, now_ms, window_ms, deltas):
        out = []
        for k, now, window, delta in zip(keys, now_ms, window_ms, deltas):
            events = self.seen[(k, window)]
            events.append((now, delta))
            self.sums[(k, window)] += delta
            while events[0][0] <= now - window:
                self.sums[(k, window)] -= events.popleft()[1]
            out.append(self.sums[(k, window)])
        return out


def batch(rows, **granted):
    """Columns for requests given as dicts (ts_ms plus any fields); every
    field named in a row is granted, the rest arrive as empty columns."""
    fields = ["account", "org", "api_key", "payment_fingerprint"]
    options = ["prompt_tokens", "completion_tokens", "account_created_ms"]
    cols = {"len": len(rows), "ts_ms": [r["ts_ms"] for r in rows]}
    for f in fields:
        cols[f] = [r.get(f, 0) for r in rows] if any(f in r for r in rows) else []
    for f in options:
        cols[f] = [r.get(f) for r in rows] if any(f in r for r in rows) else []
    return SimpleNamespace(**cols)


def req(account, ts, created=T0 - DAY):
    return {"account": account, "ts_ms": ts, "account_created_ms": created, "prompt_tokens": 100, "completion_tokens": 100}


def signals(v, rows, host):
    scores, notes = v.score(batch(rows), host.counter_add)
    by_index = {i: (labels, reason) for i, labels, reason in notes}
    return [(s, *by_index.get(i, ([], ""))) for i, s in enumerate(scores)]


class HashTest(unittest.TestCase):
    def test_keys_are_the_rust_sdks(self):
        # Pinned in guest-sdk/src/hash.rs: a different key is different state.
        self.assertEqual(tag("requests"), 0x0F6C0520BDE9CC7E)
        self.assertNotEqual(key(tag("a"), 1), key(tag("b"), 1))
        self.assertNotEqual(key(tag("a"), 1), key(tag("a"), 2))

    def test_scores_round_as_f32(self):
        self.assertEqual(excess(240, 240), 0.0)
        self.assertEqual(excess(480, 240), 0.5)
        self.assertEqual(excess(7, 3), f32(1 - 3 / 7))
        self.assertNotEqual(f32(1 - 3 / 7), 1 - 3 / 7)
        self.assertEqual(f32(0.8), 0.800000011920929)

    def test_windows_read_as_the_rust_plugin_writes_them(self):
        self.assertEqual([human_window(m) for m in (86_400_000, 3_600_000, 120_000, 1500)], ["1d", "1h", "2m", "1500ms"])


class VelocityTest(unittest.TestCase):
    def test_quiet_account_scores_zero_and_a_burst_scores_high(self):
        v, h = Velocity("{}"), MemHost()
        quiet = [req(1, T0 + i * 60_000) for i in range(50)]
        self.assertTrue(all(s == 0.0 for s, _, _ in signals(v, quiet, h)))
        # 2,400 requests in under an hour: ten times the budget.
        burst = [req(2, T0 + i * 1000) for i in range(2400)]
        score, labels, reason = signals(v, burst, h)[-1]
        self.assertGreater(score, 0.85)
        self.assertIn("account-rate", labels)
        self.assertIn("young-account", labels)
        self.assertIn("requests by this account in 1h", reason)

    def test_counters_continue_across_batches_and_instances(self):
        h = MemHost()
        Velocity("{}").score(batch([req(3, T0 + i * 1000) for i in range(300)]), h.counter_add)
        # A fresh instance (a new version) sees the same host state.
        score, _, reason = signals(Velocity("{}"), [req(3, T0 + i * 1000) for i in range(300, 600)], h)[-1]
        self.assertTrue(reason.startswith("600 requests"), reason)
        self.assertAlmostEqual(score, 0.6, delta=0.01)

    def test_old_accounts_weigh_less_and_shared_cards_add_up(self):
        v, h = Velocity("{}"), MemHost()
        # 200 accounts, each quiet (30 requests), one card: 6,000 a day.
        rows = []
        for a in range(200):
            for i in range(30):
                r = req(100 + a, T0 + (a * 30 + i) * 10_000, created=T0 - 400 * DAY)
                r["payment_fingerprint"] = 77
                rows.append(r)
        score, labels, _ = signals(v, rows, h)[-1]
        self.assertEqual(labels, ["payment-rate"])
        # excess 1/3 at 6,000 vs 4,000, halved for an old account.
        self.assertAlmostEqual(score, (1 / 3) * 0.5, delta=0.01)

    def test_an_organisation_and_an_unknown_age_weigh_less(self):
        v, h = Velocity('{"account_requests": 3}'), MemHost()
        rows = [{"account": 5, "org": 9, "ts_ms": T0 + i} for i in range(6)]
        score, labels, reason = signals(v, rows, h)[-1]
        # excess 1/2 at 6 vs 3, times f32(0.8) * 0.5 for an unknown age in an org.
        self.assertEqual(score, f32(f32(0.5) * f32(f32(0.8) * 0.5)))
        self.assertEqual(labels, ["account-rate"])
        self.assertEqual(reason, "6 requests by this account in 1h (budget 3); account age unknown")

    def test_ungranted_fields_mean_no_signal(self):
        v, h = Velocity("{}"), MemHost()
        scores, notes = v.score(batch([{"ts_ms": T0 + i} for i in range(5000)]), h.counter_add)
        self.assertTrue(all(s == 0.0 for s in scores))
        self.assertEqual((notes, len(h.seen)), ([], 0))

    def test_config_typos_are_refused(self):
        with self.assertRaisesRegex(ValueError, "acount_requests"):
            Velocity('{"acount_requests": 5}')
        with self.assertRaises(ValueError):
            Velocity('{"window_ms": 0}')
        with self.assertRaises(ValueError):
            Velocity('{"window_ms": 1.5}')
        Velocity("{}")
        Velocity("")


if __name__ == "__main__":
    unittest.main()
