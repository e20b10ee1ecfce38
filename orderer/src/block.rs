//! Blocks as the orderer writes them: header, data and Fabric's five metadata slots, signed by
//! the orderer.
//!
//! - Header: `number` = ledger height, `previous_hash` = header hash of the tip, `data_hash` =
//!   SHA-256 of the concatenated envelopes (Fabric's rule, `gridledger_proto::blockutil`).
//! - Slot 0 (SIGNATURES): `Metadata{value = OrdererBlockMetadata{last_config{index},
//!   consenter_metadata = Metadata{value = etcdraft.BlockMetadata}}, signatures =
//!   [MetadataSignature{signature_header = SignatureHeader{creator, nonce}, signature =
//!   Sign(value || signature_header || BlockHeaderBytes(header))}]}`.
//! - Slot 1 (LAST_CONFIG): `Metadata{value = LastConfig{index}}`, unsigned.
//! - Slot 2 (TRANSACTIONS_FILTER): empty; the committing peer fills it.
//! - Slots 3 and 4: empty.
//!
//! The consenter metadata is Fabric's `etcdraft.BlockMetadata` ([`RaftBlockMetadata`]): its
//! `raft_index` is the last Raft log index whose effect the chain up to this block contains,
//! which is where the orderer resumes after a restart.
//!
//! Building and signing are plain functions; the nonce is an input. Signing is split in two
//! ([`signatures_metadata`], [`attach_signatures`]) because in a Raft cluster the leader
//! makes the SIGNATURES slot once and every consenter attaches those same bytes.

use gridledger_identity::SigningIdentity;
use gridledger_proto::blockutil::{block_data_hash, block_header_bytes};
use gridledger_proto::common::{self, BlockMetadataIndex};
use prost::Message;

/// Fabric always allocates this many metadata slots.
pub const METADATA_SLOTS: usize = 5;

/// Index of the LAST_CONFIG slot (deprecated in Fabric's proto, still written by Fabric).
const LAST_CONFIG_SLOT: usize = 1;

/// Length of the nonce in a block signature's `SignatureHeader`.
pub const NONCE_LEN: usize = 24;

/// Fabric's `etcdraft.BlockMetadata` (orderer/etcdraft/configuration.proto), carried as the
/// consenter metadata of every block the Raft orderer writes.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RaftBlockMetadata {
    /// Raft ids of the consenters, in consenter-set order.
    #[prost(uint64, repeated, tag = "1")]
    pub consenter_ids: Vec<u64>,
    /// The id the next consenter added to the set will get.
    #[prost(uint64, tag = "2")]
    pub next_consenter_id: u64,
    /// The last Raft log index reflected in the chain up to and including this block.
    #[prost(uint64, tag = "3")]
    pub raft_index: u64,
}

/// A stored block whose orderer metadata cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BlockMetadataError {
    /// The block has fewer metadata slots than needed.
    #[error("block {block} has no metadata slot {slot}")]
    MissingSlot {
        /// The block number.
        block: u64,
        /// The slot index.
        slot: usize,
    },
    /// A metadata message does not decode.
    #[error("block {block}: cannot decode the {what}: {source}")]
    Decode {
        /// The block number.
        block: u64,
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
}

/// A block with header and data, and five empty metadata slots.
pub fn assemble_block(
    number: u64,
    previous_hash: Vec<u8>,
    envelopes: Vec<Vec<u8>>,
) -> common::Block {
    let data = common::BlockData { data: envelopes };
    let header = common::BlockHeader {
        number,
        previous_hash,
        data_hash: block_data_hash(&data).to_vec(),
    };
    common::Block {
        header: Some(header),
        data: Some(data),
        metadata: Some(common::BlockMetadata {
            metadata: vec![Vec::new(); METADATA_SLOTS],
        }),
    }
}

/// Fills the SIGNATURES and LAST_CONFIG slots: the orderer's signature over the header and
/// the orderer metadata, with `nonce` in the signature header.
pub fn sign_block(
    block: &mut common::Block,
    signer: &SigningIdentity,
    last_config_index: u64,
    consenter_metadata: &RaftBlockMetadata,
    nonce: &[u8; NONCE_LEN],
) {
    let header = block.header.clone().unwrap_or_default();
    let slot = signatures_metadata(
        &header,
        signer,
        last_config_index,
        consenter_metadata,
        nonce,
    );
    attach_signatures(block, slot, last_config_index);
}

/// The encoded SIGNATURES slot for a block with `header`: the orderer metadata (last config
/// and consenter metadata) and `signer`'s signature over it and the header.
///
/// In a Raft cluster the leader makes this once per block and orders it through Raft, so
/// every consenter stores exactly the same bytes.
pub fn signatures_metadata(
    header: &common::BlockHeader,
    signer: &SigningIdentity,
    last_config_index: u64,
    consenter_metadata: &RaftBlockMetadata,
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let header_bytes = block_header_bytes(header);
    let value = common::OrdererBlockMetadata {
        last_config: Some(common::LastConfig {
            index: last_config_index,
        }),
        consenter_metadata: common::Metadata {
            value: consenter_metadata.encode_to_vec(),
            signatures: Vec::new(),
        }
        .encode_to_vec(),
    }
    .encode_to_vec();
    let signature_header = common::SignatureHeader {
        creator: signer.serialized().to_vec(),
        nonce: nonce.to_vec(),
    }
    .encode_to_vec();
    let mut signed = Vec::with_capacity(value.len() + signature_header.len() + header_bytes.len());
    signed.extend_from_slice(&value);
    signed.extend_from_slice(&signature_header);
    signed.extend_from_slice(&header_bytes);
    let signature = signer.sign(&signed);

    common::Metadata {
        value,
        signatures: vec![common::MetadataSignature {
            signature_header,
            signature,
            identifier_header: Vec::new(),
        }],
    }
    .encode_to_vec()
}

/// Puts an encoded SIGNATURES slot (from [`signatures_metadata`]) into `block`, and the
/// LAST_CONFIG slot derived from `last_config_index`.
pub fn attach_signatures(
    block: &mut common::Block,
    signatures_slot: Vec<u8>,
    last_config_index: u64,
) {
    let last_config_slot = common::Metadata {
        value: common::LastConfig {
            index: last_config_index,
        }
        .encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();

    let metadata = block.metadata.get_or_insert_with(Default::default);
    if metadata.metadata.len() < METADATA_SLOTS {
        metadata.metadata.resize(METADATA_SLOTS, Vec::new());
    }
    metadata.metadata[BlockMetadataIndex::Signatures as usize] = signatures_slot;
    metadata.metadata[LAST_CONFIG_SLOT] = last_config_slot;
}

/// What the orderer needs from a block it wrote earlier (or a genesis block) to continue the
/// chain after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdererMetadata {
    /// The number of the last config block (`OrdererBlockMetadata.last_config.index`).
    pub last_config_index: u64,
    /// The Raft index the chain reflects up to this block (0 when the block carries no
    /// consenter metadata, as a genesis block).
    pub raft_index: u64,
    /// The consenters' Raft ids in config order (empty without consenter metadata).
    pub consenter_ids: Vec<u64>,
    /// The id the next added consenter gets (0 without consenter metadata).
    pub next_consenter_id: u64,
}

/// Reads the orderer metadata of slot 0 (SIGNATURES).
pub fn orderer_metadata(block: &common::Block) -> Result<OrdererMetadata, BlockMetadataError> {
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let slot = BlockMetadataIndex::Signatures as usize;
    let bytes = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(slot))
        .ok_or(BlockMetadataError::MissingSlot {
            block: number,
            slot,
        })?;
    let decode_err = |what: &'static str| {
        move |source| BlockMetadataError::Decode {
            block: number,
            what,
            source,
        }
    };
    let metadata =
        common::Metadata::decode(bytes.as_slice()).map_err(decode_err("SIGNATURES metadata"))?;
    let orderer = common::OrdererBlockMetadata::decode(metadata.value.as_slice())
        .map_err(decode_err("OrdererBlockMetadata"))?;
    let raft = if orderer.consenter_metadata.is_empty() {
        RaftBlockMetadata::default()
    } else {
        let consenter = common::Metadata::decode(orderer.consenter_metadata.as_slice())
            .map_err(decode_err("consenter metadata"))?;
        RaftBlockMetadata::decode(consenter.value.as_slice())
            .map_err(decode_err("etcdraft BlockMetadata"))?
    };
    Ok(OrdererMetadata {
        last_config_index: orderer.last_config.map_or(0, |c| c.index),
        raft_index: raft.raft_index,
        consenter_ids: raft.consenter_ids,
        next_consenter_id: raft.next_consenter_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_proto::blockutil::block_header_hash;

    #[test]
    fn assembled_block_hashes_its_data_and_links_to_previous() {
        let block = assemble_block(7, vec![0xab; 32], vec![b"env0".to_vec(), b"env1".to_vec()]);
        let header = block.header.as_ref().expect("header");
        assert_eq!(header.number, 7);
        assert_eq!(header.previous_hash, vec![0xab; 32]);
        // WIRE.md §3.2 test vector: data "env0","env1".
        assert_eq!(
            hex::encode(&header.data_hash),
            "d06332f933847efc16b6b2eb437f9e8f6a8b54062967bc85f37f4490da2f3215"
        );
        assert_eq!(
            block.metadata.as_ref().expect("metadata").metadata.len(),
            METADATA_SLOTS
        );
        // The hash of this header is what block 8 must link to.
        assert_eq!(block_header_hash(header).len(), 32);
    }

    #[test]
    fn metadata_of_unsigned_block_is_missing_or_empty() {
        let block = assemble_block(1, Vec::new(), Vec::new());
        // An empty slot decodes to empty messages: index 0, raft index 0.
        assert_eq!(
            orderer_metadata(&block).expect("empty slot decodes"),
            OrdererMetadata {
                last_config_index: 0,
                raft_index: 0,
                consenter_ids: Vec::new(),
                next_consenter_id: 0,
            }
        );
        let mut broken = block.clone();
        broken.metadata = None;
        assert!(matches!(
            orderer_metadata(&broken),
            Err(BlockMetadataError::MissingSlot { slot: 0, .. })
        ));
        broken.metadata = Some(common::BlockMetadata {
            metadata: vec![vec![0xff, 0xff]],
        });
        assert!(matches!(
            orderer_metadata(&broken),
            Err(BlockMetadataError::Decode { .. })
        ));
    }
}
