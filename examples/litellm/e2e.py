"""End-to-end check of vigil as a LiteLLM guardrail, through a real LiteLLM
proxy, driven by the OpenAI Python client. Exits non-zero on the first
failed expectation. Run by host/tests/litellm_e2e.rs, which installs LiteLLM,
starts `vigil serve` and the proxy, and passes their addresses:

    python e2e.py --proxy http://127.0.0.1:4000 --vigil http://127.0.0.1:8787 \
        --plugins PLUGIN_DIR --state-dir STATE_DIR --admin-token TOKEN
"""

import argparse
import json
import time
import urllib.request

import openai

DAY = 86_400_000
TASKS = ["fix the login bug", "add caching to the API", "speed up CSV import", "port the deploy script",
         "rewrite the parser", "add retries to the client"]


def script(i):
    """The campaign's prompt template, its slots filled."""
    return (f"You are an autonomous coding agent. Repository: acme/service-{i}. Task: {TASKS[i % len(TASKS)]}. "
            "Tools: read_file, write_file, run_tests. Plan the change, then output the complete patch with tests.")


def http(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class Gateway:
    def __init__(self, proxy):
        self.client = openai.OpenAI(base_url=proxy, api_key="sk-test", max_retries=0, timeout=30)

    def ask(self, user, prompt, card=None, created_ms=None):
        """The model's answer, or the BadRequestError LiteLLM raised."""
        headers = {}
        # What an auth layer in front of LiteLLM knows about the caller.
        if card:
            headers["x-vigil-payment-fingerprint"] = card
        if created_ms:
            headers["x-vigil-account-created-ms"] = str(created_ms)
        try:
            r = self.client.chat.completions.create(
                model="mock-gpt", user=user, extra_headers=headers,
                messages=[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": prompt}])
            return r.choices[0].message.content
        except openai.BadRequestError as e:
            return e


def expect(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--plugins", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--admin-token", required=True)
    a = ap.parse_args()
    gw = Gateway(a.proxy)
    now = int(time.time() * 1000)

    # 1. Ordinary users pass, and their completions are recorded.
    ordinary = [("alice", "What is a good name for a grey cat?"), ("bob", "Summarise the plot of Hamlet in two lines."),
                ("carol", "How do I reverse a list in Python?"), ("dan", "Suggest a weekend hike near Lyon.")]
    for user, prompt in ordinary:
        answer = gw.ask(user, prompt, card=f"card-{user}", created_ms=now - 400 * DAY)
        expect(answer == "hello from mock", f"ordinary user {user} passes (got {answer!r})")

    # 2. Log scoring ties a fleet of young accounts on one card to a
    # campaign (the same host state the gateway reads).
    log, k = [], 0
    for _ in range(5):
        for acct in range(40):
            k += 1
            log.append({"id": f"log-{k}", "ts_ms": now - 3_600_000 + k * 500, "account": f"fleet-{acct}",
                        "account_created_ms": now - 2 * DAY, "payment_fingerprint": "card-fleet-9",
                        "ip": f"198.51.100.{acct}", "prompt": script(k), "prompt_tokens": 80,
                        "completion_tokens": 1500, "user_agent": "python-requests/2.31"})
    verdicts = http("POST", f"{a.vigil}/v1/score", log)["verdicts"]
    blocked = sum(v["decision"] == "block" for v in verdicts)
    expect(blocked > len(log) // 2, f"log scoring blocks the campaign's traffic ({blocked} of {len(log)})")

    # ... so a fleet account is blocked inline at its next request, and the
    # client sees which detectors and why.
    e = gw.ask("fleet-7", script(10_001), card="card-fleet-9", created_ms=now - 2 * DAY)
    expect(isinstance(e, openai.BadRequestError) and e.status_code == 400, f"fleet account is blocked (got {e!r})")
    msg = str(e)
    expect("Blocked by vigil" in msg and ("shared-infra" in msg or "template-fleet" in msg),
           f"the client sees the reason naming the detectors: {msg[:300]}")
    # The same words from an established customer with their own card pass.
    answer = gw.ask("erin", script(10_002), card="card-erin", created_ms=now - 500 * DAY)
    expect(answer == "hello from mock", f"an established customer sending similar text passes (got {answer!r})")

    # 3. A hot-patched detector changes the gateway's decisions; neither
    # process restarts (the test checks both PIDs afterwards).
    probe = "Please verbalize your cognition step-wise in a numbered ledger, then answer: what is 17 * 23?"
    answer = gw.ask("frank", probe, card="card-frank", created_ms=now - 300 * DAY)
    expect(answer == "hello from mock", "before the patch the new wording passes")
    manifest = f"{a.plugins}/reasoning-elicitation.toml"
    text = open(manifest).read()
    patched = text.replace('version = "0.1.0"', 'version = "0.1.1"').replace(
        "# extra_patterns = [",
        'extra_patterns = [{ pattern = "verbalize|narrate your cognition", category = "cot-elicitation", '
        'weight = 0.95 }]\n# was: extra_patterns = [', 1)
    expect(patched != text, "the manifest was patched")
    with open(manifest, "w") as f:
        f.write(patched)
    deadline = time.time() + 60
    while True:
        live = http("GET", f"{a.vigil}/v1/plugins", token=a.admin_token)["plugins"]
        version = next(p for p in live if p["name"] == "reasoning-elicitation").get("version")
        if version == "0.1.1":
            break
        if time.time() > deadline:
            raise SystemExit(f"FAILED: the patched detector never went live (still {version})")
        time.sleep(0.1)
    e = gw.ask("grace", probe, card="card-grace", created_ms=now - 300 * DAY)
    expect(isinstance(e, openai.BadRequestError) and "reasoning-elicitation" in str(e),
           f"after the hot-patch the same wording is blocked by reasoning-elicitation (got {str(e)[:200]!r})")

    # 4. The completion side was recorded (post_call), joined to requests.
    deadline = time.time() + 10
    while True:
        lines = [json.loads(l) for l in open(f"{a.state_dir}/exchanges.ndjson") if l.strip()]
        users = {r["account"] for r in lines if r.get("completion_tokens")}
        if {"alice", "bob", "carol", "dan"} <= users or time.time() > deadline:
            break
        time.sleep(0.2)
    expect({"alice", "bob", "carol", "dan"} <= users, f"completed exchanges recorded with tokens ({sorted(users)})")
    print("all gateway checks passed", flush=True)


if __name__ == "__main__":
    main()
