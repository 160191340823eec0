//! DescribeUserScramCredentials and AlterUserScramCredentials over the user store, with
//! Kafka's checks and codes: DESCRIBE / ALTER on the cluster, RESOURCE_NOT_FOUND,
//! DUPLICATE_RESOURCE, UNACCEPTABLE_CREDENTIAL (iterations 4096..=16384, a user name),
//! UNSUPPORTED_SASL_MECHANISM.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::sb;
use crate::broker::Broker;
use crate::security::acl::op;
use crate::security::scram::{ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::settings::Mechanism;

pub fn describe(
    broker: &Arc<Broker>,
    authz: &Authz,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !authz.cluster(op::DESCRIBE) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(E::ClusterAuthorizationFailed.code())
            .with_error_message(Some(sb("Cluster authorization failed.")));
    }
    let all = broker.users.list();
    let info = |mechs: &[(Mechanism, u32)]| {
        mechs
            .iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(m.scram_type())
                    .with_iterations(*i as i32)
            })
            .collect()
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => all
            .iter()
            .map(|(user, mechs)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(sb(user.clone()))
                    .with_credential_infos(info(mechs))
            })
            .collect(),
        Some(users) => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for u in &users {
                *counts.entry(u.name.as_str()).or_default() += 1;
            }
            let mut seen = BTreeSet::new();
            users
                .iter()
                .filter(|u| seen.insert(u.name.to_string()))
                .map(|u| {
                    let name = u.name.as_str();
                    let result = DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                    if counts[name] > 1 {
                        return result
                            .with_error_code(E::DuplicateResource.code())
                            .with_error_message(Some(sb(format!("Cannot describe SCRAM credentials for the same user twice in a single request: {name}"))));
                    }
                    match all.iter().find(|(user, _)| user == name) {
                        Some((_, mechs)) => result.with_credential_infos(info(mechs)),
                        None => result
                            .with_error_code(E::ResourceNotFound.code())
                            .with_error_message(Some(sb(format!("Attempt to describe a user credential that does not exist: {name}")))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub fn alter(
    broker: &Arc<Broker>,
    authz: &Authz,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // One result per user, in first-seen order; the first error a user meets is its answer.
    let mut order: Vec<String> = Vec::new();
    let mut errors: HashMap<String, (E, String)> = HashMap::new();
    let fail = |errors: &mut HashMap<String, (E, String)>, user: &str, code: E, msg: &str| {
        errors
            .entry(user.to_string())
            .or_insert((code, msg.to_string()));
    };
    let mut pairs: HashMap<(String, i8), usize> = HashMap::new();
    let users = req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        );
    for (user, mechanism) in users {
        if !order.contains(&user) {
            order.push(user.clone());
        }
        *pairs.entry((user, mechanism)).or_default() += 1;
    }
    let allowed = authz.cluster(op::ALTER);
    for user in &order {
        if !allowed {
            fail(
                &mut errors,
                user,
                E::ClusterAuthorizationFailed,
                "Cluster authorization failed.",
            );
        } else if user.is_empty() {
            fail(
                &mut errors,
                user,
                E::UnacceptableCredential,
                "Username must not be empty",
            );
        }
    }
    for ((user, _), n) in &pairs {
        if *n > 1 {
            fail(
                &mut errors,
                user,
                E::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            );
        }
    }
    let mut deletions = Vec::new();
    for d in &req.deletions {
        let user = d.name.to_string();
        match Mechanism::from_scram_type(d.mechanism) {
            None => fail(
                &mut errors,
                &user,
                E::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            ),
            Some(m) => {
                if broker.users.credential(&user, m).is_none() {
                    fail(
                        &mut errors,
                        &user,
                        E::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist",
                    );
                }
                deletions.push((user, m));
            }
        }
    }
    let mut upserts = Vec::new();
    for u in &req.upsertions {
        let user = u.name.to_string();
        let Some(m) = Mechanism::from_scram_type(u.mechanism) else {
            fail(
                &mut errors,
                &user,
                E::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            );
            continue;
        };
        let iterations = u.iterations;
        if iterations < MIN_ITERATIONS as i32 {
            fail(
                &mut errors,
                &user,
                E::UnacceptableCredential,
                "Too few iterations",
            );
        } else if iterations > MAX_ITERATIONS as i32 {
            fail(
                &mut errors,
                &user,
                E::UnacceptableCredential,
                "Too many iterations",
            );
        } else if u.salt.is_empty() || u.salted_password.is_empty() {
            fail(
                &mut errors,
                &user,
                E::UnacceptableCredential,
                "Salt and salted password must not be empty",
            );
        }
        upserts.push((
            user,
            m,
            ScramCredential::from_salted_password(
                m,
                &u.salted_password,
                u.salt.to_vec(),
                iterations.max(0) as u32,
            ),
        ));
    }
    // A user's changes apply only if none of them failed.
    upserts.retain(|(user, _, _)| !errors.contains_key(user));
    deletions.retain(|(user, _)| !errors.contains_key(user));
    if !upserts.is_empty() || !deletions.is_empty() {
        if let Err(e) = broker.users.apply(upserts.clone(), &deletions) {
            tracing::error!(error = %e, "storing SCRAM credentials failed");
            for (user, _, _) in &upserts {
                fail(&mut errors, user, E::UnknownServerError, &e.to_string());
            }
            for (user, _) in &deletions {
                fail(&mut errors, user, E::UnknownServerError, &e.to_string());
            }
        }
    }
    let results = order
        .into_iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default().with_user(sb(user.clone()));
            match errors.get(&user) {
                Some((code, msg)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(sb(msg.clone()))),
                None => result,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
