//! The dashboard in a real browser: Debian's chromium, headless, driven through chromedriver
//! (WebDriver, fantoccini). It signs in by the `#key=` link `recur demo` prints, opens every
//! page, checks that the charts rendered and that every number shown is the API's, that a
//! wrong key gets a sign-in error, and keeps a screenshot of each page under
//! `target/tmp/dashboard/`. `scripts/services` installs chromium and chromium-driver.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const PAGES: [&str; 8] = [
    "overview",
    "retention",
    "lifecycle",
    "rfm",
    "clusters",
    "audiences",
    "campaigns",
    "customer",
];

/// One merchant with a snapshot, an audience with members, a campaign and an admin key.
fn prepared(dir: &Path) -> (PathBuf, String) {
    let data = generated_merchant(dir, "300", "90");
    let data_arg = path_str(&data);
    run_ok(&[
        "audience",
        "create",
        "--data-dir",
        data_arg,
        "--merchant",
        "m_bakery",
        "--name",
        "regulars",
        "--rule",
        r#"{"performed":{"event":"purchase","at_least":3,"in_last_days":365}}"#,
    ]);
    run_ok(&["run", "--data-dir", data_arg]);
    run_ok(&[
        "campaign",
        "create",
        "--data-dir",
        data_arg,
        "--merchant",
        "m_bakery",
        "--name",
        "winback",
        "--goal",
        "winback",
        "--channel",
        "webhook",
    ]);
    let key = create_key(&data, "m_bakery", "admin");
    (data, key)
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let chromedriver = std::env::var("RECUR_CHROMEDRIVER").expect(
            "RECUR_CHROMEDRIVER is not set: run the tests through scripts/test, which installs \
             chromium and chromium-driver (scripts/services install) and sets it",
        );
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let chromium = std::env::var("RECUR_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()), "--window-size=1280,1100",
                "--lang=en-US",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Opens `page` and waits until it finished rendering; it must show no error.
async fn open(client: &Client, base: &str, page: &str) {
    client
        .goto(&format!("{base}/#/{page}"))
        .await
        .expect("navigates");
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(&format!(
            "main[data-page={}][data-ready=true]",
            page.split('?').next().expect("a page")
        )))
        .await
        .unwrap_or_else(|e| panic!("{page} did not render: {e}"));
    let errors = client
        .execute(
            "return Array.from(document.querySelectorAll('[data-testid=page-error], .error')).map(e => e.textContent).filter(t => t.trim());",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(errors, json!([]), "{page} shows an error");
}

/// `[name, raw, shown]` of every number on the page.
async fn metrics(client: &Client) -> Vec<(String, String, String)> {
    let found = client
        .execute(
            "return Array.from(document.querySelectorAll('[data-metric]')).map(e => [e.dataset.metric, e.dataset.raw, e.textContent]);",
            vec![],
        )
        .await
        .expect("script runs");
    serde_json::from_value(found).expect("triples")
}

/// The value the page shows for `name`, as the API gave it.
fn shown(on_page: &[(String, String, String)], name: &str) -> f64 {
    let (_, raw, _) = on_page
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not on the page"));
    number(raw)
}

/// Each chart of the page with the data points it drew; a chart that drew nothing fails.
async fn charts_rendered(client: &Client, page: &str) -> usize {
    let charts = client
        .execute(
            "return Array.from(document.querySelectorAll('[data-chart]')).map(e => [e.dataset.chart, Number(e.dataset.points || 0), e.querySelectorAll('canvas').length, echarts.getInstanceByDom(e) ? 1 : 0]);",
            vec![],
        )
        .await
        .expect("script runs");
    let charts: Vec<(String, u64, u64, u64)> = serde_json::from_value(charts).expect("charts");
    for (name, points, canvases, instance) in &charts {
        assert!(
            *points > 0 && *canvases > 0 && *instance == 1,
            "{page}: chart {name} did not render ({points} points, {canvases} canvases)"
        );
    }
    charts.len()
}

fn number(raw: &str) -> f64 {
    raw.parse()
        .unwrap_or_else(|_| panic!("{raw:?} is not a number"))
}

async fn screenshot(client: &Client, page: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.len() > 1000, "an empty screenshot of {page}");
    std::fs::write(dir.join(format!("{page}.png")), png).expect("screenshot written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_apis_numbers_on_every_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, key) = prepared(dir.path());
    let server = Server::start(&data, &[]);
    let base = server.base.clone();
    let api = |path: &str| {
        let (status, body) = server.get_with_key(path, &key);
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("chromium")).await;

    // A wrong key: the sign-in form says so.
    client
        .goto(&format!("{base}/#key=rk_000000000000_wrong"))
        .await
        .expect("navigates");
    let error = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("[data-testid=signin-error]"))
        .await
        .expect("a sign-in error");
    assert!(
        error.text().await.expect("text").contains("not accepted"),
        "sign-in error"
    );
    screenshot(&client, "signin-error").await;

    // The demo's link: the key is read once and leaves the address bar.
    client
        .goto(&format!("{base}/#key={key}"))
        .await
        .expect("navigates");
    open(&client, &base, "overview").await;
    let url = client.current_url().await.expect("url");
    assert!(!url.as_str().contains(&key), "the key stays in {url}");

    let summary = api("/v1/merchants/m_bakery/summary");
    let on_page = metrics(&client).await;
    for field in [
        "customers",
        "orders",
        "revenue",
        "repeat_purchase_rate",
        "repeat_customers",
        "users",
    ] {
        assert_eq!(
            shown(&on_page, field),
            summary[field].as_f64().expect("a number"),
            "overview {field}"
        );
    }
    let customers = on_page
        .iter()
        .find(|(n, _, _)| n == "customers")
        .expect("customers");
    let count = summary["customers"].as_u64().expect("n");
    assert_eq!(
        customers.2,
        format_thousands(count),
        "numbers in the locale's format"
    );
    assert_eq!(charts_rendered(&client, "overview").await, 1);
    screenshot(&client, "overview").await;

    for page in PAGES.iter().skip(1) {
        let target = if *page == "customer" {
            "customer?user=u0000001".to_owned()
        } else {
            (*page).to_owned()
        };
        open(&client, &base, &target).await;
        charts_rendered(&client, page).await;
        screenshot(&client, page).await;
        let on_page = metrics(&client).await;
        // Every number of these pages is checked against its endpoint.
        match *page {
            "rfm" => {
                for (scheme, prefix) in [("segments", "segments"), ("value-class", "classes")] {
                    let report = api(&format!(
                        "/v1/merchants/m_bakery/reports/rfm?scheme={scheme}"
                    ));
                    let rows = report["rows"].as_array().expect("rows");
                    assert!(!rows.is_empty());
                    for row in rows {
                        let segment = row["segment"].as_str().expect("segment");
                        let name = format!("{prefix}.{segment}.customers");
                        assert_eq!(
                            shown(&on_page, &name),
                            row["customers"].as_f64().expect("n"),
                            "{name}"
                        );
                    }
                }
            }
            "clusters" => {
                let report = api("/v1/merchants/m_bakery/reports/clusters");
                for row in report["rows"].as_array().expect("rows") {
                    let name = format!("clusters.{}.customers", row["cluster"]);
                    assert_eq!(
                        shown(&on_page, &name),
                        row["customers"].as_f64().expect("n"),
                        "{name}"
                    );
                }
            }
            "audiences" => {
                let list = api("/v1/merchants/m_bakery/audiences");
                let size = list["audiences"][0]["customers"].as_f64().expect("a size");
                assert!(size > 0.0);
                assert_eq!(shown(&on_page, "audiences.regulars.customers"), size);
            }
            "campaigns" => {
                let plan = api("/v1/merchants/m_bakery/campaigns/winback/plan?limit=1");
                for decision in ["send", "holdout", "skip"] {
                    let name = format!("winback.plan.{decision}");
                    assert_eq!(
                        shown(&on_page, &name),
                        plan["counts"][decision].as_f64().expect("n"),
                        "{name}"
                    );
                }
            }
            "customer" => {
                let profile = &api("/v1/merchants/m_bakery/users/u0000001/profile")["profile"];
                for field in ["orders", "revenue", "p_alive", "clv_12m"] {
                    let name = format!("profile.{field}");
                    assert_eq!(
                        shown(&on_page, &name),
                        profile[field].as_f64().expect("n"),
                        "{name}"
                    );
                }
                let list = api("/v1/merchants/m_bakery/users/u0000001/recommendations?k=10");
                let items = list["items"].as_array().expect("items");
                assert!(!items.is_empty());
                for item in items {
                    let name = format!("rec.{}.score", item["item_id"].as_str().expect("id"));
                    assert_eq!(
                        shown(&on_page, &name),
                        item["score"].as_f64().expect("score"),
                        "{name}"
                    );
                }
            }
            _ => {}
        }
        assert!(
            on_page
                .iter()
                .all(|(name, _, text)| !text.trim().is_empty() || name.is_empty()),
            "{page}: a number shows no text"
        );
    }

    // The language switch: Chinese labels.
    client
        .find(Locator::Css("[data-testid=lang]"))
        .await
        .expect("the switch")
        .click()
        .await
        .expect("clicks");
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//nav/a[text()='概览']"))
        .await
        .expect("Chinese navigation");
    open(&client, &base, "overview").await;
    screenshot(&client, "overview-zh").await;

    client.close().await.expect("the session closes");
}

/// `1234567` as en-US shows it: `1,234,567`.
fn format_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
