//! WeChat's subscription-message API: `POST /cgi-bin/message/subscribe/send?access_token=…`
//! with the body the plan recorded (`touser`, `template_id`, `page`, `data`).
//!
//! The access token comes from `GET /cgi-bin/token` with the mini program's app id and secret
//! and is cached until shortly before it expires; errcode 40001 or 42001 (invalid or expired
//! token) fetches a new one and retries at once. Errcode 43101 (the user refused) is recorded
//! as refused: the consent is used. Other errcodes fail with their code and message; HTTP
//! 5xx and transport errors are retried with backoff. The app secret and the token travel in
//! URLs only and are cut out of every error text.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use recur_engine::campaign::outbox::Message;
use serde::Deserialize;

use crate::retry::{Attempt, RetryPolicy};
use crate::{Outcome, Sender, agent, redact};

/// Refresh this long before WeChat says the token expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// errcodes of a token WeChat no longer accepts.
const STALE_TOKEN: [i64; 3] = [40001, 40014, 42001];
const REFUSED: i64 = 43101;

pub struct Wechat {
    agent: ureq::Agent,
    api_base: String,
    appid: String,
    secret: String,
    retry: RetryPolicy,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl Wechat {
    pub fn new(api_base: &str, appid: &str, secret: &str, retry: RetryPolicy) -> Self {
        Self {
            agent: agent(retry.timeout),
            api_base: api_base.trim_end_matches('/').to_owned(),
            appid: appid.to_owned(),
            secret: secret.to_owned(),
            retry,
            token: Mutex::new(None),
        }
    }

    fn secrets<'a>(&'a self, token: &'a str) -> [&'a str; 2] {
        [&self.secret, token]
    }

    /// A valid access token: the cached one, or a new one.
    fn token(&self) -> Result<String, Attempt<Outcome>> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = format!("{}/cgi-bin/token", self.api_base);
        let answer = self
            .agent
            .get(&url)
            .query("grant_type", "client_credential")
            .query("appid", &self.appid)
            .query("secret", &self.secret)
            .call();
        let mut response = answer.map_err(|e| {
            Attempt::Retry(format!(
                "WeChat's token endpoint did not answer: {}",
                redact(&e.to_string(), &self.secrets(""))
            ))
        })?;
        let status = response.status().as_u16();
        if status >= 500 {
            return Err(Attempt::Retry(format!(
                "WeChat's token endpoint answered HTTP {status}"
            )));
        }
        let answer: TokenAnswer = response.body_mut().read_json().map_err(|e| {
            Attempt::Retry(format!(
                "WeChat's token endpoint answered HTTP {status} without a token: {}",
                redact(&e.to_string(), &self.secrets(""))
            ))
        })?;
        match (answer.access_token, answer.errcode.unwrap_or(0)) {
            (Some(token), 0) => {
                let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(7200));
                let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
                *cached = Some((token.clone(), until));
                Ok(token)
            }
            (_, code) => Err(Attempt::Done(Outcome::Failed(format!(
                "WeChat refused the app id and secret: errcode {code} {}; check `recur merchant show`",
                answer.errmsg.unwrap_or_default()
            )))),
        }
    }

    fn forget_token(&self, stale: &str) {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|(t, _)| t == stale) {
            *cached = None;
        }
    }

    fn attempt(&self, message: &Message) -> Attempt<Outcome> {
        let token = match self.token() {
            Ok(token) => token,
            Err(attempt) => return attempt,
        };
        let url = format!("{}/cgi-bin/message/subscribe/send", self.api_base);
        let response = self
            .agent
            .post(&url)
            .query("access_token", &token)
            .header("Content-Type", "application/json")
            .send(message.body.as_bytes());
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry(format!(
                    "WeChat did not answer: {}",
                    redact(&e.to_string(), &self.secrets(&token))
                ));
            }
        };
        let status = response.status().as_u16();
        if status >= 500 {
            return Attempt::Retry(format!("WeChat answered HTTP {status}"));
        }
        let answer: SendAnswer = match response.body_mut().read_json() {
            Ok(answer) => answer,
            Err(_) => {
                return Attempt::Retry(format!("WeChat answered HTTP {status} without errcode"));
            }
        };
        match answer.errcode {
            0 => Attempt::Done(Outcome::Delivered),
            REFUSED => Attempt::Done(Outcome::Refused),
            code if STALE_TOKEN.contains(&code) => {
                self.forget_token(&token);
                Attempt::RetryNow(format!("WeChat rejected the access token (errcode {code})"))
            }
            code => Attempt::Done(Outcome::Failed(format!(
                "WeChat errcode {code}: {}",
                redact(&answer.errmsg, &self.secrets(&token))
            ))),
        }
    }
}

impl Sender for Wechat {
    fn deliver(&self, message: &Message) -> Outcome {
        self.retry
            .run(|| self.attempt(message))
            .unwrap_or_else(Outcome::Unavailable)
    }
}
