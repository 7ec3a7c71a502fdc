//! A batch as a detector sees it: its requests, and the word features of
//! their prompts and system prompts. In vigil the features are the host's,
//! computed once per batch for every plugin; natively (unit tests) they are
//! computed on first use by the same code, so a detector scores the same.

use std::cell::OnceCell;
use std::ops::Deref;

use crate::Request;
use crate::bindings::vigil::detector::types as wit;
use crate::text::TextFeatures;

/// The requests of one call to `score`, in order.
#[derive(Debug, Default)]
pub struct Batch {
    requests: Vec<Request>,
    prompt: OnceCell<TextFeatures>,
    system: OnceCell<TextFeatures>,
}

impl Batch {
    pub fn new(requests: Vec<Request>) -> Self {
        Self { requests, ..Self::default() }
    }

    /// A batch with word features computed elsewhere (the host's, say).
    pub fn with_text(requests: Vec<Request>, prompt: TextFeatures, system: TextFeatures) -> Self {
        Self { requests, prompt: OnceCell::from(prompt), system: OnceCell::from(system) }
    }

    /// A batch of copies of `requests` (for tests).
    pub fn of(requests: &[Request]) -> Self {
        Self::new(requests.to_vec())
    }

    /// The word features of each request's prompt (`TextFeatures::words(i)`
    /// is request i's).
    pub fn prompt_text(&self) -> &TextFeatures {
        self.prompt.get_or_init(|| TextFeatures::compute(self.requests.iter().map(|r| r.prompt.as_deref())))
    }

    /// The word features of each request's system prompt.
    pub fn system_text(&self) -> &TextFeatures {
        self.system.get_or_init(|| TextFeatures::compute(self.requests.iter().map(|r| r.system_prompt.as_deref())))
    }

    /// Refills the batch from the host's columns, reusing every request's
    /// buffers: after the first batches, nothing is allocated per request.
    /// `Err` says which column breaks the contract's shape.
    pub(crate) fn refill(&mut self, b: wit::Batch) -> Result<(), String> {
        let n = b.len as usize;
        let ok = |name: &str, len: usize| {
            if len == 0 || len == n { Ok(()) } else { Err(format!("column {name}: {len} entries for {n} requests")) }
        };
        if b.ts_ms.len() != n {
            return Err(format!("column ts-ms: {} entries for {n} requests", b.ts_ms.len()));
        }
        let handles = [
            ("account", &b.account),
            ("org", &b.org),
            ("api-key", &b.api_key),
            ("ip", &b.ip),
            ("ip-prefix", &b.ip_prefix),
            ("user-agent", &b.user_agent),
            ("model", &b.model),
            ("payment-fingerprint", &b.payment_fingerprint),
            ("conversation", &b.conversation),
        ];
        for (name, c) in handles {
            ok(name, c.len())?;
        }
        let numbers = [
            ("asn", &b.asn),
            ("turn", &b.turn),
            ("prompt-tokens", &b.prompt_tokens),
            ("completion-tokens", &b.completion_tokens),
            ("max-tokens", &b.max_tokens),
        ];
        for (name, c) in numbers {
            ok(name, c.len())?;
        }
        ok("account-created-ms", b.account_created_ms.len())?;
        self.requests.truncate(n);
        self.requests.resize_with(n, Request::default);
        let at = |c: &[u64], i: usize| c.get(i).copied().unwrap_or(0);
        let opt = |c: &[Option<u32>], i: usize| c.get(i).copied().flatten();
        for (i, r) in self.requests.iter_mut().enumerate() {
            r.ts_ms = b.ts_ms[i];
            r.account = at(&b.account, i);
            r.org = at(&b.org, i);
            r.api_key = at(&b.api_key, i);
            r.ip = at(&b.ip, i);
            r.ip_prefix = at(&b.ip_prefix, i);
            r.user_agent = at(&b.user_agent, i);
            r.model = at(&b.model, i);
            r.payment_fingerprint = at(&b.payment_fingerprint, i);
            r.conversation = at(&b.conversation, i);
            r.asn = opt(&b.asn, i);
            r.turn = opt(&b.turn, i);
            r.prompt_tokens = opt(&b.prompt_tokens, i);
            r.completion_tokens = opt(&b.completion_tokens, i);
            r.max_tokens = opt(&b.max_tokens, i);
            r.account_created_ms = b.account_created_ms.get(i).copied().flatten();
            r.attrs.clear();
        }
        self.prompt = fill(&mut self.requests, b.prompt, "prompt", |r| &mut r.prompt)?;
        self.system = fill(&mut self.requests, b.system_prompt, "system-prompt", |r| &mut r.system_prompt)?;
        for a in b.attrs {
            let r = self.requests.get_mut(a.index as usize).ok_or_else(|| format!("attr for request {}", a.index))?;
            r.attrs.push((a.key, a.value));
        }
        Ok(())
    }
}

/// Copies one text column into each request's field (reusing its string)
/// and keeps the column's features for the batch.
fn fill(
    requests: &mut [Request],
    column: Option<wit::Text>,
    name: &str,
    field: fn(&mut Request) -> &mut Option<String>,
) -> Result<OnceCell<TextFeatures>, String> {
    let Some(t) = column else {
        requests.iter_mut().for_each(|r| *field(r) = None);
        return Ok(OnceCell::new());
    };
    let n = requests.len();
    if t.ends.len() != n {
        return Err(format!("column {name}: {} ends for {n} requests", t.ends.len()));
    }
    let mut absent = t.absent.iter().map(|&i| i as usize).peekable();
    let mut start = 0usize;
    for (i, r) in requests.iter_mut().enumerate() {
        let end = t.ends[i] as usize;
        let text = t.data.get(start..end).ok_or_else(|| format!("column {name}: bad range for request {i}"))?;
        start = end;
        if absent.next_if_eq(&i).is_some() {
            *field(r) = None;
            continue;
        }
        match field(r) {
            Some(s) => {
                s.clear();
                s.push_str(text);
            }
            slot => *slot = Some(text.to_string()),
        }
    }
    let features = TextFeatures {
        words: t.words,
        word_ends: t.word_ends,
        word_digits: t.word_digits,
        fingerprints: t.fingerprints,
        fingerprint_words: t.fingerprint_words,
    };
    features.check(n).map_err(|e| format!("column {name}: {e}"))?;
    Ok(OnceCell::from(features))
}

impl Deref for Batch {
    type Target = [Request];
    fn deref(&self) -> &[Request] {
        &self.requests
    }
}

impl From<Vec<Request>> for Batch {
    fn from(requests: Vec<Request>) -> Self {
        Self::new(requests)
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a Request;
    type IntoIter = std::slice::Iter<'a, Request>;
    fn into_iter(self) -> Self::IntoIter {
        self.requests.iter()
    }
}
