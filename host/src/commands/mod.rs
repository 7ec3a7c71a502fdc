//! One module per `vigil` command.

pub mod bundled;
pub mod check;
pub mod cluster;
pub mod demo;
pub mod keys;
pub mod new;
pub mod replay;
pub mod score;
pub mod serve;
pub mod test;
