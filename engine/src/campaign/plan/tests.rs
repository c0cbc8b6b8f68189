use super::*;
use crate::campaign::outbox::Entry;

const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

/// 2026-05-04 10:00 in Shanghai (02:00 UTC).
fn at() -> i64 {
    SHANGHAI
        .with_ymd_and_hms(2026, 5, 4, 10, 0, 0)
        .single()
        .expect("valid")
        .timestamp_millis()
}

fn local(ms: i64) -> String {
    SHANGHAI
        .timestamp_millis_opt(ms)
        .single()
        .expect("valid")
        .format("%m-%d %H:%M")
        .to_string()
}

fn campaign(name: &str, channel: PushChannel) -> Campaign {
    Campaign {
        name: name.to_owned(),
        audience: None,
        goal: Goal::Repurchase,
        k: 3,
        channel,
        template_id: (channel == PushChannel::SubscribeMessage).then(|| "tmpl".to_owned()),
        holdout: 0.0,
        trigger: None,
        target: None,
        created_at_ms: 0,
    }
}

fn member(user: &str) -> Member {
    Member {
        user_id: user.to_owned(),
        openid: Some(format!("o-{user}")),
        items: vec![MessageItem {
            item_id: "milk".into(),
            score: 0.5,
            reason: "due".into(),
        }],
        active_hour: None,
        events: PushEvents::default(),
        occurrence: None,
    }
}

fn subscribed(user: &str, times: &[i64]) -> Member {
    Member {
        events: PushEvents {
            subscribes: times.iter().map(|t| (*t, "tmpl".to_owned())).collect(),
            unsubscribes: vec![],
        },
        ..member(user)
    }
}

fn context<'a>(
    campaign: &'a Campaign,
    push: &'a PushSettings,
    outbox: &'a OutboxState,
) -> PlanContext<'a> {
    PlanContext {
        merchant_id: "m1",
        campaign,
        at_ms: at(),
        zone: SHANGHAI,
        push,
        outbox,
    }
}

/// Records `message` in `outbox` as delivered.
fn record(outbox: &mut OutboxState, message: Message) {
    outbox
        .by_user
        .entry(message.user_id.clone())
        .or_default()
        .push(message.key.clone());
    outbox.order.push(message.key.clone());
    outbox.entries.insert(
        message.key.clone(),
        Entry {
            message,
            status: Status::Delivered { at_ms: at() },
        },
    );
}

/// An outbox holding the `send` lines of `lines` as delivered.
fn delivered(context: &PlanContext<'_>, lines: &[PlanLine], outbox: &mut OutboxState) {
    for line in lines.iter().filter(|l| l.decision == Decision::Send) {
        record(
            outbox,
            context.message(line).expect("a send line has a message"),
        );
    }
}

#[test]
fn one_consent_gives_one_message() {
    let push = PushSettings::default();
    let spring = campaign("spring", PushChannel::SubscribeMessage);
    let empty = OutboxState::default();
    let members = [
        subscribed("u1", &[at() - DAY_MS]),
        member("u2"),
        subscribed("u3", &[at() - 3 * DAY_MS, at() - DAY_MS]),
        Member {
            openid: None,
            ..subscribed("u4", &[at() - DAY_MS])
        },
    ];
    let plan: Vec<PlanLine> = members
        .iter()
        .map(|m| context(&spring, &push, &empty).decide(m))
        .collect();
    assert_eq!(plan[0].decision, Decision::Send);
    assert_eq!(plan[1].reason, Some(SkipReason::NoConsent));
    assert_eq!(plan[2].decision, Decision::Send);
    assert_eq!(plan[3].reason, Some(SkipReason::NoOpenid));

    // After delivery, a second campaign on the same template (a week later, past the caps)
    // finds u1's consent used and u3's second consent still there.
    let mut outbox = OutboxState::default();
    delivered(&context(&spring, &push, &empty), &plan, &mut outbox);
    let autumn = campaign("autumn", PushChannel::SubscribeMessage);
    let later = PlanContext {
        at_ms: at() + 8 * DAY_MS,
        ..context(&autumn, &push, &outbox)
    };
    assert_eq!(
        later.decide(&members[0]).reason,
        Some(SkipReason::ConsentUsed)
    );
    assert_eq!(later.decide(&members[2]).decision, Decision::Send);

    // The same campaign planned again shows what was recorded, not a new decision.
    let again = context(&spring, &push, &outbox).decide(&members[0]);
    assert_eq!(again, plan[0]);

    // A webhook campaign needs no consent.
    let hook = campaign("hook", PushChannel::Webhook);
    let webhook = PlanContext {
        at_ms: at() + 8 * DAY_MS,
        ..context(&hook, &push, &outbox)
    };
    assert_eq!(webhook.decide(&member("u2")).decision, Decision::Send);
}

#[test]
fn caps_count_every_campaign_of_the_merchant() {
    let push = PushSettings::default();
    let first = campaign("first", PushChannel::Webhook);
    let empty = OutboxState::default();
    let lines = [context(&first, &push, &empty).decide(&member("u1"))];
    let mut outbox = OutboxState::default();
    delivered(&context(&first, &push, &empty), &lines, &mut outbox);

    let second = campaign("second", PushChannel::Webhook);
    let same_day = context(&second, &push, &outbox);
    assert_eq!(
        same_day.decide(&member("u1")).reason,
        Some(SkipReason::CapDay)
    );
    assert_eq!(same_day.decide(&member("u2")).decision, Decision::Send);

    // Three days running fill the week: the fourth day is capped by the week.
    let mut outbox = OutboxState::default();
    for day in 0..3 {
        let c = campaign(&format!("daily{day}"), PushChannel::Webhook);
        let (line, message) = {
            let ctx = PlanContext {
                at_ms: at() + day * DAY_MS,
                ..context(&c, &push, &outbox)
            };
            let line = ctx.decide(&member("u1"));
            let message = ctx.message(&line);
            (line, message)
        };
        assert_eq!(line.decision, Decision::Send, "day {day}");
        record(&mut outbox, message.expect("a message"));
    }
    let fourth = campaign("daily3", PushChannel::Webhook);
    let ctx = PlanContext {
        at_ms: at() + 3 * DAY_MS,
        ..context(&fourth, &push, &outbox)
    };
    assert_eq!(ctx.decide(&member("u1")).reason, Some(SkipReason::CapWeek));
    // Seven days after the first, the week has room again.
    let ctx = PlanContext {
        at_ms: at() + 7 * DAY_MS,
        ..context(&fourth, &push, &outbox)
    };
    assert_eq!(ctx.decide(&member("u1")).decision, Decision::Send);
}

#[test]
fn an_opt_out_holds_from_its_time_until_the_customer_subscribes_again() {
    let push = PushSettings::default();
    let spring = campaign("spring", PushChannel::SubscribeMessage);
    let outbox = OutboxState::default();
    let ctx = context(&spring, &push, &outbox);
    let mut m = subscribed("u1", &[at() - 3 * DAY_MS]);
    m.events.unsubscribes.push((at() - DAY_MS, None));
    assert_eq!(ctx.decide(&m).reason, Some(SkipReason::OptedOut));
    // An opt-out of another template leaves this one alone.
    m.events.unsubscribes = vec![(at() - DAY_MS, Some("other".into()))];
    assert_eq!(ctx.decide(&m).decision, Decision::Send);
    // Of this template: out, until a new subscribe.
    m.events.unsubscribes = vec![(at() - DAY_MS, Some("tmpl".into()))];
    assert_eq!(ctx.decide(&m).reason, Some(SkipReason::OptedOut));
    m.events.subscribes.push((at() - 3_600_000, "tmpl".into()));
    assert_eq!(ctx.decide(&m).decision, Decision::Send);

    // A webhook campaign honours an all-pushes opt-out.
    let hook = campaign("hook", PushChannel::Webhook);
    let ctx = context(&hook, &push, &outbox);
    let mut m = member("u2");
    m.events.unsubscribes.push((at() - DAY_MS, None));
    assert_eq!(ctx.decide(&m).reason, Some(SkipReason::OptedOut));
}

#[test]
fn sends_go_at_the_active_hour_and_never_in_quiet_hours_in_shanghai() {
    let quiet = (LocalTime::new(22, 0), LocalTime::new(8, 0));
    let send =
        |at_ms: i64, hour: Option<u32>| local(send_time(at_ms, hour, SHANGHAI, quiet.0, quiet.1));
    // At 10:00, active at 19h: today 19:00.
    assert_eq!(send(at(), Some(19)), "05-04 19:00");
    // Active at 9h, already past: tomorrow 09:00.
    assert_eq!(send(at(), Some(9)), "05-05 09:00");
    // Active at 23h: quiet, so 08:00 the next morning.
    assert_eq!(send(at(), Some(23)), "05-05 08:00");
    // Active at 3h: tomorrow 03:00 is quiet too, so 08:00.
    assert_eq!(send(at(), Some(3)), "05-05 08:00");
    // Within the active hour: now.
    assert_eq!(send(at() + 600_000, Some(10)), "05-04 10:10");
    // Unknown hour, planned at 23:30: the next morning.
    assert_eq!(send(at() + 13 * 3_600_000 + 1_800_000, None), "05-05 08:00");
    // Quiet hours within a day (12:00–14:00).
    let lunch = local(send_time(
        at(),
        Some(13),
        SHANGHAI,
        LocalTime::new(12, 0),
        LocalTime::new(14, 0),
    ));
    assert_eq!(lunch, "05-04 14:00");

    // In the plan: RFC 3339 with the merchant's offset.
    let push = PushSettings::default();
    let c = campaign("spring", PushChannel::Webhook);
    let outbox = OutboxState::default();
    let line = context(&c, &push, &outbox).decide(&Member {
        active_hour: Some(23),
        ..member("u1")
    });
    assert_eq!(line.send_at.as_deref(), Some("2026-05-05T08:00:00+08:00"));
}

#[test]
fn the_holdout_is_stable_and_near_its_share() {
    let push = PushSettings::default();
    let c = Campaign {
        holdout: 0.1,
        ..campaign("spring", PushChannel::Webhook)
    };
    let outbox = OutboxState::default();
    let ctx = context(&c, &push, &outbox);
    let members: Vec<Member> = (0..20_000).map(|u| member(&format!("u{u:06}"))).collect();
    let lines: Vec<PlanLine> = members.iter().map(|m| ctx.decide(m)).collect();
    let held = lines
        .iter()
        .filter(|l| l.decision == Decision::Holdout)
        .count();
    let share = held as f64 / lines.len() as f64;
    assert!((share - 0.1).abs() < 0.02, "holdout share {share}");
    // Stable: the same inputs give the same lines.
    let again: Vec<PlanLine> = members.iter().map(|m| ctx.decide(m)).collect();
    assert_eq!(lines, again);
    // Another campaign draws another holdout.
    assert!(
        in_holdout("spring", "u000003", 0.1) != in_holdout("autumn", "u000003", 0.1)
            || (0..100).any(|u| {
                let user = format!("u{u:06}");
                in_holdout("spring", &user, 0.1) != in_holdout("autumn", &user, 0.1)
            })
    );
    // Skipped customers are never held out.
    let none = Member {
        items: vec![],
        ..member("u1")
    };
    assert_eq!(ctx.decide(&none).reason, Some(SkipReason::NoItems));
}

#[test]
fn each_occurrence_of_a_trigger_is_its_own_message_and_fires_once() {
    let push = PushSettings::default();
    let c = campaign("after", PushChannel::Webhook);
    let empty = OutboxState::default();
    let fired = |occurrence: &str| Member {
        occurrence: Some(occurrence.to_owned()),
        ..member("u1")
    };
    let ctx = context(&c, &push, &empty);
    let first = ctx.decide(&fired("order:o1"));
    assert_eq!(first.occurrence.as_deref(), Some("order:o1"));
    let message = ctx.message(&first).expect("a send");
    assert_eq!(message.occurrence, "order:o1");
    let mut outbox = OutboxState::default();
    record(&mut outbox, message.clone());
    // The same occurrence again: the recorded line, not a new message.
    let again = context(&c, &push, &outbox).decide(&fired("order:o1"));
    assert_eq!(again, first);
    // A new order a week later: a new message under a new key.
    let later = PlanContext {
        at_ms: at() + 8 * DAY_MS,
        ..context(&c, &push, &outbox)
    };
    let second = later.decide(&fired("order:o2"));
    assert_eq!(second.decision, Decision::Send);
    assert_ne!(later.message(&second).expect("a send").key, message.key);
}

#[test]
fn the_active_hour_is_the_most_frequent_local_hour_ties_to_the_earlier() {
    let local_ms = |d: u32, h: u32| {
        SHANGHAI
            .with_ymd_and_hms(2026, 5, d, h, 30, 0)
            .single()
            .expect("valid")
            .timestamp_millis()
    };
    let events = polars::df!(
        USER_ID => ["u1", "u1", "u1", "u2", "u2"],
        TS => [local_ms(1, 20), local_ms(2, 9), local_ms(3, 9), local_ms(1, 21), local_ms(2, 7)],
    )
    .expect("frame")
    .lazy();
    let zone = TimeZoneName::new("Asia/Shanghai").expect("zone");
    let hours = active_hours(events, &zone).expect("hours");
    assert_eq!(hours["u1"], 9, "twice at 9, once at 20");
    assert_eq!(hours["u2"], 7, "a tie goes to the earlier hour");
}
