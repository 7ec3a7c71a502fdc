//! `vigil serve`: start the service, handle signals (SIGTERM/SIGINT drain
//! and save, SIGHUP reloads), and exit non-zero if the final save fails.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};
use vigil_runtime::config::Config;

use crate::cluster::node::Node;
use crate::service::Server;
use crate::service::reload::Trigger;

#[derive(clap::Args)]
pub struct Args {
    /// Plugin directory of NAME.wasm + NAME.toml pairs (watched).
    #[arg(long, value_name = "DIR")]
    plugins: PathBuf,
    /// Address to listen on (default from config: 127.0.0.1:8787).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Where host state snapshots and the audit log live.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// An admin token (audit name "env"), beside those in the config.
    #[arg(long, env = "VIGIL_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// Run as a cluster node: score the partitions of this NATS JetStream
    /// cluster that fall to this node (docs/cluster.md).
    #[arg(long, value_name = "nats://HOST:PORT")]
    source: Option<String>,
    /// This node's name in the cluster (overrides `cluster.node_id`).
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
    /// The key LiteLLM must send in `x-api-key` (overrides `guardrail.api_key`).
    #[arg(long, env = "VIGIL_GUARDRAIL_KEY", hide_env_values = true, value_name = "KEY")]
    guardrail_key: Option<String>,
}

pub fn run(mut config: Config, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(d) = args.state_dir {
        config.server.state_dir = d;
    }
    if let Some(t) = args.admin_token.filter(|t| !t.is_empty()) {
        config.server.admin_tokens.insert("env".into(), t);
    }
    if let Some(k) = args.guardrail_key.filter(|k| !k.is_empty()) {
        config.guardrail.api_key = Some(k);
    }
    if let Some(n) = args.node_id {
        config.cluster.node_id = Some(n);
    }
    let listen = args.listen.unwrap_or_else(|| config.server.listen.clone());
    let plugins = args.plugins;
    if !plugins.is_dir() {
        anyhow::bail!("plugin directory {} does not exist", plugins.display());
    }
    // Signals are caught from before the server announces itself, so a
    // supervisor's SIGTERM right after "listening" still drains and saves.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut term, mut int, mut hup) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let server = if args.source.is_some() {
        Server::start_clustered(config.clone(), &plugins, &listen)?
    } else {
        Server::start(config.clone(), &plugins, &listen)?
    };
    let live = server.registry.snapshot().plugins.len();
    eprintln!("vigil: listening on {} with {live} plugins from {}", server.addr, plugins.display());
    let mut node = match &args.source {
        Some(url) => {
            let n = Node::start(url, config, server.scorer.clone(), server.state.clone(), server.metrics.clone())?;
            server.set_remote(n.router.clone());
            eprintln!("vigil: cluster node {} on {url}", n.me.node);
            Some(n)
        }
        None => None,
    };
    let failed = node.as_mut().and_then(|n| n.failed.take());
    // Resolves once, and only if the node stops by itself; a node thread
    // that ended without a word (it panicked) is a failure too.
    let node_failed = async {
        match failed {
            Some(f) => f.await.unwrap_or_else(|_| anyhow::anyhow!("the cluster node's thread ended")),
            None => std::future::pending().await,
        }
    };
    let mut node_failed = std::pin::pin!(node_failed);
    let failure = rt.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break None,
                _ = int.recv() => break None,
                e = &mut node_failed => break Some(e),
                _ = hup.recv() => {
                    let _ = server.reload.send(Trigger::Now("SIGHUP"));
                }
            }
        }
    });
    if let Some(n) = node {
        eprintln!("vigil: handing partitions back");
        n.stop();
    }
    eprintln!("vigil: draining and saving state");
    // A supervisor must see a failed final save: the state since the last
    // snapshot is lost.
    server.stop()?;
    match failure {
        Some(e) => Err(e.context("the cluster node stopped")),
        None => Ok(ExitCode::SUCCESS),
    }
}
