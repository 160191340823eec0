//! One member's step towards its target assignment (Kafka's `CurrentAssignmentBuilder`):
//! partitions leaving the member are revoked first while it keeps its epoch; only then does it
//! move to the target epoch and receive the partitions no other member owns any more.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::model::{Assignment, ConsumerMember, MemberState};

/// What the member reported owning in this heartbeat (`None`: not sent).
pub(crate) type Owned = Option<Assignment>;

/// The member after one reconciliation step. `owned_by_other(topic, partition)` tells
/// whether another member still owns a partition.
pub(crate) fn reconcile(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owned: &Owned,
    owned_by_other: impl Fn(&Uuid, i32) -> bool,
) -> ConsumerMember {
    let step = Step {
        member,
        target_epoch,
        target,
        owned,
        owned_by_other: &owned_by_other,
    };
    match member.state {
        MemberState::Stable if member.member_epoch == target_epoch => member.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => {
            step.next(member.member_epoch, &member.assigned)
        }
        MemberState::UnrevokedPartitions => {
            if still_owns_any(owned, &member.pending_revocation) {
                member.clone()
            } else {
                step.next(member.member_epoch + 1, &member.assigned)
            }
        }
    }
}

/// Whether the member still reports owning any of `revoking`; not reporting counts as owning.
fn still_owns_any(owned: &Owned, revoking: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(topic, partitions)| {
        revoking
            .get(topic)
            .is_some_and(|r| partitions.iter().any(|p| r.contains(p)))
    })
}

struct Step<'a, F: Fn(&Uuid, i32) -> bool> {
    member: &'a ConsumerMember,
    target_epoch: i32,
    target: &'a Assignment,
    owned: &'a Owned,
    owned_by_other: &'a F,
}

impl<F: Fn(&Uuid, i32) -> bool> Step<'_, F> {
    fn next(&self, member_epoch: i32, current: &Assignment) -> ConsumerMember {
        let mut unreleased = false;
        let mut assigned = Assignment::new();
        let mut revoking = Assignment::new();
        let mut adding = Assignment::new();
        let topics: BTreeSet<&Uuid> = self.target.keys().chain(current.keys()).collect();
        let empty = BTreeSet::new();
        for topic in topics {
            let target = self.target.get(topic).unwrap_or(&empty);
            let have = current.get(topic).unwrap_or(&empty);
            let keep: BTreeSet<i32> = have.intersection(target).copied().collect();
            let revoke: BTreeSet<i32> = have.difference(&keep).copied().collect();
            let mut add = BTreeSet::new();
            for &p in target.difference(&keep) {
                if (self.owned_by_other)(topic, p) {
                    unreleased = true;
                } else {
                    add.insert(p);
                }
            }
            for (map, set) in [
                (&mut assigned, keep),
                (&mut revoking, revoke),
                (&mut adding, add),
            ] {
                if !set.is_empty() {
                    map.insert(*topic, set);
                }
            }
        }
        let mut m = self.member.clone();
        if !revoking.is_empty() && still_owns_any(self.owned, &revoking) {
            set_epoch(&mut m, member_epoch);
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = assigned;
            m.pending_revocation = revoking;
            return m;
        }
        for (topic, partitions) in adding {
            assigned.entry(topic).or_default().extend(partitions);
        }
        set_epoch(&mut m, self.target_epoch);
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        m.assigned = assigned;
        m.pending_revocation = Assignment::new();
        m
    }
}

fn set_epoch(m: &mut ConsumerMember, epoch: i32) {
    if m.member_epoch != epoch {
        m.previous_member_epoch = m.member_epoch;
        m.member_epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(pairs: &[(Uuid, &[i32])]) -> Assignment {
        pairs
            .iter()
            .map(|(t, ps)| (*t, ps.iter().copied().collect()))
            .collect()
    }

    fn member(epoch: i32, assigned: Assignment) -> ConsumerMember {
        let mut m = ConsumerMember::new("m".into());
        m.member_epoch = epoch;
        m.assigned = assigned;
        m
    }

    #[test]
    fn a_new_member_takes_free_partitions_at_the_target_epoch() {
        let t = Uuid::new_v4();
        let m = member(0, Assignment::new());
        let next = reconcile(
            &m,
            3,
            &a(&[(t, &[0, 1])]),
            &Some(Assignment::new()),
            |_, _| false,
        );
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.previous_member_epoch, 0);
        assert_eq!(next.state, MemberState::Stable);
        assert_eq!(next.assigned, a(&[(t, &[0, 1])]));
    }

    #[test]
    fn partitions_leave_before_the_epoch_moves() {
        let t = Uuid::new_v4();
        let m = member(2, a(&[(t, &[0, 1, 2])]));
        let owned = Some(a(&[(t, &[0, 1, 2])]));
        let next = reconcile(&m, 3, &a(&[(t, &[0])]), &owned, |_, _| false);
        assert_eq!(next.state, MemberState::UnrevokedPartitions);
        assert_eq!(next.member_epoch, 2);
        assert_eq!(next.assigned, a(&[(t, &[0])]));
        assert_eq!(next.pending_revocation, a(&[(t, &[1, 2])]));
        // Still reporting 1: nothing moves.
        let again = reconcile(
            &next,
            3,
            &a(&[(t, &[0])]),
            &Some(a(&[(t, &[0, 1])])),
            |_, _| false,
        );
        assert_eq!(again.state, MemberState::UnrevokedPartitions);
        // Revoked: the member moves to the target epoch.
        let done = reconcile(
            &next,
            3,
            &a(&[(t, &[0])]),
            &Some(a(&[(t, &[0])])),
            |_, _| false,
        );
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 3);
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn a_partition_another_member_owns_waits() {
        let t = Uuid::new_v4();
        let m = member(1, a(&[(t, &[0])]));
        let target = a(&[(t, &[0, 1])]);
        let busy = reconcile(&m, 2, &target, &Some(a(&[(t, &[0])])), |_, p| p == 1);
        assert_eq!(busy.state, MemberState::UnreleasedPartitions);
        assert_eq!(busy.member_epoch, 2);
        assert_eq!(busy.assigned, a(&[(t, &[0])]));
        let freed = reconcile(&busy, 2, &target, &None, |_, _| false);
        assert_eq!(freed.state, MemberState::Stable);
        assert_eq!(freed.assigned, target);
    }
}
