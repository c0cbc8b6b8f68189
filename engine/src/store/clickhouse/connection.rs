//! One HTTP connection pool to ClickHouse and the small runtime that drives it, so the
//! synchronous [`EventStore`](crate::store::EventStore) methods can call the async client
//! from any thread (a CLI's main thread, a polars worker, a tokio blocking task).

use std::future::Future;
use std::sync::Mutex;
use std::sync::PoisonError;

use clickhouse::Client;
use serde::Deserialize;

use super::ClickHouseConfig;
use super::schema::{check_database_name, migrations_table, pending, quote_identifier};
use crate::error::{Error, Result};

/// How many recent event reads are remembered for [`Connection::recent_event_queries`].
const QUERIES_KEPT: usize = 64;

pub(super) struct Connection {
    /// Bound to the database (created by [`Connection::ready`] on first use).
    client: Client,
    /// Not bound to a database: creates it.
    server: Client,
    /// Whether the database and tables are known to exist.
    migrated: Mutex<bool>,
    runtime: tokio::runtime::Runtime,
    pub(super) database: String,
    url: String,
    event_queries: Mutex<Vec<String>>,
}

impl Connection {
    pub(super) fn open(config: &ClickHouseConfig) -> Result<Self> {
        check_database_name(&config.database).map_err(Error::InvalidArgument)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("recur-clickhouse")
            .enable_all()
            .build()
            .map_err(Error::io("starting the ClickHouse client's runtime", ""))?;
        let mut client = Client::default()
            .with_url(&config.url)
            // Row validation asks the server for column types in a form 18.16 does not have.
            .with_validation(false)
            // An append's key lookups list thousands of fingerprints in one query.
            .with_setting("max_query_size", "16777216");
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password);
        }
        // Nothing is asked of the server yet: a server started while ClickHouse is down
        // comes up (serving its snapshot) and the first use creates what is missing.
        Ok(Self {
            server: client.clone(),
            client: client.with_database(&config.database),
            migrated: Mutex::new(false),
            runtime,
            database: config.database.clone(),
            url: config.url.clone(),
            event_queries: Mutex::new(Vec::new()),
        })
    }

    /// Creates the database and applies pending migrations, once per connection; every
    /// operation calls it first.
    pub(super) fn ready(&self) -> Result<()> {
        let mut migrated = self.migrated.lock().unwrap_or_else(PoisonError::into_inner);
        if !*migrated {
            self.migrate()?;
            *migrated = true;
        }
        Ok(())
    }

    /// Whether the server answers.
    pub(super) fn ping(&self) -> Result<()> {
        self.run(
            "checking that the server answers",
            self.server.query("SELECT 1").fetch_one::<u8>(),
        )
        .map(drop)
    }

    /// The client, bound to the database.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `future` to completion on this connection's runtime. From inside another tokio
    /// runtime (a server's blocking task) it runs on a scoped thread, since a runtime cannot
    /// be blocked on from within one.
    pub(super) fn run<T, F>(&self, doing: &str, future: F) -> Result<T>
    where
        F: Future<Output = clickhouse::error::Result<T>> + Send,
        T: Send,
    {
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| self.runtime.block_on(future))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        } else {
            self.runtime.block_on(future)
        };
        result.map_err(|source| self.error(doing, source))
    }

    pub(super) fn error(&self, doing: &str, source: clickhouse::error::Error) -> Error {
        let transient = matches!(
            source,
            clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
        );
        Error::ClickHouse {
            transient,
            doing: doing.to_owned(),
            url: self.url.clone(),
            database: self.database.clone(),
            message: source.to_string(),
        }
    }

    pub(super) fn execute(&self, doing: &str, sql: &str) -> Result<()> {
        self.run(doing, self.client.query(sql).execute())
    }

    /// The first column of every row, as text.
    pub(super) fn fetch_strings(&self, sql: &str, doing: &str) -> Result<Vec<String>> {
        self.run(doing, self.client.query(sql).fetch_all::<String>())
    }

    /// Creates the database and the migrations table and applies what is pending, in order.
    fn migrate(&self) -> Result<()> {
        self.run(
            "creating the database",
            self.server
                .query(&format!(
                    "CREATE DATABASE IF NOT EXISTS {}",
                    quote_identifier(&self.database)
                ))
                .execute(),
        )?;
        self.execute(
            "creating the migrations table",
            &migrations_table(&self.database),
        )?;
        let applied: Vec<u32> = self.run(
            "reading applied migrations",
            self.client
                .query("SELECT DISTINCT version FROM recur_migrations")
                .fetch_all::<u32>(),
        )?;
        for (version, name, statements) in pending(&self.database, &applied) {
            for statement in &statements {
                self.execute(&format!("applying migration {version} ({name})"), statement)?;
            }
            self.run(
                "recording a migration",
                self.client
                    .query("INSERT INTO recur_migrations (version, name, applied_at) VALUES (?, ?, now())")
                    .bind(version)
                    .bind(name)
                    .execute(),
            )?;
            tracing::info!(version, name, database = %self.database, "ClickHouse migration applied");
        }
        Ok(())
    }

    /// Events per (merchant, type), deduplicated.
    pub(super) fn counts_by_merchant_and_type(&self) -> Result<Vec<(String, String, u64)>> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Count {
            merchant_id: String,
            event_type: String,
            events: u64,
        }
        let rows = self.run(
            "counting events",
            self.client
                .query(
                    "SELECT merchant_id, type AS event_type, count() AS events FROM events FINAL \
                     GROUP BY merchant_id, event_type",
                )
                .fetch_all::<Count>(),
        )?;
        Ok(rows
            .into_iter()
            .map(|c| (c.merchant_id, c.event_type, c.events))
            .collect())
    }

    /// Appends that stored something: the store's version.
    pub(super) fn appends(&self) -> Result<u64> {
        self.run(
            "counting appends",
            self.client
                .query("SELECT count() FROM appends")
                .fetch_one::<u64>(),
        )
    }

    /// Active data parts of the events table: what `recur stats` calls files.
    pub(super) fn active_parts(&self) -> Result<u64> {
        self.run(
            "counting parts",
            self.client
                .query(
                    "SELECT count() FROM system.parts WHERE database = ? AND table = 'events' AND active",
                )
                .bind(&self.database)
                .fetch_one::<u64>(),
        )
    }

    /// Remembers a read of events (its SQL), for tests of merchant isolation.
    pub(super) fn log_event_query(&self, sql: &str) {
        let mut queries = self
            .event_queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if queries.len() == QUERIES_KEPT {
            queries.remove(0);
        }
        queries.push(sql.to_owned());
    }

    pub(super) fn recent_event_queries(&self) -> Vec<String> {
        self.event_queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
