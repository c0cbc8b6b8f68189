//! The ClickHouse store against a real server (started by `scripts/services`, URL in
//! `RECUR_TEST_CLICKHOUSE_URL`): appends count each event once, reads give back exactly what
//! the embedded store gives, and every read of events names its merchant in SQL.

use polars::prelude::*;
use recur_engine::event::{Event, EventValidator};
use recur_engine::store::{
    ClickHouseConfig, ClickHouseStore, EmbeddedStore, EventStore, IngestBatch, RejectedLine,
    TimeRange,
};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_777_600_800_000;

/// A fresh database of this test's own on the test server.
fn store(name: &str) -> ClickHouseStore {
    let url = std::env::var("RECUR_TEST_CLICKHOUSE_URL").expect(
        "RECUR_TEST_CLICKHOUSE_URL is not set: run the tests through scripts/test, which starts \
         ClickHouse (scripts/services up)",
    );
    let database = format!("recur_test_{name}_{}", std::process::id());
    let config = ClickHouseConfig {
        url: url.clone(),
        database: database.clone(),
        user: None,
        password: None,
    };
    // Drop what an earlier run with the same pid left.
    drop_database(&url, &database);
    ClickHouseStore::open(&config).expect("open the ClickHouse store")
}

fn drop_database(url: &str, database: &str) {
    ureq::post(url)
        .send(format!("DROP DATABASE IF EXISTS {database}"))
        .unwrap_or_else(|e| panic!("could not reach ClickHouse at {url}: {e}"));
}

fn event(merchant: &str, id: &str, user: &str, ts_ms: i64, kind: &str, extra: &str) -> Event {
    let line = format!(
        r#"{{"event_id":"{id}","merchant_id":"{merchant}","user_id":"{user}","type":"{kind}","item_id":"i","ts":{ts_ms}{extra}}}"#
    );
    EventValidator::new(ts_ms + DAY)
        .validate(line.as_bytes())
        .expect("valid test event")
}

/// The contract's columns (the embedded scan also carries its partition columns), by event id.
fn sorted(frame: DataFrame) -> DataFrame {
    let names: Vec<String> = recur_engine::store::event_schema()
        .iter_names()
        .map(|n| n.to_string())
        .collect();
    frame
        .select(names)
        .expect("contract columns")
        .sort(["event_id"], SortMultipleOptions::default())
        .expect("sort")
}

#[test]
fn appends_count_each_event_once_and_reads_match_the_embedded_store() {
    let mut clickhouse = store("parity");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut embedded = EmbeddedStore::open(dir.path()).expect("embedded");
    let purchase = r#","order_id":"o1","price":12.5,"quantity":2,"category":"c","scene":1001,"openid":"op","properties":{"a":[1,2]}"#;
    let first = IngestBatch {
        events: vec![
            event("m1", "e1", "u1", T0, "view", ""),
            event("m1", "e2", "u2", T0 + DAY, "purchase", purchase),
            event("m1", "e1", "u1", T0, "view", ""),
            event("m2", "e1", "u9", T0, "view", ""),
        ],
        rejects: vec![RejectedLine {
            source: "f.ndjson".to_owned(),
            line: 7,
            reason: "bad".to_owned(),
            raw: "{".to_owned(),
        }],
    };
    let second = IngestBatch {
        events: vec![
            event("m1", "e2", "u2", T0 + DAY, "view", ""),
            event("m1", "e3", "u1", T0 + 40 * DAY, "view", ""),
        ],
        rejects: first.rejects.clone(),
    };
    for store in [&mut clickhouse as &mut dyn EventStore, &mut embedded] {
        let a = store.append(&first).expect("first append");
        assert_eq!((a.accepted, a.duplicates, a.rejected), (3, 1, 1));
        let b = store.append(&second).expect("second append");
        assert_eq!((b.accepted, b.duplicates, b.rejected), (1, 1, 1));
        let again = store.append(&second).expect("third append");
        assert_eq!(
            (again.accepted, again.duplicates, again.rejected),
            (0, 2, 1)
        );
    }
    assert_eq!(clickhouse.merchants().expect("merchants"), ["m1", "m2"]);
    let (c, e) = (
        clickhouse.stats().expect("stats"),
        embedded.stats().expect("stats"),
    );
    assert_eq!(
        (c.total, &c.per_merchant, &c.per_type),
        (e.total, &e.per_merchant, &e.per_type)
    );
    assert_eq!(c.total, 4);

    for range in [
        TimeRange::ALL,
        TimeRange {
            start_ms: Some(T0 + DAY),
            end_ms: None,
        },
        TimeRange {
            start_ms: None,
            end_ms: Some(T0 + DAY),
        },
    ] {
        let read = |store: &mut dyn EventStore| {
            sorted(
                store
                    .scan("m1", range)
                    .expect("ok")
                    .expect("events")
                    .collect()
                    .expect("ok"),
            )
        };
        let (c, e) = (read(&mut clickhouse), read(&mut embedded));
        assert!(c.equals_missing(&e), "range {range:?}:\n{c}\n{e}");
        // A projection reads only its columns and gives the same values.
        let project = |store: &mut dyn EventStore| {
            store
                .scan("m1", range)
                .expect("ok")
                .expect("ok")
                .select([col("event_id"), col("price"), col("ts")])
                .sort(["event_id"], SortMultipleOptions::default())
                .collect()
                .expect("ok")
        };
        assert!(project(&mut clickhouse).equals_missing(&project(&mut embedded)));
    }
    assert!(
        clickhouse
            .scan("nobody", TimeRange::ALL)
            .expect("ok")
            .is_none()
    );
    let none_yet = TimeRange {
        start_ms: None,
        end_ms: Some(T0 - DAY),
    };
    assert!(clickhouse.scan("m1", none_yet).expect("ok").is_none());
    assert!(clickhouse.version().expect("version") >= 2);
    let url = std::env::var("RECUR_TEST_CLICKHOUSE_URL").expect("RECUR_TEST_CLICKHOUSE_URL");

    // Merchant isolation in the SQL itself: every read of events names its merchant.
    let queries = clickhouse.recent_event_queries();
    assert!(!queries.is_empty());
    for sql in &queries {
        assert!(sql.contains("WHERE merchant_id = ?"), "{sql}");
    }
    drop_database(&url, &format!("recur_test_parity_{}", std::process::id()));
}

/// An append interrupted after its events and fingerprints were stored but before its own row
/// (the server killed at that moment) is retried: the retry counts those events as accepted —
/// the interrupted attempt never reported them — and reads still see each event once.
#[test]
fn a_retried_interrupted_append_counts_its_events_once_as_accepted() {
    let url = std::env::var("RECUR_TEST_CLICKHOUSE_URL").expect("RECUR_TEST_CLICKHOUSE_URL");
    let mut clickhouse = store("retry");
    let database = format!("recur_test_retry_{}", std::process::id());
    let batch = IngestBatch {
        events: (0..100)
            .map(|n| {
                event(
                    "m1",
                    &format!("e{n}"),
                    &format!("u{}", n % 7),
                    T0 + n,
                    "view",
                    "",
                )
            })
            .collect(),
        rejects: vec![],
    };
    let first = clickhouse.append(&batch).expect("first attempt");
    assert_eq!(first.accepted, 100);
    // The interruption: the batch's append row never got written.
    ureq::post(&url)
        .send(format!("TRUNCATE TABLE {database}.appends"))
        .expect("truncate appends");
    let retry = clickhouse.append(&batch).expect("retry");
    assert_eq!((retry.accepted, retry.duplicates), (100, 0));
    assert_eq!(clickhouse.stats().expect("stats").total, 100);
    let rows = clickhouse
        .scan("m1", TimeRange::ALL)
        .expect("scan")
        .expect("events")
        .collect()
        .expect("collect");
    assert_eq!(rows.height(), 100, "each event read once");
    // Now that the batch completed, the same batch again is all duplicates.
    let again = clickhouse.append(&batch).expect("again");
    assert_eq!((again.accepted, again.duplicates), (0, 100));
    drop_database(&url, &database);
}

/// A batch larger than one lookup query (40,000 fingerprints, under the server's AST limit)
/// is looked up in several and counted exactly.
#[test]
fn a_batch_of_more_fingerprints_than_one_lookup_holds_is_counted_exactly() {
    let url = std::env::var("RECUR_TEST_CLICKHOUSE_URL").expect("RECUR_TEST_CLICKHOUSE_URL");
    let mut clickhouse = store("large");
    let batch = IngestBatch {
        events: (0..90_000)
            .map(|n| {
                event(
                    "m1",
                    &format!("e{n}"),
                    &format!("u{}", n % 997),
                    T0 + n,
                    "view",
                    "",
                )
            })
            .collect(),
        rejects: vec![],
    };
    let first = clickhouse.append(&batch).expect("first");
    assert_eq!((first.accepted, first.duplicates), (90_000, 0));
    let again = clickhouse.append(&batch).expect("again");
    assert_eq!((again.accepted, again.duplicates), (0, 90_000));
    drop_database(&url, &format!("recur_test_large_{}", std::process::id()));
}

/// The jobs' first-phase aggregates computed by ClickHouse (`GROUP BY`) give exactly the tables
/// the embedded store's rows give: identities stitched by unionid, order lines net of refunds
/// sent under another id of the buyer's, item categories, openids, and typed reads; and
/// nothing after the as-of is counted.
#[test]
fn aggregates_pushed_down_to_clickhouse_match_the_rows_computed_in_polars() {
    use recur_engine::analytics::MerchantAnalytics;
    use recur_engine::analytics::period::AsOf;
    use recur_engine::settings::MerchantSettings;

    let url = std::env::var("RECUR_TEST_CLICKHOUSE_URL").expect("RECUR_TEST_CLICKHOUSE_URL");
    let mut clickhouse = store("pushdown");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut embedded = EmbeddedStore::open(dir.path()).expect("embedded");
    let line = |id: &str, user: &str, day: i64, rest: &str| {
        let text = format!(
            r#"{{"event_id":"{id}","merchant_id":"m1","user_id":"{user}","ts":{}{rest}}}"#,
            T0 + day * DAY
        );
        EventValidator::new(T0 + 400 * DAY)
            .validate(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let buy = |order: &str, item: &str, price: f64, quantity: u32, category: &str| {
        format!(
            r#","type":"purchase","order_id":"{order}","item_id":"{item}","price":{price},"quantity":{quantity},"category":"{category}","channel":"mini_program""#
        )
    };
    let refund = |order: &str, item: &str, price: f64, quantity: u32| {
        format!(
            r#","type":"refund","order_id":"{order}","item_id":"{item}","price":{price},"quantity":{quantity}"#
        )
    };
    let batch = IngestBatch {
        events: vec![
            // alice (mini program) and alice_store (micro-store) share a unionid.
            line(
                "1",
                "alice",
                0,
                r#","type":"view","item_id":"tart","unionid":"U1","openid":"o-a1""#,
            ),
            line(
                "2",
                "alice_store",
                3,
                r#","type":"view","item_id":"tart","unionid":"U1","openid":"o-a2""#,
            ),
            line("3", "alice", 1, &buy("o1", "tart", 12.35, 3, "pastry")),
            line("4", "alice_store", 5, &buy("o2", "bread", 0.1, 7, "bakery")),
            // Part of o1 refunded under the other id, all of o2 by a back office.
            line("5", "alice_store", 6, &refund("o1", "tart", 12.35, 1)),
            line("6", "backoffice", 7, &refund("o2", "bread", 0.1, 7)),
            line("7", "bob", 2, &buy("o3", "tart", 12.35, 1, "cakes")),
            line("8", "bob", 2, &buy("o3", "milk", 2.5, 2, "dairy")),
            line(
                "9",
                "bob",
                4,
                r#","type":"subscribe","properties":{"template_id":"t1"}"#,
            ),
            line(
                "10",
                "bob",
                4,
                r#","type":"identify","properties":{"member_level":"gold"}"#,
            ),
            // A refund of an order bought before the data begins.
            line("11", "carol", 8, &refund("o0", "milk", 2.5, 1)),
            // After the as-of: must not count anywhere.
            line("12", "bob", 30, &buy("o4", "tart", 99.0, 9, "late")),
            line(
                "13",
                "dave",
                30,
                r#","type":"view","item_id":"tart","unionid":"U1","openid":"o-late""#,
            ),
        ],
        rejects: vec![],
    };
    clickhouse.append(&batch).expect("append to ClickHouse");
    embedded
        .append(&batch)
        .expect("append to the embedded store");
    assert!(clickhouse.aggregates().is_some() && embedded.aggregates().is_none());

    let as_of = Some(AsOf::Instant(T0 + 20 * DAY));
    let settings = MerchantSettings::default();
    let load = |store: &mut dyn EventStore| {
        MerchantAnalytics::load(store, "m1", &settings, as_of)
            .expect("load")
            .expect("events")
    };
    let (c, e) = (load(&mut clickhouse), load(&mut embedded));
    let by = |frame: DataFrame, keys: &[&str]| {
        frame
            .sort(keys.to_vec(), SortMultipleOptions::default())
            .expect("sort")
    };
    let same = |name: &str, c: DataFrame, e: DataFrame, keys: &[&str]| {
        let (c, e) = (by(c, keys), by(e, keys));
        assert!(c.equals_missing(&e), "{name} differ:\n{c}\n{e}");
        c
    };
    let identities = same(
        "identities",
        c.identities.clone(),
        e.identities.clone(),
        &["user_id"],
    );
    assert_eq!(identities.height(), 2);
    let lines = same(
        "lines",
        c.lines.clone(),
        e.lines.clone(),
        &["order_id", "item_id"],
    );
    // o1 tart: 3 × 12.35 bought by alice, 1 refunded under alice_store; o2 fully refunded.
    let text = format!("{lines}");
    assert_eq!(lines.height(), 4, "{text}");
    let o1 = lines
        .clone()
        .lazy()
        .filter(col("order_id").eq(lit("o1")))
        .collect()
        .expect("o1");
    assert_eq!(
        o1.column("user_id")
            .expect("user")
            .get(0)
            .expect("v")
            .to_string(),
        "\"alice\""
    );
    assert_eq!(
        o1.column("net_cents")
            .expect("cents")
            .get(0)
            .expect("v")
            .to_string(),
        "2470"
    );
    assert_eq!(
        o1.column("refunded_cents")
            .expect("cents")
            .get(0)
            .expect("v")
            .to_string(),
        "1235"
    );
    same("orders", c.orders.clone(), e.orders.clone(), &["order_id"]);
    let categories = same(
        "categories",
        c.categories.clone(),
        e.categories.clone(),
        &["item_id"],
    );
    assert_eq!(
        categories.height(),
        3,
        "the late category is after the as-of: {categories}"
    );
    let collect = |frame: LazyFrame| frame.collect().expect("collect");
    let openids = same(
        "openids",
        collect(c.openids()),
        collect(e.openids()),
        &["user_id"],
    );
    assert_eq!(
        format!(
            "{}",
            openids.column("openid").expect("openid").get(0).expect("v")
        ),
        "\"o-a2\""
    );
    let profiles = same(
        "profiles",
        c.base_profiles().expect("profiles"),
        e.base_profiles().expect("profiles"),
        &["user_id"],
    );
    // alice_store folded into alice; bob, backoffice, carol; dave's event is after the as-of.
    assert_eq!(profiles.height(), 4, "{profiles}");
    for (name, c, e) in [
        (
            "purchases",
            c.purchases_in_context(),
            e.purchases_in_context(),
        ),
        ("subscriptions", c.subscriptions(), e.subscriptions()),
        ("identifications", c.identifications(), e.identifications()),
    ] {
        let frame = same(name, collect(c), collect(e), &["user_id", "ts"]);
        assert!(frame.height() > 0, "{name}");
    }

    // The server did the grouping, and every query named the merchant.
    let queries = clickhouse.recent_event_queries();
    for sql in &queries {
        assert!(sql.contains("WHERE merchant_id = ?"), "{sql}");
    }
    let grouped = queries
        .iter()
        .filter(|sql| sql.contains("GROUP BY"))
        .count();
    assert_eq!(grouped, 3, "users, order lines, items: {queries:#?}");
    assert!(
        !queries.iter().any(|sql| sql.contains("`openid`")
            || sql.contains("`properties`") && !sql.contains("`type` IN")),
        "openids are aggregated and properties read only for their event types: {queries:#?}"
    );

    // A merchant with nothing but a view: no lines, no identities, no openids, in both.
    let only_views = IngestBatch {
        events: vec![event("m2", "v1", "eve", T0, "view", "")],
        rejects: vec![],
    };
    clickhouse
        .append(&only_views)
        .expect("append to ClickHouse");
    embedded
        .append(&only_views)
        .expect("append to the embedded store");
    let load = |store: &mut dyn EventStore| {
        MerchantAnalytics::load(store, "m2", &settings, None)
            .expect("load")
            .expect("events")
    };
    let (c, e) = (load(&mut clickhouse), load(&mut embedded));
    assert_eq!((c.lines.height(), c.identities.height()), (0, 0));
    same(
        "empty lines",
        c.lines.clone(),
        e.lines.clone(),
        &["order_id"],
    );
    same(
        "one profile",
        c.base_profiles().expect("profiles"),
        e.base_profiles().expect("profiles"),
        &["user_id"],
    );
    drop_database(&url, &format!("recur_test_pushdown_{}", std::process::id()));
}
