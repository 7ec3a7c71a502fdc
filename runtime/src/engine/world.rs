//! The contract versions a plugin may target, side by side: a component is
//! linked against the one it was built for ([`Linked`]), and its calls go
//! through that version's types into the host's own ([`Signal`], [`Info`]).
//! 0.1.x takes a record per request; 0.2.x takes columns
//! ([`grants::granted_batch`](crate::engine::grants::granted_batch)) and
//! returns parallel arrays.

use std::fmt;

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use crate::batch::Batch;
use crate::engine::bindings::{v0_1, v0_2};
use crate::engine::grants::{granted_batch, granted_request};
use crate::engine::store::StoreData;
use crate::plugin::manifest::Grants;

/// A detector's opinion of one request, whichever version produced it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signal {
    /// In [0, 1]; 0 with no labels means "nothing to say".
    pub score: f32,
    /// Short machine-readable tags.
    pub labels: Vec<String>,
    /// One line for an analyst.
    pub reason: String,
}

/// What a plugin's `info()` says about itself.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// The version it reports.
    pub version: String,
    /// One line on what it detects.
    pub description: String,
}

/// The version of `vigil:detector` a component was built against, read from
/// its imports (`vigil:detector/types@0.2.0`, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract(pub String);

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vigil:detector@{}", self.0)
    }
}

impl Contract {
    /// The newest version this host serves: what `vigil new` and the SDK
    /// target.
    pub const CURRENT: &str = "0.2.0";

    /// Whether it is of the current minor line (0.2.x).
    pub fn is_current(&self) -> bool {
        self.0.split('.').take(2).eq(Self::CURRENT.split('.').take(2))
    }

    /// The version in a component's imports, if it names one.
    pub fn of(component: &Component) -> Option<Contract> {
        let ty = component.component_type();
        let engine = component.engine();
        ty.imports(engine).find_map(|(name, _)| {
            let rest = name.strip_prefix("vigil:detector/")?;
            let (_, version) = rest.split_once('@')?;
            Some(Contract(version.to_string()))
        })
    }
}

/// A component linked against the world it targets.
#[derive(Clone)]
pub struct Linked {
    /// The version it was built against.
    pub contract: Contract,
    pre: Pre,
}

#[derive(Clone)]
enum Pre {
    V0_1(v0_1::DetectorPre<StoreData>),
    V0_2(v0_2::DetectorPre<StoreData>),
}

/// An instance of a [`Linked`] component.
pub(crate) enum Bound {
    V0_1(v0_1::Detector),
    V0_2(v0_2::Detector),
}

/// Why a batch produced no signals, short of a trap.
pub(crate) enum Refusal {
    /// The plugin returned an error.
    Plugin(String),
    /// It returned something the contract does not allow.
    Invalid(String),
}

impl Linked {
    /// Links the pre-instantiated component to the world whose exports it
    /// has: 0.2 first, then 0.1.
    pub(crate) fn new(component: &Component, pre: InstancePre<StoreData>) -> Result<Self, String> {
        let named = Contract::of(component);
        let (pre, contract) = match v0_2::DetectorPre::new(pre.clone()) {
            Ok(p) => (Pre::V0_2(p), named.unwrap_or_else(|| Contract(Contract::CURRENT.into()))),
            Err(e2) => match v0_1::DetectorPre::new(pre) {
                Ok(p) => (Pre::V0_1(p), named.unwrap_or_else(|| Contract("0.1".into()))),
                Err(_) => return Err(format!("does not export the vigil:detector world: {e2:#}")),
            },
        };
        Ok(Linked { contract, pre })
    }

    pub(crate) async fn instantiate(&self, store: &mut Store<StoreData>) -> wasmtime::Result<Bound> {
        Ok(match &self.pre {
            Pre::V0_1(p) => Bound::V0_1(p.instantiate_async(store).await?),
            Pre::V0_2(p) => Bound::V0_2(p.instantiate_async(store).await?),
        })
    }
}

impl Bound {
    pub(crate) async fn info(&self, store: &mut Store<StoreData>) -> wasmtime::Result<Info> {
        Ok(match self {
            Bound::V0_1(d) => {
                let i = d.call_info(store).await?;
                Info { version: i.version, description: i.description }
            }
            Bound::V0_2(d) => {
                let i = d.call_info(store).await?;
                Info { version: i.version, description: i.description }
            }
        })
    }

    pub(crate) async fn init(
        &self,
        store: &mut Store<StoreData>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Bound::V0_1(d) => d.call_init(store, config).await,
            Bound::V0_2(d) => d.call_init(store, config).await,
        }
    }

    /// Scores `batch` as `grants` allow, in the plugin's own version.
    pub(crate) async fn score(
        &self,
        store: &mut Store<StoreData>,
        grants: &Grants,
        batch: &Batch,
    ) -> wasmtime::Result<Result<Vec<Signal>, Refusal>> {
        match self {
            Bound::V0_1(d) => {
                let reqs: Vec<v0_1::Request> =
                    batch.records.iter().zip(&batch.handles).map(|(r, h)| granted_request(grants, r, h)).collect();
                Ok(match d.call_score(store, &reqs).await? {
                    Ok(signals) => Ok(signals
                        .into_iter()
                        .map(|s| Signal { score: s.score, labels: s.labels, reason: s.reason })
                        .collect()),
                    Err(m) => Err(Refusal::Plugin(m)),
                })
            }
            Bound::V0_2(d) => {
                let cols = granted_batch(grants, batch);
                Ok(match d.call_score(store, &cols).await? {
                    Ok(signals) => signals_of(signals, batch.len()).map_err(Refusal::Invalid),
                    Err(m) => Err(Refusal::Plugin(m)),
                })
            }
        }
    }
}

/// 0.2's parallel arrays as one signal per request: a score each, and at
/// most one note (labels and reason) per request, in range.
pub(crate) fn signals_of(s: v0_2::vigil::detector::types::Signals, n: usize) -> Result<Vec<Signal>, String> {
    if s.scores.len() != n {
        return Err(format!("returned {} scores for {n} requests", s.scores.len()));
    }
    let mut out: Vec<Signal> = s.scores.into_iter().map(|score| Signal { score, ..Signal::default() }).collect();
    let mut noted = vec![false; n];
    for note in s.notes {
        let i = note.index as usize;
        if i >= n {
            return Err(format!("a note for request {i}, of {n}"));
        }
        if std::mem::replace(&mut noted[i], true) {
            return Err(format!("two notes for request {i}"));
        }
        out[i].labels = note.labels;
        out[i].reason = note.reason;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use v0_2::vigil::detector::types::{Note, Signals};

    fn note(index: u32, label: &str) -> Note {
        Note { index, labels: vec![label.into()], reason: format!("why {index}") }
    }

    #[test]
    fn parallel_arrays_become_one_signal_per_request() {
        let s = Signals { scores: vec![0.0, 0.5, 0.0], notes: vec![note(1, "a")] };
        let out = signals_of(s, 3).unwrap();
        assert_eq!(out[0], Signal::default());
        assert_eq!(out[1], Signal { score: 0.5, labels: vec!["a".into()], reason: "why 1".into() });
    }

    #[test]
    fn notes_out_of_range_or_twice_and_short_scores_are_refused() {
        let short = Signals { scores: vec![0.0], notes: vec![] };
        assert_eq!(signals_of(short, 2).unwrap_err(), "returned 1 scores for 2 requests");
        let far = Signals { scores: vec![0.0; 2], notes: vec![note(2, "x")] };
        assert_eq!(signals_of(far, 2).unwrap_err(), "a note for request 2, of 2");
        let twice = Signals { scores: vec![0.0; 2], notes: vec![note(1, "x"), note(1, "y")] };
        assert_eq!(signals_of(twice, 2).unwrap_err(), "two notes for request 1");
    }
}
