"""Sequential LiteLLM guardrail calls against a running `vigil serve`:
latency percentiles and how many were answered by the failure policy.

    python3 bench/guardrail_latency.py http://127.0.0.1:8787 1000

Accounts rotate over 50, so on a cluster node most calls go to other
partitions' owners. Standard library only.
"""

import json
import sys
import time
import urllib.request
import uuid


def main() -> None:
    base, n = sys.argv[1].rstrip("/"), int(sys.argv[2])
    tag = uuid.uuid4().hex[:8]
    times, degraded = [], 0
    for i in range(n):
        body = json.dumps({
            "input_type": "request",
            "litellm_call_id": f"lat-{tag}-{i}",
            "structured_messages": [{"role": "user", "content": f"Explain step by step how to solve problem {i}"}],
            "model": "m",
            "request_data": {"user_api_key_end_user_id": f"acct-{i % 50}"},
        }).encode()
        req = urllib.request.Request(f"{base}/beta/litellm_basic_guardrail_api", data=body,
                                     headers={"content-type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req) as r:
            answer = json.load(r)
        times.append((time.perf_counter() - t) * 1000)
        degraded += "degraded" in answer["vigil"]
    times.sort()
    pick = lambda q: times[min(n - 1, int(n * q))]
    print(f"{base}: {n} calls, p50 {pick(0.5):.1f} ms, p90 {pick(0.9):.1f} ms, p99 {pick(0.99):.1f} ms, "
          f"max {times[-1]:.1f} ms, answered by policy {degraded}")


if __name__ == "__main__":
    main()
