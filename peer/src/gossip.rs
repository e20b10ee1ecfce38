//! Private data between peers (GridLedger's `gridledger.PrivateData` service): the endorsing
//! peer pushes a transaction's private read-write set to peers of each collection's member
//! organizations at endorsement, and a committing member peer that lacks it pulls it from the
//! others (served from the others' transient stores, or from the private write sets they
//! kept when they committed the transaction).
//!
//! Peers are found as the channel config's anchor peers (this peer excluded). A collection's
//! data goes only to peers of its member orgs, at most `maximum_peer_count` of them
//! acknowledging; endorsement fails when fewer than `required_peer_count` acknowledged
//! (Fabric's rule; the endorsing peer itself does not count). Each peer receives a copy cut to
//! the collections its org is a member of, so a non-member never receives a value.
//!
//! Requests are signed with the calling peer's signing identity and name the receiver's
//! organization and a timestamp; the receiver accepts them from peers of the channel's
//! organizations, addressed to its own organization, within five minutes of its clock, stores
//! only collections its own org is a member of, and answers a pull with only the collections
//! the caller's org is a member of. Pulls go only to peers of the collections' member orgs.

use std::collections::BTreeSet;
use std::sync::Arc;

use gridledger_identity::Role;
use gridledger_proto::gridledger::private_data_client::PrivateDataClient;
use gridledger_proto::gridledger::private_data_server::PrivateData;
use gridledger_proto::gridledger::{
    PrivateDataRequest, PullResponse, PushResponse, SignedPrivateDataRequest,
};
use gridledger_proto::prost::Message;
use gridledger_proto::rwset::TxPvtReadWriteSet;
use tonic::{Request, Response, Status};

use crate::endorser::{ProposalError, Simulated};
use crate::node::{Channel, Peer, now_unix_secs};

/// How far a request's timestamp may be from the receiver's clock.
const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// One collection's dissemination requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The chaincode namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// MSP ids of the member orgs.
    pub members: BTreeSet<String>,
    /// Acknowledgements required.
    pub required: usize,
    /// At most this many peers receive it.
    pub maximum: usize,
}

/// A peer the data may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its organization.
    pub msp_id: String,
    /// `host:port`.
    pub endpoint: String,
}

/// Why dissemination failed the endorsement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "failed to distribute private data of collection {collection:?} of chaincode {namespace:?}: {acknowledged} peer(s) acknowledged, required_peer_count is {required}{}",
    if failures.is_empty() { String::new() } else { format!(" ({})", failures.join("; ")) }
)]
pub struct DisseminationError {
    /// The chaincode.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// Peers that acknowledged.
    pub acknowledged: usize,
    /// `required_peer_count`.
    pub required: usize,
    /// What went wrong with the peers tried.
    pub failures: Vec<String>,
}

/// `pvt` cut to the collections `keep` accepts; `None` when nothing is left.
pub fn filter(
    pvt: &TxPvtReadWriteSet,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Option<TxPvtReadWriteSet> {
    let mut out = TxPvtReadWriteSet {
        data_model: pvt.data_model,
        ns_pvt_rwset: Vec::new(),
    };
    for ns in &pvt.ns_pvt_rwset {
        let collections: Vec<_> = ns
            .collection_pvt_rwset
            .iter()
            .filter(|c| keep(&ns.namespace, &c.collection_name))
            .cloned()
            .collect();
        if !collections.is_empty() {
            out.ns_pvt_rwset
                .push(gridledger_proto::rwset::NsPvtReadWriteSet {
                    namespace: ns.namespace.clone(),
                    collection_pvt_rwset: collections,
                });
        }
    }
    (!out.ns_pvt_rwset.is_empty()).then_some(out)
}

/// Pushes `pvt` to `targets` in order through `send`: each target gets the collections of
/// `needs` its org is a member of that have not reached their `maximum` yet; an acknowledged
/// push counts for each collection it carried. Fails with the first collection that ended
/// with fewer than `required` acknowledgements.
pub fn distribute(
    pvt: &TxPvtReadWriteSet,
    needs: &[Need],
    targets: &[Target],
    send: &mut dyn FnMut(&Target, &TxPvtReadWriteSet) -> Result<(), String>,
) -> Result<(), DisseminationError> {
    let mut acks = vec![0usize; needs.len()];
    let mut failures: Vec<Vec<String>> = vec![Vec::new(); needs.len()];
    for target in targets {
        let carried: Vec<usize> = needs
            .iter()
            .enumerate()
            .filter(|(i, n)| n.members.contains(&target.msp_id) && acks[*i] < n.maximum)
            .map(|(i, _)| i)
            .collect();
        if carried.is_empty() {
            continue;
        }
        let keep = |ns: &str, coll: &str| {
            carried
                .iter()
                .any(|&i| needs[i].namespace == ns && needs[i].collection == coll)
        };
        let Some(copy) = filter(pvt, &keep) else {
            continue;
        };
        match send(target, &copy) {
            Ok(()) => carried.iter().for_each(|&i| acks[i] += 1),
            Err(e) => carried
                .iter()
                .for_each(|&i| failures[i].push(format!("{}: {e}", target.endpoint))),
        }
    }
    for (i, need) in needs.iter().enumerate() {
        if acks[i] < need.required {
            return Err(DisseminationError {
                namespace: need.namespace.clone(),
                collection: need.collection.clone(),
                acknowledged: acks[i],
                required: need.required,
                failures: std::mem::take(&mut failures[i]),
            });
        }
    }
    Ok(())
}

/// The anchor peers of the channel's organizations, this peer excluded.
fn targets(peer: &Peer, channel: &Channel) -> Vec<Target> {
    let own = [
        Some(peer.config().listen.to_string()),
        peer.config().external_endpoint.clone(),
    ];
    let config = channel.config();
    config
        .organizations()
        .iter()
        .flat_map(|org| {
            org.anchor_peers.iter().map(|a| Target {
                msp_id: org.msp_id.clone(),
                endpoint: format!("{}:{}", a.host, a.port),
            })
        })
        .filter(|t| !own.iter().flatten().any(|o| *o == t.endpoint))
        .collect()
}

/// A signed request of this peer for a peer of `receiver_msp_id`.
fn signed(
    peer: &Peer,
    receiver_msp_id: &str,
    channel_id: &str,
    tx_id: &str,
    pvt_rwset: Vec<u8>,
) -> SignedPrivateDataRequest {
    let request = PrivateDataRequest {
        channel_id: channel_id.to_owned(),
        tx_id: tx_id.to_owned(),
        pvt_rwset,
        timestamp: i64::try_from(now_unix_secs()).unwrap_or(i64::MAX),
        receiver_msp_id: receiver_msp_id.to_owned(),
    }
    .encode_to_vec();
    SignedPrivateDataRequest {
        signature: peer.signer().sign(&request),
        identity: peer.signer().serialized().to_vec(),
        request,
    }
}

/// Runs `future` to completion from the blocking endorsement thread.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::runtime::Handle::try_current()
        .map(|handle| handle.block_on(future))
        .map_err(|_| "no runtime to reach other peers from".to_owned())
}

/// Pushes a simulation's private read-write set to member peers as its collections require
/// (called by the endorser after it kept the set in its own transient store).
pub fn disseminate(peer: &Peer, simulated: &Simulated, tx_id: &str) -> Result<(), ProposalError> {
    let Some(pvt) = &simulated.result.pvt_rwset else {
        return Ok(());
    };
    let channel = &simulated.channel;
    let mut needs = Vec::new();
    for ns in &pvt.ns_pvt_rwset {
        for c in &ns.collection_pvt_rwset {
            let Some(def) = channel.collection(&ns.namespace, &c.collection_name) else {
                continue;
            };
            needs.push(Need {
                namespace: ns.namespace.clone(),
                collection: c.collection_name.clone(),
                members: def.members.clone(),
                required: usize::try_from(def.required_peer_count).unwrap_or(0),
                maximum: usize::try_from(def.maximum_peer_count).unwrap_or(0),
            });
        }
    }
    if needs.iter().all(|n| n.maximum == 0 && n.required == 0) {
        return Ok(());
    }
    let config = channel.config();
    let timeout = peer.rpc_timeout();
    let mut send = |target: &Target, copy: &TxPvtReadWriteSet| -> Result<(), String> {
        let roots = crate::gateway::tls_roots(&config, &target.msp_id);
        let connection =
            crate::tls::client_channel(&target.endpoint, &roots, timeout, Some(timeout))
                .map_err(|e| e.to_string())?;
        let request = signed(
            peer,
            &target.msp_id,
            channel.id(),
            tx_id,
            copy.encode_to_vec(),
        );
        block_on(async move { PrivateDataClient::new(connection).push(request).await })?
            .map(|_| ())
            .map_err(|s| s.message().to_owned())
    };
    distribute(pvt, &needs, &targets(peer, channel), &mut send)
        .map_err(|e| ProposalError::PrivateData(e.to_string()))
}

/// Asks the other peers of `member_orgs` for the private read-write sets of `tx_id` (a
/// committing member peer whose transient store lacks them). Returns every set received; the
/// caller checks them against the block.
pub fn pull(
    peer: &Peer,
    channel: &Channel,
    tx_id: &str,
    member_orgs: &BTreeSet<String>,
) -> Vec<Vec<u8>> {
    let config = channel.config();
    let timeout = peer.rpc_timeout();
    let mut out = Vec::new();
    for target in targets(peer, channel)
        .into_iter()
        .filter(|t| member_orgs.contains(&t.msp_id))
    {
        let roots = crate::gateway::tls_roots(&config, &target.msp_id);
        let Ok(connection) =
            crate::tls::client_channel(&target.endpoint, &roots, timeout, Some(timeout))
        else {
            continue;
        };
        let request = signed(peer, &target.msp_id, channel.id(), tx_id, Vec::new());
        match block_on(async move { PrivateDataClient::new(connection).pull(request).await }) {
            Ok(Ok(response)) => out.extend(response.into_inner().pvt_rwsets),
            Ok(Err(status)) => {
                tracing::debug!(peer = %target.endpoint, tx_id, error = %status.message(), "private data pull refused")
            }
            Err(e) => tracing::debug!(tx_id, error = %e, "private data pull not possible"),
        }
    }
    out
}

/// The `gridledger.PrivateData` service of a peer.
pub struct PrivateDataService(pub Arc<Peer>);

impl PrivateDataService {
    /// Checks a request's signature, freshness and sender; returns the request, its channel
    /// and the sender's MSP id.
    fn check(
        &self,
        signed: &SignedPrivateDataRequest,
    ) -> Result<(PrivateDataRequest, Arc<Channel>, String), Status> {
        let request = PrivateDataRequest::decode(signed.request.as_slice())
            .map_err(|e| Status::invalid_argument(format!("request does not decode: {e}")))?;
        let now = i64::try_from(now_unix_secs()).unwrap_or(i64::MAX);
        if (request.timestamp - now).abs() > MAX_CLOCK_SKEW_SECS {
            return Err(Status::permission_denied(format!(
                "request timestamp {} is more than {MAX_CLOCK_SKEW_SECS} s from this peer's clock",
                request.timestamp
            )));
        }
        let channel = self.0.channel(&request.channel_id).ok_or_else(|| {
            Status::not_found(format!("channel {:?} is not joined", request.channel_id))
        })?;
        if request.receiver_msp_id != channel.local_msp_id() {
            return Err(Status::permission_denied(format!(
                "the request is for a peer of {:?}, this peer is of {:?}",
                request.receiver_msp_id,
                channel.local_msp_id()
            )));
        }
        let identity = self
            .0
            .validate_identity(&channel, &signed.identity)
            .map_err(|e| Status::permission_denied(format!("sender is not valid: {e}")))?;
        identity
            .verify(&signed.request, &signed.signature)
            .map_err(|e| Status::permission_denied(format!("bad signature: {e}")))?;
        if identity.role() != Some(Role::Peer) {
            return Err(Status::permission_denied(
                "only peers exchange private data",
            ));
        }
        let msp_id = identity.msp_id().to_owned();
        Ok((request, channel, msp_id))
    }
}

#[tonic::async_trait]
impl PrivateData for PrivateDataService {
    async fn push(
        &self,
        request: Request<SignedPrivateDataRequest>,
    ) -> Result<Response<PushResponse>, Status> {
        let (request, channel, _) = self.check(request.get_ref())?;
        let pvt = TxPvtReadWriteSet::decode(request.pvt_rwset.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("private read-write set does not decode: {e}"))
        })?;
        let own = channel.local_msp_id().to_owned();
        let keep = |ns: &str, coll: &str| {
            channel
                .collection(ns, coll)
                .is_some_and(|c| c.is_member(&own))
        };
        let Some(kept) = filter(&pvt, &keep) else {
            return Err(Status::permission_denied(
                "this peer's organization is a member of none of the collections",
            ));
        };
        let bytes = kept.encode_to_vec();
        let ledger = channel.ledger().clone();
        tokio::task::spawn_blocking(move || ledger.persist_transient(&request.tx_id, &bytes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PushResponse {}))
    }

    async fn pull(
        &self,
        request: Request<SignedPrivateDataRequest>,
    ) -> Result<Response<PullResponse>, Status> {
        let (request, channel, caller) = self.check(request.get_ref())?;
        let ledger = channel.ledger().clone();
        let tx_id = request.tx_id.clone();
        let (mut copies, committed) = tokio::task::spawn_blocking(move || {
            Ok::<_, gridledger_ledger::LedgerError>((
                ledger.transient(&tx_id)?,
                ledger.private_data(&tx_id)?,
            ))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        if let Some(set) = committed_set(&committed) {
            copies.push(set.encode_to_vec());
        }
        let keep = |ns: &str, coll: &str| {
            channel
                .collection(ns, coll)
                .is_some_and(|c| c.is_member(&caller))
        };
        let pvt_rwsets = copies
            .iter()
            .filter_map(|bytes| TxPvtReadWriteSet::decode(bytes.as_slice()).ok())
            .filter_map(|set| filter(&set, &keep))
            .map(|set| set.encode_to_vec())
            .collect();
        Ok(Response::new(PullResponse { pvt_rwsets }))
    }
}

/// A `TxPvtReadWriteSet` of the private write sets a peer kept at commit (derived namespace
/// `ns$$pcoll`, encoded `KVRWSet`); `None` when there are none.
pub fn committed_set(kept: &[(String, Vec<u8>)]) -> Option<TxPvtReadWriteSet> {
    let mut out = TxPvtReadWriteSet::default();
    for (derived, rwset) in kept {
        let Some((namespace, collection)) = derived.split_once("$$p") else {
            continue;
        };
        let collection = gridledger_proto::rwset::CollectionPvtReadWriteSet {
            collection_name: collection.to_owned(),
            rwset: rwset.clone(),
        };
        match out
            .ns_pvt_rwset
            .iter_mut()
            .find(|ns| ns.namespace == namespace)
        {
            Some(ns) => ns.collection_pvt_rwset.push(collection),
            None => out
                .ns_pvt_rwset
                .push(gridledger_proto::rwset::NsPvtReadWriteSet {
                    namespace: namespace.to_owned(),
                    collection_pvt_rwset: vec![collection],
                }),
        }
    }
    (!out.ns_pvt_rwset.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_proto::rwset::{CollectionPvtReadWriteSet, NsPvtReadWriteSet};

    fn pvt() -> TxPvtReadWriteSet {
        TxPvtReadWriteSet {
            data_model: 0,
            ns_pvt_rwset: vec![NsPvtReadWriteSet {
                namespace: "cc".into(),
                collection_pvt_rwset: vec![
                    CollectionPvtReadWriteSet {
                        collection_name: "ab".into(),
                        rwset: b"ab-data".to_vec(),
                    },
                    CollectionPvtReadWriteSet {
                        collection_name: "a".into(),
                        rwset: b"a-data".to_vec(),
                    },
                ],
            }],
        }
    }

    fn need(collection: &str, members: &[&str], required: usize, maximum: usize) -> Need {
        Need {
            namespace: "cc".into(),
            collection: collection.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            required,
            maximum,
        }
    }

    fn target(msp_id: &str, endpoint: &str) -> Target {
        Target {
            msp_id: msp_id.into(),
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn each_peer_gets_only_its_orgs_collections_up_to_the_maximum() {
        let needs = [need("ab", &["A", "B"], 1, 1), need("a", &["A"], 0, 5)];
        let targets = [target("B", "b:1"), target("C", "c:1"), target("A", "a:1")];
        let mut sent: Vec<(String, Vec<String>)> = Vec::new();
        distribute(&pvt(), &needs, &targets, &mut |t, copy| {
            let names = copy.ns_pvt_rwset[0]
                .collection_pvt_rwset
                .iter()
                .map(|c| c.collection_name.clone())
                .collect();
            sent.push((t.endpoint.clone(), names));
            Ok(())
        })
        .expect("enough peers");
        // B got "ab" (and reached its maximum of 1), C (a non-member) nothing, A only "a".
        assert_eq!(
            sent,
            vec![
                ("b:1".to_string(), vec!["ab".to_string()]),
                ("a:1".to_string(), vec!["a".to_string()]),
            ]
        );
    }

    #[test]
    fn too_few_acknowledgements_fail_with_the_collection_and_the_reasons() {
        let needs = [need("ab", &["A", "B"], 2, 3)];
        let targets = [target("A", "a:1"), target("B", "b:1"), target("C", "c:1")];
        let err = distribute(&pvt(), &needs, &targets, &mut |t, _| {
            if t.endpoint == "b:1" {
                Err("connection refused".into())
            } else {
                Ok(())
            }
        })
        .expect_err("only one member peer acknowledged");
        assert_eq!(err.collection, "ab");
        assert_eq!(err.acknowledged, 1);
        assert_eq!(err.required, 2);
        assert!(err.to_string().contains("b:1: connection refused"), "{err}");
    }

    #[test]
    fn committed_sets_are_regrouped_by_namespace() {
        let set = committed_set(&[
            ("cc$$pa".into(), b"1".to_vec()),
            ("cc$$pb".into(), b"2".to_vec()),
            ("other$$pa".into(), b"3".to_vec()),
        ])
        .expect("sets");
        assert_eq!(set.ns_pvt_rwset.len(), 2);
        assert_eq!(set.ns_pvt_rwset[0].collection_pvt_rwset.len(), 2);
        assert_eq!(set.ns_pvt_rwset[1].collection_pvt_rwset[0].rwset, b"3");
        assert!(committed_set(&[]).is_none());
    }

    #[test]
    fn filter_drops_collections_and_empty_namespaces() {
        assert!(filter(&pvt(), &|_, _| false).is_none());
        let only_a = filter(&pvt(), &|_, c| c == "a").expect("a kept");
        assert_eq!(only_a.ns_pvt_rwset[0].collection_pvt_rwset.len(), 1);
        assert_eq!(
            only_a.ns_pvt_rwset[0].collection_pvt_rwset[0].rwset,
            b"a-data"
        );
    }
}
