//! The presence rules: what a viewer is shown of a user, as a pure function of the stored row.

pub mod history;
mod rules;
mod stored;

pub use rules::{EffectiveStatus, Hidden, OwnView, Status, Thresholds, calculate_effective_status};
pub use stored::{StoredDevice, StoredStatus};

#[cfg(test)]
mod tests;
