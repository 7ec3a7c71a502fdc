//! Ground truth for vigil: a streaming simulator of LLM API traffic with
//! embedded distillation campaigns (request records plus a separate truth
//! file), and an evaluator that turns verdicts + truth into the numbers a
//! security team decides by.
//!
//! The simulator follows what labs published about real campaigns: tens of
//! thousands of quiet accounts; chain-of-thought elicitation, rubric
//! grading, capability sweeps over agentic coding; output-heavy, single-turn
//! requests; shared payment instruments; load-balanced, round-the-clock
//! timing; reseller proxies that carry real customers too; a pivot to a new
//! model within a day of its release. Benign traffic is made hard on
//! purpose: students who write "step by step", developers using agents,
//! offices behind one IP and card, cloud users, a heavy templated labelling
//! customer, new sign-ups, answers cut at max_tokens.

pub mod eval;
pub mod population;
pub mod scenario;
pub mod stream;
pub mod text;

use rand::SeedableRng;

pub use population::{Population, Truth};
pub use scenario::{Scenario, Style};
pub use stream::{Request, Simulator};

/// The population of a scenario, from its seed.
pub fn population(s: &Scenario) -> Population {
    let mut rng = text::R::seed_from_u64(s.seed);
    Population::build(s, &mut rng)
}
