//! Scoring: batches through every live plugin ([`pipeline`]), signals
//! combined into verdicts ([`combine`]), verdicts rolled up into cases
//! ([`cases`]).

pub mod cases;
pub mod combine;
pub mod pipeline;
