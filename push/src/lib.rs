//! Delivering campaign messages: through the merchant's webhook (signed, with an idempotency
//! key) or WeChat's subscription-message API, driven by the delivery log of
//! `recur_engine::campaign::outbox` so that a send killed at any moment and run again
//! delivers every planned message, never under a new key nor with a different body.
//!
//! Depends on the engine only (plans, the log, settings); the `recur` binary drives it.

mod deliver;
mod error;
mod retry;
mod webhook;
mod wechat;

pub use deliver::{SendOptions, SendReport, send_campaign};
pub use error::{Error, Result};
pub use retry::RetryPolicy;
pub use webhook::{Webhook, signature};
pub use wechat::Wechat;

use recur_engine::campaign::outbox::Message;
use recur_engine::campaign::{Campaign, PushChannel};
use recur_engine::settings::MerchantSettings;

/// What became of one delivery attempt (retries included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// A permanent failure (a 4xx, a WeChat error): recorded with its reason, not retried.
    Failed(String),
    /// The customer refused the subscription message (WeChat 43101): their consent is used.
    Refused,
    /// Still failing after every retry (5xx, timeouts, refused connections): the message
    /// stays pending for the next send.
    Unavailable(String),
}

/// Delivers one message.
pub trait Sender: Sync {
    fn deliver(&self, message: &Message) -> Outcome;
}

/// The sender of a campaign's channel, from the merchant's settings.
pub fn sender_for(
    merchant_id: &str,
    campaign: &Campaign,
    settings: &MerchantSettings,
    retry: RetryPolicy,
) -> Result<Box<dyn Sender>> {
    match campaign.channel {
        PushChannel::Webhook => {
            let webhook = settings.push.webhook.as_ref().ok_or_else(|| {
                Error::NotConfigured(format!(
                    "merchant {merchant_id} has no webhook: set one with `recur merchant set --merchant {merchant_id} --webhook-url URL --webhook-secret SECRET`"
                ))
            })?;
            Ok(Box::new(Webhook::new(&webhook.url, &webhook.secret, retry)))
        }
        PushChannel::SubscribeMessage => {
            let wechat = settings.push.wechat.as_ref().ok_or_else(|| {
                Error::NotConfigured(format!(
                    "merchant {merchant_id} has no WeChat credentials: set them with `recur merchant set --merchant {merchant_id} --wechat-appid ID --wechat-secret SECRET`"
                ))
            })?;
            Ok(Box::new(Wechat::new(
                &wechat.api_base,
                &wechat.appid,
                &wechat.secret,
                retry,
            )))
        }
    }
}

/// A shared HTTP client: pooled connections, statuses as values, bounded time per request.
fn agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_connections_per_host(64)
        .build()
        .into()
}

/// `text` with every secret in `secrets` replaced: error texts may quote a URL that carries
/// an access token or an app secret.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |out, secret| {
            out.replace(secret, "[redacted]")
        })
}
