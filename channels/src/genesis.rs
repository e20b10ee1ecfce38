//! Genesis blocks: block 0 of a channel, carrying its first configuration.
//!
//! The block is a real Fabric config block, shaped like the one `configtxgen
//! -outputBlock` writes: one unsigned `Envelope` of type CONFIG whose payload is a
//! `ConfigEnvelope{config}`, a header with number 0 and no previous hash, and Fabric's five
//! metadata slots. Unlike configtxgen, nothing here is random: the signature-header nonce (and
//! so the tx id) is derived from the channel id, so the same channel id, config and timestamp
//! always give identical bytes — every orderer of a consortium can build the same block 0.
//!
//! The reverse direction, [`config_from_block`], reads the config out of any config block
//! (ours or Fabric's).

use gridledger_proto::blockutil::{block_data_hash, compute_tx_id};
use gridledger_proto::common;
use prost::Message;
use thiserror::Error;

/// `ChannelHeader.version` Fabric writes in genesis blocks.
const GENESIS_MESSAGE_VERSION: i32 = 1;
/// Domain separator hashed with the channel id to derive the genesis nonce.
const GENESIS_NONCE_DOMAIN: &[u8] = b"gridledger/genesis-nonce/v1:";
/// Length of a Fabric nonce.
pub const NONCE_LEN: usize = 24;
/// `TxValidationCode::VALID`, recorded for the genesis block's one transaction.
const TX_VALID: u8 = 0;
/// Fabric always allocates this many metadata slots (`BlockMetadataIndex` has five values).
const METADATA_SLOTS: usize = 5;

/// Why a block could not be read as a config block.
#[derive(Debug, Error)]
pub enum ConfigBlockError {
    /// A config block carries exactly one envelope.
    #[error("a config block holds exactly one envelope; this one holds {0}")]
    EnvelopeCount(usize),
    /// Some nested message does not decode.
    #[error("cannot decode the {what}: {source}")]
    Decode {
        /// Which message, e.g. "channel header".
        what: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// The payload has no header.
    #[error("the envelope payload has no header")]
    MissingHeader,
    /// The envelope is not a CONFIG transaction.
    #[error("the envelope has header type {0}, not CONFIG (1)")]
    NotConfig(i32),
    /// The `ConfigEnvelope` carries no config.
    #[error("the config envelope carries no config")]
    MissingConfig,
}

/// The nonce of channel `channel_id`'s genesis signature header: the first 24 bytes of
/// SHA-256(domain ‖ channel id). Fixed per channel so genesis blocks are reproducible.
pub fn genesis_nonce(channel_id: &str) -> [u8; NONCE_LEN] {
    // compute_tx_id is hex(SHA-256(a ‖ b)), which is exactly the digest needed here.
    let digest_hex = compute_tx_id(GENESIS_NONCE_DOMAIN, channel_id.as_bytes());
    let digest = hex::decode(digest_hex).expect("compute_tx_id returns lowercase hex");
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&digest[..NONCE_LEN]);
    nonce
}

/// Builds block 0 of channel `channel_id` carrying `config`, stamped with `timestamp`.
///
/// Layout (as Fabric's genesis factory): `Envelope{payload = Payload{header{ChannelHeader{type
/// CONFIG, version 1, channel_id, timestamp, tx_id, epoch 0}, SignatureHeader{creator empty,
/// nonce}}, data = ConfigEnvelope{config}}, signature empty}`; `tx_id` = hex(SHA-256(nonce)),
/// Fabric's rule with an empty creator. Metadata: SIGNATURES = `Metadata{value =
/// OrdererBlockMetadata{last_config{index 0}}}`, LAST_CONFIG = `Metadata{value =
/// LastConfig{index 0}}`, TRANSACTIONS_FILTER = `[VALID]`, ORDERER and COMMIT_HASH empty.
pub fn genesis_block(
    channel_id: &str,
    config: common::Config,
    timestamp: prost_types::Timestamp,
) -> common::Block {
    let nonce = genesis_nonce(channel_id);
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::Config as i32,
        version: GENESIS_MESSAGE_VERSION,
        timestamp: Some(timestamp),
        channel_id: channel_id.to_string(),
        tx_id: compute_tx_id(&nonce, &[]),
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: Vec::new(),
    };
    let signature_header = common::SignatureHeader {
        creator: Vec::new(),
        nonce: nonce.to_vec(),
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: signature_header.encode_to_vec(),
        }),
        data: common::ConfigEnvelope {
            config: Some(config),
            last_update: None,
        }
        .encode_to_vec(),
    };
    let envelope = common::Envelope {
        payload: payload.encode_to_vec(),
        signature: Vec::new(),
    };
    let data = common::BlockData {
        data: vec![envelope.encode_to_vec()],
    };
    let header = common::BlockHeader {
        number: 0,
        previous_hash: Vec::new(),
        data_hash: block_data_hash(&data).to_vec(),
    };

    let mut metadata = vec![Vec::new(); METADATA_SLOTS];
    metadata[common::BlockMetadataIndex::Signatures as usize] = common::Metadata {
        value: common::OrdererBlockMetadata {
            last_config: Some(common::LastConfig { index: 0 }),
            consenter_metadata: Vec::new(),
        }
        .encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();
    #[allow(deprecated)]
    let last_config_slot = common::BlockMetadataIndex::LastConfig as usize;
    metadata[last_config_slot] = common::Metadata {
        value: common::LastConfig { index: 0 }.encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();
    metadata[common::BlockMetadataIndex::TransactionsFilter as usize] = vec![TX_VALID];

    common::Block {
        header: Some(header),
        data: Some(data),
        metadata: Some(common::BlockMetadata { metadata }),
    }
}

fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M, ConfigBlockError> {
    M::decode(bytes).map_err(|source| ConfigBlockError::Decode { what, source })
}

/// Reads the channel id (from the channel header) and the config out of a config block.
pub fn config_from_block(
    block: &common::Block,
) -> Result<(String, common::Config), ConfigBlockError> {
    let entries = block.data.as_ref().map_or(&[][..], |d| d.data.as_slice());
    let [envelope_bytes] = entries else {
        return Err(ConfigBlockError::EnvelopeCount(entries.len()));
    };
    let envelope: common::Envelope = decode("envelope", envelope_bytes)?;
    let payload: common::Payload = decode("payload", &envelope.payload)?;
    let header = payload.header.ok_or(ConfigBlockError::MissingHeader)?;
    let channel_header: common::ChannelHeader = decode("channel header", &header.channel_header)?;
    if channel_header.r#type != common::HeaderType::Config as i32 {
        return Err(ConfigBlockError::NotConfig(channel_header.r#type));
    }
    let config_envelope: common::ConfigEnvelope = decode("config envelope", &payload.data)?;
    let config = config_envelope
        .config
        .ok_or(ConfigBlockError::MissingConfig)?;
    Ok((channel_header.channel_id, config))
}
