//! Bytes -> request records: NDJSON lines ([`lines`], [`record`]), HTTP
//! bodies ([`body`]), and what a record must pass against the stream so far
//! before it is scored ([`admit`]).

pub mod admit;
pub mod body;
pub mod lines;
pub mod record;
