//! The recommendations endpoint's body, written straight into bytes: the hottest response of
//! the API, byte-for-byte what serde_json writes for the same list (a test holds it to that).
//!
//! Why by hand: serde_json escapes every string byte by byte and goes through `fmt` for each
//! sentence; here strings are checked eight bytes at a time and copied whole when nothing in
//! them needs escaping (ids and sentences almost never do), and the field names are constants.

use std::fmt::{self, Write as _};

use recur_engine::snapshot::{ItemView, ListView};

/// Appends the JSON object of `list` answered from `snapshot` to `out`.
pub(crate) fn write_list(out: &mut Vec<u8>, list: &ListView<'_>, snapshot: &str) {
    out.extend_from_slice(b"{\"merchant_id\":");
    write_str(out, list.merchant_id);
    out.extend_from_slice(b",\"user_id\":");
    write_str(out, list.user_id);
    out.extend_from_slice(b",\"customer_id\":");
    write_str(out, list.customer_id);
    out.extend_from_slice(if list.personalized {
        b",\"personalized\":true"
    } else {
        b",\"personalized\":false"
    });
    if let Some(cold_start) = list.cold_start {
        out.extend_from_slice(b",\"cold_start\":");
        write_str(out, cold_start);
    }
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(out, item);
    }
    out.extend_from_slice(b"],\"snapshot\":");
    write_str(out, snapshot);
    out.push(b'}');
}

fn write_item(out: &mut Vec<u8>, item: &ItemView<'_>) {
    out.extend_from_slice(b"{\"item_id\":");
    write_str(out, item.item_id);
    out.extend_from_slice(b",\"score\":");
    // serde_json's own float formatting (and `null` for a non-finite score), so the digits
    // are exactly the ones it writes.
    serde_json::to_writer(&mut *out, &item.score).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"reason\":");
    write_str(out, item.reason);
    out.extend_from_slice(b",\"detail\":\"");
    write!(Escaped(out), "{}", item.detail).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b"\"}");
}

/// A JSON string: quoted, escaped as serde_json escapes.
fn write_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    escape_into(out, value);
    out.push(b'"');
}

/// A `fmt::Write` that escapes what is written into the inside of a JSON string.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape_into(self.0, text);
        Ok(())
    }
}

/// Appends `text` with `"`, `\` and control characters escaped (`\n`-style where JSON has a
/// short form, `\u00XX` otherwise, lowercase hex — serde_json's choices).
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !needs_escaping(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0A => b'n',
            0x0C => b'f',
            0x0D => b'r',
            0x00..=0x1F => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any byte is `"`, `\` or below 0x20, eight bytes at a time (the classic SWAR tests
/// for a zero byte and a byte below n, exact as to whether one exists).
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if below_space
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use recur_engine::recommendation::{Reason, ReasonFacts};

    use super::*;

    /// What serde_json writes for the same list: the contract this module keeps.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        merchant_id: &'a str,
        user_id: &'a str,
        customer_id: &'a str,
        personalized: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        cold_start: Option<&'static str>,
        items: &'a [ItemView<'a>],
        snapshot: &'a str,
    }

    fn via_serde(list: &ListView<'_>, snapshot: &str) -> String {
        serde_json::to_string(&Body {
            merchant_id: list.merchant_id,
            user_id: list.user_id,
            customer_id: list.customer_id,
            personalized: list.personalized,
            cold_start: list.cold_start,
            items: &list.items,
            snapshot,
        })
        .expect("serde")
    }

    fn by_hand(list: &ListView<'_>, snapshot: &str) -> String {
        let mut out = Vec::new();
        write_list(&mut out, list, snapshot);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn the_body_is_byte_for_byte_what_serde_json_writes() {
        let awkward = [
            "plain",
            "",
            "quote\"inside",
            "back\\slash",
            "tab\tnew\nline\r\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f} control",
            "千层蛋糕 crème brûlée 🥐",
            "exactly8",
            "a long id with a quote at the end of many chunks\"",
            "\\\"\\\"",
        ];
        let facts = |name: &'static str| ReasonFacts {
            times_bought: Some(3),
            days_since: Some(8),
            category: Some(name),
            cycle_days: Some(7),
            with_item: Some(name),
            with_share: Some(41),
        };
        for (n, text) in awkward.iter().enumerate() {
            let items: Vec<ItemView<'_>> = [
                Reason::Due,
                Reason::BoughtTogether,
                Reason::PopularInCategory,
            ]
            .into_iter()
            .zip([0.1234, f64::NAN, 1e-7])
            .map(|(reason, score)| ItemView {
                item_id: text,
                score,
                reason: reason.as_str(),
                detail: reason.description(&facts(text)),
                days_since: Some(8),
            })
            .collect();
            let list = ListView {
                merchant_id: "m_bakery",
                user_id: text,
                customer_id: awkward[(n + 1) % awkward.len()],
                personalized: n % 2 == 0,
                cold_start: (n % 3 == 0).then_some("scene"),
                items,
            };
            assert_eq!(by_hand(&list, text), via_serde(&list, text), "{text:?}");
            let empty = ListView {
                items: Vec::new(),
                ..list
            };
            assert_eq!(by_hand(&empty, "s"), via_serde(&empty, "s"));
        }
    }

    #[test]
    fn the_eight_byte_check_finds_every_byte_that_needs_escaping() {
        for length in 0..20 {
            for position in 0..length {
                for byte in (0u8..0x80).chain([0xC3, 0xFF]) {
                    let mut bytes = vec![b'a'; length];
                    bytes[position] = byte;
                    let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
                    assert_eq!(needs_escaping(&bytes), expected, "{bytes:?}");
                }
            }
        }
    }
}
