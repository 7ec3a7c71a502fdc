//! `vigil publish`: request records (NDJSON) onto the record stream, each
//! on its account's partition, with the record id as JetStream's message
//! id, so publishing the same file again stores nothing twice (within the
//! stream's duplicate window).

use std::collections::VecDeque;
use std::io::BufRead;

use anyhow::{Context as _, bail};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use vigil_runtime::config::{BadInputPolicy, Input};
use vigil_runtime::input::lines::{Line, LineReader, too_long};
use vigil_runtime::input::record::Record;

use super::request_subject;
use super::setup::Cluster;

/// Acks awaited at once: enough to keep the connection busy.
const IN_FLIGHT: usize = 4096;

/// What a publish did.
#[derive(Debug, Default)]
pub struct Published {
    pub stored: u64,
    /// Already in the stream (same record id within the duplicate window).
    pub duplicates: u64,
    pub bad: u64,
}

/// Publishes every record of `input`; a bad line is reported with its
/// number and skipped or fatal, as `on_bad` says.
pub async fn run<R: BufRead>(
    c: &Cluster,
    input: R,
    limits: &Input,
    on_bad: BadInputPolicy,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Published> {
    let mut lines = LineReader::new(input, limits.max_line_bytes);
    let mut buf = Vec::new();
    let mut acks: VecDeque<PublishAckFuture> = VecDeque::new();
    let mut done = Published::default();
    while let Some(line) = lines.next_line(&mut buf).context("reading records")? {
        // The reader drops a first line's byte-order mark.
        let n = match line {
            Line::Text(n) => n,
            Line::TooLong(n, len) => {
                bad(&mut done, on_bad, format!("bad input: {}", too_long(n, len, limits.max_line_bytes)))?;
                continue;
            }
        };
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let r = match Record::parse(&buf, n, limits) {
            Ok(r) => r,
            Err(e) => {
                bad(&mut done, on_bad, format!("bad input: {e}"))?;
                continue;
            }
        };
        let msg = PublishMessage::build().payload(Bytes::copy_from_slice(&buf)).message_id(&r.id);
        let ack =
            c.js.send_publish(request_subject(&r.account, c.partitions), msg)
                .await
                .with_context(|| format!("publishing line {n}"))?;
        acks.push_back(ack);
        if acks.len() >= IN_FLIGHT {
            settle(acks.pop_front().expect("non-empty"), &mut done).await?;
            progress(done.stored + done.duplicates);
        }
    }
    while let Some(a) = acks.pop_front() {
        settle(a, &mut done).await?;
    }
    progress(done.stored + done.duplicates);
    Ok(done)
}

async fn settle(ack: PublishAckFuture, done: &mut Published) -> anyhow::Result<()> {
    let a = ack.await.context("the stream did not confirm a record")?;
    if a.duplicate {
        done.duplicates += 1;
    } else {
        done.stored += 1;
    }
    Ok(())
}

fn bad(done: &mut Published, on_bad: BadInputPolicy, msg: String) -> anyhow::Result<()> {
    done.bad += 1;
    match on_bad {
        BadInputPolicy::Fail => bail!("{msg}"),
        BadInputPolicy::Skip => {
            if done.bad <= 20 {
                eprintln!("vigil: skipped {msg}");
            }
            Ok(())
        }
    }
}
