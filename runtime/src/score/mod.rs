//! Scoring: batches through every live plugin ([`pipeline`]), signals
//! combined into verdicts ([`combine`]), accounts linked into campaigns
//! ([`campaigns`]), verdicts rolled up into cases ([`cases`]), two plugin
//! sets' verdicts on the same traffic side by side ([`compare`]), and
//! candidates in shadow compared on live traffic ([`shadow`]).

pub mod campaigns;
pub mod cases;
pub mod combine;
pub mod compare;
pub mod pipeline;
pub mod shadow;
