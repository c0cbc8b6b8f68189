//! Audiences: segments a merchant defines as a rule, stored, and re-evaluated on every run.
//!
//! [`rule`] is the JSON language and its validation, [`eval`] turns a rule into the set of
//! matching customers, and [`store`] keeps each merchant's definitions under the data
//! directory (`merchants/merchant=<id>/audiences.json`).

pub mod eval;
pub mod rule;
pub mod store;

pub use eval::{AudienceInputs, evaluate};
pub use rule::{Rule, parse};
pub use store::{
    AudienceDefinition, check_name, load_definitions, remove_definition, save_definition,
};
