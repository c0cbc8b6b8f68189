//! `recur keys`: the API's per-merchant bearer keys — create (shown once), list, revoke.

use clap::{Subcommand, ValueEnum};
use recur_engine::keys::{ApiKey, Scope, create_key, list_keys, revoke_key};

use crate::cli::DataDir;
use crate::output::{outln, table};

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key of one merchant. It is printed once (the last line of stdout) and only its
    /// hash is stored: keep it somewhere safe. Creating the first key makes every API call
    /// need one.
    #[command(after_help = "Examples:\n  \
        recur keys create --data-dir data --merchant m_bakery --scope read\n  \
        KEY=$(recur keys create --data-dir data --merchant m_bakery --scope write | tail -1)\n  \
        curl -H \"Authorization: Bearer $KEY\" http://127.0.0.1:8080/v1/merchants/m_bakery/users/u1/recommendations\n\
        Scopes: read (every GET of the merchant), write (and POST /v1/events of the merchant),\n\
        admin (and creating audiences and campaigns).")]
    Create {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
        #[arg(long, value_enum, default_value_t = ScopeArg::Read)]
        scope: ScopeArg,
        /// Print {"id","key","merchant_id","scope"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The keys (never the keys themselves): id, merchant, scope, created, revoked.
    #[command(after_help = "Example:\n  recur keys list --data-dir data --merchant m_bakery")]
    List {
        #[command(flatten)]
        data: DataDir,
        /// Only this merchant's keys.
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id: a running server refuses it within a second.
    #[command(after_help = "Example:\n  recur keys revoke --data-dir data --id 3f9a1c2b7d4e")]
    Revoke {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ScopeArg {
    Read,
    Write,
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Read => Self::Read,
            ScopeArg::Write => Self::Write,
            ScopeArg::Admin => Self::Admin,
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

pub(crate) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            data,
            merchant,
            scope,
            json,
        } => {
            let (entry, key) = create_key(&data.data_dir, &merchant, scope.into(), now_ms())?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "id": entry.id,
                        "key": key,
                        "merchant_id": entry.merchant_id,
                        "scope": entry.scope,
                    })
                );
            } else {
                eprintln!(
                    "key {} of merchant {} (scope {}) created; it is shown this once:",
                    entry.id,
                    entry.merchant_id,
                    entry.scope.as_str()
                );
                outln!("{key}");
            }
            Ok(())
        }
        KeysCommand::List {
            data,
            merchant,
            json,
        } => {
            let keys = list_keys(&data.data_dir, merchant.as_deref())?;
            if json {
                let rows: Vec<serde_json::Value> = keys.iter().map(key_json).collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else if keys.is_empty() {
                eprintln!("no keys; `recur keys create --merchant M` makes one");
            } else {
                let rows = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.merchant_id.clone(),
                            k.scope.as_str().to_owned(),
                            time(Some(k.created_at_ms)),
                            time(k.revoked_at_ms),
                        ]
                    })
                    .collect();
                outln!(
                    "{}",
                    table(&["id", "merchant", "scope", "created", "revoked"], rows)
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { data, id } => {
            let key = revoke_key(&data.data_dir, &id, now_ms())?;
            eprintln!(
                "key {} of merchant {} revoked; servers refuse it within a second",
                key.id, key.merchant_id
            );
            Ok(())
        }
    }
}

fn key_json(key: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "id": key.id,
        "merchant_id": key.merchant_id,
        "scope": key.scope,
        "created_at_ms": key.created_at_ms,
        "revoked_at_ms": key.revoked_at_ms,
    })
}
