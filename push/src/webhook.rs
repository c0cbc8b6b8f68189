//! The merchant's webhook: each message POSTed as JSON with `Idempotency-Key` (the delivery
//! log's key) and `X-Recur-Signature: sha256=<hex HMAC-SHA256 of the body>`, so the receiver
//! can check it came from Recur and drop a repeat.
//!
//! 2xx: delivered. 4xx: failed with its status and the start of the answer. 5xx, timeouts and
//! refused connections: retried with backoff, then left pending for the next send.

use hmac::{Hmac, KeyInit, Mac};
use recur_engine::campaign::outbox::Message;
use sha2::Sha256;

use crate::retry::{Attempt, RetryPolicy};
use crate::{Outcome, Sender, agent, redact};

pub struct Webhook {
    agent: ureq::Agent,
    url: String,
    secret: String,
    retry: RetryPolicy,
}

impl Webhook {
    pub fn new(url: &str, secret: &str, retry: RetryPolicy) -> Self {
        Self {
            agent: agent(retry.timeout),
            url: url.to_owned(),
            secret: secret.to_owned(),
            retry,
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

impl Sender for Webhook {
    fn deliver(&self, message: &Message) -> Outcome {
        let signed = signature(&self.secret, message.body.as_bytes());
        let result = self.retry.run(|| {
            let response = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &message.key)
                .header("X-Recur-Signature", &signed)
                .send(message.body.as_bytes());
            match response {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        Attempt::Done(Outcome::Delivered)
                    } else if (400..500).contains(&status) {
                        let text = response
                            .body_mut()
                            .with_config()
                            .limit(4096)
                            .read_to_string()
                            .unwrap_or_default();
                        let start: String = text.chars().take(200).collect();
                        Attempt::Done(Outcome::Failed(format!(
                            "the webhook answered HTTP {status}: {start}"
                        )))
                    } else {
                        Attempt::Retry(format!("the webhook answered HTTP {status}"))
                    }
                }
                Err(e) => Attempt::Retry(format!(
                    "the webhook did not answer: {}",
                    redact(&e.to_string(), &[&self.secret])
                )),
            }
        });
        result.unwrap_or_else(Outcome::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
