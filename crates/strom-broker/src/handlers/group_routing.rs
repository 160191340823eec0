//! Which group coordinator answers a group request: on a single node always the broker's one;
//! in cluster mode the coordinator of the group's `__consumer_offsets` partition if this node
//! leads it, else NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS while it loads), as Kafka
//! answers a request sent to the wrong broker. Requests naming several groups are split by
//! coordinator and their answers merged.

use std::sync::Arc;

use strom_group::GroupCoordinator;

use crate::broker::Broker;

pub struct GroupRouter<'a> {
    broker: &'a Broker,
}

impl<'a> GroupRouter<'a> {
    pub fn new(broker: &'a Broker) -> Self {
        GroupRouter { broker }
    }

    /// The coordinator of `group_id`, or the Kafka error code to answer with.
    pub fn route(&self, group_id: &str) -> Result<Arc<GroupCoordinator>, i16> {
        self.broker.coordinator_for(group_id)
    }

    /// Every coordinator on this node (ListGroups).
    pub fn all(&self) -> Vec<Arc<GroupCoordinator>> {
        self.broker.group_coordinators()
    }

    /// Partitions of `group` with transactional offsets staged by a transaction that has not
    /// ended, as the transaction coordinators of this node know them (in cluster mode a
    /// transaction coordinated on another node is not seen).
    pub fn pending_txn_offsets(&self, group: &str) -> std::collections::BTreeSet<(String, i32)> {
        self.broker
            .txn_coordinators()
            .iter()
            .flat_map(|t| t.pending_offsets_of(group))
            .collect()
    }

    /// `items` grouped by the coordinator of their group id, and those refused with the code.
    #[allow(clippy::type_complexity)]
    pub fn split<T>(
        &self,
        items: Vec<T>,
        group_id: impl Fn(&T) -> &str,
    ) -> (Vec<(Arc<GroupCoordinator>, Vec<T>)>, Vec<(T, i16)>) {
        let mut batches: Vec<(Arc<GroupCoordinator>, Vec<T>)> = Vec::new();
        let mut refused = Vec::new();
        for item in items {
            match self.route(group_id(&item)) {
                Ok(c) => match batches.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &c)) {
                    Some((_, same)) => same.push(item),
                    None => batches.push((c, vec![item])),
                },
                Err(code) => refused.push((item, code)),
            }
        }
        (batches, refused)
    }
}
