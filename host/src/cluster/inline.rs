//! Inline calls on a node (`POST /v1/score`, the LiteLLM guardrail): each
//! record goes on the record stream like any other, with the record id as
//! message id and a reply subject in a header. Its partition's owner
//! scores it in stream order against the account's state and, beside the
//! verdict stream, sends the verdict to that subject. The caller waits up
//! to its deadline; past it, the call's failure policy answers, and the
//! record, already stored, is still scored (by whichever node owns the
//! partition by then) with its verdict on the verdict stream. So an inline
//! call has the same effect on state as a published record: exactly once.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use vigil_runtime::input::record::Record;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::score::combine::Verdict;
use vigil_runtime::util::lock;

use super::request_subject;
use super::setup::Cluster;
use crate::service::remote::{Answer, Remote};

/// The header that carries where to send a record's verdict.
pub const REPLY_HEADER: &str = "Vigil-Reply";

/// Whether a record's reply subject is one a node may publish to: an
/// inbox, never a stream's subject (a producer could otherwise make nodes
/// write into the record or shared streams).
pub fn reply_allowed(subject: &str) -> bool {
    subject.starts_with("_INBOX.")
        && subject.len() <= 256
        && subject.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Sends records to their owners and waits for the verdicts. One inbox
/// subscription per node; each record waits on its own token in it.
pub struct Router {
    inner: Arc<Inner>,
    /// The cluster's runtime, where the bus's client lives.
    rt: tokio::runtime::Handle,
}

struct Inner {
    cluster: Cluster,
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
    metrics: Arc<Metrics>,
}

impl Router {
    /// Subscribes to this node's inbox. Call on the cluster's runtime.
    pub async fn start(cluster: Cluster, metrics: Arc<Metrics>) -> anyhow::Result<Router> {
        let client = cluster.js.client();
        let prefix = client.new_inbox();
        let mut replies = client.subscribe(format!("{prefix}.*")).await?;
        let inner = Arc::new(Inner { cluster, prefix, next: AtomicU64::new(0), waiting: Mutex::default(), metrics });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(m) = replies.next().await {
                let Some(inner) = weak.upgrade() else { break };
                let token = m.subject.rsplit('.').next().and_then(|t| t.parse::<u64>().ok());
                // A reply nobody waits for any more (past its deadline, or a
                // re-scored record's second verdict) is dropped.
                if let Some(tx) = token.and_then(|t| lock(&inner.waiting).remove(&t)) {
                    let _ = tx.send(m.payload);
                }
            }
        });
        Ok(Router { inner, rt: tokio::runtime::Handle::current() })
    }
}

impl Remote for Router {
    fn score(&self, records: Vec<Record>, deadline: Duration) -> BoxFuture<'static, Vec<Answer>> {
        let (inner, rt) = (self.inner.clone(), self.rt.clone());
        Box::pin(async move {
            let n = records.len();
            match rt.spawn(inner.call(records, deadline)).await {
                Ok(a) => a,
                Err(_) => (0..n).map(|_| Answer::Failed("the cluster node stopped".into())).collect(),
            }
        })
    }
}

impl Inner {
    async fn call(self: Arc<Self>, records: Vec<Record>, deadline: Duration) -> Vec<Answer> {
        let until = Instant::now() + deadline;
        let mut answers: Vec<Option<Answer>> = records.iter().map(|_| None).collect();
        let mut sent = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let token = self.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            lock(&self.waiting).insert(token, tx);
            let body = Bytes::from(serde_json::to_vec(r).expect("a record serializes"));
            let msg = PublishMessage::build()
                .payload(body)
                .message_id(&r.id)
                .header(REPLY_HEADER, format!("{}.{token}", self.prefix).as_str());
            let subject = request_subject(&r.account, self.cluster.partitions);
            match timeout_at(until, self.cluster.js.send_publish(subject, msg)).await {
                Ok(Ok(ack)) => sent.push((i, token, rx, ack)),
                Ok(Err(e)) => answers[i] = Some(self.forget(token, Answer::Failed(e.to_string()))),
                Err(_) => answers[i] = Some(self.forget(token, Answer::Failed("not sent within the deadline".into()))),
            }
        }
        let mut stored = Vec::with_capacity(sent.len());
        for (i, token, rx, ack) in sent {
            let a = match timeout_at(until, ack.into_future()).await {
                Ok(Ok(a)) if a.duplicate => self.forget(token, Answer::Duplicate),
                Ok(Ok(_)) => {
                    stored.push((i, token, rx));
                    continue;
                }
                Ok(Err(e)) => self.forget(token, Answer::Failed(e.to_string())),
                Err(_) => self.forget(
                    token,
                    Answer::Failed(
                        "the record stream did not confirm it within the deadline (it may be stored)".into(),
                    ),
                ),
            };
            answers[i] = Some(a);
        }
        for (i, token, rx) in stored {
            answers[i] = Some(match timeout_at(until, rx).await {
                Ok(Ok(body)) => match serde_json::from_slice::<Verdict>(&body) {
                    Ok(v) => Answer::Verdict(Box::new(v)),
                    Err(e) => Answer::Failed(format!("the owner's verdict is not readable: {e}")),
                },
                _ => self.forget(token, Answer::Late),
            });
        }
        let answers: Vec<Answer> = answers.into_iter().map(|a| a.expect("every record answered")).collect();
        for a in &answers {
            let kind = match a {
                Answer::Verdict(_) => "verdict",
                Answer::Late => "late",
                Answer::Duplicate => "duplicate",
                Answer::Failed(_) => "failed",
            };
            self.metrics.add("vigil_cluster_inline_total", vec![("answer", kind.to_string())], 1.0);
        }
        answers
    }

    fn forget(&self, token: u64, a: Answer) -> Answer {
        lock(&self.waiting).remove(&token);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::reply_allowed;

    #[test]
    fn only_inboxes_take_replies() {
        assert!(reply_allowed("_INBOX.abc123.42"));
        assert!(!reply_allowed("vigil.p.3.acct"));
        assert!(!reply_allowed("vigil.s.1"));
        assert!(!reply_allowed("_INBOX.*"));
        assert!(!reply_allowed("_INBOX.>"));
        assert!(!reply_allowed("_INBOX.a b"));
    }
}
