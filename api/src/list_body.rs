//! The recommendations response written straight into its buffer: the hottest endpoint's body
//! in one pass, byte for byte what `serde_json` writes for the same list (field names as
//! literals, strings copied when they need no escaping, scores by the float formatter
//! `serde_json` itself uses), without serde's per-field machinery. A merchant whose item ids
//! and categories all are plain JSON text (the usual case, known at snapshot load) has its
//! ids and sentences copied without a look at their bytes.

use recur_engine::frame_json::is_plain_json_text as plain;
use recur_engine::recommendation::SentenceSink;
use recur_engine::snapshot::{ItemView, ListView};

/// Bytes reserved for a list response: ten items with their sentences fit.
const CAPACITY: usize = 2048;

/// The JSON body of `list`, served from the snapshot named `snapshot`.
pub(crate) fn render(list: &ListView<'_>, snapshot: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(CAPACITY);
    out.extend_from_slice(b"{\"merchant_id\":");
    string(&mut out, list.merchant_id);
    out.extend_from_slice(b",\"user_id\":");
    string(&mut out, list.user_id);
    out.extend_from_slice(b",\"customer_id\":");
    string(&mut out, list.customer_id);
    out.extend_from_slice(if list.personalized {
        b",\"personalized\":true"
    } else {
        b",\"personalized\":false"
    });
    if let Some(cold_start) = list.cold_start {
        out.extend_from_slice(b",\"cold_start\":");
        string(&mut out, cold_start);
    }
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(&mut out, item, list.plain_text);
    }
    out.extend_from_slice(b"],\"snapshot\":");
    string(&mut out, snapshot);
    out.push(b'}');
    out
}

/// One item; `plain_text`: its id and sentence need no escaping ([`ListView::plain_text`]).
fn write_item(out: &mut Vec<u8>, item: &ItemView<'_>, plain_text: bool) {
    out.extend_from_slice(b"{\"item_id\":");
    if plain_text {
        quoted(out, item.item_id);
    } else {
        string(out, item.item_id);
    }
    out.extend_from_slice(b",\"score\":");
    number(out, item.score);
    // Reason codes are plain JSON text (a test holds every one to it).
    out.extend_from_slice(b",\"reason\":");
    quoted(out, item.reason);
    out.extend_from_slice(b",\"detail\":\"");
    // The sentence is written straight into the body, each piece escaped as it comes unless
    // the merchant's texts are all plain.
    item.detail.write_to(&mut SentenceText { out, plain_text });
    out.extend_from_slice(b"\"}");
}

/// `s`, known to be plain JSON text, in quotes.
fn quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// `s` as a JSON string, quotes included.
fn string(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        quoted(out, s);
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing a str to a Vec cannot fail");
    }
}

/// A float as `serde_json` writes it: its shortest form by the same formatter, `null` when
/// not finite.
fn number(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A sentence written as a JSON string's contents; `plain_text`: its pieces need no escaping.
struct SentenceText<'a> {
    out: &'a mut Vec<u8>,
    plain_text: bool,
}

impl SentenceSink for SentenceText<'_> {
    fn text(&mut self, piece: &str) {
        if self.plain_text || plain(piece) {
            self.out.extend_from_slice(piece.as_bytes());
        } else {
            let quoted = serde_json::to_vec(piece).expect("writing a str to a Vec cannot fail");
            self.out.extend_from_slice(&quoted[1..quoted.len() - 1]);
        }
    }

    fn number(&mut self, n: u32) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use recur_engine::recommendation::{Reason, ReasonFacts};

    use super::*;

    /// What serde writes for the same list: the shape the handler used to serialize.
    #[derive(serde::Serialize)]
    struct Expected<'a> {
        merchant_id: &'a str,
        user_id: &'a str,
        customer_id: &'a str,
        personalized: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        cold_start: Option<&'static str>,
        items: &'a [ItemView<'a>],
        snapshot: &'a str,
    }

    fn same_as_serde(list: &ListView<'_>, snapshot: &str) {
        let expected = serde_json::to_vec(&Expected {
            merchant_id: list.merchant_id,
            user_id: list.user_id,
            customer_id: list.customer_id,
            personalized: list.personalized,
            cold_start: list.cold_start,
            items: &list.items,
            snapshot,
        })
        .expect("serde writes the list");
        let written = render(list, snapshot);
        assert_eq!(
            String::from_utf8(written).expect("UTF-8 body"),
            String::from_utf8(expected).expect("UTF-8 body")
        );
    }

    fn item<'a>(id: &'a str, score: f64, reason: Reason, facts: ReasonFacts<'a>) -> ItemView<'a> {
        ItemView {
            item_id: id,
            score,
            reason: reason.as_str(),
            detail: reason.description(&facts),
            days_since: facts.days_since,
        }
    }

    #[test]
    fn writes_what_serde_writes_for_plain_and_awkward_strings() {
        let facts = |category, with_item| ReasonFacts {
            times_bought: Some(3),
            days_since: Some(8),
            category,
            cycle_days: Some(7),
            with_item,
            with_share: Some(41),
        };
        let items = vec![
            item("sku_latte", 1.3909, Reason::Due, facts(None, None)),
            item(
                "say \"cheese\"\\",
                0.0,
                Reason::PopularInCategory,
                facts(Some("tab\there, 咖啡"), None),
            ),
            item(
                "line\nbreak\u{1}",
                -2.5,
                Reason::BoughtTogether,
                facts(None, Some("the \"big\" one")),
            ),
            item("sku_big", 1e17, Reason::BoughtBefore, facts(None, None)),
            item("sku_small", 1e-7, Reason::Trending, facts(Some("茶"), None)),
            item("sku_nan", f64::NAN, Reason::Popular, facts(None, None)),
        ];
        let list = ListView {
            merchant_id: "m_bakery",
            user_id: "u\"1\"",
            customer_id: "u1",
            personalized: true,
            cold_start: None,
            items,
            plain_text: false,
        };
        same_as_serde(&list, "20261128T083317911Z-000170");
        let cold = ListView {
            personalized: false,
            cold_start: Some("scene"),
            items: Vec::new(),
            ..list
        };
        same_as_serde(&cold, "s");
    }

    #[test]
    fn a_plain_merchant_is_copied_as_serde_would_escape_it() {
        // Every reason with every fact, over plain ids and categories: the sentences' fixed
        // words must be plain too, or copying them unescaped would break the JSON.
        let facts = ReasonFacts {
            times_bought: Some(2),
            days_since: Some(1),
            category: Some("咖啡 & cake"),
            cycle_days: Some(7),
            with_item: Some("sku_croissant"),
            with_share: Some(41),
        };
        let items: Vec<ItemView<'_>> = recur_engine::recommendation::REASONS
            .iter()
            .flat_map(|&reason| {
                [
                    item("sku_latte", 0.5, reason, facts),
                    item("sku_tea", 0.25, reason, ReasonFacts::default()),
                ]
            })
            .collect();
        for view in &items {
            assert!(plain(view.reason), "{}", view.reason);
            assert!(plain(&view.detail.to_string()), "{}", view.detail);
        }
        let list = ListView {
            merchant_id: "m_bakery",
            user_id: "o_\"wx\"",
            customer_id: "u1",
            personalized: true,
            cold_start: None,
            items,
            plain_text: true,
        };
        same_as_serde(&list, "20261128T083317911Z-000170");
    }

    #[test]
    fn every_rounded_score_is_written_as_serde_writes_it() {
        // Scores are rounded to 4 decimals; every such value up to 3 and a spread of larger ones.
        for n in (0..30_000).chain((30_000..100_000_000).step_by(99_991)) {
            let score = f64::from(n) / 10_000.0;
            let mut written = Vec::new();
            number(&mut written, score);
            assert_eq!(
                written,
                serde_json::to_vec(&score).expect("a number"),
                "{score}"
            );
        }
    }
}
