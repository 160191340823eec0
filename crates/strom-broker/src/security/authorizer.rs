//! The authorizer: ACLs kept durably in `__strom_meta/acls.json`, and Kafka's
//! StandardAuthorizer decision (super users allowed; deny wins; an allow for READ, WRITE,
//! DELETE or ALTER implies DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS; a resource
//! no ACL covers is allowed only with `allow.everyone.if.no.acl.found`).
//!
//! Off unless `authorizer.class.name` is set: then every check allows, as in Kafka. A check
//! is a scan of the bindings per request and resource, never per message.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::RwLock;

use super::acl::{op, pattern, permission, AclBinding, AclFilter, WILDCARD, WILDCARD_PRINCIPAL};
use super::settings::SecuritySettings;

pub const ACLS_FILE: &str = "acls.json";
/// The resource name `allowed_on_any` probes first, as Kafka's `authorizeByResourceType`.
const PROBE_NAME: &str = "hardcode";

#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

struct Loaded {
    acls: Vec<AclBinding>,
    stamp: Option<(SystemTime, u64)>,
}

pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
    path: PathBuf,
    state: RwLock<Loaded>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<Loaded, AclStoreError> {
    let err = |reason: String| AclStoreError::Read {
        path: path.display().to_string(),
        reason,
    };
    let stamp = stamp(path);
    let acls = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(err(e.to_string())),
    };
    Ok(Loaded { acls, stamp })
}

/// Whether an allow for `granted` lets a principal do `wanted`.
fn implies(granted: i8, wanted: i8) -> bool {
    granted == op::ALL
        || granted == wanted
        || (wanted == op::DESCRIBE
            && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

impl Authorizer {
    pub fn open(meta_dir: &Path, settings: &SecuritySettings) -> Result<Authorizer, AclStoreError> {
        let path = meta_dir.join(ACLS_FILE);
        let loaded = read(&path)?;
        Ok(Authorizer {
            enabled: settings.authorizer_enabled,
            super_users: settings.super_users.clone(),
            allow_if_no_acl: settings.allow_everyone_if_no_acl_found,
            path,
            state: RwLock::new(loaded),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Picks up a change another process (`strom acl`) made to the file.
    fn refresh(&self) {
        let now = stamp(&self.path);
        if now == self.state.read().stamp {
            return;
        }
        match read(&self.path) {
            Ok(loaded) => *self.state.write() = loaded,
            Err(e) => tracing::warn!(error = %e, "keeping the ACLs read before"),
        }
    }

    /// Whether `principal` from `host` may do `operation` on the resource.
    pub fn allowed(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        self.refresh();
        let state = self.state.read();
        let mut covered = false;
        let mut allowed = false;
        for acl in state.acls.iter().filter(|a| a.covers(resource_type, name)) {
            covered = true;
            let who = acl.principal == principal || acl.principal == WILDCARD_PRINCIPAL;
            let from = acl.host == WILDCARD || acl.host == host;
            if !(who && from) {
                continue;
            }
            if acl.permission_type == permission::DENY
                && (acl.operation == op::ALL || acl.operation == operation)
            {
                return false;
            }
            if acl.permission_type == permission::ALLOW && implies(acl.operation, operation) {
                allowed = true;
            }
        }
        if covered {
            allowed
        } else {
            self.allow_if_no_acl
        }
    }

    /// Whether the principal may do `operation` on some resource of the type (Kafka's
    /// `authorizeByResourceType`, e.g. WRITE on any topic for an idempotent producer): some
    /// allow for the operation (or ALL) that no deny dominates. A literal deny dominates the
    /// same literal allow, a prefixed deny every allow whose name starts with it, and a
    /// wildcard deny everything. No implication here (READ does not count for DESCRIBE), as
    /// in Kafka.
    pub fn allowed_on_any(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        // Kafka first asks about a made-up name: that settles super users, wildcard and
        // broad prefixed allows, and `allow.everyone.if.no.acl.found`.
        if self.allowed(principal, host, operation, resource_type, PROBE_NAME) {
            return true;
        }
        self.refresh();
        let state = self.state.read();
        let applying: Vec<&AclBinding> = state
            .acls
            .iter()
            .filter(|a| {
                a.resource_type == resource_type
                    && (a.principal == principal || a.principal == WILDCARD_PRINCIPAL)
                    && (a.host == WILDCARD || a.host == host)
                    && (a.operation == op::ALL || a.operation == operation)
            })
            .collect();
        let of = |perm: i8, pat: i8| {
            applying
                .iter()
                .filter(move |a| a.permission_type == perm && a.pattern_type == pat)
                .map(|a| a.resource_name.as_str())
        };
        if of(permission::DENY, pattern::LITERAL).any(|n| n == WILDCARD) {
            return false;
        }
        if of(permission::ALLOW, pattern::LITERAL).any(|n| n == WILDCARD) {
            return true;
        }
        let denied_literal: HashSet<&str> = of(permission::DENY, pattern::LITERAL).collect();
        let denied_prefixes: Vec<&str> = of(permission::DENY, pattern::PREFIXED).collect();
        let dominated = |name: &str| denied_prefixes.iter().any(|p| name.starts_with(p));
        of(permission::ALLOW, pattern::LITERAL)
            .any(|n| !denied_literal.contains(n) && !dominated(n))
            || of(permission::ALLOW, pattern::PREFIXED).any(|n| !dominated(n))
    }

    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.refresh();
        let state = self.state.read();
        state
            .acls
            .iter()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect()
    }

    fn save(&self, acls: &[AclBinding]) -> Result<Option<(SystemTime, u64)>, AclStoreError> {
        let bytes = serde_json::to_vec_pretty(acls).expect("ACLs serialize");
        strom_log::atomic_file::write_atomically(&self.path, &bytes).map_err(|e| {
            AclStoreError::Write {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(stamp(&self.path))
    }

    /// Adds bindings (a binding already there is not added twice), durably.
    pub fn create(&self, new: &[AclBinding]) -> Result<(), AclStoreError> {
        self.refresh();
        let mut state = self.state.write();
        let mut acls = state.acls.clone();
        for b in new {
            if !acls.contains(b) {
                acls.push(b.clone());
            }
        }
        state.stamp = self.save(&acls)?;
        state.acls = acls;
        Ok(())
    }

    /// Removes every binding each filter matches; returns them per filter.
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        self.refresh();
        let mut state = self.state.write();
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| {
                state
                    .acls
                    .iter()
                    .filter(|a| f.matches(a))
                    .cloned()
                    .collect()
            })
            .collect();
        let acls: Vec<AclBinding> = state
            .acls
            .iter()
            .filter(|a| !filters.iter().any(|f| f.matches(a)))
            .cloned()
            .collect();
        if acls.len() != state.acls.len() {
            state.stamp = self.save(&acls)?;
            state.acls = acls;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::acl::resource;
    use super::*;

    fn binding(name: &str, pat: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: resource::TOPIC,
            resource_name: name.into(),
            pattern_type: pat,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission_type: perm,
        }
    }

    fn authorizer(dir: &Path, super_users: &[&str], allow_if_no_acl: bool) -> Authorizer {
        let settings = SecuritySettings {
            authorizer_enabled: true,
            super_users: super_users.iter().map(|s| s.to_string()).collect(),
            allow_everyone_if_no_acl_found: allow_if_no_acl,
            ..Default::default()
        };
        Authorizer::open(dir, &settings).unwrap()
    }

    #[test]
    fn kafka_decision_rules() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path(), &["User:admin"], false);
        a.create(&[
            binding(
                "orders",
                pattern::LITERAL,
                "User:alice",
                op::WRITE,
                permission::ALLOW,
            ),
            binding(
                "logs-",
                pattern::PREFIXED,
                "User:*",
                op::READ,
                permission::ALLOW,
            ),
            binding(
                "logs-secret",
                pattern::LITERAL,
                "User:bob",
                op::ALL,
                permission::DENY,
            ),
        ])
        .unwrap();
        let t = resource::TOPIC;
        assert!(a.allowed("User:alice", "h", op::WRITE, t, "orders"));
        assert!(
            a.allowed("User:alice", "h", op::DESCRIBE, t, "orders"),
            "WRITE implies DESCRIBE"
        );
        assert!(!a.allowed("User:alice", "h", op::READ, t, "orders"));
        assert!(!a.allowed("User:bob", "h", op::WRITE, t, "orders"));
        assert!(
            a.allowed("User:bob", "h", op::READ, t, "logs-app"),
            "prefixed, wildcard principal"
        );
        assert!(
            !a.allowed("User:bob", "h", op::READ, t, "logs-secret"),
            "deny wins"
        );
        assert!(a.allowed("User:carol", "h", op::READ, t, "logs-secret"));
        assert!(
            !a.allowed("User:alice", "h", op::READ, t, "unlisted"),
            "no ACL: denied by default"
        );
        assert!(
            a.allowed("User:admin", "h", op::DELETE, t, "orders"),
            "super user"
        );
        assert!(a.allowed_on_any("User:alice", "h", op::WRITE, t));
        assert!(!a.allowed_on_any("User:carol", "h", op::WRITE, t));

        let open = authorizer(dir.path(), &[], true);
        assert!(open.allowed("User:x", "h", op::READ, t, "unlisted"));
        assert!(
            !open.allowed("User:x", "h", op::READ, t, "orders"),
            "covered: ACLs decide"
        );
    }

    #[test]
    fn acls_are_durable_and_deleted_by_filter() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path(), &[], false);
        let b = binding(
            "orders",
            pattern::LITERAL,
            "User:alice",
            op::WRITE,
            permission::ALLOW,
        );
        a.create(&[b.clone(), b.clone()]).unwrap();
        let all = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: op::ANY,
            permission_type: permission::ANY,
        };
        let reopened = authorizer(dir.path(), &[], false);
        assert_eq!(reopened.describe(&all), vec![b.clone()]);
        assert_eq!(
            reopened.delete(std::slice::from_ref(&all)).unwrap(),
            vec![vec![b]]
        );
        assert!(
            a.describe(&all).is_empty(),
            "the other instance sees the change"
        );
    }

    #[test]
    fn any_resource_of_a_type_follows_kafkas_dominating_denies() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path(), &[], false);
        let t = resource::TOPIC;
        let allow =
            |name: &str, pat: i8| binding(name, pat, "User:u", op::WRITE, permission::ALLOW);
        let deny = |name: &str, pat: i8| binding(name, pat, "User:u", op::WRITE, permission::DENY);
        a.create(&[
            allow("orders", pattern::LITERAL),
            deny("ord", pattern::PREFIXED),
        ])
        .unwrap();
        assert!(
            !a.allowed_on_any("User:u", "h", op::WRITE, t),
            "a prefixed deny dominates the literal allow"
        );
        a.create(&[allow("logs-", pattern::PREFIXED)]).unwrap();
        assert!(a.allowed_on_any("User:u", "h", op::WRITE, t));
        assert!(
            !a.allowed_on_any("User:u", "h", op::READ, t),
            "another operation"
        );
        assert!(
            !a.allowed_on_any("User:u", "h", op::DESCRIBE, t),
            "no implication by resource type, as in Kafka"
        );
        a.create(&[deny(WILDCARD, pattern::LITERAL)]).unwrap();
        assert!(
            !a.allowed_on_any("User:u", "h", op::WRITE, t),
            "wildcard deny"
        );

        let b = authorizer(tempfile::tempdir().unwrap().path(), &["User:root"], true);
        assert!(
            b.allowed_on_any("User:x", "h", op::WRITE, t),
            "no ACLs at all with allow.everyone.if.no.acl.found"
        );
        assert!(
            b.allowed_on_any("User:root", "h", op::WRITE, t),
            "super user"
        );
    }
}
