//! Scoring: batches through every live plugin ([`pipeline`]), signals
//! combined into verdicts ([`combine`]), accounts linked into campaigns
//! ([`campaigns`]), verdicts rolled up into cases ([`cases`]).

pub mod campaigns;
pub mod cases;
pub mod combine;
pub mod pipeline;
