//! Target `block`: a `common.Block` as the peer receives it from the orderer's Deliver (or
//! gossip) and reads it back from its block store. Models a malicious orderer or a corrupted
//! disk: header, data and every metadata slot are arbitrary.
//!
//! Checks: header and data hashing, the peer's orderer-signature check
//! (`verify_block_signatures`), its validation of every transaction (`validate_block`, with the
//! header's data hash corrected so the transactions are reached), the committed-transaction
//! reader, the orderer's metadata reader and the config-block reader never panic; decoding is
//! stable; a validated block gets one code per transaction, which the TRANSACTIONS_FILTER
//! written from them reports back.

use gridledger_channels::config::ChannelConfig;
use gridledger_peer::blocks::committed_transactions;
use gridledger_peer::validation::{InMemoryState, validate_block, verify_block_signatures};
use gridledger_proto::{block_data_hash, block_header_bytes, block_header_hash, common};
use prost::Message;

use crate::support;

/// Feeds `data` to every reader of blocks.
pub fn run(data: &[u8]) {
    let Ok(mut block) = common::Block::decode(data) else {
        return;
    };
    let again = common::Block::decode(block.encode_to_vec().as_slice());
    assert_eq!(again.as_ref(), Ok(&block), "a block re-decodes to itself");

    let header = block.header.clone().unwrap_or_default();
    let _ = block_header_hash(&header);
    let _ = block_header_bytes(&header);
    let _ = committed_transactions(&block);
    let _ = gridledger_orderer::block::orderer_metadata(&block);
    let _ = ChannelConfig::from_block(&block);

    let world = support::fabric();
    let ctx = world.context(header.number, &header.previous_hash);
    let _ = verify_block_signatures(&block, &ctx);

    let data_hash = block_data_hash(block.data.get_or_insert_with(Default::default));
    block.header.get_or_insert_with(Default::default).data_hash = data_hash.to_vec();
    let transactions = block.data.as_ref().map_or(0, |d| d.data.len());
    if let Ok(validated) = validate_block(&block, &ctx, &InMemoryState::new()) {
        assert_eq!(
            validated.codes.len(),
            transactions,
            "one code per transaction"
        );
        let committed = committed_transactions(&validated.with_codes(&block));
        let codes: Vec<i32> = committed.iter().map(|t| t.validation_code).collect();
        let expected: Vec<i32> = validated.codes.iter().map(|c| *c as i32).collect();
        assert_eq!(
            codes, expected,
            "the filter reports the codes validation gave"
        );
    }
}
