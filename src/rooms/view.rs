//! What a room shows of each user in it, from their devices' memberships.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::domain::UserId;
use crate::store::Membership;

/// One user in a room, over their devices there.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomMember {
    /// The user.
    pub user_id: UserId,
    /// The earliest live membership's start.
    pub joined_at: DateTime<Utc>,
    /// The state of the device that set its state most recently (`None`: none set, or cleared).
    pub state: Option<Value>,
    /// Whether any of the user's devices is typing.
    pub typing: bool,
}

/// The users with a live membership at `now` (renewed within `timeout`), in
/// user id order, from `memberships` in user order.
pub fn members_at(
    memberships: &[Membership],
    now: DateTime<Utc>,
    timeout: TimeDelta,
) -> Vec<RoomMember> {
    members_until(memberships, now, timeout).0
}

/// [`members_at`], and the first instant after `now` at which the answer
/// changes by the clock alone (a membership ending, a typing flag ending).
pub fn members_until(
    memberships: &[Membership],
    now: DateTime<Utc>,
    timeout: TimeDelta,
) -> (Vec<RoomMember>, DateTime<Utc>) {
    let mut until = DateTime::<Utc>::MAX_UTC;
    for membership in memberships {
        let ends = membership.renewed_at + timeout;
        if ends > now {
            until = until.min(ends);
        }
        if let Some(typing) = membership.typing_until.filter(|typing| *typing > now) {
            until = until.min(typing);
        }
    }
    (fold(memberships, now, timeout), until)
}

fn fold(memberships: &[Membership], now: DateTime<Utc>, timeout: TimeDelta) -> Vec<RoomMember> {
    let mut members: Vec<RoomMember> = Vec::new();
    // The state_set_at of the state each member shows so far.
    let mut set_at: Vec<Option<DateTime<Utc>>> = Vec::new();
    for membership in memberships
        .iter()
        .filter(|membership| membership.renewed_at > now - timeout)
    {
        let typing = membership.typing_until.is_some_and(|until| until > now);
        match members.last_mut() {
            Some(member) if member.user_id == membership.user_id => {
                member.joined_at = member.joined_at.min(membership.joined_at);
                member.typing |= typing;
                let last_set = set_at.last_mut().expect("one per member");
                if membership.state_set_at.is_some() && membership.state_set_at > *last_set {
                    member.state.clone_from(&membership.state);
                    *last_set = membership.state_set_at;
                }
            }
            _ => {
                members.push(RoomMember {
                    user_id: membership.user_id,
                    joined_at: membership.joined_at,
                    state: membership
                        .state
                        .clone()
                        .filter(|_| membership.state_set_at.is_some()),
                    typing,
                });
                set_at.push(membership.state_set_at);
            }
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000) + TimeDelta::seconds(seconds)
    }

    fn membership(user: UserId, device: &str, joined: i64, renewed: i64) -> Membership {
        Membership {
            user_id: user,
            device_id: device.to_owned(),
            joined_at: at(joined),
            renewed_at: at(renewed),
            state: None,
            state_set_at: None,
            typing_until: None,
        }
    }

    #[test]
    fn a_user_shows_once_with_the_latest_state_any_typing_and_the_first_join() {
        let (ann, bob) = {
            let mut users = [
                UserId::from(uuid::Uuid::new_v4()),
                UserId::from(uuid::Uuid::new_v4()),
            ];
            users.sort();
            (users[0], users[1])
        };
        let memberships = vec![
            Membership {
                state: Some(json!({"page": 1})),
                state_set_at: Some(at(5)),
                ..membership(ann, "laptop", 0, 50)
            },
            Membership {
                state: Some(json!({"page": 2})),
                state_set_at: Some(at(7)),
                typing_until: Some(at(62)),
                ..membership(ann, "phone", 3, 55)
            },
            Membership {
                state: None,
                state_set_at: Some(at(9)),
                ..membership(ann, "tablet", -5, 0)
            },
            membership(bob, "default", 20, 58),
        ];
        let members = members_at(&memberships, at(60), TimeDelta::seconds(60));
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].user_id, ann);
        assert_eq!(
            members[0].state,
            Some(json!({"page": 2})),
            "the phone set it last; the tablet's membership ended"
        );
        assert!(members[0].typing);
        assert_eq!(
            members[0].joined_at,
            at(0),
            "the tablet's ended membership does not count"
        );
        assert_eq!(members[1].state, None);
        assert!(!members[1].typing);
        let later = members_at(&memberships, at(116), TimeDelta::seconds(60));
        assert_eq!(later.len(), 1, "ann's memberships all ended");
        assert_eq!(later[0].user_id, bob);
        let (_, until) = members_until(&memberships, at(60), TimeDelta::seconds(60));
        assert_eq!(until, at(62), "the phone's typing ends first");
        let (_, until) = members_until(&memberships, at(62), TimeDelta::seconds(60));
        assert_eq!(until, at(110), "then the laptop's membership");
    }
}
