//! Local stand-ins for the receivers of campaign messages: a merchant's webhook and WeChat's
//! token and subscription-message endpoints. They record every request and check each one
//! the way the real receiver would (signature, token, required fields).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// What the stand-in saw and how it behaves.
#[derive(Default)]
pub struct Seen {
    /// Webhook requests: (idempotency key, body, signature valid).
    pub webhook: Vec<(String, String, bool)>,
    /// Answer this many webhook requests with a 500 first.
    pub fail_first: usize,
    /// Time each webhook request takes.
    pub delay: Duration,
    /// WeChat: tokens issued, and sends accepted per token before it "expires".
    pub tokens_issued: usize,
    pub sends_per_token: usize,
    pub sends_with_current: usize,
    /// WeChat sends accepted: (body).
    pub wechat: Vec<Value>,
    /// WeChat answers 43101 (refused) for this openid.
    pub refuse_openid: Option<String>,
    /// Requests WeChat rejected with a stale token.
    pub stale_token_answers: usize,
}

pub struct StandIn {
    pub base: String,
    pub seen: Arc<Mutex<Seen>>,
}

pub const WEBHOOK_SECRET: &str = "whsec-test-4242";
pub const WECHAT_APPID: &str = "wx-test-app";
pub const WECHAT_SECRET: &str = "wxsecret-test-9191";

type Shared = Arc<Mutex<Seen>>;

async fn webhook(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("key");
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let valid = header("x-recur-signature") == format!("sha256={expected}");
    let delay = {
        let mut seen = seen.lock().expect("lock");
        seen.webhook.push((
            header("idempotency-key"),
            String::from_utf8_lossy(&body).into_owned(),
            valid,
        ));
        if seen.fail_first > 0 {
            seen.fail_first -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        seen.delay
    };
    tokio::time::sleep(delay).await;
    if valid {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn token(
    State(seen): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    if query.get("appid").map(String::as_str) != Some(WECHAT_APPID)
        || query.get("secret").map(String::as_str) != Some(WECHAT_SECRET)
        || query.get("grant_type").map(String::as_str) != Some("client_credential")
    {
        return axum::Json(json!({"errcode": 40013, "errmsg": "invalid appid"}));
    }
    let mut seen = seen.lock().expect("lock");
    seen.tokens_issued += 1;
    seen.sends_with_current = 0;
    axum::Json(json!({"access_token": format!("tok-{}", seen.tokens_issued), "expires_in": 7200}))
}

async fn subscribe_send(
    State(seen): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let mut seen = seen.lock().expect("lock");
    let current = format!("tok-{}", seen.tokens_issued);
    let token = query.get("access_token").cloned().unwrap_or_default();
    if token != current || seen.sends_with_current >= seen.sends_per_token {
        // The token expired: WeChat's 42001.
        seen.stale_token_answers += 1;
        return axum::Json(json!({"errcode": 42001, "errmsg": "access_token expired"}));
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return axum::Json(json!({"errcode": 47001, "errmsg": "data format error"}));
    };
    let complete = ["touser", "template_id", "page", "data"]
        .iter()
        .all(|k| message.get(k).is_some_and(|v| !v.is_null()));
    if !complete {
        return axum::Json(json!({"errcode": 47003, "errmsg": "argument invalid"}));
    }
    seen.sends_with_current += 1;
    if seen.refuse_openid.as_deref() == message["touser"].as_str() {
        return axum::Json(json!({"errcode": 43101, "errmsg": "user refuse to accept the msg"}));
    }
    seen.wechat.push(message);
    axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
}

impl StandIn {
    /// Starts both stand-ins on one free port, in a background runtime.
    pub fn start(seen: Seen) -> Self {
        let seen = Arc::new(Mutex::new(seen));
        let app = Router::new()
            .route("/push", post(webhook))
            .route("/cgi-bin/token", get(token))
            .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
            .with_state(seen.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("address"))
                    .expect("send address");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let address = rx.recv().expect("the stand-in starts");
        Self {
            base: format!("http://{address}"),
            seen,
        }
    }
}
