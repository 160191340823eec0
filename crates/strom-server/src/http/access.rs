//! Who is calling the API and what they may do: the same ACLs, with the same meaning, as
//! the Kafka handlers check for the equivalent request (Metadata, Fetch, Produce,
//! CreateTopics, DeleteTopics, DescribeConfigs, AlterConfigs, DescribeGroups, ListGroups,
//! OffsetCommit). A refusal is 403 with the operation and resource named; with the
//! authorizer off every check allows, as in Kafka.

use strom_broker::broker::RequestContext;
use strom_broker::handlers::authz::Authz;
use strom_broker::local::Local;
use strom_broker::security::acl::operation_name;

use super::api_error::{ApiError, ApiResult};

/// The caller of one request, put there by the login check (`auth`): `User:<name>` after
/// HTTP Basic, `User:ANONYMOUS` without authentication, and the peer's address as the host.
#[derive(Debug, Clone)]
pub struct Caller {
    pub ctx: RequestContext,
}

impl Caller {
    pub fn new(principal: &str, host: String) -> Caller {
        let mut ctx = RequestContext::anonymous(host);
        ctx.principal = principal.into();
        Caller { ctx }
    }

    pub fn authz<'a>(&'a self, local: &'a Local) -> Authz<'a> {
        Authz::new(local.broker(), &self.ctx)
    }

    /// `Ok` when `allowed`, else 403 naming what was refused.
    pub fn require(&self, allowed: bool, operation: i8, resource: &str) -> ApiResult<()> {
        if allowed {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "{} is not authorized to {} {resource}",
            self.ctx.principal,
            operation_name(operation)
        )))
    }

    pub fn require_topic(&self, local: &Local, operation: i8, topic: &str) -> ApiResult<()> {
        let ok = self.authz(local).topic(operation, topic);
        self.require(ok, operation, &format!("topic {topic}"))
    }

    pub fn require_group(&self, local: &Local, operation: i8, group: &str) -> ApiResult<()> {
        let ok = self.authz(local).group(operation, group);
        self.require(ok, operation, &format!("group {group}"))
    }
}
