use serde::{Deserialize, Serialize};

/// Where a device runs; others see the platforms of a user's live devices.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Platform {
    /// A browser tab.
    Web,
    /// A desktop application.
    Desktop,
    /// A phone or tablet application.
    Mobile,
}

impl Platform {
    /// Every platform, in the order responses list them.
    pub const ALL: [Platform; 3] = [Platform::Web, Platform::Desktop, Platform::Mobile];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Web => "web",
            Platform::Desktop => "desktop",
            Platform::Mobile => "mobile",
        }
    }

    /// One bit per platform, so a set of platforms fits in a byte.
    pub fn bit(self) -> u8 {
        match self {
            Platform::Web => 1,
            Platform::Desktop => 2,
            Platform::Mobile => 4,
        }
    }
}
