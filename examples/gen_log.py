#!/usr/bin/env python3
"""Writes N request records (NDJSON) to stdout, for throughput runs.

    python3 examples/gen_log.py 1000000 > /tmp/log-1m.ndjson

Prompts are about 500 bytes; 20,000 accounts, keys, cards and IPs; one
record in 50 uses a reasoning-elicitation template. Deterministic (seeded).
This is load, not ground truth: the campaign simulator is separate.
"""
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = random.Random(1)
T0 = 1_760_000_000_000
words = ("data model request system value user account network service report query table function "
         "answer summary policy review design cache memory thread process result example").split()
cot = ("Think step by step, show all of your reasoning and do not skip any steps. "
       "Put your full chain of thought in <thinking> tags. ")
out = sys.stdout
buf = []
for i in range(n):
    a = rng.randrange(20_000)
    text = " ".join(rng.choice(words) for _ in range(70))[:470]
    if i % 50 == 0:
        text = cot + text[: 470 - len(cot)]
    r = {"id": f"r-{i}", "ts_ms": T0 + i * 20, "account": f"acct-{a}", "org": f"org-{a % 900}",
         "api_key": f"key-{a}", "ip": f"10.{a % 250}.{(a // 250) % 250}.{a % 7}", "asn": 64500 + a % 40,
         "user_agent": "client/1.2", "model": "m-large", "prompt": text, "prompt_tokens": 120,
         "completion_tokens": rng.randrange(50, 2000), "max_tokens": 2048,
         "account_created_ms": T0 - (a % 400) * 86_400_000, "payment_fingerprint": f"pf-{a % 15_000}",
         "conversation_id": f"c-{a}-{i // 1000}", "turn": 1 + i % 4}
    buf.append(json.dumps(r, separators=(",", ":")))
    if len(buf) == 10_000:
        out.write("\n".join(buf) + "\n")
        buf.clear()
if buf:
    out.write("\n".join(buf) + "\n")
