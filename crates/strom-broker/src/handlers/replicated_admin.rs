//! The admin APIs that change SCRAM users, ACLs or client quotas, wrapped so that in cluster
//! mode the change reaches every node (`cluster::shared_docs`). A change the metadata log did
//! not take is answered UNKNOWN_SERVER_ERROR with the reason, on every entry that succeeded
//! locally (the local file went back to the log's content).

use std::sync::Arc;

use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::sb;
use crate::broker::Broker;
use crate::cluster::shared_docs::{self, SharedFile};

const FAILED: i16 = E::UnknownServerError.code();

pub async fn create_acls(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let change = shared_docs::begin(broker, SharedFile::Acls).await;
    let mut response = super::acls::create(broker, authz, req);
    if let Some(Err(why)) = publish(broker, change).await {
        for r in response.results.iter_mut().filter(|r| r.error_code == 0) {
            r.error_code = FAILED;
            r.error_message = Some(sb(why.clone()));
        }
    }
    response
}

pub async fn delete_acls(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let change = shared_docs::begin(broker, SharedFile::Acls).await;
    let mut response = super::acls::delete(broker, authz, req);
    if let Some(Err(why)) = publish(broker, change).await {
        for r in response
            .filter_results
            .iter_mut()
            .filter(|r| r.error_code == 0)
        {
            r.error_code = FAILED;
            r.error_message = Some(sb(why.clone()));
            r.matching_acls.clear();
        }
    }
    response
}

pub async fn alter_client_quotas(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let validate_only = req.validate_only;
    let change = match validate_only {
        true => None,
        false => shared_docs::begin(broker, SharedFile::Quotas).await,
    };
    let mut response = super::client_quotas::alter(broker, authz, req);
    if let Some(Err(why)) = publish(broker, change).await {
        for r in response.entries.iter_mut().filter(|r| r.error_code == 0) {
            r.error_code = FAILED;
            r.error_message = Some(sb(why.clone()));
        }
    }
    response
}

pub async fn alter_user_scram_credentials(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let change = shared_docs::begin(broker, SharedFile::Users).await;
    let mut response = super::scram_users::alter(broker, authz, req);
    if let Some(Err(why)) = publish(broker, change).await {
        for r in response.results.iter_mut().filter(|r| r.error_code == 0) {
            r.error_code = FAILED;
            r.error_message = Some(sb(why.clone()));
        }
    }
    response
}

async fn publish(
    broker: &Broker,
    change: Option<shared_docs::Change>,
) -> Option<Result<(), String>> {
    Some(change?.publish(broker).await)
}
