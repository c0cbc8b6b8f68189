//! The vocabulary of recommendation lists, shared by the jobs that make them and the
//! snapshot that serves them: column names and the reason codes with their sentences.

use std::fmt;

pub const RANK: &str = "rank";
pub const SCORE: &str = "score";
pub const REASON: &str = "reason";
/// For `bought_before`: how many orders contained the item.
pub const TIMES_BOUGHT: &str = "times_bought";
/// For `bought_before`: whole days since the last order of the item.
pub const DAYS_SINCE: &str = "days_since_last";
/// For `due`: the item's cycle for this customer, in whole days.
pub const CYCLE_DAYS: &str = "cycle_days";
/// For `bought_together`: the customer's item that brings this one along.
pub const WITH_ITEM: &str = "with_item";
/// For `bought_together`: the percentage of `with_item`'s orders that also hold this item.
pub const WITH_SHARE: &str = "with_share";
/// True in a customer's explore list: items they never bought and kept (cross-sell and
/// new-item feeds, `exclude_purchased`); false in their main list.
pub const EXPLORE: &str = "explore";
/// In the similar-items table: the item found with `item_id`.
pub const SIMILAR_ITEM_ID: &str = "similar_item_id";

/// What a reason's sentence is made of; absent facts are `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReasonFacts<'a> {
    pub times_bought: Option<u32>,
    pub days_since: Option<u32>,
    pub category: Option<&'a str>,
    pub cycle_days: Option<u32>,
    pub with_item: Option<&'a str>,
    pub with_share: Option<u32>,
}

/// Why an item is recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Bought before and due again by its cycle (the blend's repeat-with-timing signal).
    Due,
    BoughtBefore,
    /// Bought in the same orders as one of the customer's items.
    BoughtTogether,
    /// Bought by the customers whose baskets look most like this one's (TIFU-KNN).
    SimilarCustomers,
    PopularInCategory,
    Popular,
    /// Put at the head of every list by the merchant's rules.
    Pinned,
    /// Viewed, carted or favourited lately and not bought.
    Browsed,
    /// New in the shop, in a category the customer buys.
    NewItem,
    /// Often bought in the weeks after one of the customer's recent purchases.
    BoughtAfter,
    /// Often bought by the customers who viewed what this one viewed lately.
    ViewedThenBought,
    /// Selling faster than usual lately.
    Trending,
}

/// Every reason.
pub const REASONS: [Reason; 12] = [
    Reason::Due,
    Reason::BoughtBefore,
    Reason::BoughtTogether,
    Reason::SimilarCustomers,
    Reason::PopularInCategory,
    Reason::Popular,
    Reason::Pinned,
    Reason::Browsed,
    Reason::NewItem,
    Reason::BoughtAfter,
    Reason::ViewedThenBought,
    Reason::Trending,
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::BoughtBefore => "bought_before",
            Self::BoughtTogether => "bought_together",
            Self::SimilarCustomers => "similar_customers",
            Self::PopularInCategory => "popular_in_category",
            Self::Popular => "popular",
            Self::Pinned => "pinned",
            Self::Browsed => "browsed",
            Self::NewItem => "new_item",
            Self::BoughtAfter => "bought_after",
            Self::ViewedThenBought => "viewed_then_bought",
            Self::Trending => "trending",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        REASONS.into_iter().find(|r| r.as_str() == text)
    }

    /// A sentence for the person reading the recommendation.
    pub fn describe(self, facts: &ReasonFacts<'_>) -> String {
        self.description(facts).to_string()
    }

    /// [`Self::describe`] as something to write: the API writes it straight into the JSON
    /// response, without a string of its own per item.
    pub fn description<'a>(self, facts: &ReasonFacts<'a>) -> Description<'a> {
        Description {
            reason: self,
            facts: *facts,
        }
    }
}

/// A reason's sentence ([`Reason::describe`]), written when displayed.
#[derive(Debug, Clone, Copy)]
pub struct Description<'a> {
    reason: Reason,
    facts: ReasonFacts<'a>,
}

/// What a sentence is written into, piece by piece: text and whole numbers, in order.
/// `Display` is one sink; the API's JSON body is another, which writes the numbers without
/// `core::fmt` (the sentence of every item of every list served goes through here).
pub trait SentenceSink {
    fn text(&mut self, piece: &str);
    fn number(&mut self, n: u32);
}

impl Description<'_> {
    /// The sentence, into `out`.
    pub fn write_to(&self, out: &mut impl SentenceSink) {
        let ReasonFacts {
            times_bought,
            days_since,
            category,
            cycle_days,
            with_item,
            with_share,
        } = self.facts;
        fn ago(out: &mut impl SentenceSink, d: u32) {
            match d {
                0 => out.text("today"),
                1 => out.text("yesterday"),
                d => {
                    out.number(d);
                    out.text(" days ago");
                }
            }
        }
        match self.reason {
            Reason::Due => match (cycle_days, days_since) {
                (Some(cycle), Some(d)) => {
                    out.text("due: bought about every ");
                    out.number(cycle);
                    out.text(" days, last ");
                    ago(out, d);
                }
                _ => out.text("due to be bought again"),
            },
            Reason::BoughtTogether => match (with_item, with_share) {
                (Some(item), Some(share)) => {
                    out.text("bought with ");
                    out.text(item);
                    out.text(" in ");
                    out.number(share);
                    out.text("% of its orders");
                }
                _ => out.text("bought together with what you buy"),
            },
            Reason::SimilarCustomers => out.text("customers who shop like you buy it"),
            Reason::BoughtBefore => match (times_bought, days_since) {
                (Some(1), Some(d)) => {
                    out.text("bought once, ");
                    ago(out, d);
                }
                (Some(n), Some(d)) => {
                    out.text("bought ");
                    out.number(n);
                    out.text(" times, last ");
                    ago(out, d);
                }
                _ => out.text("bought before"),
            },
            Reason::PopularInCategory => match category {
                Some(c) => {
                    out.text("popular in ");
                    out.text(c);
                    out.text(", a category you like");
                }
                None => out.text("popular in a category you like"),
            },
            Reason::Popular => out.text("popular at this shop"),
            Reason::Pinned => out.text("picked by the shop"),
            Reason::Browsed => out.text("you looked at it lately"),
            Reason::NewItem => match category {
                Some(c) => {
                    out.text("new in ");
                    out.text(c);
                    out.text(", a category you buy");
                }
                None => out.text("new in the shop"),
            },
            Reason::BoughtAfter => match (with_item, with_share) {
                (Some(item), Some(share)) => {
                    out.number(share);
                    out.text("% of the customers who bought ");
                    out.text(item);
                    out.text(" bought this within ");
                    out.number(crate::recs::sequence::FOLLOW_DAYS as u32);
                    out.text(" days");
                }
                _ => out.text("often bought after what you bought lately"),
            },
            Reason::ViewedThenBought => match (with_item, with_share) {
                (Some(item), Some(share)) => {
                    out.number(share);
                    out.text("% of the customers who looked at ");
                    out.text(item);
                    out.text(" bought this");
                }
                _ => out.text("bought by customers who looked at what you looked at"),
            },
            Reason::Trending => match category {
                Some(c) => {
                    out.text("selling more than usual in ");
                    out.text(c);
                }
                None => out.text("selling more than usual"),
            },
        }
    }
}

impl fmt::Display for Description<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A formatter as a sink: its first error is kept, and nothing more is written.
        struct Formatted<'f, 'b> {
            f: &'f mut fmt::Formatter<'b>,
            result: fmt::Result,
        }
        impl SentenceSink for Formatted<'_, '_> {
            fn text(&mut self, piece: &str) {
                if self.result.is_ok() {
                    self.result = self.f.write_str(piece);
                }
            }
            fn number(&mut self, n: u32) {
                if self.result.is_ok() {
                    self.result = write!(self.f, "{n}");
                }
            }
        }
        let mut sink = Formatted { f, result: Ok(()) };
        self.write_to(&mut sink);
        sink.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_and_says_its_anchor() {
        for reason in REASONS {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        let facts = ReasonFacts {
            times_bought: None,
            days_since: None,
            category: Some("hair care"),
            cycle_days: None,
            with_item: Some("hair dryer"),
            with_share: Some(38),
        };
        assert_eq!(
            Reason::BoughtAfter.describe(&facts),
            "38% of the customers who bought hair dryer bought this within 30 days"
        );
        assert_eq!(
            Reason::ViewedThenBought.describe(&facts),
            "38% of the customers who looked at hair dryer bought this"
        );
        assert_eq!(
            Reason::Trending.describe(&facts),
            "selling more than usual in hair care"
        );
    }
}
