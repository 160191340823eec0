//! Connection limits per client address, as Kafka's `ConnectionQuotas`: at most
//! `max.connections.per.ip` open at once (or that address's entry in
//! `max.connections.per.ip.overrides`), and new connections at most at the IP entity's
//! `connection_creation_rate` per second (KIP-612; a specific IP's quota over the `<default>`
//! IP's). A connection over either is closed at accept. Counted over all Kafka listeners.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::entity::CONNECTION_CREATION_RATE;
use super::rate::Rate;
use super::store::Table;

/// Creation-rate sensors kept; past it, the ones idle longest are forgotten.
pub const IP_RATE_SENSORS_MAX: usize = 100_000;

/// The `connection_creation_rate` quotas: per address, and the `<default>` IP's.
#[derive(Debug, Default)]
struct CreationRates {
    by_ip: HashMap<IpAddr, f64>,
    default: Option<f64>,
}

pub struct ConnectionQuotas {
    max_per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    rates: RwLock<CreationRates>,
    sensors: Mutex<HashMap<IpAddr, Rate>>,
    window_num: u32,
    window_ms: u64,
}

/// One open connection's place in its address's count; given back on drop.
pub struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionQuotas {
    pub fn new(config: &crate::config::BrokerConfig, window_ms: u64) -> ConnectionQuotas {
        ConnectionQuotas {
            max_per_ip: config.max_connections_per_ip,
            overrides: config
                .max_connections_per_ip_overrides
                .iter()
                .copied()
                .collect(),
            open: Default::default(),
            rates: Default::default(),
            sensors: Default::default(),
            window_num: config.quota_window_num,
            window_ms,
        }
    }

    pub(super) fn set_rates(&self, table: &Table) {
        let mut rates = CreationRates::default();
        for (entity, values) in table {
            let (Some(ip), Some(rate)) = (&entity.ip, values.get(CONNECTION_CREATION_RATE)) else {
                continue;
            };
            match ip.as_deref().map(str::parse::<IpAddr>) {
                None => rates.default = Some(*rate),
                Some(Ok(addr)) => {
                    rates.by_ip.insert(addr, *rate);
                }
                Some(Err(_)) => {}
            }
        }
        *self.rates.write() = rates;
    }

    /// The most connections `ip` may hold at once.
    pub fn max_for(&self, ip: IpAddr) -> usize {
        self.overrides.get(&ip).copied().unwrap_or(self.max_per_ip)
    }

    /// Admits a new connection from `ip`, or says which limit refuses it.
    pub fn open(&self, ip: IpAddr) -> Result<IpSlot, String> {
        self.check_creation_rate(ip)?;
        let max = self.max_for(ip);
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&ip);
            }
            return Err(format!(
                "max.connections.per.ip reached ({max} open from this address)"
            ));
        }
        *count += 1;
        Ok(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }

    fn check_creation_rate(&self, ip: IpAddr) -> Result<(), String> {
        let bound = {
            let rates = self.rates.read();
            rates.by_ip.get(&ip).copied().or(rates.default)
        };
        let Some(bound) = bound else {
            return Ok(());
        };
        let now = super::now_ms();
        let mut sensors = self.sensors.lock();
        if sensors.len() >= IP_RATE_SENSORS_MAX && !sensors.contains_key(&ip) {
            let span = self.window_ms * u64::from(self.window_num);
            sensors.retain(|_, r| r.last_sample_ms() + span > now);
            if sensors.len() >= IP_RATE_SENSORS_MAX {
                sensors.clear();
            }
        }
        let rate = sensors
            .entry(ip)
            .or_insert_with(|| Rate::new(self.window_num, self.window_ms, now));
        rate.record(1.0, now);
        if rate.throttle_ms(bound, now) > 0 {
            return Err(format!(
                "connection_creation_rate quota of {bound}/s exceeded for this address"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::entity::Entity;

    #[test]
    fn per_ip_counts_follow_overrides_and_free_on_drop() {
        let special: IpAddr = "127.0.0.2".parse().unwrap();
        let config = crate::config::BrokerConfig {
            max_connections_per_ip: 2,
            max_connections_per_ip_overrides: vec![(special, 0)],
            ..Default::default()
        };
        let q = ConnectionQuotas::new(&config, 1000);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let a = q.open(local).unwrap();
        let _b = q.open(local).unwrap();
        assert!(q.open(local).is_err());
        assert!(q.open(special).is_err());
        drop(a);
        assert!(q.open(local).is_ok());
    }

    #[test]
    fn creation_rate_refuses_a_burst() {
        let config = crate::config::BrokerConfig::default();
        let q = ConnectionQuotas::new(&config, 1000);
        let mut table = Table::new();
        table.insert(
            Entity {
                ip: Some(None),
                ..Entity::default()
            },
            [(CONNECTION_CREATION_RATE.to_string(), 1.0)].into(),
        );
        q.set_rates(&table);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        // 1/s over the 10-window minimum span allows about 10 at once.
        let admitted = (0..30).filter(|_| q.open(local).is_ok()).count();
        assert!((9..=11).contains(&admitted), "{admitted}");
    }
}
