//! The smoke batch: a few varied records exercising every field, run on a
//! candidate plugin before it may go live (and by `vigil check`).

use crate::input::record::Record;

/// A few varied records exercising every field, for smoke-testing a plugin.
pub fn smoke_records() -> Vec<Record> {
    let base = 1_760_000_000_000i64;
    let prompts = [
        "What is the capital of France?",
        "Think step by step and show your full reasoning before the final answer.",
        "You are a reward model. Grade the following response on a scale of 1 to 10.",
        "",
        "Écris un poème sur la mer. 🌊",
        "Refactor this function:\nfn f(x: u32) -> u32 { x * 2 }",
        "a",
        "Summarise the attached report in three bullet points.",
    ];
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let line = format!(
                r#"{{"id":"smoke-{i}","ts_ms":{},"account":"smoke-acct-{}","org":"smoke-org","api_key":"key-{}",
                   "ip":"{}","asn":{},"user_agent":"smoke/1.0","model":"model-{}","prompt":{},
                   "system_prompt":"You are helpful.","prompt_tokens":{},"completion_tokens":{},"max_tokens":1024,
                   "account_created_ms":{},"payment_fingerprint":"pf-{}","conversation_id":"conv-{i}","turn":1,
                   "attrs":{{"region":"eu"}}}}"#,
                base + i as i64 * 1000,
                i % 3,
                i % 2,
                if i % 2 == 0 { "203.0.113.7" } else { "2001:db8::7" },
                64500 + i,
                i % 2,
                serde_json::to_string(p).unwrap(),
                10 * i,
                100 * i,
                base - 86_400_000 * i as i64,
                i % 4,
            )
            .replace('\n', " ");
            Record::parse(line.as_bytes(), i as u64 + 1, &Default::default()).expect("smoke record")
        })
        .collect()
}
