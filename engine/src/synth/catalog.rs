//! The three kinds of merchant the synthetic stream imitates, with their catalogues, channels,
//! rhythms and the BG/NBD parameters their customers' purchase rates are drawn from; and the
//! [`Catalogue`] a merchant sells from: the named items, optionally extended to a long tail of
//! generated ones, with Zipf popularity within each category and items bought together.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use crate::event::Channel;

/// One category of a merchant's catalogue.
pub(super) struct Category {
    pub name: &'static str,
    /// (item id, unit price)
    pub items: &'static [(&'static str, f64)],
    /// Typical days between two purchases of the same item, for consumables.
    pub replenish_days: Option<f64>,
}

/// A kind of merchant.
pub(super) struct Archetype {
    pub key: &'static str,
    pub name: &'static str,
    /// Share of all generated users that belong to this merchant.
    pub user_weight: f64,
    pub channels: &'static [(Channel, f64)],
    pub categories: &'static [Category],
    /// BG/NBD heterogeneity: purchase rate λ ~ Gamma(r, α) per day, dropout p ~ Beta(a, b).
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    /// Share of users who browse but never buy.
    pub browser_share: f64,
    /// Relative purchase intensity Monday..Sunday (local time).
    pub weekday: [f64; 7],
    /// Relative activity per local hour 0..23.
    pub hours: [f64; 24],
    pub refund_rate: f64,
    /// WeChat subscription message templates customers consent to.
    pub templates: &'static [&'static str],
    /// (item, companion, probability that an order of the item also holds the companion)
    pub companions: &'static [(&'static str, &'static str, f64)],
}

const MORNING_AND_EVENING: [f64; 24] = [
    0.1, 0.05, 0.02, 0.02, 0.05, 0.3, 1.2, 2.5, 3.0, 2.2, 1.5, 1.3, 1.6, 1.2, 1.0, 1.1, 1.5, 2.2,
    2.6, 2.0, 1.4, 0.9, 0.5, 0.2,
];
const EVENINGS: [f64; 24] = [
    0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.9, 1.0, 1.1, 1.4, 1.1, 1.0, 1.0, 1.2, 1.6,
    2.2, 2.8, 3.0, 2.6, 1.6, 0.6,
];

pub(super) const ARCHETYPES: [Archetype; 3] = [
    Archetype {
        key: "bakery",
        name: "Sunrise Bakery (mini program + micro-store)",
        user_weight: 0.5,
        channels: &[(Channel::MiniProgram, 0.6), (Channel::MicroStore, 0.4)],
        categories: &[
            Category {
                name: "bread",
                items: &[
                    ("sku_baguette", 12.0),
                    ("sku_whole_wheat_loaf", 16.0),
                    ("sku_milk_toast", 14.0),
                    ("sku_rye_bread", 18.0),
                    ("sku_brioche", 15.0),
                    ("sku_sourdough", 22.0),
                ],
                replenish_days: Some(4.0),
            },
            Category {
                name: "pastry",
                items: &[
                    ("sku_croissant", 9.0),
                    ("sku_egg_tart", 7.0),
                    ("sku_pain_au_chocolat", 11.0),
                    ("sku_cinnamon_roll", 10.0),
                    ("sku_red_bean_bun", 6.0),
                ],
                replenish_days: Some(7.0),
            },
            Category {
                name: "cake",
                items: &[
                    ("sku_birthday_cake_6in", 168.0),
                    ("sku_cheesecake_slice", 28.0),
                    ("sku_tiramisu", 32.0),
                    ("sku_mango_mousse", 36.0),
                ],
                replenish_days: None,
            },
            Category {
                name: "coffee",
                items: &[
                    ("sku_americano", 15.0),
                    ("sku_latte", 22.0),
                    ("sku_oat_latte", 25.0),
                ],
                replenish_days: Some(3.0),
            },
        ],
        r: 0.9,
        alpha: 12.0,
        a: 0.6,
        b: 6.0,
        browser_share: 0.25,
        weekday: [0.9, 0.85, 0.9, 0.95, 1.05, 1.35, 1.3],
        hours: MORNING_AND_EVENING,
        refund_rate: 0.02,
        templates: &["tmpl_order_ready", "tmpl_fresh_bake_alert"],
        companions: &[
            ("sku_croissant", "sku_latte", 0.45),
            ("sku_egg_tart", "sku_americano", 0.3),
            ("sku_baguette", "sku_cheesecake_slice", 0.15),
        ],
    },
    Archetype {
        key: "kids_edu",
        name: "Little Sprouts Learning (children's courses)",
        user_weight: 0.2,
        channels: &[
            (Channel::MiniProgram, 0.5),
            (Channel::OfficialAccount, 0.3),
            (Channel::H5, 0.2),
        ],
        categories: &[
            Category {
                name: "trial_class",
                items: &[
                    ("crs_trial_math", 9.9),
                    ("crs_trial_english", 9.9),
                    ("crs_trial_art", 19.9),
                ],
                replenish_days: None,
            },
            Category {
                name: "math",
                items: &[
                    ("crs_math_term", 2980.0),
                    ("crs_math_olympiad", 3980.0),
                    ("crs_math_workbook", 68.0),
                ],
                replenish_days: Some(90.0),
            },
            Category {
                name: "english",
                items: &[
                    ("crs_english_term", 3280.0),
                    ("crs_phonics", 1280.0),
                    ("crs_reading_club", 399.0),
                ],
                replenish_days: Some(90.0),
            },
            Category {
                name: "art",
                items: &[("crs_drawing_term", 1880.0), ("crs_art_supplies", 128.0)],
                replenish_days: Some(60.0),
            },
        ],
        r: 0.4,
        alpha: 45.0,
        a: 1.0,
        b: 4.0,
        browser_share: 0.4,
        weekday: [0.8, 0.8, 0.8, 0.9, 1.0, 1.5, 1.4],
        hours: EVENINGS,
        refund_rate: 0.06,
        templates: &["tmpl_class_reminder", "tmpl_term_renewal"],
        companions: &[
            ("crs_math_term", "crs_math_workbook", 0.5),
            ("crs_drawing_term", "crs_art_supplies", 0.6),
            ("crs_english_term", "crs_reading_club", 0.3),
        ],
    },
    Archetype {
        key: "laundry",
        name: "FreshPress Laundry (life service)",
        user_weight: 0.3,
        channels: &[(Channel::MiniProgram, 0.7), (Channel::Offline, 0.3)],
        categories: &[
            Category {
                name: "wash_fold",
                items: &[
                    ("svc_wash_fold_5kg", 39.0),
                    ("svc_wash_fold_10kg", 69.0),
                    ("svc_bedding_set", 59.0),
                ],
                replenish_days: Some(10.0),
            },
            Category {
                name: "dry_clean",
                items: &[
                    ("svc_dry_clean_shirt", 15.0),
                    ("svc_dry_clean_suit", 45.0),
                    ("svc_down_jacket", 79.0),
                ],
                replenish_days: Some(21.0),
            },
            Category {
                name: "shoe_care",
                items: &[("svc_sneaker_clean", 35.0), ("svc_leather_shoe_care", 49.0)],
                replenish_days: Some(30.0),
            },
            Category {
                name: "membership",
                items: &[
                    ("svc_prepaid_card_300", 300.0),
                    ("svc_prepaid_card_1000", 1000.0),
                ],
                replenish_days: None,
            },
        ],
        r: 0.7,
        alpha: 20.0,
        a: 0.7,
        b: 5.0,
        browser_share: 0.3,
        weekday: [1.0, 0.9, 0.9, 0.95, 1.0, 1.25, 1.2],
        hours: EVENINGS,
        refund_rate: 0.03,
        templates: &["tmpl_pickup_ready", "tmpl_laundry_reminder"],
        companions: &[
            ("svc_dry_clean_suit", "svc_dry_clean_shirt", 0.5),
            ("svc_wash_fold_10kg", "svc_sneaker_clean", 0.2),
        ],
    },
];

/// One item a merchant sells.
pub(super) struct CatalogueItem {
    pub id: String,
    pub category: usize,
    pub price: f64,
    /// The category's typical days between two purchases; `None` for one-off items.
    pub cycle_days: Option<f64>,
    /// An item often put in the same order, and how often.
    pub companion: Option<(usize, f64)>,
}

/// A merchant's catalogue: items, and per category its items with Zipf popularity.
pub(super) struct Catalogue {
    pub items: Vec<CatalogueItem>,
    /// Per category: its item indices, most popular first.
    pub by_category: Vec<Vec<usize>>,
    /// Per category: cumulative Zipf weights of `by_category` (for a binary-search draw).
    cumulative: Vec<Vec<f64>>,
}

/// Companion probability of the generated long tail: an item's same-rank peer in the next
/// category.
const TAIL_COMPANION_PROBABILITY: f64 = 0.25;

impl Catalogue {
    /// The archetype's named items, extended to `size` items (when larger) by generated ones
    /// spread over the categories in proportion to their named sizes. `seed` fixes prices.
    pub(super) fn build(archetype: &Archetype, size: Option<usize>, seed: u64) -> Self {
        let named: usize = archetype.categories.iter().map(|c| c.items.len()).sum();
        let extra = size.map_or(0, |s| s.saturating_sub(named));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spread = LogNormal::new(0.0, 0.3).expect("valid log-normal");
        let mut items = Vec::new();
        let mut by_category = Vec::new();
        for (c, category) in archetype.categories.iter().enumerate() {
            let share = extra * category.items.len() / named.max(1);
            let mut members = Vec::new();
            for (id, price) in category.items {
                members.push(items.len());
                items.push(CatalogueItem {
                    id: (*id).to_owned(),
                    category: c,
                    price: *price,
                    cycle_days: category.replenish_days,
                    companion: None,
                });
            }
            let mut prices: Vec<f64> = category.items.iter().map(|(_, p)| *p).collect();
            prices.sort_by(f64::total_cmp);
            let median = prices[prices.len() / 2];
            for k in 0..share {
                members.push(items.len());
                let price: f64 = median * spread.sample(&mut rng);
                items.push(CatalogueItem {
                    id: format!("{}_{:05}", category.name, k + 1),
                    category: c,
                    price: (price * 10.0).round().max(1.0) / 10.0,
                    cycle_days: category.replenish_days,
                    companion: None,
                });
            }
            by_category.push(members);
        }
        let index_of = |items: &[CatalogueItem], id: &str| items.iter().position(|i| i.id == id);
        for (item, with, probability) in archetype.companions {
            if let (Some(a), Some(b)) = (index_of(&items, item), index_of(&items, with)) {
                items[a].companion = Some((b, *probability));
            }
        }
        if extra > 0 {
            let categories = by_category.len();
            for c in 0..categories {
                let next = &by_category[(c + 1) % categories];
                for (rank, item) in by_category[c].iter().enumerate() {
                    if items[*item].companion.is_none() && rank < next.len() && rng.random_bool(0.5)
                    {
                        items[*item].companion = Some((next[rank], TAIL_COMPANION_PROBABILITY));
                    }
                }
            }
        }
        let cumulative = by_category
            .iter()
            .map(|members| {
                let mut total = 0.0;
                (1..=members.len())
                    .map(|rank| {
                        total += 1.0 / rank as f64;
                        total
                    })
                    .collect()
            })
            .collect();
        Self {
            items,
            by_category,
            cumulative,
        }
    }

    /// An item of `category`, by Zipf popularity (the first the most popular).
    pub(super) fn draw(&self, rng: &mut ChaCha8Rng, category: usize) -> usize {
        let cumulative = &self.cumulative[category];
        let total = cumulative.last().copied().unwrap_or(0.0);
        let target = rng.random::<f64>() * total;
        let rank = cumulative
            .partition_point(|c| *c <= target)
            .min(cumulative.len() - 1);
        self.by_category[category][rank]
    }
}
