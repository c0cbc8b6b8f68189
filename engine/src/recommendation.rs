//! The vocabulary of recommendation lists, shared by the jobs that make them and the
//! snapshot that serves them: column names and the reason codes with their sentences.

pub const RANK: &str = "rank";
pub const SCORE: &str = "score";
pub const REASON: &str = "reason";
/// For `bought_before`: how many orders contained the item.
pub const TIMES_BOUGHT: &str = "times_bought";
/// For `bought_before`: whole days since the last order of the item.
pub const DAYS_SINCE: &str = "days_since_last";

/// Why an item is recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BoughtBefore,
    PopularInCategory,
    Popular,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BoughtBefore => "bought_before",
            Self::PopularInCategory => "popular_in_category",
            Self::Popular => "popular",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::BoughtBefore, Self::PopularInCategory, Self::Popular]
            .into_iter()
            .find(|r| r.as_str() == text)
    }

    /// A sentence for the person reading the recommendation.
    pub fn describe(
        self,
        times_bought: Option<u32>,
        days_since: Option<u32>,
        category: Option<&str>,
    ) -> String {
        match self {
            Self::BoughtBefore => match (times_bought, days_since) {
                (Some(1), Some(0)) => "bought once, today".to_owned(),
                (Some(1), Some(1)) => "bought once, yesterday".to_owned(),
                (Some(1), Some(d)) => format!("bought once, {d} days ago"),
                (Some(n), Some(0)) => format!("bought {n} times, last today"),
                (Some(n), Some(1)) => format!("bought {n} times, last yesterday"),
                (Some(n), Some(d)) => format!("bought {n} times, last {d} days ago"),
                _ => "bought before".to_owned(),
            },
            Self::PopularInCategory => match category {
                Some(c) => format!("popular in {c}, a category you like"),
                None => "popular in a category you like".to_owned(),
            },
            Self::Popular => "popular at this shop".to_owned(),
        }
    }
}
