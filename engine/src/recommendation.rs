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

impl fmt::Display for Description<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ReasonFacts {
            times_bought,
            days_since,
            category,
            cycle_days,
            with_item,
            with_share,
        } = self.facts;
        let ago = |f: &mut fmt::Formatter<'_>, d: u32| match d {
            0 => f.write_str("today"),
            1 => f.write_str("yesterday"),
            d => write!(f, "{d} days ago"),
        };
        match self.reason {
            Reason::Due => match (cycle_days, days_since) {
                (Some(cycle), Some(d)) => {
                    write!(f, "due: bought about every {cycle} days, last ")?;
                    ago(f, d)
                }
                _ => f.write_str("due to be bought again"),
            },
            Reason::BoughtTogether => match (with_item, with_share) {
                (Some(item), Some(share)) => {
                    write!(f, "bought with {item} in {share}% of its orders")
                }
                _ => f.write_str("bought together with what you buy"),
            },
            Reason::SimilarCustomers => f.write_str("customers who shop like you buy it"),
            Reason::BoughtBefore => match (times_bought, days_since) {
                (Some(1), Some(d)) => {
                    f.write_str("bought once, ")?;
                    ago(f, d)
                }
                (Some(n), Some(d)) => {
                    write!(f, "bought {n} times, last ")?;
                    ago(f, d)
                }
                _ => f.write_str("bought before"),
            },
            Reason::PopularInCategory => match category {
                Some(c) => write!(f, "popular in {c}, a category you like"),
                None => f.write_str("popular in a category you like"),
            },
            Reason::Popular => f.write_str("popular at this shop"),
            Reason::Pinned => f.write_str("picked by the shop"),
            Reason::Browsed => f.write_str("you looked at it lately"),
            Reason::NewItem => match category {
                Some(c) => write!(f, "new in {c}, a category you buy"),
                None => f.write_str("new in the shop"),
            },
            Reason::BoughtAfter => match (with_item, with_share) {
                (Some(item), Some(share)) => write!(
                    f,
                    "{share}% of the customers who bought {item} bought this within {} days",
                    crate::recs::sequence::FOLLOW_DAYS
                ),
                _ => f.write_str("often bought after what you bought lately"),
            },
            Reason::ViewedThenBought => match (with_item, with_share) {
                (Some(item), Some(share)) => {
                    write!(
                        f,
                        "{share}% of the customers who looked at {item} bought this"
                    )
                }
                _ => f.write_str("bought by customers who looked at what you looked at"),
            },
            Reason::Trending => match category {
                Some(c) => write!(f, "selling more than usual in {c}"),
                None => f.write_str("selling more than usual"),
            },
        }
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
