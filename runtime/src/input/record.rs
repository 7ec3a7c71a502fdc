//! A request record (docs/contract.md): parsed from one line, exactly one
//! JSON object. A line that is not a valid record becomes a `BadInput`
//! naming the line and the field, never a silent drop.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::Input;
use crate::error::BadInput;

/// One request record (docs/contract.md), as the host keeps it. Serializes
/// back to an input line with the fields that are set.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Record {
    /// The request's id, unique in the stream.
    pub id: String,
    /// When the request was made (event time), Unix milliseconds.
    pub ts_ms: i64,
    /// The account that made the request.
    pub account: String,
    /// The account's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The API key the request used (or an identifier of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The client's IP address, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The autonomous system the IP belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Tokens in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// Tokens in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// The request's cap on completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// When the account was created, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_created_ms: Option<i64>,
    /// Identifies the account's payment method (a card, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<String>,
    /// The conversation the request is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The request's turn in its conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// Other attributes, by key (at most 64); a plugin sees only the keys
    /// it is granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<BTreeMap<String, String>>,
}

impl Record {
    /// Parses one line: exactly one JSON object. `line` is 1-based, for
    /// the error.
    pub fn parse(text: &[u8], line: u64, limits: &Input) -> Result<Record, BadInput> {
        let bad = |field: Option<&str>, message: String| BadInput { line, field: field.map(str::to_string), message };
        if text.len() > limits.max_line_bytes {
            return Err(bad(
                None,
                format!("line is {} bytes, over the limit of {}", text.len(), limits.max_line_bytes),
            ));
        }
        // Fast path: valid UTF-8, one record, nothing after it.
        let utf8 = std::str::from_utf8(text);
        if let Ok(t) = utf8 {
            let mut de = serde_json::Deserializer::from_str(t);
            if let Ok(r) = Record::deserialize(&mut de).and_then(|r| de.end().map(|()| r)) {
                r.check(limits).map_err(|(f, m)| bad(Some(f), m))?;
                return Ok(r);
            }
        }
        // Slow path, to say what is wrong and where: parse again tracking
        // the field (from bytes, so invalid UTF-8 is found inside its field).
        let mut de = serde_json::Deserializer::from_slice(text);
        match serde_path_to_error::deserialize::<_, Record>(&mut de) {
            Err(e) => {
                let path = e.path().to_string();
                let mut msg = strip_position(&e.into_inner().to_string());
                if utf8.is_err() && msg.contains("unicode") {
                    msg = format!("not valid UTF-8 ({msg})");
                }
                let field =
                    if path == "." || path == "?" || path.is_empty() { missing_field(&msg) } else { Some(path) };
                Err(bad(field.as_deref(), msg))
            }
            // The record itself parsed: what is wrong comes after it, or
            // lies outside the fields vigil reads.
            Ok(_) => match (de.end(), utf8) {
                (Err(_), _) => Err(bad(
                    None,
                    "more than one JSON value on the line (or text after the record): a line holds exactly one record"
                        .into(),
                )),
                (Ok(()), Err(e)) => Err(bad(
                    None,
                    format!("not valid UTF-8 at byte {} (outside the fields vigil reads)", e.valid_up_to()),
                )),
                // Not reached (the fast path accepts such a line), but input
                // never panics the host.
                (Ok(()), Ok(_)) => Err(bad(None, "not a valid record".into())),
            },
        }
    }

    /// Checks the values against the limits (what `parse` does after
    /// parsing): the field at fault and why.
    pub fn check(&self, limits: &Input) -> Result<(), (&'static str, String)> {
        if self.id.is_empty() {
            return Err(("id", "must not be empty".into()));
        }
        if self.account.is_empty() {
            return Err(("account", "must not be empty".into()));
        }
        let short = [
            ("id", Some(&self.id)),
            ("account", Some(&self.account)),
            ("org", self.org.as_ref()),
            ("api_key", self.api_key.as_ref()),
            ("ip", self.ip.as_ref()),
            ("user_agent", self.user_agent.as_ref()),
            ("model", self.model.as_ref()),
            ("payment_fingerprint", self.payment_fingerprint.as_ref()),
            ("conversation_id", self.conversation_id.as_ref()),
        ];
        for (name, v) in short {
            if let Some(v) = v
                && v.len() > limits.max_field_bytes
            {
                return Err((name, format!("{} bytes, over the limit of {}", v.len(), limits.max_field_bytes)));
            }
        }
        for (name, v) in [("prompt", &self.prompt), ("system_prompt", &self.system_prompt)] {
            if let Some(v) = v
                && v.len() > limits.max_prompt_bytes
            {
                return Err((name, format!("{} bytes, over the limit of {}", v.len(), limits.max_prompt_bytes)));
            }
        }
        if let Some(ip) = &self.ip
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(("ip", format!("{ip:?} is not an IPv4 or IPv6 address")));
        }
        if let Some(attrs) = &self.attrs {
            if attrs.len() > 64 {
                return Err(("attrs", format!("{} keys, over the limit of 64", attrs.len())));
            }
            if let Some((k, _)) =
                attrs.iter().find(|(k, v)| k.len() > limits.max_field_bytes || v.len() > limits.max_field_bytes)
            {
                return Err(("attrs", format!("key or value of {k:?} over {} bytes", limits.max_field_bytes)));
            }
        }
        Ok(())
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Record, BadInput> {
        Record::parse(s.as_bytes(), 7, &Input::default())
    }

    #[test]
    fn minimal_and_full_records_parse() {
        let r = parse(r#"{"id":"r1","ts_ms":5,"account":"a"}"#).unwrap();
        assert_eq!((r.id.as_str(), r.ts_ms, r.account.as_str()), ("r1", 5, "a"));
        let r = parse(
            r#"{"id":"r2","ts_ms":1,"account":"a","ip":"2001:db8::1","asn":64500,"prompt":"hi",
                "prompt_tokens":3,"turn":2,"attrs":{"region":"eu"},"unknown_field":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(r.asn, Some(64500));
        assert_eq!(r.attrs.unwrap()["region"], "eu");
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse(r#"{"id":"r1","ts_ms":5}"#).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (7, Some("account")));
        let e = parse(r#"{"id":"r1","ts_ms":"yesterday","account":"a"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ts_ms"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse(r#"{"id":"r1","ts_ms":5,"account":"a","attrs":{"k":1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("attrs.k"));
        let e = parse(r#"{"id":"r1","ts_ms":5,"account":"a","prompt_tokens":-3}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prompt_tokens"));
        let e = parse(r#"{"id":"r1","ts_ms":5,"account":"a","ip":"not-an-ip"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ip"));
        let e = parse("{not json").unwrap_err();
        assert_eq!(e.field, None);
        assert_eq!(e.to_string().split(':').next().unwrap(), "line 7");
        let e = Record::parse(b"{\"id\":\"\xff\"}", 3, &Input::default()).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
        // The field with the bad bytes is named.
        let e = Record::parse(
            b"{\"id\":\"r\",\"ts_ms\":1,\"account\":\"a\",\"prompt\":\"\xff\xfe\"}",
            3,
            &Input::default(),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prompt"), "{e}");
        assert!(e.message.contains("UTF-8"), "{e}");
    }

    #[test]
    fn a_line_holds_exactly_one_record() {
        for line in [
            r#"{"id":"t4","ts_ms":1,"account":"a"} {"id":"t5","ts_ms":1,"account":"b"}"#,
            "{\"id\":\"t4\",\"ts_ms\":1,\"account\":\"a\"}\r{\"id\":\"t5\",\"ts_ms\":1,\"account\":\"b\"}",
            r#"{"id":"t4","ts_ms":1,"account":"a"} trailing"#,
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.message.contains("exactly one record"), "{line}: {e}");
        }
        parse("{\"id\":\"t4\",\"ts_ms\":1,\"account\":\"a\"}  \t").unwrap();
    }

    #[test]
    fn oversized_values_are_refused() {
        let limits = Input { max_prompt_bytes: 10, ..Input::default() };
        let e = Record::parse(br#"{"id":"r","ts_ms":1,"account":"a","prompt":"01234567890"}"#, 1, &limits).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prompt"));
    }
}
