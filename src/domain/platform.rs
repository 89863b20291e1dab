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

    /// The platforms of a set of [`Platform::bit`]s, in the order of
    /// [`Platform::ALL`]: a static list, so a view lists its platforms
    /// without allocating.
    pub fn set(bits: u8) -> &'static [Platform] {
        use Platform::{Desktop, Mobile, Web};
        const SETS: [&[Platform]; 8] = [
            &[],
            &[Web],
            &[Desktop],
            &[Web, Desktop],
            &[Mobile],
            &[Web, Mobile],
            &[Desktop, Mobile],
            &[Web, Desktop, Mobile],
        ];
        SETS[usize::from(bits & 7)]
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

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn each_set_of_bits_lists_its_platforms_in_the_order_of_all() {
        for bits in 0..8u8 {
            let listed: Vec<Platform> = Platform::ALL
                .into_iter()
                .filter(|platform| bits & platform.bit() != 0)
                .collect();
            assert_eq!(Platform::set(bits), listed, "bits {bits:03b}");
        }
    }
}
