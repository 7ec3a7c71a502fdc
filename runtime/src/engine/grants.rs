//! A plugin's grants applied to a batch: the request it may see (ungranted
//! fields empty) and `resolve`, which answers only for granted fields of
//! the batch being scored.

use std::collections::HashMap;

use crate::batch::Batch;
use crate::batch::handles::{Handles, IdField, field_text};
use crate::engine::bindings::Request;
use crate::input::record::Record;
use crate::plugin::manifest::Grants;

/// The record as a plugin with grants `g` may see it: ungranted fields
/// empty (public so the benchmark's native side can be checked against it).
pub fn granted_request(g: &Grants, r: &Record, h: &Handles) -> Request {
    let pick = |granted: bool, v: u64| if granted { v } else { 0 };
    Request {
        ts_ms: r.ts_ms,
        account: pick(g.account, h.account),
        org: pick(g.org, h.org),
        api_key: pick(g.api_key, h.api_key),
        ip: pick(g.ip, h.ip),
        ip_prefix: pick(g.ip_prefix || g.ip, h.ip_prefix),
        asn: r.asn.filter(|_| g.asn),
        user_agent: pick(g.user_agent, h.user_agent),
        model: pick(g.model, h.model),
        payment_fingerprint: pick(g.payment_fingerprint, h.payment_fingerprint),
        conversation: pick(g.conversation_id, h.conversation),
        turn: r.turn.filter(|_| g.turn),
        prompt: if g.prompt { Some(r.prompt.clone().unwrap_or_default()) } else { None },
        system_prompt: if g.system_prompt { r.system_prompt.clone() } else { None },
        prompt_tokens: r.prompt_tokens.filter(|_| g.prompt_tokens),
        completion_tokens: r.completion_tokens.filter(|_| g.completion_tokens),
        max_tokens: r.max_tokens.filter(|_| g.max_tokens),
        account_created_ms: r.account_created_ms.filter(|_| g.account_created_ms),
        attrs: match &r.attrs {
            Some(a) if g.all_attrs || !g.attrs.is_empty() => {
                a.iter().filter(|(k, _)| g.attr(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => Vec::new(),
        },
    }
}

/// `resolve` for one plugin on one batch: the text behind a handle of a
/// granted field. The index is built on the first call, over granted
/// fields only; start a new `Resolver` for each batch.
#[derive(Default)]
pub struct Resolver {
    index: Option<HashMap<(IdField, u64), usize>>,
}

impl Resolver {
    /// The text behind `handle` in `batch`, if `f` is granted and the handle
    /// came in that batch.
    pub fn resolve(&mut self, batch: &Batch, grants: &Grants, f: IdField, handle: u64) -> Option<String> {
        if handle == 0 || !grants.id_field(f) {
            return None;
        }
        let index = self.index.get_or_insert_with(|| {
            let mut index = HashMap::new();
            for (i, h) in batch.handles.iter().enumerate() {
                for g in IdField::ALL.into_iter().filter(|g| grants.id_field(*g)) {
                    let v = h.get(g);
                    if v != 0 {
                        index.entry((g, v)).or_insert(i);
                    }
                }
            }
            index
        });
        let i = *index.get(&(f, handle))?;
        field_text(&batch.records[i], f)
    }
}
