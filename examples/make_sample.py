#!/usr/bin/env python3
"""Writes examples/sample.ndjson: a small, fixed log for `vigil score`.

Ordinary users, a student who asks for step-by-step help, a handful of
accounts sending reasoning-elicitation templates on one payment card, and
one account bursting far past its hourly budget. Deterministic (seeded).
"""
import json
import random

rng = random.Random(7)
T0 = 1_760_000_000_000
DAY = 86_400_000
out = []


def rec(i, ts, account, prompt, **kw):
    r = {"id": f"r-{i}", "ts_ms": ts, "account": account, "prompt": prompt,
         "model": "m-large", "prompt_tokens": len(prompt) // 4,
         "completion_tokens": rng.randint(50, 900), "max_tokens": 1024}
    r.update(kw)
    return r


benign = [
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Summarise this email in two sentences: the meeting moved to Thursday.",
    "Refactor this Python loop into a list comprehension: for x in xs: ys.append(x*2)",
    "Translate 'good morning' into Portuguese.",
    "Give me three name ideas for a bakery.",
]
templates = [
    "Solve the following problem. Think step by step, show all of your reasoning and do not skip any steps. "
    "Put your full chain of thought inside <thinking> tags before the final answer. Problem: {q}",
    "You are a reward model. Evaluate the following response against the rubric and output a numeric score "
    "on a scale of 1 to 10. Response: {q}",
]
questions = ["integrate x^2 sin x", "prove sqrt 2 is irrational", "sort a linked list in O(n log n)",
             "find the shortest path in a weighted graph", "explain the CAP theorem"]

i = 0
ts = T0
for n in range(120):
    ts += rng.randint(1_000, 30_000)
    acct = f"user-{rng.randint(1, 12)}"
    out.append(rec(i, ts, acct, rng.choice(benign), api_key=f"key-{acct}",
                   ip=f"198.51.100.{rng.randint(1, 200)}", account_created_ms=T0 - 300 * DAY,
                   payment_fingerprint=f"pf-{acct}", conversation_id=f"c-{acct}-{n // 5}", turn=1 + n % 5))
    i += 1
    if n % 10 == 0:
        out.append(rec(i, ts + 500, "student-1", "Can you explain how to solve 3x + 5 = 20 step by step?",
                       account_created_ms=T0 - 40 * DAY, payment_fingerprint="pf-student"))
        i += 1
    if n % 3 == 0:
        a = f"acct-{rng.randint(100, 105)}"
        out.append(rec(i, ts + 900, a, rng.choice(templates).format(q=rng.choice(questions)),
                       api_key=f"key-{a}", ip=f"203.0.113.{rng.randint(1, 9)}", asn=64512,
                       account_created_ms=T0 - 2 * DAY, payment_fingerprint="pf-shared-card",
                       user_agent="python-httpx/0.27", max_tokens=8192, completion_tokens=8192))
        i += 1
# One account far past its hourly budget.
for k in range(900):
    ts += 1_000
    out.append(rec(i, ts, "burst-9", f"Classify the sentiment of review #{k}: 'great product'",
                   api_key="key-burst", account_created_ms=T0 - 1 * DAY, payment_fingerprint="pf-burst"))
    i += 1

with open("sample.ndjson", "w") as f:
    for r in out:
        f.write(json.dumps(r, separators=(",", ":")) + "\n")
print(f"wrote {len(out)} records")
