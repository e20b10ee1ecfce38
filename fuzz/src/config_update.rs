//! Target `config_update`: a `common.ConfigUpdateEnvelope` as a channel admin sends it (inside
//! a CONFIG_UPDATE envelope) to the orderer, which checks and applies it to the channel's
//! config. Models an admin tool or a member that sends arbitrary updates: read set, write
//! set, versions, mod policies, values and signatures.
//!
//! Checks: the channels crate's authorization (`update::authorize`: signature headers,
//! signatures, every changed element's `mod_policy`), decoding, application
//! (`update::apply`: read-set and version rules, overlay) and the validation of the resulting
//! config (`ChannelConfig::from_config`) never panic; an applied update advances the
//! sequence by exactly one.

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::update;
use gridledger_proto::common;
use prost::Message;

use crate::support;

/// Feeds `data` to the config update path against the synthetic channel.
pub fn run(data: &[u8]) {
    let Ok(envelope) = common::ConfigUpdateEnvelope::decode(data) else {
        return;
    };
    let world = &support::synthetic().world;
    let _ = update::authorize(&world.channel, &envelope, world.now);
    let Ok(decoded) = update::decode_update(&envelope) else {
        return;
    };
    let Ok(config) = update::apply(world.channel.config(), &decoded) else {
        return;
    };
    assert_eq!(
        config.sequence,
        world.channel.sequence() + 1,
        "an applied update advances the sequence by one"
    );
    let _ = ChannelConfig::from_config(world.channel.channel_id(), &config);
}
