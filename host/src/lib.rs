//! The `vigil` command: its command line ([`cli`]), one module per command
//! ([`commands`]), the HTTP service ([`service`]) and a cluster node on
//! NATS ([`cluster`]), on top of the [`vigil_runtime`] library, which holds
//! everything a program embeds, and the bundled plugins ([`plugins`]).
//! Imports run up that list's reverse: plugins, service, cluster,
//! commands, cli.

pub mod plugins;

pub mod service;

pub mod cluster;

pub mod commands;

pub mod cli;
