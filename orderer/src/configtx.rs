//! Channel configuration updates at the ordering service: a client broadcasts a signed
//! `CONFIG_UPDATE`, and the orderer turns it into the `CONFIG` transaction that becomes the
//! channel's next config block (Fabric's `ProcessConfigUpdateMsg`).
//!
//! The submitter must satisfy `/Channel/Writers`; the update's own signatures must satisfy
//! the `mod_policy` of every element it changes (`gridledger_channels::update::authorize`,
//! which also checks the read set and version rules and that the resulting config is a valid
//! channel config); and a change of the consenter set must change at most one consenter
//! ([`crate::cluster::consenter_change`]). The accepted update is wrapped as
//! `ConfigEnvelope{config, last_update = the client's envelope}` in a `CONFIG` envelope
//! created and signed by this orderer, which peers accept because its creator satisfies the
//! channel's BlockValidation policy.
//!
//! These checks read the clock (certificate validity) and are made once, by the orderer that
//! proposes the transaction. What every consenter re-checks when the entry commits, without
//! the clock, is that the config still follows the channel's config in log order
//! ([`ordered_config`]): a second update computed against the same config loses.

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::update::{self, UpdateError};
use gridledger_identity::SigningIdentity;
use gridledger_proto::blockutil::compute_tx_id;
use gridledger_proto::common::{self, HeaderType};
use prost::Message;

use crate::access::{ParsedEnvelope, Rejection, authorize, one_line};
use crate::block::NONCE_LEN;
use crate::cluster::consenter_change;

/// The result of a config update this orderer accepted.
pub(crate) struct AcceptedUpdate {
    /// The CONFIG envelope to order (encoded).
    pub envelope: Vec<u8>,
    /// The resulting configuration.
    pub config: ChannelConfig,
}

/// Checks the CONFIG_UPDATE `envelope` (already parsed into `parsed`) against the current
/// `channel` config, whose consenters have Raft ids `consenter_ids`, at `now_unix_secs`, and builds the CONFIG envelope that carries its
/// result, signed by `signer` with `nonce`.
pub(crate) fn process_config_update(
    channel: &ChannelConfig,
    consenter_ids: &[u64],
    envelope: &common::Envelope,
    parsed: &ParsedEnvelope,
    signer: &SigningIdentity,
    nonce: [u8; NONCE_LEN],
    now_unix_secs: u64,
) -> Result<AcceptedUpdate, Rejection> {
    authorize(
        channel,
        envelope,
        parsed,
        crate::broadcast::WRITERS_POLICY_PATH,
        now_unix_secs,
    )?;
    let update_envelope =
        common::ConfigUpdateEnvelope::decode(parsed.data.as_slice()).map_err(|e| {
            Rejection::bad_request(format!(
                "the CONFIG_UPDATE payload is not a ConfigUpdateEnvelope: {e}"
            ))
        })?;
    update::authorize(channel, &update_envelope, now_unix_secs).map_err(|e| match e {
        UpdateError::Unauthorized { .. } => Rejection::forbidden(format!(
            "config update refused: {}",
            one_line(&e.to_string())
        )),
        other => Rejection::bad_request(format!(
            "config update refused: {}",
            one_line(&other.to_string())
        )),
    })?;
    let decoded = update::decode_update(&update_envelope)
        .map_err(|e| Rejection::bad_request(format!("config update refused: {e}")))?;
    let new_config = update::apply(channel.config(), &decoded)
        .map_err(|e| Rejection::bad_request(format!("config update refused: {e}")))?;
    let config = ChannelConfig::from_config(channel.channel_id(), &new_config).map_err(|e| {
        Rejection::bad_request(format!(
            "config update refused: the resulting config is not valid: {e}"
        ))
    })?;
    consenter_change(
        &channel.orderer().consenters,
        consenter_ids,
        consenter_ids.iter().max().copied().unwrap_or(0) + 1,
        &config.orderer().consenters,
    )
    .map_err(|reason| Rejection::bad_request(format!("config update refused: {reason}")))?;
    crate::cluster::validate_consenters(&config.orderer().consenters)
        .map_err(|e| Rejection::bad_request(format!("config update refused: {e}")))?;

    let creator = signer.serialized().to_vec();
    let channel_header = common::ChannelHeader {
        r#type: HeaderType::Config as i32,
        version: 0,
        timestamp: Some(gridledger_proto::prost_types::Timestamp {
            seconds: i64::try_from(now_unix_secs).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        channel_id: channel.channel_id().to_string(),
        tx_id: compute_tx_id(&nonce, &creator),
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: Vec::new(),
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: common::SignatureHeader {
                creator,
                nonce: nonce.to_vec(),
            }
            .encode_to_vec(),
        }),
        data: common::ConfigEnvelope {
            config: Some(new_config),
            last_update: Some(envelope.clone()),
        }
        .encode_to_vec(),
    }
    .encode_to_vec();
    let signature = signer.sign(&payload);
    Ok(AcceptedUpdate {
        envelope: common::Envelope { payload, signature }.encode_to_vec(),
        config,
    })
}

/// The configuration a committed CONFIG envelope carries, if it is the channel's next one
/// (sequence `current.sequence() + 1`) and a valid config of the same channel. Deterministic:
/// no clock, so every consenter decides the same at the same log position.
pub(crate) fn ordered_config(
    current: &ChannelConfig,
    envelope: &[u8],
) -> Result<ChannelConfig, String> {
    let envelope = common::Envelope::decode(envelope)
        .map_err(|e| format!("the CONFIG envelope does not decode: {e}"))?;
    let payload = common::Payload::decode(envelope.payload.as_slice())
        .map_err(|e| format!("the CONFIG payload does not decode: {e}"))?;
    let header = payload
        .header
        .ok_or_else(|| "the CONFIG payload has no header".to_string())?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| format!("the CONFIG channel header does not decode: {e}"))?;
    if channel_header.r#type != HeaderType::Config as i32 {
        return Err(format!(
            "the entry is of header type {}, not CONFIG",
            channel_header.r#type
        ));
    }
    if channel_header.channel_id != current.channel_id() {
        return Err(format!(
            "the CONFIG is for channel {:?}, not {:?}",
            channel_header.channel_id,
            current.channel_id()
        ));
    }
    let config_envelope = common::ConfigEnvelope::decode(payload.data.as_slice())
        .map_err(|e| format!("the ConfigEnvelope does not decode: {e}"))?;
    let config = config_envelope
        .config
        .ok_or_else(|| "the ConfigEnvelope carries no config".to_string())?;
    let expected = current.sequence() + 1;
    if config.sequence != expected {
        return Err(format!(
            "the config has sequence {}, but the channel's next is {expected}: another config \
             update was ordered first; compute the update again against the current config",
            config.sequence
        ));
    }
    ChannelConfig::from_config(current.channel_id(), &config)
        .map_err(|e| format!("the config is not valid: {e}"))
}
