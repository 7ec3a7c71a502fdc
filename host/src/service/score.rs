//! `POST /v1/score`: a JSON array or NDJSON of request records in, one
//! verdict per accepted record out, in input order, and the bad records
//! reported or the whole body refused, as the policy says.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use vigil_runtime::config::{BadInputPolicy, Config};
use vigil_runtime::error::BadInput;
use vigil_runtime::input::admit::{Admission, Origin};
use vigil_runtime::input::body::{BodyError, BodyLimits, parse_body};
use vigil_runtime::input::record::Record;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::score::cases::CaseBook;
use vigil_runtime::score::combine::Verdict;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::util::{lock, now_ms};

use crate::service::api::{ApiError, RecordError};
use crate::service::remote::{Answer, Remote};

// A struct, not `json!`, so verdict fields keep their documented order.
#[derive(Serialize)]
pub struct ScoreResponse {
    verdicts: Vec<Verdict>,
    errors: Vec<RecordError>,
}

/// Log scoring over HTTP: bodies parsed, admitted against the stream's
/// window (shared by every request) and scored in batches.
pub struct LogScoring {
    pub scorer: Arc<Scorer>,
    config: Config,
    /// Event-time window and recent ids, shared by every request.
    admission: Mutex<Admission>,
    /// Numbers requests, for duplicate-id messages.
    requests: AtomicU64,
    cases: Arc<Mutex<CaseBook>>,
    metrics: Arc<Metrics>,
}

impl LogScoring {
    pub fn new(scorer: Arc<Scorer>, config: &Config, cases: Arc<Mutex<CaseBook>>, metrics: Arc<Metrics>) -> Self {
        Self {
            scorer,
            admission: Mutex::new(Admission::new(&config.input)),
            requests: AtomicU64::new(0),
            config: config.clone(),
            cases,
            metrics,
        }
    }

    fn limits(&self, policy: BadInputPolicy) -> BodyLimits {
        let s = &self.config.server;
        BodyLimits {
            max_records: s.max_records_per_request,
            max_errors: s.max_errors_per_request,
            stop_at_first_error: policy == BadInputPolicy::Fail,
        }
    }

    /// Parses, admits and scores one body. CPU work, bounded: call it on
    /// a blocking thread.
    pub fn score_body(&self, body: &[u8], policy: BadInputPolicy) -> Result<ScoreResponse, ApiError> {
        let s = &self.config.server;
        let parsed = parse_body(body, &self.config.input, &self.limits(policy))?;
        let req = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut records = Vec::with_capacity(parsed.len());
        let mut errors = Vec::new();
        {
            let mut admission = lock(&self.admission);
            // A body refused whole leaves no trace in the stream's window.
            let mark = admission.mark();
            for (i, r) in parsed.into_iter().enumerate() {
                match r.and_then(|r| admission.admit(&r, Origin::Record(req, i as u64)).map(|()| r)) {
                    Ok(r) => records.push(r),
                    Err(b) => {
                        let (e, message) = self.bad(b);
                        if policy == BadInputPolicy::Fail {
                            admission.rollback(mark);
                            return Err(ApiError { status: StatusCode::BAD_REQUEST, message, records: vec![e] });
                        }
                        errors.push(e);
                    }
                }
            }
            if errors.len() > s.max_errors_per_request {
                admission.rollback(mark);
                return Err(BodyError::TooManyErrors(s.max_errors_per_request).into());
            }
        }
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(records.len());
        let size = self.scorer.scoring.batch_size;
        let mut rest = records;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(size));
            let batch = self.scorer.batch(rest);
            let times: Vec<i64> = batch.records.iter().map(|r| r.ts_ms).collect();
            let (v, _) = self.scorer.score(batch);
            lock(&self.cases).observe_all(&v, &times);
            verdicts.extend(v);
            rest = tail;
        }
        Ok(ScoreResponse { verdicts, errors })
    }

    fn bad(&self, b: BadInput) -> (RecordError, String) {
        self.metrics.add("vigil_bad_input_total", vec![], 1.0);
        let field = b.field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default();
        let message = format!("record {}{field}: {}", b.line, b.message);
        (RecordError { index: b.line, field: b.field, message: b.message }, message)
    }

    /// A cluster node's side of a body: parsed and checked here (the record
    /// stream's duplicate window stands in for admission), to be scored on
    /// the owners. Each record comes with its place in the body.
    pub fn check_body(&self, body: &[u8], policy: BadInputPolicy) -> Result<Checked, ApiError> {
        let parsed = parse_body(body, &self.config.input, &self.limits(policy))?;
        let mut checked = Checked::default();
        for (i, r) in parsed.into_iter().enumerate() {
            match r {
                Ok(r) => checked.records.push((i as u64, r)),
                Err(b) => {
                    let (e, message) = self.bad(b);
                    if policy == BadInputPolicy::Fail {
                        return Err(ApiError { status: StatusCode::BAD_REQUEST, message, records: vec![e] });
                    }
                    checked.errors.push(e);
                }
            }
        }
        Ok(checked)
    }

    /// Sends checked records to their owners and answers with what came
    /// back within `cluster.call_timeout_ms`. A record without a verdict
    /// is reported as an error saying why; those stored on the stream are
    /// still scored, and their verdicts published.
    pub async fn score_remote(&self, checked: Checked, remote: Arc<dyn Remote>) -> ScoreResponse {
        let Checked { records, mut errors } = checked;
        let timeout = Duration::from_millis(self.config.cluster.call_timeout_ms);
        let (places, records): (Vec<u64>, Vec<Record>) = records.into_iter().unzip();
        let answers = remote.score(records, timeout).await;
        let mut verdicts = Vec::with_capacity(answers.len());
        for (index, a) in places.into_iter().zip(answers) {
            let message = match a {
                Answer::Verdict(v) => {
                    verdicts.push(*v);
                    continue;
                }
                Answer::Duplicate => "its id is already on the record stream: not scored again".to_string(),
                Answer::Late => format!(
                    "no verdict from its partition's owner within {} ms; the record is stored and will be \
                     scored, its verdict published on the verdict stream",
                    timeout.as_millis()
                ),
                Answer::Failed(e) => format!("not stored on the record stream: {e}"),
            };
            self.metrics.add("vigil_cluster_unanswered_total", vec![], 1.0);
            errors.push(RecordError { index, field: None, message });
        }
        errors.sort_by_key(|e| e.index);
        let now = vec![now_ms(); verdicts.len()];
        lock(&self.cases).observe_all(&verdicts, &now);
        ScoreResponse { verdicts, errors }
    }
}

/// A body's records, checked, with their places in the body.
#[derive(Default)]
pub struct Checked {
    records: Vec<(u64, Record)>,
    errors: Vec<RecordError>,
}
