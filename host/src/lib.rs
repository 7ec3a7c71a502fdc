//! The `vigil` command: its command line ([`cli`]), one module per command
//! ([`commands`]), and the HTTP service ([`service`]), on top of the
//! [`vigil_runtime`] library, which holds everything a program embeds, and
//! the bundled plugins ([`plugins`]). Imports run up that list's reverse:
//! plugins, service, commands, cli.

pub mod plugins;

pub mod service;

pub mod commands;

pub mod cli;
