//! End to end: campaigns planned from a real snapshot, delivered to local stand-ins of a
//! merchant's webhook and of WeChat, killed mid-send and run again, and measured.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::standin::{Seen, StandIn, WEBHOOK_SECRET, WECHAT_APPID, WECHAT_SECRET};
use common::*;
use serde_json::Value;

const MERCHANT: &str = "m_bakery";
/// Mid-morning in Shanghai, a day after the generated history ends.
const AT: &str = "2026-11-01T10:00:00+08:00";
/// Two days later: every message planned at AT is due.
const LATER: &str = "2026-11-03T10:00:00+08:00";
/// Nine days later: past the week cap of the first sends.
const NEXT_WEEK: &str = "2026-11-10T10:00:00+08:00";

/// Generated events ingested and run, the merchant in Shanghai time; returns (data, events).
fn prepared(dir: &Path) -> (PathBuf, PathBuf) {
    let events = dir.join("events.ndjson");
    let data = dir.join("data");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--users",
        "900",
        "--seed",
        "11",
    ]);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&events)]);
    in_shanghai(&data);
    run_ok(&["run", "--data-dir", path_str(&data)]);
    (data, events)
}

/// Sets the merchant's time zone to Asia/Shanghai (the generator's +08:00).
fn in_shanghai(data: &Path) {
    run_ok(&[
        "merchant",
        "set",
        "--data-dir",
        path_str(data),
        "--merchant",
        MERCHANT,
        "--time-zone",
        "Asia/Shanghai",
    ]);
}

/// `--data-dir D --merchant M --name N`.
fn scope<'a>(data: &'a Path, name: &'a str) -> Vec<&'a str> {
    vec![
        "--data-dir",
        path_str(data),
        "--merchant",
        MERCHANT,
        "--name",
        name,
    ]
}

fn campaign_args<'a>(command: &'a str, data: &'a Path, name: &'a str) -> Vec<&'a str> {
    let mut args = vec!["campaign", command];
    args.extend(scope(data, name));
    args
}

/// Points the merchant's webhook at the stand-in.
fn use_webhook(data: &Path, standin: &StandIn) {
    let url = format!("{}/push", standin.base);
    run_ok(&[
        "merchant",
        "set",
        "--data-dir",
        path_str(data),
        "--merchant",
        MERCHANT,
        "--webhook-url",
        &url,
        "--webhook-secret",
        WEBHOOK_SECRET,
    ]);
}

fn plan(data: &Path, name: &str, at: &str) -> Vec<Value> {
    let mut args = campaign_args("plan", data, name);
    args.extend(["--at", at]);
    run_ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONL"))
        .collect()
}

fn decisions<'a>(lines: &'a [Value], decision: &str) -> BTreeSet<&'a str> {
    lines
        .iter()
        .filter(|l| l["decision"] == decision)
        .map(|l| l["user_id"].as_str().expect("user"))
        .collect()
}

fn send(data: &Path, name: &str, at: &str) -> Value {
    let mut args = campaign_args("send", data, name);
    args.extend(["--at", at, "--json"]);
    serde_json::from_str(run_ok(&args).trim()).expect("JSON summary")
}

#[test]
fn webhook_messages_arrive_once_in_effect_through_failures_and_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = prepared(dir.path());
    let standin = StandIn::start(Seen {
        // The first requests meet a failing receiver: retried, not lost.
        fail_first: 3,
        delay: Duration::from_millis(15),
        ..Seen::default()
    });
    use_webhook(&data, &standin);
    let shown = run_ok(&[
        "merchant",
        "show",
        "--data-dir",
        path_str(&data),
        "--merchant",
        MERCHANT,
    ]);
    assert!(!shown.contains(WEBHOOK_SECRET), "the secret is never shown");
    let mut create = campaign_args("create", &data, "hook");
    create.extend([
        "--goal",
        "cross_sell",
        "--channel",
        "webhook",
        "--holdout",
        "0.2",
    ]);
    run_ok(&create);

    // The plan: everyone once, sorted, the same bytes twice.
    let mut plan_args = campaign_args("plan", &data, "hook");
    plan_args.extend(["--at", AT]);
    let first = run_ok(&plan_args);
    assert_eq!(
        first,
        run_ok(&plan_args),
        "the same inputs give the same plan"
    );
    let lines = plan(&data, "hook", AT);
    let users: Vec<&str> = lines
        .iter()
        .map(|l| l["user_id"].as_str().expect("user"))
        .collect();
    let mut sorted = users.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(users, sorted, "one line per member, sorted");
    let sends = decisions(&lines, "send");
    let held = decisions(&lines, "holdout");
    assert!(sends.len() > 100, "{} sends", sends.len());
    let share = held.len() as f64 / (sends.len() + held.len()) as f64;
    assert!((0.1..0.3).contains(&share), "holdout share {share}");
    for line in lines.iter().filter(|l| l["decision"] == "send") {
        let send_at = line["send_at"].as_str().expect("send_at");
        assert!(send_at.ends_with("+08:00"), "{send_at}");
        let hour: u32 = send_at[11..13].parse().expect("hour");
        assert!((8..22).contains(&hour), "never in quiet hours: {send_at}");
        assert_eq!(line["reason"], Value::Null);
        assert!(!line["items"].as_array().expect("items").is_empty());
    }

    // Record everything, deliver what is due now.
    let first_send = send(&data, "hook", AT);
    assert_eq!(first_send["planned"].as_u64(), Some(sends.len() as u64));
    assert_eq!(first_send["held_out"].as_u64(), Some(held.len() as u64));

    // Deliver the rest slowly, killed midway, then again to the end.
    let mut args = campaign_args("send", &data, "hook");
    args.extend(["--at", LATER, "--concurrency", "2"]);
    let mut child = recur()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("send starts");
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let seen_at_kill = standin.seen.lock().expect("lock").webhook.len();
    assert!(seen_at_kill > 0, "the killed send had started delivering");
    let rest = send(&data, "hook", LATER);
    assert_eq!(rest["planned"], 0, "a rerun decides nothing new");
    assert_eq!(rest["unavailable"], 0);
    assert_eq!(send(&data, "hook", LATER)["delivered"], 0, "nothing left");

    // What the receiver saw: every planned send, each key with one body, all signed; no
    // holdout; no key beyond the plan's.
    let seen = standin.seen.lock().expect("lock");
    let mut bodies: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, body, valid) in &seen.webhook {
        assert!(valid, "signature of {key}");
        bodies.entry(key).or_default().insert(body);
    }
    assert!(
        bodies.values().all(|b| b.len() == 1),
        "a key never carries two bodies"
    );
    let received: BTreeSet<String> = seen
        .webhook
        .iter()
        .map(|(_, body, _)| {
            let body: Value = serde_json::from_str(body).expect("JSON body");
            assert_eq!(body["merchant_id"], MERCHANT);
            body["user_id"].as_str().expect("user").to_owned()
        })
        .collect();
    let planned: BTreeSet<String> = sends.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(received, planned, "exactly the planned recipients");
    assert_eq!(bodies.len(), planned.len(), "one key per recipient");
    drop(seen);

    // The plan after sending shows what was sent.
    assert_eq!(decisions(&plan(&data, "hook", LATER), "send"), sends);

    // A second campaign the same day finds every recipient capped.
    let mut create = campaign_args("create", &data, "hook2");
    create.extend(["--goal", "repurchase", "--channel", "webhook"]);
    run_ok(&create);
    let second = plan(&data, "hook2", AT);
    for line in &second {
        let user = line["user_id"].as_str().expect("user");
        if sends.contains(user) {
            assert_eq!(line["reason"], "cap_day", "{user} was sent to that day");
        }
    }

    // Measured: the delivered against the holdout.
    let mut report_args = vec!["report", "campaign"];
    report_args.extend(scope(&data, "hook"));
    report_args.extend(["--format", "json"]);
    let report: Value = serde_json::from_str(&run_ok(&report_args)).expect("JSON report");
    assert_eq!(
        report["treated"]["customers"].as_u64(),
        Some(sends.len() as u64)
    );
    assert_eq!(
        report["holdout"]["customers"].as_u64(),
        Some(held.len() as u64)
    );
    assert!(
        report["summary"]
            .as_str()
            .expect("summary")
            .contains("held out")
    );
}

#[test]
fn subscription_messages_need_consent_and_survive_an_expired_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, events) = prepared(dir.path());
    let template = "tmpl_fresh_bake_alert";
    // Consents per customer for the template, from the generated events (each event once,
    // linked user ids counted for their customer).
    let identities: Value = serde_json::from_str(&run_ok(&[
        "report",
        "identities",
        "--data-dir",
        path_str(&data),
        "--merchant",
        MERCHANT,
        "--format",
        "json",
    ]))
    .expect("JSON");
    let customer_of: HashMap<String, String> = identities["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().expect("user").to_owned(),
                r["customer_id"].as_str().expect("customer").to_owned(),
            )
        })
        .collect();
    let mut consent_events: BTreeSet<String> = BTreeSet::new();
    let mut consents: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(&events).expect("events").lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let id = event["event_id"].as_str().unwrap_or_default().to_owned();
        if event["merchant_id"] == MERCHANT
            && event["type"] == "subscribe"
            && event["properties"]["template_id"] == template
            && consent_events.insert(id)
        {
            let user = event["user_id"].as_str().expect("user");
            let customer = customer_of.get(user).map_or(user, String::as_str);
            *consents.entry(customer.to_owned()).or_default() += 1;
        }
    }
    let mut create = campaign_args("create", &data, "bake");
    create.extend([
        "--goal",
        "repurchase",
        "--channel",
        "subscribe_message",
        "--template-id",
        template,
        "--holdout",
        "0",
    ]);
    run_ok(&create);
    let lines = plan(&data, "bake", AT);
    let sends = decisions(&lines, "send");
    assert!(sends.len() > 5, "{} sends", sends.len());
    for line in &lines {
        let user = line["user_id"].as_str().expect("user");
        let consented = consents.get(user).copied().unwrap_or(0) > 0;
        match line["decision"].as_str() {
            Some("send") => assert!(consented, "{user} sent without consent"),
            _ => {
                if !consented {
                    assert_eq!(line["reason"], "no_consent", "{user}");
                }
            }
        }
    }
    let refused = lines
        .iter()
        .find(|l| l["decision"] == "send")
        .and_then(|l| l["openid"].as_str())
        .expect("an openid")
        .to_owned();

    let standin = StandIn::start(Seen {
        sends_per_token: 20,
        refuse_openid: Some(refused.clone()),
        ..Seen::default()
    });
    run_ok(&[
        "merchant",
        "set",
        "--data-dir",
        path_str(&data),
        "--merchant",
        MERCHANT,
        "--wechat-appid",
        WECHAT_APPID,
        "--wechat-secret",
        WECHAT_SECRET,
        "--wechat-api-base",
        &standin.base,
    ]);
    // Recorded at AT (what is due then goes out), the rest delivered two days later.
    send(&data, "bake", AT);
    let mut args = campaign_args("send", &data, "bake");
    args.extend(["--at", LATER]);
    let output = output_within(recur().args(&args), COMMAND_DEADLINE, &args);
    assert_success(&output, &args);
    for stream in [&output.stdout, &output.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(WECHAT_SECRET),
            "the app secret is never printed"
        );
    }
    // Run the plan again at the same instant: recorded decisions, nothing new.
    let summary = send(&data, "bake", LATER);
    assert_eq!(summary["planned"], 0);
    let seen = standin.seen.lock().expect("lock");
    assert!(seen.tokens_issued >= 2, "the expired token was replaced");
    assert!(seen.stale_token_answers >= 1);
    let delivered: BTreeSet<&str> = seen
        .wechat
        .iter()
        .map(|m| {
            assert_eq!(m["template_id"], template);
            m["touser"].as_str().expect("touser")
        })
        .collect();
    assert_eq!(delivered.len(), sends.len() - 1, "all but the refusal");
    assert!(!delivered.contains(refused.as_str()));
    drop(seen);

    // A week later another campaign on the template: one consent, one message.
    let mut create = campaign_args("create", &data, "bake2");
    create.extend([
        "--goal",
        "repurchase",
        "--channel",
        "subscribe_message",
        "--template-id",
        template,
        "--holdout",
        "0",
    ]);
    run_ok(&create);
    let later = plan(&data, "bake2", NEXT_WEEK);
    let openid_of: HashMap<&str, &str> = lines
        .iter()
        .filter_map(|l| Some((l["user_id"].as_str()?, l["openid"].as_str()?)))
        .collect();
    let mut checked = 0;
    for line in &later {
        let user = line["user_id"].as_str().expect("user");
        if sends.contains(user) && consents.get(user) == Some(&1) {
            // Delivered, or refused (43101): either way the one consent is used.
            assert_eq!(
                line["reason"], "consent_used",
                "{user} ({})",
                openid_of[user]
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "some customers consented once");
}

#[test]
fn campaigns_over_http_page_the_same_plan_the_cli_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = prepared(dir.path());
    let server = Server::start(&data, &[]);
    let base = format!("/v1/merchants/{MERCHANT}/campaigns");
    let body =
        br#"{"name":"http-hook","goal":"repurchase","channel":"webhook","k":2,"holdout":0.25}"#;
    let (status, created) = server.post(&base, "application/json", body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["campaign"]["k"], 2);
    let (status, again) = server.post(&base, "application/json", body);
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("campaign_exists"))
    );
    let (status, bad) = server.post(
        &base,
        "application/json",
        br#"{"name":"x","goal":"repurchase","channel":"subscribe_message"}"#,
    );
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("bad_campaign")),
        "{bad}"
    );
    let (status, list) = server.get(&base);
    assert_eq!(status, 200);
    assert_eq!(list["campaigns"][0]["campaign"]["name"], "http-hook");

    // Pages of the plan put together are the CLI's plan.
    let cli = plan(&data, "http-hook", AT);
    let at = AT.replace('+', "%2B");
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = server.get(&format!(
            "{base}/http-hook/plan?at={at}&offset={offset}&limit=50"
        ));
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"].as_u64(), Some(cli.len() as u64));
        let lines = page["lines"].as_array().expect("lines").clone();
        if lines.is_empty() {
            break;
        }
        offset += lines.len();
        paged.extend(lines);
    }
    assert_eq!(paged, cli);
    let (status, page) = server.get(&format!("{base}/http-hook/plan?limit=5000"));
    assert_eq!(
        (status, page["error"]["code"].as_str()),
        (400, Some("bad_limit"))
    );
    let (status, missing) = server.get(&format!("{base}/nope/plan"));
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, report) = server.get(&format!("{base}/http-hook/report?window_days=7"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["treated"]["customers"], 0, "nothing sent yet");
    assert!(
        report["summary"]
            .as_str()
            .expect("summary")
            .contains("Nothing delivered")
    );
}

fn create_triggered(data: &Path, name: &str, trigger: &str) {
    let mut create = campaign_args("create", data, name);
    create.extend([
        "--goal",
        "repurchase",
        "--channel",
        "webhook",
        "--holdout",
        "0",
        "--trigger",
        trigger,
    ]);
    run_ok(&create);
}

fn occurrences<'a>(lines: &'a [Value], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .map(|l| {
            let occurrence = l["occurrence"]
                .as_str()
                .expect("a triggered line names its occurrence");
            assert!(occurrence.starts_with(prefix), "{occurrence}");
            occurrence
        })
        .collect()
}

#[test]
fn triggers_fire_once_per_occurrence_and_opt_outs_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = prepared(dir.path());
    let mut create = campaign_args("create", &data, "everyone");
    create.extend(["--goal", "repurchase", "--channel", "webhook"]);
    run_ok(&create);
    let everyone = plan(&data, "everyone", AT);
    let user = |i: usize| everyone[i]["user_id"].as_str().expect("user").to_owned();
    let (birthday_user, leaving_user) = (user(0), user(1));
    // Member attributes and an opt-out of all pushes, before AT.
    let extra = write_lines(
        dir.path(),
        "extra.ndjson",
        &[
            event(
                "x-identify-1",
                MERCHANT,
                &birthday_user,
                "identify",
                "2026-10-20T10:00:00+08:00",
                r#""properties":{"birthday":"11-01","member_level":"gold"}"#,
            ),
            event(
                "x-identify-2",
                MERCHANT,
                &birthday_user,
                "identify",
                "2026-10-22T10:00:00+08:00",
                r#""properties":{"points":120,"tags":["coffee","weekend"]}"#,
            ),
            event(
                "x-unsubscribe-1",
                MERCHANT,
                &leaving_user,
                "unsubscribe",
                "2026-10-21T10:00:00+08:00",
                "",
            ),
        ],
    );
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&extra)]);
    // Profiles show the member attributes, the latest value of each.
    run_ok(&["run", "--data-dir", path_str(&data)]);
    let server = Server::start(&data, &[]);
    let (status, body) = server.get(&format!(
        "/v1/merchants/{MERCHANT}/users/{birthday_user}/profile"
    ));
    assert_eq!(status, 200, "{body}");
    let profile = &body["profile"];
    assert_eq!(profile["birthday"], "11-01", "{profile}");
    assert_eq!(profile["member_level"], "gold");
    assert_eq!(profile["points"], 120.0);
    assert_eq!(profile["tags"], serde_json::json!(["coffee", "weekend"]));
    drop(server);
    // Pushes go out at the hour the profile says the customer is most active (quiet hours,
    // 22:00-08:00 by default, move them to 08:00).
    let hour = profile["active_hour"].as_u64().expect("an active hour");
    let line = plan(&data, "everyone", AT)
        .into_iter()
        .find(|l| l["user_id"] == birthday_user.as_str())
        .expect("in the plan");
    let send_hour: u64 = line["send_at"].as_str().expect("send_at")[11..13]
        .parse()
        .expect("hour");
    let expected = if !(8..22).contains(&hour) { 8 } else { hour };
    assert_eq!(send_hour, expected, "{line}");
    let everyone = plan(&data, "everyone", AT);
    let leaving = everyone
        .iter()
        .find(|l| l["user_id"] == leaving_user.as_str())
        .expect("member");
    assert_eq!(leaving["reason"], "opted_out");

    create_triggered(&data, "bday", r#"{"birthday":{}}"#);
    create_triggered(&data, "after3", r#"{"after_purchase":{"days":3}}"#);
    create_triggered(&data, "due", r#"{"due":{}}"#);
    create_triggered(&data, "lapse", r#"{"p_alive_below":0.3}"#);

    let bday = plan(&data, "bday", AT);
    assert_eq!(bday.len(), 1, "{bday:?}");
    assert_eq!(bday[0]["user_id"], birthday_user.as_str());
    assert_eq!(occurrences(&bday, "birthday:"), ["birthday:2026"]);
    assert!(
        plan(&data, "bday", LATER).is_empty(),
        "not their birthday on 11-03"
    );
    let next_year = plan(&data, "bday", "2027-11-01T09:00:00+08:00");
    assert_eq!(occurrences(&next_year, "birthday:"), ["birthday:2027"]);

    let after = plan(&data, "after3", AT);
    assert!(!after.is_empty());
    occurrences(&after, "order:");
    let due = plan(&data, "due", AT);
    assert!(!due.is_empty());
    occurrences(&due, "due:");
    let lapse = plan(&data, "lapse", AT);
    assert!(!lapse.is_empty());
    occurrences(&lapse, "lapse:");
    for lines in [&after, &due, &lapse] {
        let users: BTreeSet<&str> = lines
            .iter()
            .map(|l| l["user_id"].as_str().expect("user"))
            .collect();
        assert_eq!(users.len(), lines.len(), "one firing per customer");
        let gone = lines.iter().find(|l| l["user_id"] == leaving_user.as_str());
        assert!(gone.is_none_or(|l| l["reason"] == "opted_out"), "{gone:?}");
    }

    // Run every triggered campaign twice at AT and once more a day later: the second run
    // fires nothing new, and no (customer, occurrence) is ever sent twice.
    let standin = StandIn::start(Seen::default());
    use_webhook(&data, &standin);
    let run = |at: &str| -> Vec<Value> {
        run_ok(&[
            "campaign",
            "run",
            "--data-dir",
            path_str(&data),
            "--at",
            at,
            "--json",
        ])
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
    };
    let first = run(AT);
    assert_eq!(first.len(), 4, "{first:?}");
    assert!(
        first
            .iter()
            .map(|r| r["planned"].as_u64().expect("n"))
            .sum::<u64>()
            > 0
    );
    let again = run(AT);
    for report in &again {
        assert_eq!(report["planned"], 0, "{report}");
    }
    run(LATER);
    let seen = standin.seen.lock().expect("lock");
    let mut keys = BTreeSet::new();
    for (key, body, valid) in &seen.webhook {
        assert!(valid);
        assert!(keys.insert(key.clone()), "{key} delivered twice: {body}");
    }
    assert!(!keys.is_empty());
}

/// `recur campaign create` of a repurchase campaign through the webhook, with `extra` flags.
fn create_repurchase_webhook(data: &Path, name: &str, extra: &[&str]) {
    let mut create = campaign_args("create", data, name);
    create.extend(["--goal", "repurchase", "--channel", "webhook"]);
    create.extend(extra);
    run_ok(&create);
}

/// `(user, item) → score` of the blended main lists in the current snapshot.
fn blended_scores(data: &Path) -> HashMap<(String, String), f64> {
    run_ok(&[
        "export",
        "recommendations",
        "--data-dir",
        path_str(data),
        "--merchant",
        MERCHANT,
    ])
    .lines()
    .flat_map(|line| {
        let row: Value = serde_json::from_str(line).expect("JSONL");
        let user = row["user_id"].as_str().expect("user").to_owned();
        row["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                (
                    (
                        user.clone(),
                        i["item_id"].as_str().expect("item").to_owned(),
                    ),
                    i["score"].as_f64().expect("score"),
                )
            })
            .collect::<Vec<_>>()
    })
    .collect()
}

#[test]
fn items_pushed_and_left_unopened_score_lower_in_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = prepared(dir.path());
    let standin = StandIn::start(Seen::default());
    use_webhook(&data, &standin);
    create_repurchase_webhook(&data, "nudge", &["--holdout", "0"]);
    send(&data, "nudge", AT);
    send(&data, "nudge", LATER);
    let pushed: Vec<(String, String)> = plan(&data, "nudge", LATER)
        .iter()
        .filter(|l| l["decision"] == "send")
        .flat_map(|l| {
            let user = l["user_id"].as_str().expect("user").to_owned();
            l["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| {
                    (
                        user.clone(),
                        i["item_id"].as_str().expect("item").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!pushed.is_empty());

    // A week on, nobody opened anything: the same run with and without the delivery log.
    let run_at =
        |data: &Path| run_ok(&["run", "--data-dir", path_str(data), "--as-of", "2026-11-10"]);
    let outbox = data.join(format!("merchants/merchant={MERCHANT}/outbox.jsonl"));
    let aside = dir.path().join("outbox.jsonl");
    std::fs::rename(&outbox, &aside).expect("move the log aside");
    run_at(&data);
    let without = blended_scores(&data);
    std::fs::rename(&aside, &outbox).expect("put the log back");
    run_at(&data);
    let with = blended_scores(&data);
    let mut compared = 0;
    for pair in &pushed {
        if let (Some(before), Some(after)) = (without.get(pair), with.get(pair)) {
            assert!(after < before, "{pair:?}: {before} → {after}");
            compared += 1;
        }
    }
    assert!(
        compared > pushed.len() / 4,
        "{compared} of {} pushed items still listed",
        pushed.len()
    );
}

/// The simulated campaign of `recur generate --campaign`: planned the day before delivery.
const SIMULATED_PLANNED: &str = "2026-10-09T10:00:00+08:00";
const SIMULATED_DELIVERED: &str = "2026-10-10T10:00:00+08:00";
/// After the simulated campaign's 7-day window.
const AFTER_WINDOW: &str = "2026-10-20T10:00:00+08:00";

/// The generator's per-customer truth of its simulated campaign, by customer id.
fn simulated_truth(truth: &Path) -> HashMap<String, Value> {
    std::fs::read_to_string(truth)
        .expect("truth")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let line: Value = serde_json::from_str(l).expect("truth JSON");
            let campaign = line.get("campaign")?.clone();
            Some((campaign["customer_id"].as_str()?.to_owned(), campaign))
        })
        .collect()
}

/// The users of `campaign` delivered to and held out, from the merchant's delivery log.
fn delivery_arms(data: &Path, campaign: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let log = data.join(format!("merchants/merchant={MERCHANT}/outbox.jsonl"));
    let mut user_of = HashMap::new();
    let (mut delivered, mut held_out) = (BTreeSet::new(), BTreeSet::new());
    for line in std::fs::read_to_string(log).expect("outbox").lines() {
        let record: Value = serde_json::from_str(line).expect("outbox JSON");
        let key = record["key"].as_str().expect("key").to_owned();
        match record["state"].as_str().expect("state") {
            "planned" | "held_out" if record["campaign"] != campaign => {}
            "planned" => {
                user_of.insert(key, record["user_id"].as_str().expect("user").to_owned());
            }
            "held_out" => {
                held_out.insert(record["user_id"].as_str().expect("user").to_owned());
            }
            "delivered" => {
                if let Some(user) = user_of.get(&key) {
                    delivered.insert(user.clone());
                }
            }
            _ => {}
        }
    }
    (delivered, held_out)
}

#[test]
fn the_report_recovers_a_simulated_lift_and_uplift_targeting_beats_random() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.ndjson");
    let data = dir.path().join("data");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--merchants",
        "1",
        "--users",
        "4000",
        "--days",
        "200",
        "--seed",
        "5",
        "--campaign",
        "spring",
        "--campaign-day",
        "2026-10-10",
        "--campaign-holdout",
        "0.2",
    ]);
    let truth = simulated_truth(&dir.path().join("events.truth.jsonl"));
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&events)]);
    in_shanghai(&data);
    // The snapshot the campaign was planned from: nothing after the plan.
    run_ok(&[
        "run",
        "--data-dir",
        path_str(&data),
        "--as-of",
        SIMULATED_PLANNED,
    ]);
    let standin = StandIn::start(Seen::default());
    use_webhook(&data, &standin);
    create_repurchase_webhook(&data, "spring", &["--holdout", "0.2"]);
    send(&data, "spring", SIMULATED_PLANNED);
    send(&data, "spring", SIMULATED_DELIVERED);

    // Recur held out exactly the customers the simulation left alone.
    let (delivered, held_out) = delivery_arms(&data, "spring");
    assert!(delivered.len() > 2_000 && held_out.len() > 400);
    for (users, arm) in [(&delivered, "treated"), (&held_out, "holdout")] {
        for user in users {
            if let Some(t) = truth.get(user) {
                assert_eq!(t["arm"], arm, "{user}");
            }
        }
    }
    // The report's interval covers the true lift among the treated: the share of them the
    // push made buy (customers without an order before the plan have no effect, so 0).
    let persuaded = delivered
        .iter()
        .filter(|u| {
            truth
                .get(*u)
                .is_some_and(|t| t["converted_by_push"] == true)
        })
        .count();
    let true_lift = persuaded as f64 / delivered.len() as f64;
    let mut report_args = vec!["report", "campaign"];
    report_args.extend(scope(&data, "spring"));
    report_args.extend(["--format", "json"]);
    let report = run_json(&report_args);
    let ci: Vec<f64> = report["lift"]["absolute_ci"]
        .as_array()
        .expect("interval")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect();
    assert!(
        ci[0] <= true_lift && true_lift <= ci[1],
        "true lift {true_lift:.4} outside the report's interval {ci:?}"
    );
    assert_eq!(report["lift"]["distinguishable"], true, "{report}");
    assert!(report["treated"]["push_open_rate"].as_f64().expect("opens") > 0.15);

    // A second campaign of the same goal, targeted by uplift learned from the first: the
    // customers it picks have a higher true uplift than random picks (all eligible) would.
    create_repurchase_webhook(
        &data,
        "autumn",
        &["--target", "uplift", "--uplift-share", "0.5"],
    );
    let lines = plan(&data, "autumn", AFTER_WINDOW);
    let uplift_of = |user: &str| {
        truth
            .get(user)
            .map_or(0.0, |t| t["uplift"].as_f64().expect("uplift"))
    };
    let mean =
        |users: &[&str]| users.iter().map(|u| uplift_of(u)).sum::<f64>() / users.len() as f64;
    let targeted: Vec<&str> = lines
        .iter()
        .filter(|l| l["decision"] != "skip")
        .map(|l| l["user_id"].as_str().expect("user"))
        .collect();
    let passed_over: Vec<&str> = lines
        .iter()
        .filter(|l| l["reason"] == "low_uplift")
        .map(|l| l["user_id"].as_str().expect("user"))
        .collect();
    let eligible: Vec<&str> = targeted.iter().chain(&passed_over).copied().collect();
    assert!(
        targeted.len().abs_diff(eligible.len() / 2) <= 1,
        "{} of {} targeted",
        targeted.len(),
        eligible.len()
    );
    let (picked, random) = (mean(&targeted), mean(&eligible));
    assert!(
        picked > 1.3 * random,
        "mean true uplift of the targeted {picked:.4} against {random:.4} at random"
    );
    // Its report shows the Qini table of the campaign the model learned from.
    send(&data, "autumn", AFTER_WINDOW);
    let mut report_args = vec!["report", "campaign"];
    report_args.extend(scope(&data, "autumn"));
    report_args.extend(["--format", "json"]);
    let report = run_json(&report_args);
    let uplift = &report["uplift"];
    assert_eq!(uplift["trained_on"], "spring", "{report}");
    let qini = uplift["qini"].as_array().expect("Qini table");
    assert_eq!(qini.len(), 10);
    let rate = |row: &Value| row["uplift"].as_f64().expect("uplift");
    assert!(
        rate(&qini[2]) > rate(&qini[9]),
        "the top 30% by estimated uplift gain more than everyone: {qini:?}"
    );
    assert!(uplift["qini_coefficient"].as_f64().expect("coefficient") > 0.0);
}
