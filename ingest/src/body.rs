//! Request bodies of `POST /v1/events`: NDJSON or a JSON array, validated like a file.
//!
//! Lines (or array elements, numbered from 1) are validated one by one; the result says per
//! line why it was rejected, so a client can fix and resend just those.

use recur_engine::event::EventValidator;
use recur_engine::store::{IngestBatch, RejectedLine};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Splits a body into numbered event texts: NDJSON lines (blank ones skipped) or the
/// elements of a JSON array, numbered from 1.
pub fn split_body(body: &[u8]) -> Result<Vec<(u64, &[u8])>> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(Error::EmptyBody);
    }
    if trimmed.starts_with(b"[") {
        let elements: Vec<&RawValue> =
            serde_json::from_slice(trimmed).map_err(|e| Error::BadArray(e.to_string()))?;
        return Ok(elements
            .iter()
            .enumerate()
            .map(|(i, element)| (i as u64 + 1, element.get().as_bytes()))
            .collect());
    }
    Ok(body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i as u64 + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .collect())
}

/// Splits and validates a body. `source` names it in `rejected/` (e.g. `http`).
pub fn parse_body(body: &[u8], source: &str, validator: &EventValidator) -> Result<IngestBatch> {
    let mut batch = IngestBatch::default();
    for (line, raw) in split_body(body)? {
        match validator.validate(raw) {
            Ok(event) => batch.events.push(event),
            Err(rejection) => batch.rejects.push(RejectedLine {
                source: source.to_owned(),
                line,
                reason: rejection.reason,
                raw: String::from_utf8_lossy(raw).into_owned(),
            }),
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"event_id":"e1","merchant_id":"m","user_id":"u","type":"share","ts":1777600800000}"#;

    #[test]
    fn ndjson_and_array_give_the_same_batch() {
        let validator = EventValidator::new(1_777_600_800_000);
        let ndjson = format!("{GOOD}\n\n{{\"bad\":1}}\n");
        let array = format!("[{GOOD}, {{\"bad\":1}}]");
        let a = parse_body(ndjson.as_bytes(), "http", &validator).expect("ndjson");
        let b = parse_body(array.as_bytes(), "http", &validator).expect("array");
        assert_eq!(a.events, b.events);
        assert_eq!(a.events.len(), 1);
        assert_eq!(a.rejects[0].line, 3);
        assert_eq!(b.rejects[0].line, 2);
        assert!(
            a.rejects[0].reason.starts_with("unknown field `bad`"),
            "{}",
            a.rejects[0].reason
        );
    }

    #[test]
    fn empty_and_broken_bodies_are_errors() {
        let validator = EventValidator::new(0);
        assert!(matches!(
            parse_body(b"  \n", "http", &validator),
            Err(Error::EmptyBody)
        ));
        assert!(matches!(
            parse_body(b"[{", "http", &validator),
            Err(Error::BadArray(_))
        ));
    }
}
