//! A plugin's grants applied to a batch: what it may see, in its contract
//! version's shape (0.1: a record per request, ungranted fields empty; 0.2:
//! columns, ungranted columns empty), and `resolve`, which answers only for
//! granted fields of the batch being scored.

use std::collections::HashMap;

use vigil_sdk::text::TextFeatures;

use crate::batch::Batch;
use crate::batch::handles::{Handles, IdField, field_text};
use crate::engine::bindings::v0_1::Request;
use crate::engine::bindings::v0_2::vigil::detector::types as v0_2;
use crate::input::record::Record;
use crate::plugin::manifest::Grants;

/// The batch as columns, as a plugin with grants `g` may see it: every
/// ungranted column empty, the text features of granted texts filled.
pub fn granted_batch(g: &Grants, b: &Batch) -> v0_2::Batch {
    let handles = |granted: bool, f: fn(&Handles) -> u64| -> Vec<u64> {
        if granted { b.handles.iter().map(f).collect() } else { Vec::new() }
    };
    let numbers = |granted: bool, f: fn(&Record) -> Option<u32>| -> Vec<Option<u32>> {
        if granted { b.records.iter().map(f).collect() } else { Vec::new() }
    };
    let mut attrs = Vec::new();
    if g.all_attrs || !g.attrs.is_empty() {
        for (i, r) in b.records.iter().enumerate() {
            for (k, v) in r.attrs.iter().flatten().filter(|(k, _)| g.attr(k)) {
                attrs.push(v0_2::Attr { index: i as u32, key: k.clone(), value: v.clone() });
            }
        }
    }
    v0_2::Batch {
        len: b.len() as u32,
        ts_ms: b.records.iter().map(|r| r.ts_ms).collect(),
        account: handles(g.account, |h| h.account),
        org: handles(g.org, |h| h.org),
        api_key: handles(g.api_key, |h| h.api_key),
        ip: handles(g.ip, |h| h.ip),
        ip_prefix: handles(g.ip_prefix || g.ip, |h| h.ip_prefix),
        user_agent: handles(g.user_agent, |h| h.user_agent),
        model: handles(g.model, |h| h.model),
        payment_fingerprint: handles(g.payment_fingerprint, |h| h.payment_fingerprint),
        conversation: handles(g.conversation_id, |h| h.conversation),
        asn: numbers(g.asn, |r| r.asn),
        turn: numbers(g.turn, |r| r.turn),
        prompt_tokens: numbers(g.prompt_tokens, |r| r.prompt_tokens),
        completion_tokens: numbers(g.completion_tokens, |r| r.completion_tokens),
        max_tokens: numbers(g.max_tokens, |r| r.max_tokens),
        account_created_ms: if g.account_created_ms {
            b.records.iter().map(|r| r.account_created_ms).collect()
        } else {
            Vec::new()
        },
        prompt: g.prompt.then(|| text(b.records.iter().map(|r| r.prompt.as_deref()), b.prompt_features())),
        system_prompt: g
            .system_prompt
            .then(|| text(b.records.iter().map(|r| r.system_prompt.as_deref()), b.system_features())),
        attrs,
    }
}

/// One text field as a column, with the batch's features of it.
fn text<'a>(texts: impl Iterator<Item = Option<&'a str>>, f: &TextFeatures) -> v0_2::Text {
    let (mut data, mut ends, mut absent) = (String::new(), Vec::new(), Vec::new());
    for (i, t) in texts.enumerate() {
        match t {
            Some(t) => data.push_str(t),
            None => absent.push(i as u32),
        }
        ends.push(data.len() as u32);
    }
    v0_2::Text {
        data,
        ends,
        absent,
        words: f.words.clone(),
        word_ends: f.word_ends.clone(),
        word_digits: f.word_digits.clone(),
        fingerprints: f.fingerprints.clone(),
        fingerprint_words: f.fingerprint_words.clone(),
    }
}

/// The record as a 0.1 plugin with grants `g` may see it: ungranted
/// fields empty.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::handles::Hasher64;
    use crate::config::Input;

    fn batch() -> Batch {
        let lines = [
            r#"{"id":"1","ts_ms":5,"account":"a","ip":"10.0.0.1","prompt":"Ticket 42 please","attrs":{"tier":"pro","x":"y"}}"#,
            r#"{"id":"2","ts_ms":6,"account":"b","org":"o","completion_tokens":9}"#,
        ];
        let records =
            lines.iter().enumerate().map(|(i, l)| Record::parse(l.as_bytes(), i as u64, &Input::default()).unwrap());
        Batch::new(records.collect(), &Hasher64::new([3; 16]))
    }

    #[test]
    fn columns_hold_exactly_the_granted_fields() {
        let b = batch();
        let none = granted_batch(&Grants::default(), &b);
        assert_eq!((none.len, none.ts_ms.clone()), (2, vec![5, 6]));
        assert!(none.account.is_empty() && none.ip.is_empty() && none.completion_tokens.is_empty());
        assert!(none.prompt.is_none() && none.attrs.is_empty());

        let g = Grants::parse(&["account".into(), "ip".into(), "prompt".into(), "attrs.tier".into()]).unwrap();
        let some = granted_batch(&g, &b);
        assert_eq!(some.account, vec![b.handles[0].account, b.handles[1].account]);
        assert_eq!(some.ip_prefix, vec![b.handles[0].ip_prefix, 0], "ip grants its prefix");
        assert!(some.org.is_empty() && some.completion_tokens.is_empty());
        assert_eq!(some.attrs.len(), 1);
        assert_eq!((some.attrs[0].index, some.attrs[0].key.as_str()), (0, "tier"));
        let t = some.prompt.unwrap();
        assert_eq!((t.data.as_str(), t.ends.clone(), t.absent.clone()), ("Ticket 42 please", vec![16, 16], vec![1]));
        let f = TextFeatures::compute([Some("Ticket 42 please"), None]);
        assert_eq!((t.words, t.word_ends, t.word_digits), (f.words, f.word_ends, f.word_digits));
        assert_eq!(t.fingerprints, f.fingerprints);
    }
}
