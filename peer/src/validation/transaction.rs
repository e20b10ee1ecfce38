//! The checks of one transaction that need nothing but its bytes and the channel: envelope
//! structure, creator signature, tx-id binding, proposal-hash binding, read-write set
//! decoding and the endorsement policies. These run in parallel across a block.
//!
//! The order of the checks, and the code each failure gets, follow Fabric 2.5's committer:
//! `ValidateTransaction` in `core/common/validation/msgvalidation.go`, then `validateTx` in
//! `core/committer/txvalidator/v20/validator.go` and the plugin dispatcher's `Dispatch`. The
//! one check that needs the ledger — is the tx id a duplicate of a committed one — sits in the
//! middle of that sequence, so a transaction's verdict is split in two: what is known before
//! the duplicate check ([`Checked::Invalid`]) and what follows it (`Checked::Endorser::rest`);
//! the caller runs the duplicate check sequentially in between.

use std::collections::HashSet;

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::VerifiedSigners;
use gridledger_ledger::{MetadataWrite, StateWrite};
use gridledger_proto::common::{self, HeaderType};
use gridledger_proto::protos::{self, TxValidationCode as Code};
use gridledger_proto::{compute_tx_id, kvrwset, rwset};
use prost::Message;
use prost_types::Timestamp;
use ring::digest;

use super::state::{CommittedState, encode_metadata, hashed_key, hashed_namespace};
use super::{BLOCK_VALIDATION_POLICY, BlockContext, ValidationError, endorsement};

/// A transaction id that can be trusted: the creator signed the header that carries it and,
/// for endorser transactions, it is bound to the creator and nonce.
#[derive(Debug, Clone)]
pub(crate) struct TxId {
    pub tx_id: String,
    pub timestamp: Option<Timestamp>,
}

/// The verdict of the parallel stage for one transaction.
#[derive(Debug)]
pub(crate) enum Checked {
    /// Invalid before the duplicate check. `id` is set when the tx id could be trusted, so the
    /// transaction is still recorded in the ledger's tx-id index.
    Invalid { code: Code, id: Option<TxId> },
    /// An endorser transaction that passed every check up to the duplicate check; `rest` is
    /// the verdict of the checks that follow it in Fabric's order.
    Endorser {
        id: TxId,
        rest: Result<DecodedRwSet, Code>,
    },
    /// A well-formed config transaction carrying a config the channel view accepts.
    Config {
        id: TxId,
        channel_id: String,
        config: common::Config,
    },
    /// The committed state could not be read while checking (key-level policies): the block
    /// cannot be validated.
    Unreadable(ValidationError),
}

impl Checked {
    /// The trusted tx id, if any.
    pub(crate) fn id(&self) -> Option<&TxId> {
        match self {
            Checked::Invalid { id, .. } => id.as_ref(),
            Checked::Endorser { id, .. } | Checked::Config { id, .. } => Some(id),
            Checked::Unreadable(_) => None,
        }
    }
}

/// A transaction's read-write set with every nested message decoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodedRwSet {
    pub namespaces: Vec<NsRwSet>,
}

/// One namespace of a [`DecodedRwSet`].
#[derive(Debug, Clone, Default)]
pub(crate) struct NsRwSet {
    pub namespace: String,
    pub kv: kvrwset::KvrwSet,
    /// `(collection name, hashed read-write set)` in the order the transaction lists them.
    pub collections: Vec<(String, kvrwset::HashedRwSet)>,
    /// The `pvt_rwset_hash` of each entry of `collections`, in the same order.
    pub pvt_rwset_hashes: Vec<Vec<u8>>,
}

impl NsRwSet {
    /// Whether the namespace writes anything (Fabric's `txWritesToNamespace`): public writes,
    /// hashed writes, or key metadata.
    pub(crate) fn writes_anything(&self) -> bool {
        !self.kv.writes.is_empty()
            || !self.kv.metadata_writes.is_empty()
            || self
                .collections
                .iter()
                .any(|(_, h)| !h.hashed_writes.is_empty() || !h.metadata_writes.is_empty())
    }
}

impl DecodedRwSet {
    /// Decodes `ChaincodeAction.results`; `None` when any nested message does not decode.
    fn decode(results: &[u8]) -> Option<DecodedRwSet> {
        let tx = rwset::TxReadWriteSet::decode(results).ok()?;
        let mut namespaces = Vec::with_capacity(tx.ns_rwset.len());
        for ns in tx.ns_rwset {
            let kv = kvrwset::KvrwSet::decode(ns.rwset.as_slice()).ok()?;
            let mut collections = Vec::with_capacity(ns.collection_hashed_rwset.len());
            let mut pvt_rwset_hashes = Vec::with_capacity(ns.collection_hashed_rwset.len());
            for coll in ns.collection_hashed_rwset {
                let hashed = kvrwset::HashedRwSet::decode(coll.hashed_rwset.as_slice()).ok()?;
                collections.push((coll.collection_name, hashed));
                pvt_rwset_hashes.push(coll.pvt_rwset_hash);
            }
            namespaces.push(NsRwSet {
                namespace: ns.namespace,
                kv,
                collections,
                pvt_rwset_hashes,
            });
        }
        Some(DecodedRwSet { namespaces })
    }

    /// The world-state writes of the transaction, in rwset order: public writes under their
    /// namespace, private-data hashes under the collection's derived namespace. A delete (or
    /// a purge) has no value.
    pub(crate) fn state_writes(&self) -> Vec<StateWrite> {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            for write in &ns.kv.writes {
                out.push(StateWrite {
                    namespace: ns.namespace.clone(),
                    key: write.key.clone(),
                    value: (!write.is_delete).then(|| write.value.clone()),
                });
            }
            for (collection, hashed) in &ns.collections {
                let namespace = hashed_namespace(&ns.namespace, collection);
                for write in &hashed.hashed_writes {
                    out.push(StateWrite {
                        namespace: namespace.clone(),
                        key: hashed_key(&write.key_hash),
                        value: (!write.is_delete && !write.is_purge)
                            .then(|| write.value_hash.clone()),
                    });
                }
            }
        }
        out
    }

    /// The private data collections the transaction touched, as the block carries them.
    pub(crate) fn collection_writes(&self) -> Vec<crate::private::CollectionWrites> {
        self.namespaces
            .iter()
            .flat_map(|ns| {
                ns.collections.iter().zip(&ns.pvt_rwset_hashes).map(
                    |((collection, hashed), pvt_rwset_hash)| crate::private::CollectionWrites {
                        namespace: ns.namespace.clone(),
                        collection: collection.clone(),
                        hashed: hashed.clone(),
                        pvt_rwset_hash: pvt_rwset_hash.clone(),
                    },
                )
            })
            .collect()
    }

    /// The key-metadata writes of the transaction, in rwset order, in the ledger's stored
    /// form: public keys under their namespace, private keys by key hash under the
    /// collection's hashed namespace (where every peer keeps them).
    pub(crate) fn metadata_writes(&self) -> Vec<MetadataWrite> {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            out.extend(ns.kv.metadata_writes.iter().map(|write| MetadataWrite {
                namespace: ns.namespace.clone(),
                key: write.key.clone(),
                metadata: Some(encode_metadata(&write.entries)),
                current_with: None,
            }));
            for (collection, hashed) in &ns.collections {
                let namespace = hashed_namespace(&ns.namespace, collection);
                out.extend(hashed.metadata_writes.iter().map(|write| MetadataWrite {
                    namespace: namespace.clone(),
                    key: hashed_key(&write.key_hash),
                    metadata: Some(encode_metadata(&write.entries)),
                    current_with: None,
                }));
            }
        }
        out
    }

    /// Every (namespace, key) the transaction writes a value or metadata of: public keys, and
    /// private keys as (hashed namespace, key hash in hex).
    pub(crate) fn written_keys(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let public = ns
                .kv
                .writes
                .iter()
                .map(|w| w.key.as_str())
                .chain(ns.kv.metadata_writes.iter().map(|m| m.key.as_str()));
            out.extend(public.map(|key| (ns.namespace.clone(), key.to_owned())));
            for (collection, hashed) in &ns.collections {
                let namespace = hashed_namespace(&ns.namespace, collection);
                let hashes = hashed
                    .hashed_writes
                    .iter()
                    .map(|w| w.key_hash.as_slice())
                    .chain(hashed.metadata_writes.iter().map(|m| m.key_hash.as_slice()));
                out.extend(hashes.map(|hash| (namespace.clone(), hashed_key(hash))));
            }
        }
        out
    }

    /// Every (namespace, key) whose metadata the transaction writes, in the form of
    /// [`DecodedRwSet::written_keys`].
    pub(crate) fn metadata_keys(&self) -> Vec<(String, String)> {
        self.metadata_writes()
            .into_iter()
            .map(|m| (m.namespace, m.key))
            .collect()
    }
}

/// Unix seconds of a header timestamp; a missing or pre-1970 timestamp counts as 0, at which
/// no certificate is valid.
fn unix_secs(timestamp: Option<&Timestamp>) -> u64 {
    timestamp.map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0))
}

fn invalid(code: Code) -> Checked {
    Checked::Invalid { code, id: None }
}

/// Runs every check of one transaction that does not need the ledger.
pub(crate) fn check(
    envelope_bytes: &[u8],
    ctx: &BlockContext<'_>,
    state: &dyn CommittedState,
) -> Checked {
    // Fabric skips a nil entry; an empty one is the closest thing bytes can carry.
    if envelope_bytes.is_empty() {
        return invalid(Code::NilEnvelope);
    }
    let Ok(envelope) = common::Envelope::decode(envelope_bytes) else {
        // Fabric's `GetEnvelopeFromBlock` failure in `validateTx`.
        return invalid(Code::InvalidOtherReason);
    };
    let Ok(payload) = common::Payload::decode(envelope.payload.as_slice()) else {
        return invalid(Code::BadPayload);
    };
    let Some(header) = payload.header.as_ref() else {
        return invalid(Code::BadCommonHeader);
    };
    let Ok(channel_header) = common::ChannelHeader::decode(header.channel_header.as_slice()) else {
        return invalid(Code::BadCommonHeader);
    };
    let Ok(signature_header) = common::SignatureHeader::decode(header.signature_header.as_slice())
    else {
        return invalid(Code::BadCommonHeader);
    };
    let header_type = match HeaderType::try_from(channel_header.r#type) {
        Ok(
            t @ (HeaderType::EndorserTransaction | HeaderType::Config | HeaderType::ConfigUpdate),
        ) => t,
        _ => return invalid(Code::BadCommonHeader),
    };
    if channel_header.epoch != 0
        || signature_header.nonce.is_empty()
        || signature_header.creator.is_empty()
    {
        return invalid(Code::BadCommonHeader);
    }

    // The creator must be a valid identity of the channel at the transaction's time, and must
    // have signed the payload bytes exactly as received.
    let at = unix_secs(channel_header.timestamp.as_ref());
    let creator = match ctx
        .channel
        .msp_manager()
        .deserialize_identity(&signature_header.creator, at)
    {
        Ok(creator)
            if creator
                .verify(&envelope.payload, &envelope.signature)
                .is_ok() =>
        {
            creator
        }
        _ => return invalid(Code::BadCreatorSignature),
    };

    match header_type {
        HeaderType::EndorserTransaction => {
            if compute_tx_id(&signature_header.nonce, &signature_header.creator)
                != channel_header.tx_id
            {
                return invalid(Code::BadProposalTxid);
            }
            let id = TxId {
                tx_id: channel_header.tx_id.clone(),
                timestamp: channel_header.timestamp,
            };
            let Some(action) = endorser_action(&payload.data, &header.channel_header) else {
                return Checked::Invalid {
                    code: Code::InvalidEndorserTransaction,
                    id: Some(id),
                };
            };
            if channel_header.channel_id != ctx.channel.channel_id() {
                return Checked::Invalid {
                    code: Code::TargetChainNotFound,
                    id: Some(id),
                };
            }
            match dispatch(&channel_header, &action, ctx, at, state) {
                Ok(rest) => Checked::Endorser { id, rest },
                Err(e) => Checked::Unreadable(e),
            }
        }
        HeaderType::Config => {
            let id = TxId {
                tx_id: channel_header.tx_id.clone(),
                timestamp: channel_header.timestamp,
            };
            if channel_header.channel_id != ctx.channel.channel_id() {
                return Checked::Invalid {
                    code: Code::TargetChainNotFound,
                    id: Some(id),
                };
            }
            // Until config updates are authorized against their `last_update` signatures,
            // only the ordering service may carry a config: its creator must satisfy the
            // policy that orderer block signatures satisfy.
            let by_orderer = ctx
                .channel
                .policies()
                .is_satisfied(
                    BLOCK_VALIDATION_POLICY,
                    &VerifiedSigners::from_identities([creator]),
                )
                .unwrap_or(false);
            match check_config(&payload.data, ctx.channel).filter(|_| by_orderer) {
                Some(config) => Checked::Config {
                    id,
                    channel_id: channel_header.channel_id,
                    config,
                },
                None => Checked::Invalid {
                    code: Code::InvalidConfigTransaction,
                    id: Some(id),
                },
            }
        }
        // CONFIG_UPDATE passes the header checks but is never committed by a peer; the tx id
        // was never bound to the creator, so it is not recorded.
        _ => invalid(Code::UnsupportedTxPayload),
    }
}

/// The one action of an endorser transaction, decoded.
struct EndorserAction {
    endorsed: protos::ChaincodeEndorsedAction,
    response_payload: protos::ProposalResponsePayload,
}

/// Fabric's `validateEndorserTransaction`: exactly one action whose header is a signature
/// header with nonce and creator, and whose proposal response commits to this transaction's
/// proposal: `proposal_hash == sha256(channel_header || action.header ||
/// chaincode_proposal_payload)`, all three as received.
fn endorser_action(data: &[u8], channel_header_bytes: &[u8]) -> Option<EndorserAction> {
    let tx = protos::Transaction::decode(data).ok()?;
    let [action] = tx.actions.as_slice() else {
        return None;
    };
    let action_header = common::SignatureHeader::decode(action.header.as_slice()).ok()?;
    if action_header.nonce.is_empty() || action_header.creator.is_empty() {
        return None;
    }
    let payload = protos::ChaincodeActionPayload::decode(action.payload.as_slice()).ok()?;
    let endorsed = payload.action?;
    let response_payload =
        protos::ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
            .ok()?;
    let mut hash = digest::Context::new(&digest::SHA256);
    hash.update(channel_header_bytes);
    hash.update(&action.header);
    hash.update(&payload.chaincode_proposal_payload);
    if hash.finish().as_ref() != response_payload.proposal_hash.as_slice() {
        return None;
    }
    Some(EndorserAction {
        endorsed,
        response_payload,
    })
}

/// Fabric's plugin dispatcher (`Dispatch`) and the default validation plugin: header
/// extension, chaincode action, read-write set, chaincode ids, event, namespaces, then the
/// endorsement policy of every namespace the transaction writes (and the key-level policies of
/// the keys it writes). `Err` only when the committed state cannot be read.
fn dispatch(
    channel_header: &common::ChannelHeader,
    action: &EndorserAction,
    ctx: &BlockContext<'_>,
    at: u64,
    state: &dyn CommittedState,
) -> Result<Result<DecodedRwSet, Code>, ValidationError> {
    Ok(match dispatch_checks(channel_header, action) {
        Ok((rwset, invoked)) => endorsement::check(
            &rwset,
            &invoked,
            &action.endorsed,
            ctx.channel,
            ctx.chaincodes,
            at,
            state,
        )?
        .map(|()| rwset),
        Err(code) => Err(code),
    })
}

/// Everything of [`dispatch`] before the endorsement policies: the decoded read-write set
/// and the invoked chaincode's name.
fn dispatch_checks(
    channel_header: &common::ChannelHeader,
    action: &EndorserAction,
) -> Result<(DecodedRwSet, String), Code> {
    let extension = protos::ChaincodeHeaderExtension::decode(channel_header.extension.as_slice())
        .map_err(|_| Code::BadHeaderExtension)?;
    let chaincode_action =
        protos::ChaincodeAction::decode(action.response_payload.extension.as_slice())
            .map_err(|_| Code::BadResponsePayload)?;
    let rwset = DecodedRwSet::decode(&chaincode_action.results).ok_or(Code::BadRwset)?;

    let invoked = extension
        .chaincode_id
        .as_ref()
        .ok_or(Code::InvalidOtherReason)?;
    let answered = chaincode_action
        .chaincode_id
        .as_ref()
        .ok_or(Code::InvalidOtherReason)?;
    if invoked.name.is_empty() || invoked.name != answered.name || answered.version.is_empty() {
        return Err(Code::InvalidChaincode);
    }
    if !chaincode_action.events.is_empty() {
        let event = protos::ChaincodeEvent::decode(chaincode_action.events.as_slice())
            .map_err(|_| Code::InvalidOtherReason)?;
        if event.chaincode_id != invoked.name {
            return Err(Code::InvalidOtherReason);
        }
    }

    let mut seen = HashSet::with_capacity(rwset.namespaces.len());
    for ns in &rwset.namespaces {
        if !seen.insert(ns.namespace.as_str()) {
            return Err(Code::IllegalWriteset);
        }
    }
    Ok((rwset, invoked.name.clone()))
}

/// A config transaction's `ConfigEnvelope`, accepted when its config decodes into a channel
/// view and is the next in sequence. Whether the update was authorized by the policies of
/// the current config (its `last_update`) is not checked yet.
fn check_config(data: &[u8], current: &ChannelConfig) -> Option<common::Config> {
    let envelope = common::ConfigEnvelope::decode(data).ok()?;
    let config = envelope.config?;
    if config.sequence != current.sequence().checked_add(1)? {
        return None;
    }
    ChannelConfig::from_config(current.channel_id(), &config).ok()?;
    Some(config)
}
