//! The validation core: what a committing peer decides about a block before it commits it.
//!
//! Plain functions of (block, channel config, chaincode definitions, committed state): no I/O,
//! no clock, no randomness. Two peers given the same inputs return the same codes and updates,
//! which is what keeps their world states equal.
//!
//! - [`verify_block_signatures`]: the block is the next one of the chain and the ordering
//!   service signed it. Failure refuses the block ([`BlockRejected`]).
//! - [`validate_block`]: Fabric's validation code for every transaction, and the world-state
//!   updates of the valid ones ([`ValidatedBlock`]), ready for `Ledger::commit_block`. An invalid
//!   transaction is data (its code), never an error.
//!
//! Per transaction, in parallel across the block (checks and codes as in Fabric 2.5):
//! envelope → payload → header (INVALID_OTHER_REASON for undecodable envelope bytes,
//! BAD_PAYLOAD, BAD_COMMON_HEADER — which includes header types other than endorser, config
//! and config-update, a non-zero epoch, and a missing nonce or creator); the creator is a
//! valid identity of the channel at the transaction's timestamp and signed the payload
//! (BAD_CREATOR_SIGNATURE); `tx_id == hex(sha256(nonce || creator))` (BAD_PROPOSAL_TXID);
//! exactly one action whose proposal response commits to this proposal
//! (INVALID_ENDORSER_TRANSACTION); the channel is this one (TARGET_CHAIN_NOT_FOUND); the tx id
//! is not already committed (DUPLICATE_TXID); header extension, chaincode action and read-write
//! set decode (BAD_HEADER_EXTENSION, BAD_RESPONSE_PAYLOAD, BAD_RWSET); consistent chaincode ids
//! and event (INVALID_CHAINCODE, INVALID_OTHER_REASON); no namespace twice and no private-data
//! key metadata (ILLEGAL_WRITESET); every written namespace defined and its endorsement policy
//! satisfied, with key-level policies replacing the chaincode's for the keys that have one
//! (INVALID_CHAINCODE, ENDORSEMENT_POLICY_FAILURE — `endorsement.rs` has the rules).
//! CONFIG_UPDATE envelopes are UNSUPPORTED_TX_PAYLOAD. Then, in block order: a repeat of the
//! tx id of an earlier valid transaction of the block is DUPLICATE_TXID, and MVCC
//! (MVCC_READ_CONFLICT, PHANTOM_READ_CONFLICT — `mvcc.rs` has the rules).
//!
//! Key-level policies and block order (Fabric's `KeyLevelValidationParameterManager`): the
//! policy of a key is read from the state as of before the block. When an earlier transaction
//! of the block that passed its endorsement checks writes a key's metadata, a later transaction
//! writing that key (value or metadata) is ENDORSEMENT_POLICY_FAILURE: it was endorsed against a
//! policy that the block changes before it, whether or not the earlier transaction then passes
//! MVCC. A valid transaction's metadata writes are committed next to the values
//! (`gridledger_ledger::MetadataWrite`), and count as writes of the key for the MVCC checks of
//! the later transactions of the block when the key exists.
//!
//! Only transactions whose tx id is authenticated (creator signature verified and, for endorser
//! transactions, tx id bound to nonce and creator) appear in [`ValidatedBlock::updates`], so a
//! forged envelope cannot claim someone else's tx id in the ledger's index.
//!
//! Time: transactions are validated at their own channel-header timestamps; the orderer
//! identities that signed a block are validated as Fabric's MSP does, one second into their
//! certificate's validity (chain and revocation checked, expiry not). No clock is read.
//!
//! A config transaction must be the only transaction of its block. It is valid when its creator
//! signature verifies, the creator satisfies `/Channel/Orderer/BlockValidation` (only the
//! ordering service writes config transactions), its `ConfigEnvelope` carries the next config
//! in sequence and `ChannelConfig::from_config` accepts it; the committer then switches to
//! that config ([`ValidatedBlock::config`]). Whether the config update was authorized by the
//! current config's policies (its `last_update` signatures against each element's
//! `mod_policy`) is not checked yet: that comes with channel updates over the network.
//!
//! Private data: hashed writes and reads are validated like public ones under the collection's
//! derived namespace; [`ValidatedBlock::private`] lists each valid transaction's collections so
//! the committer can attach the private values (`crate::private`), which validation never
//! sees.
//!
//! Not supported, with the outcome: key metadata of private data (ILLEGAL_WRITESET); writes to
//! a collection the chaincode does not define (ENDORSEMENT_POLICY_FAILURE, as in Fabric); BFT
//! block signatures (identifier headers refuse the block).

mod block;
mod endorsement;
mod mvcc;
mod state;
mod transaction;

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroUsize;

use gridledger_channels::config::ChannelConfig;
use gridledger_proto::common::{self, BlockMetadataIndex};
use gridledger_proto::kvrwset;
use gridledger_proto::protos::TxValidationCode;

pub use block::{BLOCK_VALIDATION_POLICY, verify_block_signatures};
pub use endorsement::IMPLICIT_COLLECTION_PREFIX;
/// The ledger types [`ValidatedBlock::updates`] is made of, re-exported so that a caller
/// replaying a chain over an [`InMemoryState`] (e.g. `gridledger ledger verify`) can adjust and
/// apply updates without depending on the ledger crate.
pub use gridledger_ledger::{BlockUpdates, MetadataWrite, StateWrite, TxUpdates};
pub use state::{
    CommittedState, InMemoryState, LedgerState, decode_metadata, encode_metadata, hashed_key,
    hashed_namespace,
};

use transaction::Checked;

/// The namespace of Fabric's chaincode lifecycle system chaincode.
pub const LIFECYCLE_NAMESPACE: &str = "_lifecycle";

/// The channel policy that endorses `_lifecycle` transactions, when the channel defines it.
pub const LIFECYCLE_ENDORSEMENT_POLICY: &str = "/Channel/Application/LifecycleEndorsement";

/// How many metadata entries Fabric allocates in a block (`InitBlockMetadata`).
const METADATA_SLOTS: usize = 5;

/// Most threads one block's transactions are checked on.
const MAX_VALIDATION_THREADS: usize = 16;

/// A chaincode as validation sees it: the namespace it owns and the policy its writes need.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaincodeDefinition {
    /// The chaincode name, which is also its world-state namespace.
    pub name: String,
    /// The defined version. Fabric 2.x does not compare it at commit time (only that the
    /// chaincode action names a non-empty version), and neither does validation.
    pub version: String,
    /// The endorsement policy of the chaincode's namespace.
    pub endorsement: EndorsementPolicy,
    /// The chaincode's private data collections by name (implicit org collections are not
    /// listed; they exist for every org of the channel).
    pub collections: BTreeMap<String, crate::private::CollectionDefinition>,
}

impl ChaincodeDefinition {
    /// The definition of `_lifecycle` on `channel`, by Fabric's rule: the channel policy
    /// `/Channel/Application/LifecycleEndorsement` when the config defines it, otherwise a
    /// majority of the member organizations (any member of each).
    pub fn lifecycle(channel: &ChannelConfig) -> ChaincodeDefinition {
        let endorsement = if channel
            .policies()
            .policy(LIFECYCLE_ENDORSEMENT_POLICY)
            .is_some()
        {
            EndorsementPolicy::ChannelPolicy(LIFECYCLE_ENDORSEMENT_POLICY.to_string())
        } else {
            let msp_ids: Vec<&str> = channel
                .organizations()
                .iter()
                .map(|o| o.msp_id.as_str())
                .collect();
            EndorsementPolicy::Signature(majority_of_members(&msp_ids))
        };
        ChaincodeDefinition {
            collections: Default::default(),
            name: LIFECYCLE_NAMESPACE.to_string(),
            version: String::new(),
            endorsement,
        }
    }
}

/// `OutOf(len/2 + 1, 'A.member', 'B.member', …)` as Fabric's `SignedByNOutOfGivenRole` builds it.
fn majority_of_members(msp_ids: &[&str]) -> common::SignaturePolicyEnvelope {
    use common::signature_policy::{NOutOf, Type};
    use prost::Message;
    let identities = msp_ids
        .iter()
        .map(|msp_id| common::MspPrincipal {
            principal_classification: common::msp_principal::Classification::Role as i32,
            principal: common::MspRole {
                msp_identifier: (*msp_id).to_string(),
                role: common::msp_role::MspRoleType::Member as i32,
            }
            .encode_to_vec(),
        })
        .collect();
    let rules = (0..msp_ids.len())
        .map(|i| common::SignaturePolicy {
            r#type: Some(Type::SignedBy(i32::try_from(i).unwrap_or(i32::MAX))),
        })
        .collect();
    common::SignaturePolicyEnvelope {
        version: 0,
        rule: Some(common::SignaturePolicy {
            r#type: Some(Type::NOutOf(NOutOf {
                n: i32::try_from(msp_ids.len() / 2 + 1).unwrap_or(i32::MAX),
                rules,
            })),
        }),
        identities,
    }
}

/// Where a namespace's endorsement policy comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum EndorsementPolicy {
    /// An explicit signature policy, e.g. `AND('Org1MSP.peer', 'Org2MSP.peer')`.
    Signature(common::SignaturePolicyEnvelope),
    /// A policy of the channel config by absolute path, e.g.
    /// `/Channel/Application/Endorsement`.
    ChannelPolicy(String),
}

/// Everything about the channel a block is validated against.
#[derive(Debug, Clone, Copy)]
pub struct BlockContext<'a> {
    /// The channel's current config (before any config the block carries).
    pub channel: &'a ChannelConfig,
    /// Chaincode definitions by name (= namespace), `_lifecycle` included (see
    /// [`ChaincodeDefinition::lifecycle`]).
    pub chaincodes: &'a BTreeMap<String, ChaincodeDefinition>,
    /// The number the block must have: the ledger height.
    pub expected_number: u64,
    /// The header hash of the last committed block (empty before the genesis block).
    pub previous_header_hash: &'a [u8],
}

/// Why a block as a whole cannot be committed. The committer refuses it and fetches it again;
/// nothing of it is applied.
#[derive(Debug, thiserror::Error)]
pub enum BlockRejected {
    /// The block has no header.
    #[error("the block has no header")]
    MissingHeader,
    /// The block has no data section.
    #[error("block {number} has no data")]
    MissingData {
        /// The block number.
        number: u64,
    },
    /// The block is not the next one of the chain.
    #[error("block number {got} is not the next block of the chain: expected {expected}")]
    WrongNumber {
        /// The ledger height.
        expected: u64,
        /// The number in the header.
        got: u64,
    },
    /// The block does not link to the last committed block.
    #[error(
        "block {number} does not chain: previous_hash is {got} but the last committed block's header hash is {expected}"
    )]
    BrokenHashChain {
        /// The block number.
        number: u64,
        /// Hex of the last committed block's header hash.
        expected: String,
        /// Hex of the block's `previous_hash`.
        got: String,
    },
    /// The header's data hash is not the hash of the block's data.
    #[error("block {number} has data_hash {got} but its data hashes to {expected}")]
    BadDataHash {
        /// The block number.
        number: u64,
        /// Hex of the hash of the data.
        expected: String,
        /// Hex of the header's `data_hash`.
        got: String,
    },
    /// Metadata slot 0 (the orderer signatures) is missing or malformed.
    #[error("block {number}: orderer signature metadata is unusable: {reason}")]
    BadSignatureMetadata {
        /// The block number.
        number: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The orderer signatures do not satisfy `/Channel/Orderer/BlockValidation`.
    #[error(
        "block {number}: orderer signatures do not satisfy /Channel/Orderer/BlockValidation: {explanation}"
    )]
    BadOrdererSignature {
        /// The block number.
        number: u64,
        /// The policy engine's explanation (signers found, signers rejected and why).
        explanation: String,
    },
    /// The committed state could not be read, so the block could not be validated.
    #[error("block {number} could not be validated: {source}")]
    State {
        /// The block number.
        number: u64,
        /// The storage failure.
        source: ValidationError,
    },
}

/// A failure to read the committed state (storage, not the block's fault).
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The ledger failed.
    #[error("reading the committed state: {0}")]
    Ledger(#[from] gridledger_ledger::LedgerError),
    /// Another state backend failed.
    #[error("reading the committed state: {0}")]
    State(String),
}

/// The outcome of validating a block: what the committer hands to `Ledger::commit_block`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedBlock {
    /// One validation code per transaction, in block order.
    pub codes: Vec<TxValidationCode>,
    /// Every transaction with a trusted tx id (valid or not, for the tx-id index) and the
    /// world-state writes of the valid ones.
    pub updates: BlockUpdates,
    /// The channel id and new config, when the block is a valid config block.
    pub config: Option<(String, common::Config)>,
    /// For each valid transaction that touched private data collections: its index in
    /// `updates.txs` and the collections as the block carries them. The committer fills the
    /// transaction's `private_writes` and `expiries` from them (`crate::private`).
    pub private: Vec<(usize, Vec<crate::private::CollectionWrites>)>,
}

impl ValidatedBlock {
    /// The TRANSACTIONS_FILTER bytes: one code per transaction.
    pub fn transactions_filter(&self) -> Vec<u8> {
        self.codes
            .iter()
            .map(|code| u8::try_from(*code as i32).unwrap_or(u8::MAX))
            .collect()
    }

    /// A copy of `block` with its TRANSACTIONS_FILTER metadata (slot 2) set to the codes, the
    /// metadata padded to Fabric's five slots.
    pub fn with_codes(&self, block: &common::Block) -> common::Block {
        let mut out = block.clone();
        let metadata = out.metadata.get_or_insert_with(Default::default);
        if metadata.metadata.len() < METADATA_SLOTS {
            metadata.metadata.resize(METADATA_SLOTS, Vec::new());
        }
        metadata.metadata[BlockMetadataIndex::TransactionsFilter as usize] =
            self.transactions_filter();
        out
    }
}

/// Validates every transaction of `block` against `ctx` and `state` (the state as of the
/// previous block). Checks the header chain and data hash too, but not the orderer signatures
/// (see [`verify_block_signatures`]).
pub fn validate_block(
    block: &common::Block,
    ctx: &BlockContext<'_>,
    state: &dyn CommittedState,
) -> Result<ValidatedBlock, BlockRejected> {
    let number = block::check_header(block, ctx)?.number;
    let data = block.data.as_ref().map_or(&[][..], |d| d.data.as_slice());
    let state_failed = |source| BlockRejected::State { number, source };

    let mut checked = check_all(data, ctx, state);
    if let Some(at) = checked
        .iter()
        .position(|c| matches!(c, Checked::Unreadable(_)))
    {
        if let Checked::Unreadable(source) = checked.swap_remove(at) {
            return Err(state_failed(source));
        }
    }

    // Sequentially, in block order: the ledger's duplicate check sits between the checks
    // above, as in Fabric, then the rest of each verdict applies.
    let mut codes = Vec::with_capacity(checked.len());
    let mut candidates = Vec::with_capacity(checked.len());
    let mut config = None;
    // Keys whose metadata an earlier transaction of the block (that passed its endorsement
    // checks) writes: their key-level policy as read before the block is stale.
    let mut metadata_changed: HashSet<(String, String)> = HashSet::new();
    for entry in &checked {
        let (code, rwset) = match entry {
            Checked::Invalid { code, .. } => (*code, None),
            Checked::Unreadable(_) => (TxValidationCode::InvalidOtherReason, None),
            Checked::Endorser { id, rest } => {
                if state.tx_id_exists(&id.tx_id).map_err(state_failed)? {
                    (TxValidationCode::DuplicateTxid, None)
                } else {
                    match rest {
                        Ok(rwset)
                            if rwset
                                .written_keys()
                                .iter()
                                .any(|key| metadata_changed.contains(key)) =>
                        {
                            (TxValidationCode::EndorsementPolicyFailure, None)
                        }
                        Ok(rwset) => {
                            metadata_changed.extend(rwset.metadata_keys());
                            (TxValidationCode::Valid, Some(rwset))
                        }
                        Err(code) => (*code, None),
                    }
                }
            }
            Checked::Config {
                channel_id,
                config: new_config,
                ..
            } => {
                if checked.len() == 1 {
                    config = Some((channel_id.clone(), new_config.clone()));
                    (TxValidationCode::Valid, None)
                } else {
                    (TxValidationCode::InvalidConfigTransaction, None)
                }
            }
        };
        codes.push(code);
        candidates.push(rwset);
    }

    // A tx id repeated within the block: the first transaction still valid keeps it.
    let mut seen = HashSet::new();
    for (entry, (code, rwset)) in checked.iter().zip(codes.iter_mut().zip(&mut candidates)) {
        if let (Checked::Endorser { id, .. }, Some(_)) = (entry, rwset.as_ref()) {
            if !seen.insert(id.tx_id.as_str()) {
                *code = TxValidationCode::DuplicateTxid;
                *rwset = None;
            }
        }
    }

    let mut block_writes = mvcc::BlockWrites::default();
    let mut txs = Vec::with_capacity(checked.len());
    let mut private = Vec::new();
    for (tx_num, (entry, (code, rwset))) in checked
        .iter()
        .zip(codes.iter_mut().zip(&candidates))
        .enumerate()
    {
        let tx_num = tx_num as u64;
        let mut writes = Vec::new();
        let mut metadata_writes = Vec::new();
        let mut collections = Vec::new();
        if let Some(rwset) = rwset {
            *code = mvcc::validate(rwset, &block_writes, state).map_err(state_failed)?;
            if *code == TxValidationCode::Valid {
                writes = rwset.state_writes();
                metadata_writes = rwset.metadata_writes();
                collections = rwset.collection_writes();
                let version = kvrwset::Version {
                    block_num: number,
                    tx_num,
                };
                block_writes.apply(&writes, version);
                block_writes
                    .apply_metadata(&metadata_writes, version, state)
                    .map_err(state_failed)?;
            }
        }
        if let Some(id) = entry.id().filter(|id| !id.tx_id.is_empty()) {
            if !collections.is_empty() {
                private.push((txs.len(), collections));
            }
            txs.push(TxUpdates {
                tx_num,
                tx_id: id.tx_id.clone(),
                validation_code: u8::try_from(*code as i32).unwrap_or(u8::MAX),
                timestamp: id.timestamp,
                writes,
                metadata_writes,
                private_writes: Vec::new(),
                expiries: Vec::new(),
                private_sets: Vec::new(),
                purges: Vec::new(),
            });
        }
    }

    Ok(ValidatedBlock {
        codes,
        updates: BlockUpdates { txs },
        config,
        private,
    })
}

/// Runs the per-transaction checks on up to [`MAX_VALIDATION_THREADS`] threads, each taking
/// a contiguous chunk of the block; results come back in block order.
fn check_all(data: &[Vec<u8>], ctx: &BlockContext<'_>, state: &dyn CommittedState) -> Vec<Checked> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_VALIDATION_THREADS)
        .min(data.len());
    if threads <= 1 {
        return data
            .iter()
            .map(|d| transaction::check(d, ctx, state))
            .collect();
    }
    let chunk = data.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = data
            .chunks(chunk)
            .map(|txs| {
                scope.spawn(move || {
                    txs.iter()
                        .map(|d| transaction::check(d, ctx, state))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(data.len());
        for worker in workers {
            match worker.join() {
                Ok(checked) => out.extend(checked),
                // A panic in a check is a bug; surface it as the panic it is.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}
