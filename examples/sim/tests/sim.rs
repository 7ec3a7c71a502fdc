//! The simulator's contract: deterministic by seed, truth and stream agree,
//! no label in the stream, time order, bounded memory on a long run.

use std::collections::{HashMap, HashSet};

use vigil_sim::{Request, Scenario, Simulator, population};

fn small(seed: u64) -> Scenario {
    let mut s = Scenario::default_eval(seed);
    s.benign.accounts = 2_000;
    for c in &mut s.campaigns {
        c.accounts = 20;
    }
    s
}

fn run(s: &Scenario, limit: usize) -> (Vec<Request>, Vec<String>) {
    let pop = population(s);
    let truth = pop.truth(s).map(|t| serde_json::to_string(&t).unwrap()).collect();
    (Simulator::new(s, &pop).take(limit).collect(), truth)
}

#[test]
fn same_seed_same_traffic_other_seed_other_traffic() {
    let (a, ta) = run(&small(7), 20_000);
    let (b, tb) = run(&small(7), 20_000);
    assert_eq!(a, b);
    assert_eq!(ta, tb);
    let (c, tc) = run(&small(8), 20_000);
    assert_ne!(a, c);
    assert_ne!(ta, tc);
}

#[test]
fn truth_and_stream_agree_and_time_is_ordered() {
    let s = small(3);
    let (reqs, truth) = run(&s, usize::MAX);
    let truth: HashMap<String, serde_json::Value> = truth
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["account"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let mut seen_campaign = HashSet::new();
    let mut last = i64::MIN;
    for r in &reqs {
        let t = truth.get(&r.account).unwrap_or_else(|| panic!("{} not in truth", r.account));
        if t["label"] == "campaign" {
            seen_campaign.insert(r.account.clone());
        }
        assert!(r.ts_ms >= last, "time order");
        last = r.ts_ms;
        assert!(r.ts_ms >= s.start_ms && r.ts_ms <= s.end_ms());
    }
    assert_eq!(seen_campaign.len(), s.campaign_accounts(), "every campaign account sends");
    let campaign_in_truth = truth.values().filter(|t| t["label"] == "campaign").count();
    assert_eq!(campaign_in_truth, s.campaign_accounts());
    // Campaign members are quiet one by one: around their configured volume.
    let per_account = reqs.iter().filter(|r| seen_campaign.contains(&r.account)).count() / seen_campaign.len();
    assert!((10..=80).contains(&per_account), "{per_account}");
}

#[test]
fn no_label_leaks_into_the_request_stream() {
    let s = small(5);
    let (reqs, truth) = run(&s, usize::MAX);
    const SPEC_FIELDS: &[&str] = &[
        "id",
        "ts_ms",
        "account",
        "org",
        "api_key",
        "ip",
        "asn",
        "user_agent",
        "model",
        "prompt",
        "system_prompt",
        "prompt_tokens",
        "completion_tokens",
        "max_tokens",
        "account_created_ms",
        "payment_fingerprint",
        "conversation_id",
        "turn",
        "attrs",
    ];
    // Every label-ish value the truth file uses.
    let mut labels: HashSet<String> =
        ["benign", "campaign", "tuning", "held-out"].iter().map(|s| s.to_string()).collect();
    for l in &truth {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for k in ["persona", "campaign", "family", "kind"] {
            if let Some(x) = v[k].as_str() {
                labels.insert(x.to_string());
            }
        }
    }
    for r in &reqs {
        let v = serde_json::to_value(r).unwrap();
        for (k, val) in v.as_object().unwrap() {
            assert!(SPEC_FIELDS.contains(&k.as_str()), "non-SPEC field {k}");
            if let Some(text) = val.as_str() {
                assert!(!labels.contains(text), "label {text:?} as the value of {k}");
                if k != "prompt" {
                    for l in &labels {
                        assert!(!text.contains(l.as_str()) || l.len() < 3, "{l:?} inside {k}: {text}");
                    }
                }
            }
        }
        // Same shape of identifiers for everyone.
        assert!(r.account.starts_with("acct-") && r.account.len() == 17, "{}", r.account);
    }
}
