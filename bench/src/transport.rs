//! Section 2: the same batch handed to a guest as typed component-model
//! values, a record per request (`list<request>`, contract 0.1) or columns
//! with the host's text features (contract 0.2's `batch`, built by the
//! host's own `granted_batch`), vs as JSON bytes (`list<u8>`, serialized
//! by the host with serde_json, parsed in the guest with serde_json). The
//! guest (guests/transport) does the same trivial work on each; each
//! side's time includes building its input from the host's records.

use std::sync::Arc;

use serde::Serialize;
use vigil_runtime::batch::Batch;
use vigil_runtime::batch::handles::Handles;
use vigil_runtime::input::record::Record;
use vigil_runtime::plugin::manifest::Grants;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::progress;
use crate::stats::{median, timed};

mod bindings {
    wasmtime::component::bindgen!({ world: "transport", path: "wit" });
}

use bindings::vigil::bench::types as cols;
use bindings::{Request, Transport};

/// Every grant there is: what the typed and JSON sides hand over too.
fn every_grant() -> Grants {
    let all: Vec<String> = vigil_runtime::plugin::manifest::GRANTABLE
        .iter()
        .map(|(g, _)| if *g == "attrs.KEY" { "attrs.*" } else { g })
        .map(String::from)
        .collect();
    Grants::parse(&all).expect("every grant")
}

/// Contract 0.2's columns as vigil builds them for a plugin granted `g`
/// (everything), moved into this world's copy of the type.
fn columns(g: &Grants, b: &Batch) -> cols::Batch {
    use vigil_runtime::engine::bindings::v0_2::vigil::detector::types::Text;
    let c = vigil_runtime::engine::grants::granted_batch(g, b);
    let text = |t: Option<Text>| {
        t.map(|t| cols::Text {
            data: t.data,
            ends: t.ends,
            absent: t.absent,
            words: t.words,
            word_ends: t.word_ends,
            word_digits: t.word_digits,
            fingerprints: t.fingerprints,
            fingerprint_words: t.fingerprint_words,
        })
    };
    cols::Batch {
        len: c.len,
        ts_ms: c.ts_ms,
        account: c.account,
        org: c.org,
        api_key: c.api_key,
        ip: c.ip,
        ip_prefix: c.ip_prefix,
        user_agent: c.user_agent,
        model: c.model,
        payment_fingerprint: c.payment_fingerprint,
        conversation: c.conversation,
        asn: c.asn,
        turn: c.turn,
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        max_tokens: c.max_tokens,
        account_created_ms: c.account_created_ms,
        prompt: text(c.prompt),
        system_prompt: text(c.system_prompt),
        attrs: c.attrs.into_iter().map(|a| cols::Attr { index: a.index, key: a.key, value: a.value }).collect(),
    }
}

include!(concat!(env!("OUT_DIR"), "/transport_guest.rs"));

struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Every field, as a plugin granted everything sees it.
fn typed(r: &Record, h: &Handles) -> Request {
    Request {
        ts_ms: r.ts_ms,
        account: h.account,
        org: h.org,
        api_key: h.api_key,
        ip: h.ip,
        ip_prefix: h.ip_prefix,
        asn: r.asn,
        user_agent: h.user_agent,
        model: h.model,
        payment_fingerprint: h.payment_fingerprint,
        conversation: h.conversation,
        turn: r.turn,
        prompt: r.prompt.clone(),
        system_prompt: r.system_prompt.clone(),
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        max_tokens: r.max_tokens,
        account_created_ms: r.account_created_ms,
        attrs: r.attrs.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// The same request as JSON (field names as the guest's serde struct).
#[derive(Serialize)]
struct JsonRequest<'a> {
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
    prompt: Option<&'a str>,
    system_prompt: Option<&'a str>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    max_tokens: Option<u32>,
    account_created_ms: Option<i64>,
    attrs: Vec<(&'a str, &'a str)>,
}

fn json<'a>(r: &'a Record, h: &Handles) -> JsonRequest<'a> {
    JsonRequest {
        ts_ms: r.ts_ms,
        account: h.account,
        org: h.org,
        api_key: h.api_key,
        ip: h.ip,
        ip_prefix: h.ip_prefix,
        asn: r.asn,
        user_agent: h.user_agent,
        model: h.model,
        payment_fingerprint: h.payment_fingerprint,
        conversation: h.conversation,
        turn: r.turn,
        prompt: r.prompt.as_deref(),
        system_prompt: r.system_prompt.as_deref(),
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        max_tokens: r.max_tokens,
        account_created_ms: r.account_created_ms,
        attrs: r.attrs.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
    }
}

/// wasmtime's errors are their own type.
fn w(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// What the guest computes, computed here to check both answers.
fn expected(b: &Batch) -> u64 {
    b.records.iter().zip(&b.handles).fold(0, |acc, (r, h)| {
        acc.wrapping_add(r.prompt.as_ref().map_or(0, String::len) as u64) ^ (h.account & 0xffff_ffff_0000_0000)
    })
}

pub struct Measured {
    pub batch_size: usize,
    pub rounds: usize,
    pub typed_ns: f64,
    /// Contract 0.2's columns (text features included; computing them is
    /// not timed: the host does it once for every plugin).
    pub columns_ns: f64,
    pub json_ns: f64,
    /// Median over rounds of JSON time / typed time on the same batch.
    pub ratio: f64,
    pub json_bytes_per_record: f64,
}

/// `rounds` times, over `batches` in turn: typed then JSON, or JSON then
/// typed, alternating.
pub fn run(batches: &[Arc<Batch>], rounds: usize) -> anyhow::Result<Measured> {
    progress!("typed WIT vs JSON: {rounds} rounds of {} records", batches[0].len());
    let engine = Engine::new(&Config::new()).map_err(w)?;
    let mut linker = Linker::<Ctx>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(w)?;
    let component = Component::new(&engine, TRANSPORT_GUEST).map_err(w)?;
    let mut store = Store::new(&engine, Ctx { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
    let guest = Transport::instantiate(&mut store, &component, &linker).map_err(w)?;

    let (mut typed_ns, mut json_ns, mut ratios, mut bytes) = (Vec::new(), Vec::new(), Vec::new(), 0usize);
    let mut columns_ns = Vec::new();
    // Parsed once, outside the timed runs (a plugin's grants are parsed
    // once, at load).
    let grants = every_grant();
    // One untimed round first, so both sides start with a grown guest heap.
    for i in 0..=rounds {
        let b = &batches[i % batches.len()];
        let want = expected(b);
        let run_typed = |store: &mut Store<Ctx>| {
            timed(|| {
                let reqs: Vec<Request> = b.records.iter().zip(&b.handles).map(|(r, h)| typed(r, h)).collect();
                guest.call_typed(store, &reqs)
            })
        };
        let run_json = |store: &mut Store<Ctx>| {
            timed(|| {
                let reqs: Vec<JsonRequest<'_>> = b.records.iter().zip(&b.handles).map(|(r, h)| json(r, h)).collect();
                let body = serde_json::to_vec(&reqs).expect("serializable");
                let len = body.len();
                guest.call_json(store, &body).map(|r| (r, len))
            })
        };
        b.prompt_features();
        b.system_features();
        let run_columns = |store: &mut Store<Ctx>| timed(|| guest.call_columns(store, &columns(&grants, b)));
        // The three sides take turns going first.
        let ((t, tt), (c, tc), (j, tj)) = match i % 3 {
            0 => {
                let t = run_typed(&mut store);
                let c = run_columns(&mut store);
                (t, c, run_json(&mut store))
            }
            1 => {
                let c = run_columns(&mut store);
                let j = run_json(&mut store);
                (run_typed(&mut store), c, j)
            }
            _ => {
                let j = run_json(&mut store);
                let t = run_typed(&mut store);
                (t, run_columns(&mut store), j)
            }
        };
        let c = c.map_err(w)?;
        anyhow::ensure!(c == want, "transport guest answered {c} (columns), want {want}");
        let (j, len) = j.map_err(w)?;
        let (t, j) = (t.map_err(w)?, j.map_err(|e| anyhow::anyhow!("guest JSON parse: {e}"))?);
        anyhow::ensure!(t == want && j == want, "transport guest answered {t} (typed) and {j} (json), want {want}");
        if i > 0 {
            let n = b.len() as f64;
            typed_ns.push(tt.as_secs_f64() * 1e9 / n);
            columns_ns.push(tc.as_secs_f64() * 1e9 / n);
            json_ns.push(tj.as_secs_f64() * 1e9 / n);
            ratios.push(tj.as_secs_f64() / tt.as_secs_f64().max(1e-12));
            bytes += len;
        }
    }
    Ok(Measured {
        batch_size: batches[0].len(),
        rounds,
        typed_ns: median(&typed_ns),
        columns_ns: median(&columns_ns),
        json_ns: median(&json_ns),
        ratio: median(&ratios),
        json_bytes_per_record: bytes as f64 / (rounds * batches[0].len()).max(1) as f64,
    })
}
