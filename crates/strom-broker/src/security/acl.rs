//! Kafka's ACL model: a binding is a resource pattern (type, name, literal or prefixed) and
//! an entry (principal, host, operation, allow or deny). Codes are Kafka's wire codes, so
//! CreateAcls, DescribeAcls and DeleteAcls carry them unchanged.

use serde::{Deserialize, Serialize};

/// `ResourceType` codes.
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// `PatternType` codes.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// `AclOperation` codes.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
    pub const TWO_PHASE_COMMIT: i8 = 15;
}

/// `AclPermissionType` codes.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// Kafka's name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name that matches every resource of its type.
pub const WILDCARD: &str = "*";
/// The principal that matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// A filter as DescribeAcls and DeleteAcls carry it: ANY and null match everything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

pub fn resource_type_name(t: i8) -> &'static str {
    match t {
        resource::TOPIC => "TOPIC",
        resource::GROUP => "GROUP",
        resource::CLUSTER => "CLUSTER",
        resource::TRANSACTIONAL_ID => "TRANSACTIONAL_ID",
        resource::DELEGATION_TOKEN => "DELEGATION_TOKEN",
        resource::USER => "USER",
        _ => "UNKNOWN",
    }
}

pub fn operation_name(o: i8) -> &'static str {
    const NAMES: [&str; 16] = [
        "UNKNOWN",
        "ANY",
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
        "CREATE_TOKENS",
        "DESCRIBE_TOKENS",
        "TWO_PHASE_COMMIT",
    ];
    NAMES.get(o as usize).copied().unwrap_or("UNKNOWN")
}

/// Parses an operation name as the CLI and Kafka's tools write it (`read`, `Write`,
/// `DescribeConfigs`, `DESCRIBE_CONFIGS`).
pub fn parse_operation(s: &str) -> Option<i8> {
    let norm: String = s
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    (0..16i8).find(|o| operation_name(*o).replace('_', "") == norm)
}

impl AclBinding {
    /// Why this binding cannot be stored (Kafka's `AclControlManager.validateNewAcl`).
    pub fn invalid_reason(&self) -> Option<String> {
        if !matches!(
            self.resource_type,
            resource::TOPIC
                | resource::GROUP
                | resource::CLUSTER
                | resource::TRANSACTIONAL_ID
                | resource::DELEGATION_TOKEN
                | resource::USER
        ) {
            return Some(format!("Invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some(format!("Invalid patternType {}", self.pattern_type));
        }
        if !(op::ALL..=op::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Some(format!("Invalid operation {}", self.operation));
        }
        if !matches!(self.permission_type, permission::ALLOW | permission::DENY) {
            return Some(format!("Invalid permissionType {}", self.permission_type));
        }
        if self.resource_name.is_empty() {
            return Some("Resource name should not be empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Some(format!(
                    "Could not parse principal from `{}`",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Some("Invalid host: empty".into());
        }
        None
    }

    /// Whether this binding's pattern covers the resource `name` of `resource_type`.
    pub fn covers(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let type_ok = self.resource_type == resource::ANY || self.resource_type == b.resource_type;
        let pattern_ok = match (self.pattern_type, &self.resource_name) {
            (pattern::ANY, None) => true,
            (pattern::ANY, Some(n)) => &b.resource_name == n,
            (pattern::MATCH, None) => true,
            // MATCH: every binding that would apply to a resource of this literal name.
            (pattern::MATCH, Some(n)) => match b.pattern_type {
                pattern::LITERAL => &b.resource_name == n || b.resource_name == WILDCARD,
                pattern::PREFIXED => n.starts_with(&b.resource_name),
                _ => false,
            },
            (p, None) => b.pattern_type == p,
            (p, Some(n)) => b.pattern_type == p && &b.resource_name == n,
        };
        let principal_ok = self.principal.as_ref().is_none_or(|p| p == &b.principal);
        let host_ok = self.host.as_ref().is_none_or(|h| h == &b.host);
        let op_ok = self.operation == op::ANY || self.operation == b.operation;
        let perm_ok =
            self.permission_type == permission::ANY || self.permission_type == b.permission_type;
        type_ok && pattern_ok && principal_ok && host_ok && op_ok && perm_ok
    }

    /// Why this filter is unusable for DeleteAcls/DescribeAcls (UNKNOWN codes).
    pub fn invalid_reason(&self) -> Option<&'static str> {
        if self.resource_type < resource::ANY
            || self.pattern_type < pattern::ANY
            || self.operation < op::ANY
            || self.permission_type < permission::ANY
        {
            return Some("Filter contains UNKNOWN elements");
        }
        None
    }
}
