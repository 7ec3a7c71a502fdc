#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
//! The guest of the transport benchmark (bench/src/transport.rs): one
//! trivial pass over a batch, received either as typed component-model
//! values or as JSON bytes. Built for wasm32-wasip2 by bench/build.rs.

wit_bindgen::generate!({ world: "transport", path: "../../wit" });

use serde::Deserialize;

/// The JSON form of a request: the same fields as the WIT record, owned like
/// the typed side's lifted values.
#[derive(Deserialize)]
#[allow(dead_code)] // parsed (that is the cost measured), mostly not read
struct JsonRequest {
    ts_ms: i64,
    account: u64,
    org: u64,
    api_key: u64,
    ip: u64,
    ip_prefix: u64,
    asn: Option<u32>,
    user_agent: u64,
    model: u64,
    payment_fingerprint: u64,
    conversation: u64,
    turn: Option<u32>,
    prompt: Option<String>,
    system_prompt: Option<String>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    max_tokens: Option<u32>,
    account_created_ms: Option<i64>,
    attrs: Vec<(String, String)>,
}

/// Sum of prompt byte lengths in the low 32 bits, xor of account handles
/// folded into the high ones: cheap, and depends on every record.
fn fold(acc: u64, prompt_len: usize, account: u64) -> u64 {
    acc.wrapping_add(prompt_len as u64) ^ (account & 0xffff_ffff_0000_0000)
}

struct Transport;

impl Guest for Transport {
    fn typed(batch: Vec<Request>) -> u64 {
        batch.iter().fold(0, |acc, r| fold(acc, r.prompt.as_ref().map_or(0, String::len), r.account))
    }

    fn columns(b: Batch) -> u64 {
        let ends = b.prompt.as_ref().map_or(&[][..], |t| &t.ends[..]);
        let mut start = 0;
        (0..b.len as usize).fold(0, |acc, i| {
            let end = ends.get(i).map_or(start, |&e| e as usize);
            let len = end - start;
            start = end;
            fold(acc, len, b.account.get(i).copied().unwrap_or(0))
        })
    }

    fn json(batch: Vec<u8>) -> Result<u64, String> {
        let reqs: Vec<JsonRequest> = serde_json::from_slice(&batch).map_err(|e| e.to_string())?;
        Ok(reqs.iter().fold(0, |acc, r| fold(acc, r.prompt.as_ref().map_or(0, String::len), r.account)))
    }
}

export!(Transport);
