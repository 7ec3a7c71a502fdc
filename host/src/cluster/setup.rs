//! The streams and buckets a cluster runs on, created once by `vigil
//! cluster setup` (idempotent: a second run checks and changes nothing).
//! The partition count is fixed here: nodes read it, and records already
//! published sit in the partition it gave them.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, Context, kv, object_store, stream};
use bytes::Bytes;

use super::{LEASES, NODES, REQUESTS, SETTINGS, SHARED, SNAPSHOTS, VERDICTS};

/// The handles a node or publisher works with.
#[derive(Clone)]
pub struct Cluster {
    pub js: Context,
    pub partitions: u32,
    pub leases: kv::Store,
    pub nodes: kv::Store,
    pub snapshots: object_store::ObjectStore,
}

/// How long JetStream remembers a message id to answer a republish as a
/// duplicate. A node that dies re-scores at most a snapshot interval plus a
/// lease of records, well within this, so most repeats never reach the
/// verdict stream.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Creates what is missing: the record, verdict and shared streams, the
/// buckets, and the partition count (which must match if it is set).
pub async fn ensure(js: &Context, partitions: u32) -> anyhow::Result<()> {
    if !(1..=4096).contains(&partitions) {
        bail!("--partitions must be 1..=4096, got {partitions}");
    }
    for (name, subject) in [(REQUESTS, "vigil.p.>"), (VERDICTS, "vigil.v.>"), (SHARED, "vigil.s.>")] {
        js.get_or_create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {name}"))?;
    }
    let settings = kv_bucket(js, SETTINGS, Duration::ZERO).await?;
    kv_bucket(js, LEASES, Duration::ZERO).await?;
    kv_bucket(js, NODES, Duration::from_secs(60)).await?;
    if js.get_object_store(SNAPSHOTS).await.is_err() {
        js.create_object_store(object_store::Config { bucket: SNAPSHOTS.into(), ..Default::default() })
            .await
            .context("creating the snapshot object store")?;
    }
    match settings.create("partitions", Bytes::from(partitions.to_string())).await {
        Ok(_) => Ok(()),
        Err(_) => {
            let have = read_partitions(&settings).await?;
            if have != partitions {
                bail!(
                    "this cluster has {have} partitions, fixed when it was set up; changing the count means a new \
                     stream (docs/cluster.md, \"Changing the partition count\")"
                );
            }
            Ok(())
        }
    }
}

/// A key-value bucket, created as the stream `create_key_value` would make.
/// (async-nats 0.51's `create_key_value` first reads the account's
/// JetStream info, which it cannot parse from nats-server 2.9: it expects
/// fields 2.9 does not send.)
async fn kv_bucket(js: &Context, bucket: &str, max_age: Duration) -> anyhow::Result<kv::Store> {
    if let Ok(s) = js.get_key_value(bucket).await {
        return Ok(s);
    }
    js.create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating key-value bucket {bucket}"))?;
    js.get_key_value(bucket).await.with_context(|| format!("opening key-value bucket {bucket}"))
}

async fn read_partitions(settings: &kv::Store) -> anyhow::Result<u32> {
    let v =
        settings.get("partitions").await?.context("the cluster has no partition count: run `vigil cluster setup`")?;
    std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).context("the cluster's partition count is unreadable")
}

/// A JetStream context on the server at `url`.
pub async fn connect(url: &str) -> anyhow::Result<Context> {
    let client = async_nats::ConnectOptions::new()
        .name("vigil")
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    Ok(jetstream::new(client))
}

/// Connects and opens what `ensure` created.
pub async fn open(url: &str) -> anyhow::Result<Cluster> {
    let js = connect(url).await?;
    let missing = || "run `vigil cluster setup` first";
    let settings = js.get_key_value(SETTINGS).await.context(missing())?;
    let partitions = read_partitions(&settings).await?;
    Ok(Cluster {
        leases: js.get_key_value(LEASES).await.context(missing())?,
        nodes: js.get_key_value(NODES).await.context(missing())?,
        snapshots: js.get_object_store(SNAPSHOTS).await.context(missing())?,
        partitions,
        js,
    })
}

/// The nats-server account mapping that partitions a gateway's records
/// (`vigil.req.<account>`) exactly as `vigil publish` does.
pub fn mapping(partitions: u32) -> String {
    format!(
        "# nats-server.conf: gateways publish records to vigil.req.<account>\nmappings = {{\n  \"vigil.req.*\": \
         \"vigil.p.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}\"\n}}\n"
    )
}
