//! Permission evaluation (api.md §5.3–§5.4): pure functions over the roles a member holds and a
//! channel's overrides, so every rule is unit-tested without a database.

use crate::storage::{Override, Permissions, Role, RoleId};

/// All flags (`(1 << 14) - 1`).
pub const ALL: Permissions = Permissions::all();

/// What a member may do server-wide, computed once per request from its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAccess {
    /// The member's roles (@everyone included), with permissions and positions.
    pub roles: Vec<Role>,
    /// @everyone's permissions OR every held role's; ALL with ADMINISTRATOR.
    pub base: Permissions,
    /// The highest position among @everyone (0) and the member's roles.
    pub highest_position: i64,
}

impl MemberAccess {
    /// `everyone` is the @everyone role (its permissions apply even if the assignment row were
    /// missing); `roles` are the roles the member holds.
    pub fn new(everyone: &Role, roles: Vec<Role>) -> Self {
        let mut base = everyone.permissions;
        let mut highest_position = 0;
        for role in &roles {
            base |= role.permissions;
            highest_position = highest_position.max(role.position);
        }
        if base.contains(Permissions::ADMINISTRATOR) {
            base = ALL;
        }
        MemberAccess { roles, base, highest_position }
    }

    pub fn is_admin(&self) -> bool {
        self.base.contains(Permissions::ADMINISTRATOR)
    }

    /// `has(bits, p)`: ADMINISTRATOR, or every flag of `p`.
    pub fn has(&self, p: Permissions) -> bool {
        has(self.base, p)
    }

    fn holds(&self, role: RoleId) -> bool {
        role == RoleId::EVERYONE || self.roles.iter().any(|r| r.id == role)
    }

    /// Channel-effective permissions: ALL for an administrator; otherwise the base with every
    /// override for @everyone or a held role applied in ascending role position (ties by id):
    /// `bits = (bits | allow) & !deny`.
    pub fn in_channel(&self, overrides: &[Override], role_position: impl Fn(RoleId) -> Option<i64>) -> Permissions {
        if self.is_admin() {
            return ALL;
        }
        let mut applicable: Vec<(i64, RoleId, &Override)> = overrides
            .iter()
            .filter(|o| self.holds(o.role_id))
            .map(|o| (role_position(o.role_id).unwrap_or(0), o.role_id, o))
            .collect();
        applicable.sort_by_key(|(position, id, _)| (*position, *id));
        applicable.into_iter().fold(self.base, |bits, (_, _, o)| (bits | o.allow) & !o.deny)
    }

    /// Outranks position `p`: ADMINISTRATOR, or a strictly higher highest position.
    pub fn outranks(&self, position: i64) -> bool {
        self.is_admin() || self.highest_position > position
    }

    /// The grant rule: without ADMINISTRATOR only flags held in the base may be granted.
    pub fn may_grant(&self, requested: Permissions) -> bool {
        self.is_admin() || (requested & !self.base).is_empty()
    }
}

/// `has(bits, p)` ⇔ `bits & ADMINISTRATOR != 0` or `bits & p == p`.
pub fn has(bits: Permissions, p: Permissions) -> bool {
    bits.contains(Permissions::ADMINISTRATOR) || bits.contains(p)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::storage::{ChannelId, Timestamp};

    fn role(id: i64, position: i64, permissions: Permissions) -> Role {
        Role {
            id: RoleId(id),
            name: format!("r{id}"),
            color: None,
            permissions,
            position,
            is_builtin: id <= 2,
            created_at: Timestamp::from_micros(0).unwrap(),
            updated_at: Timestamp::from_micros(0).unwrap(),
        }
    }

    fn everyone() -> Role {
        role(1, 0, Permissions::from_bits_truncate(1539))
    }

    fn ovr(role_id: i64, allow: Permissions, deny: Permissions) -> Override {
        Override { channel_id: ChannelId(1), role_id: RoleId(role_id), allow, deny }
    }

    #[test]
    fn base_is_everyone_or_held_roles_and_administrator_means_all() {
        let mods = role(3, 10, Permissions::MANAGE_MESSAGES | Permissions::KICK_MEMBERS);
        let access = MemberAccess::new(&everyone(), vec![everyone(), mods]);
        assert_eq!(access.base.bits(), 1539 | 4 | 32);
        assert_eq!(access.highest_position, 10);
        assert!(!access.is_admin());

        let admin = MemberAccess::new(&everyone(), vec![everyone(), role(2, 1000, ALL)]);
        assert_eq!(admin.base, ALL);
        assert!(admin.has(Permissions::BAN_MEMBERS));
        assert!(has(Permissions::ADMINISTRATOR, Permissions::MANAGE_SERVER));
    }

    #[test]
    fn overrides_apply_in_ascending_role_position_and_only_for_held_roles() {
        let low = role(3, 5, Permissions::empty());
        let high = role(4, 20, Permissions::empty());
        let access = MemberAccess::new(&everyone(), vec![everyone(), low.clone(), high.clone()]);
        let position = |id: RoleId| {
            [everyone(), low.clone(), high.clone(), role(9, 50, Permissions::empty())]
                .into_iter()
                .find(|r| r.id == id)
                .map(|r| r.position)
        };
        let overrides = [
            // @everyone loses READ in this channel …
            ovr(1, Permissions::empty(), Permissions::READ_MESSAGES),
            // … the higher role gives it back (applied last) …
            ovr(4, Permissions::READ_MESSAGES, Permissions::empty()),
            // … the lower one would deny it but is applied before the higher one …
            ovr(3, Permissions::empty(), Permissions::READ_MESSAGES | Permissions::SEND_MESSAGES),
            // … and a role the member does not hold changes nothing.
            ovr(9, Permissions::MANAGE_MESSAGES, Permissions::ADD_REACTIONS),
        ];
        let bits = access.in_channel(&overrides, position);
        assert!(bits.contains(Permissions::READ_MESSAGES));
        assert!(!bits.contains(Permissions::SEND_MESSAGES));
        assert!(bits.contains(Permissions::ADD_REACTIONS));
        assert!(!bits.contains(Permissions::MANAGE_MESSAGES));
    }

    #[test]
    fn administrators_bypass_overrides() {
        let access = MemberAccess::new(&everyone(), vec![everyone(), role(2, 1000, ALL)]);
        let bits = access.in_channel(&[ovr(1, Permissions::empty(), ALL - Permissions::ADMINISTRATOR)], |_| Some(0));
        assert_eq!(bits, ALL);
    }

    #[test]
    fn hierarchy_and_grant_rule() {
        let mods = role(3, 10, Permissions::MANAGE_ROLES);
        let access = MemberAccess::new(&everyone(), vec![everyone(), mods]);
        assert!(access.outranks(9));
        assert!(!access.outranks(10));
        assert!(access.may_grant(Permissions::SEND_MESSAGES | Permissions::MANAGE_ROLES));
        assert!(!access.may_grant(Permissions::BAN_MEMBERS));

        let admin = MemberAccess::new(&everyone(), vec![everyone(), role(2, 1000, ALL)]);
        assert!(admin.outranks(5000));
        assert!(admin.may_grant(ALL));
    }
}
