//! The handlers' view of the authorizer: "may this request's principal do OP on X". Always
//! yes while `authorizer.class.name` is unset.

use crate::broker::{Broker, RequestContext};
use crate::security::acl::{resource, CLUSTER_NAME};

pub struct Authz<'a> {
    broker: &'a Broker,
    ctx: &'a RequestContext,
}

impl<'a> Authz<'a> {
    pub fn new(broker: &'a Broker, ctx: &'a RequestContext) -> Authz<'a> {
        Authz { broker, ctx }
    }

    /// Whether checks can say no at all (skips work when they cannot).
    pub fn enforcing(&self) -> bool {
        self.broker.authorizer.enabled()
    }

    fn allowed(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        let ok = self.broker.authorizer.allowed(
            &self.ctx.principal,
            &self.ctx.client_host,
            operation,
            resource_type,
            name,
        );
        if !ok {
            // Kafka's authorizer logs denials too (kafka.authorizer.logger, INFO).
            tracing::debug!(
                principal = %self.ctx.principal,
                host = %self.ctx.client_host,
                operation = crate::security::acl::operation_name(operation),
                resource = %format!("{}:{name}", crate::security::acl::resource_type_name(resource_type)),
                "authorization denied"
            );
        }
        ok
    }

    pub fn topic(&self, operation: i8, name: &str) -> bool {
        self.allowed(operation, resource::TOPIC, name)
    }

    pub fn group(&self, operation: i8, id: &str) -> bool {
        self.allowed(operation, resource::GROUP, id)
    }

    pub fn transactional_id(&self, operation: i8, id: &str) -> bool {
        self.allowed(operation, resource::TRANSACTIONAL_ID, id)
    }

    pub fn cluster(&self, operation: i8) -> bool {
        self.allowed(operation, resource::CLUSTER, CLUSTER_NAME)
    }

    pub fn any_topic(&self, operation: i8) -> bool {
        self.broker.authorizer.allowed_on_any(
            &self.ctx.principal,
            &self.ctx.client_host,
            operation,
            resource::TOPIC,
        )
    }
}
