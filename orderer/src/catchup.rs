//! Catch-up by snapshot: an orderer that receives a Raft snapshot naming a block beyond its
//! ledger pulls the missing blocks from the other consenters before the snapshot counts as
//! applied.
//!
//! Blocks come from a [`BlockSource`] (for a running orderer, [`DeliverSource`]: the other
//! consenters' `AtomicBroadcast.Deliver`, over mutual TLS with this orderer's TLS client
//! certificate and a seek envelope signed by its signing identity). Each block is checked
//! before it is appended: it is the next block (number, hash chain to the tip), its header
//! commits to its data, the orderer signatures pass the [`SignatureCheck`] (for a running
//! orderer, [`PolicySignatures`]: `/Channel/Orderer/BlockValidation` of the configuration in
//! force at the tip), and the block the snapshot names must have the snapshot's header hash.
//! A consenter whose blocks fail a check, or that cannot be reached, is left for the next one.
//!
//! Every appended block is verified, so a catch-up that stops halfway leaves a shorter but
//! sound ledger; the snapshot itself is persisted only after the catch-up completed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::VerifiedSigners;
use gridledger_identity::{Certificate, SigningIdentity};
use gridledger_ledger::{Ledger, LedgerError};
use gridledger_proto::blockutil::{block_data_hash, block_header_bytes, block_header_hash};
use gridledger_proto::common::{self, BlockMetadataIndex};
use gridledger_proto::orderer::{self, seek_info::SeekBehavior};
use gridledger_proto::{msp, orderer::atomic_broadcast_client::AtomicBroadcastClient};
use prost::Message;

use crate::block::orderer_metadata;
use crate::cluster::Transport;
use crate::consensus::SnapshotData;

/// The policy every block's orderer signatures must satisfy.
const BLOCK_VALIDATION_POLICY: &str = "/Channel/Orderer/BlockValidation";
/// Longest wait for the next block of a Deliver stream before the consenter is given up.
const BLOCK_WAIT: Duration = Duration::from_secs(10);

/// Why a catch-up (or one consenter's part of it) failed.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// The local ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A received block failed a check.
    #[error("block {number} from consenter {from} refused: {reason}")]
    BadBlock {
        /// The consenter it came from.
        from: u64,
        /// Its number (as expected here).
        number: u64,
        /// What is wrong.
        reason: String,
    },
    /// A consenter could not be reached or did not deliver.
    #[error("consenter {from}: {reason}")]
    Source {
        /// The consenter.
        from: u64,
        /// What went wrong.
        reason: String,
    },
    /// This ledger holds a different block where the snapshot names one: the chains
    /// diverged, which needs an operator.
    #[error(
        "the ledger's block {number} has header hash {local}, but the raft snapshot names {wanted}"
    )]
    Diverged {
        /// The block number.
        number: u64,
        /// The local header hash (hex).
        local: String,
        /// The snapshot's header hash (hex).
        wanted: String,
    },
    /// No consenter delivered the blocks.
    #[error("no consenter delivered blocks up to {wanted}: {reasons}")]
    Exhausted {
        /// The block the snapshot names.
        wanted: u64,
        /// Each consenter's failure.
        reasons: String,
    },
}

/// Where blocks of a channel come from.
pub(crate) trait BlockSource: Send + Sync {
    /// The newest block consenter `from` has (used to check whether a later config block
    /// removed this orderer while it could not hear a leader).
    fn newest(&self, from: u64) -> Result<common::Block, CatchUpError> {
        Err(CatchUpError::Source {
            from,
            reason: "this source cannot tell its newest block".to_string(),
        })
    }

    /// Streams blocks `start..=end` of the channel from consenter `from`, in order, into
    /// `sink`; stops at the first error (of the source or of the sink).
    fn pull(
        &self,
        from: u64,
        start: u64,
        end: u64,
        sink: &mut dyn FnMut(common::Block) -> Result<(), CatchUpError>,
    ) -> Result<(), CatchUpError>;
}

/// Checks the orderer signatures of a block about to extend `ledger`.
pub(crate) trait SignatureCheck: Send + Sync {
    /// `Ok` when `block`'s orderer signatures are acceptable; otherwise why not.
    fn check(&self, ledger: &Ledger, block: &common::Block) -> Result<(), String>;
}

/// Brings `ledger` up to the block `snapshot` names, pulling from `consenters` in turn.
/// Returns at once when the ledger already holds that block (after checking it is the one
/// named).
pub(crate) fn catch_up(
    ledger: &Ledger,
    snapshot: &SnapshotData,
    consenters: &[u64],
    source: &dyn BlockSource,
    signatures: &dyn SignatureCheck,
) -> Result<(), CatchUpError> {
    let wanted = snapshot.block_number;
    let mut reasons = Vec::new();
    for &from in consenters {
        if ledger.height() > wanted {
            break;
        }
        let start = ledger.height();
        let outcome = source.pull(from, start, wanted, &mut |block| {
            let number = ledger.height();
            let refuse = |reason: String| CatchUpError::BadBlock {
                from,
                number,
                reason,
            };
            check_block(ledger, &block, number).map_err(refuse)?;
            signatures.check(ledger, &block).map_err(refuse)?;
            if number == wanted {
                let header = block
                    .header
                    .as_ref()
                    .expect("checked: the block has a header");
                if block_header_hash(header) != snapshot.header_hash {
                    return Err(refuse(format!(
                        "its header hash is not the {} the raft snapshot names",
                        hex(&snapshot.header_hash)
                    )));
                }
            }
            ledger.append_block(&block)?;
            crate::metrics::set_height(ledger.channel_id(), ledger.height());
            Ok(())
        });
        match outcome {
            Ok(()) if ledger.height() > wanted => {}
            Ok(()) => reasons.push(format!(
                "consenter {from} stopped at block {}",
                ledger.height()
            )),
            Err(CatchUpError::Ledger(e)) => return Err(CatchUpError::Ledger(e)),
            Err(e) => {
                tracing::warn!(channel = %ledger.channel_id(), consenter = from, error = %e,
                    "catch-up from a consenter failed; trying the next");
                reasons.push(e.to_string());
            }
        }
    }
    if ledger.height() <= wanted {
        return Err(CatchUpError::Exhausted {
            wanted,
            reasons: reasons.join("; "),
        });
    }
    let local = ledger
        .block(wanted)?
        .and_then(|b| b.header)
        .map(|h| block_header_hash(&h))
        .unwrap_or_default();
    if local != snapshot.header_hash {
        return Err(CatchUpError::Diverged {
            number: wanted,
            local: hex(&local),
            wanted: hex(&snapshot.header_hash),
        });
    }
    Ok(())
}

/// Checks that `block` is block `number` of `ledger`'s chain: header present, number,
/// previous hash equal to the tip's header hash, data hash equal to the hash of its data.
pub(crate) fn check_block(
    ledger: &Ledger,
    block: &common::Block,
    number: u64,
) -> Result<(), String> {
    let header = block.header.as_ref().ok_or("the block has no header")?;
    if header.number != number {
        return Err(format!("it is numbered {}", header.number));
    }
    let info = ledger.info();
    if header.previous_hash != info.current_block_hash {
        return Err(format!(
            "its previous hash {} is not the tip's header hash {}",
            hex(&header.previous_hash),
            hex(&info.current_block_hash)
        ));
    }
    let data = block.data.as_ref().ok_or("the block has no data")?;
    if header.data_hash != block_data_hash(data) {
        return Err("its data hash does not match its data".to_string());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The orderer signatures of a block must satisfy `/Channel/Orderer/BlockValidation` of the
/// channel configuration in force at the ledger's tip (the last config block it names).
#[derive(Default)]
pub(crate) struct PolicySignatures {
    /// The configuration last read, by the number of its config block.
    config: Mutex<Option<(u64, Arc<ChannelConfig>)>>,
}

impl PolicySignatures {
    fn config(&self, ledger: &Ledger) -> Result<Arc<ChannelConfig>, String> {
        let tip_number = ledger
            .height()
            .checked_sub(1)
            .ok_or("the ledger is empty")?;
        let tip = ledger
            .block(tip_number)
            .map_err(|e| e.to_string())?
            .ok_or("the tip block is missing")?;
        let last_config = orderer_metadata(&tip)
            .map_err(|e| e.to_string())?
            .last_config_index;
        if let Some((number, config)) = self.config.lock().ok().and_then(|c| c.clone()) {
            if number == last_config {
                return Ok(config);
            }
        }
        let block = ledger
            .block(last_config)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the last config block {last_config} is missing"))?;
        let config = Arc::new(ChannelConfig::from_block(&block).map_err(|e| e.to_string())?);
        if let Ok(mut cached) = self.config.lock() {
            *cached = Some((last_config, config.clone()));
        }
        Ok(config)
    }
}

/// The time an orderer identity is validated at: one second into its certificate's validity,
/// as the committing peer does, so catching up on old blocks is not stopped by a certificate
/// that has since expired; bytes that are not a certificate identity give 0.
fn validity_start(serialized_identity: &[u8]) -> u64 {
    msp::SerializedIdentity::decode(serialized_identity)
        .ok()
        .and_then(|id| Certificate::from_pem(&id.id_bytes).ok())
        .and_then(|cert| u64::try_from(cert.not_before).ok())
        .map_or(0, |not_before| not_before.saturating_add(1))
}

impl SignatureCheck for PolicySignatures {
    fn check(&self, ledger: &Ledger, block: &common::Block) -> Result<(), String> {
        let config = self.config(ledger)?;
        let header = block.header.as_ref().ok_or("the block has no header")?;
        let raw = block
            .metadata
            .as_ref()
            .and_then(|m| m.metadata.get(BlockMetadataIndex::Signatures as usize))
            .ok_or("the block has no SIGNATURES metadata")?;
        let metadata = common::Metadata::decode(raw.as_slice())
            .map_err(|e| format!("the SIGNATURES metadata does not decode: {e}"))?;
        let header_bytes = block_header_bytes(header);
        let mut identities = Vec::new();
        let mut dropped = Vec::new();
        for (index, sig) in metadata.signatures.iter().enumerate() {
            let Ok(signature_header) =
                common::SignatureHeader::decode(sig.signature_header.as_slice())
            else {
                dropped.push(format!("signature #{index}: unreadable signature header"));
                continue;
            };
            let creator = &signature_header.creator;
            let identity = match config
                .msp_manager()
                .deserialize_identity(creator, validity_start(creator))
            {
                Ok(identity) => identity,
                Err(e) => {
                    dropped.push(format!("signature #{index}: {e}"));
                    continue;
                }
            };
            let signed = [
                metadata.value.as_slice(),
                sig.signature_header.as_slice(),
                header_bytes.as_slice(),
            ]
            .concat();
            match identity.verify(&signed, &sig.signature) {
                Ok(()) => identities.push(identity),
                Err(e) => dropped.push(format!("signature #{index}: {e}")),
            }
        }
        let signers = VerifiedSigners::from_identities(identities);
        let evaluation = config
            .policies()
            .evaluate_verified(BLOCK_VALIDATION_POLICY, &signers)
            .map_err(|e| format!("{BLOCK_VALIDATION_POLICY} cannot be evaluated: {e}"))?;
        if evaluation.satisfied {
            Ok(())
        } else {
            Err(format!(
                "the orderer signatures do not satisfy {BLOCK_VALIDATION_POLICY} ({})",
                dropped.join("; ")
            ))
        }
    }
}

/// Blocks pulled from the other consenters' Deliver service.
pub(crate) struct DeliverSource {
    /// The channel id.
    pub channel_id: String,
    /// The channel's consenters (as they change with config blocks).
    pub view: Arc<crate::view::ChannelView>,
    /// Connections to the other orderers (mutual TLS with this orderer's client certificate).
    pub transport: Arc<Transport>,
    /// Signs the seek requests.
    pub signer: Arc<SigningIdentity>,
    /// Largest Deliver response accepted, in bytes (the orderer's message limit).
    pub max_message_bytes: usize,
}

impl DeliverSource {
    /// The signed DELIVER_SEEK_INFO envelope for blocks `start..=end`.
    fn seek_envelope(&self, start: u64, end: u64) -> common::Envelope {
        let specified = |number| orderer::SeekPosition {
            r#type: Some(orderer::seek_position::Type::Specified(
                orderer::SeekSpecified { number },
            )),
        };
        self.seek_between(specified(start), specified(end))
    }

    /// The signed DELIVER_SEEK_INFO envelope for blocks `start..=stop`.
    fn seek_between(
        &self,
        start: orderer::SeekPosition,
        stop: orderer::SeekPosition,
    ) -> common::Envelope {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let channel_header = common::ChannelHeader {
            r#type: common::HeaderType::DeliverSeekInfo as i32,
            channel_id: self.channel_id.clone(),
            timestamp: Some(prost_types_timestamp(now)),
            ..Default::default()
        };
        let signature_header = common::SignatureHeader {
            creator: self.signer.serialized().to_vec(),
            nonce: Vec::new(),
        };
        let seek = orderer::SeekInfo {
            start: Some(start),
            stop: Some(stop),
            behavior: SeekBehavior::FailIfNotReady as i32,
            ..Default::default()
        };
        let payload = common::Payload {
            header: Some(common::Header {
                channel_header: channel_header.encode_to_vec(),
                signature_header: signature_header.encode_to_vec(),
            }),
            data: seek.encode_to_vec(),
        }
        .encode_to_vec();
        common::Envelope {
            signature: self.signer.sign(&payload),
            payload,
        }
    }
}

fn prost_types_timestamp(unix_secs: u64) -> gridledger_proto::prost_types::Timestamp {
    gridledger_proto::prost_types::Timestamp {
        seconds: i64::try_from(unix_secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

impl DeliverSource {
    /// Streams the blocks `envelope` asks consenter `from` for into `on_block`, until it
    /// answers `false`; a status or the end of the stream first is an error. Called on the
    /// channel's ordering thread, outside the runtime: it blocks on the stream, handing each
    /// block over between reads.
    fn stream(
        &self,
        from: u64,
        envelope: common::Envelope,
        on_block: &mut dyn FnMut(common::Block) -> Result<bool, CatchUpError>,
    ) -> Result<(), CatchUpError> {
        let failed = |reason: String| CatchUpError::Source { from, reason };
        let members = self.view.members();
        let member = members
            .get(from)
            .ok_or_else(|| failed("not a consenter of the channel".to_string()))?;
        let channel = self
            .transport
            .channel(member)
            .map_err(|e| failed(e.to_string()))?;
        let max_message_bytes = self.max_message_bytes;
        self.transport.runtime().block_on(async move {
            let mut client =
                AtomicBroadcastClient::new(channel).max_decoding_message_size(max_message_bytes);
            let mut stream = tokio::time::timeout(
                BLOCK_WAIT,
                client.deliver(tokio_stream::iter(vec![envelope])),
            )
            .await
            .map_err(|_| failed("Deliver did not answer".to_string()))?
            .map_err(|status| failed(format!("Deliver refused: {}", status.message())))?
            .into_inner();
            loop {
                let next = tokio::time::timeout(BLOCK_WAIT, stream.message())
                    .await
                    .map_err(|_| failed("Deliver stalled".to_string()))?
                    .map_err(|status| failed(format!("Deliver failed: {}", status.message())))?;
                match next.and_then(|r| r.r#type) {
                    Some(orderer::deliver_response::Type::Block(block)) => {
                        if !on_block(block)? {
                            return Ok(());
                        }
                    }
                    Some(orderer::deliver_response::Type::Status(status)) => {
                        return Err(failed(format!("Deliver ended with status {status}")));
                    }
                    None => return Err(failed("Deliver ended the stream".to_string())),
                }
            }
        })
    }
}

impl BlockSource for DeliverSource {
    fn newest(&self, from: u64) -> Result<common::Block, CatchUpError> {
        let newest = || orderer::SeekPosition {
            r#type: Some(orderer::seek_position::Type::Newest(orderer::SeekNewest {})),
        };
        let mut found = None;
        self.stream(from, self.seek_between(newest(), newest()), &mut |block| {
            found = Some(block);
            Ok(false)
        })?;
        found.ok_or_else(|| CatchUpError::Source {
            from,
            reason: "Deliver sent no block".to_string(),
        })
    }

    fn pull(
        &self,
        from: u64,
        start: u64,
        end: u64,
        sink: &mut dyn FnMut(common::Block) -> Result<(), CatchUpError>,
    ) -> Result<(), CatchUpError> {
        self.stream(from, self.seek_envelope(start, end), &mut |block| {
            let number = block.header.as_ref().map_or(u64::MAX, |h| h.number);
            sink(block)?;
            Ok(number < end)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::assemble_block;

    /// Accepts every signature.
    struct AnySignature;
    impl SignatureCheck for AnySignature {
        fn check(&self, _: &Ledger, _: &common::Block) -> Result<(), String> {
            Ok(())
        }
    }

    /// Serves blocks per consenter from a prepared list; consenter 2 tampers with block 2.
    struct Prepared(Vec<common::Block>);
    impl BlockSource for Prepared {
        fn pull(
            &self,
            from: u64,
            start: u64,
            end: u64,
            sink: &mut dyn FnMut(common::Block) -> Result<(), CatchUpError>,
        ) -> Result<(), CatchUpError> {
            if from == 1 {
                return Err(CatchUpError::Source {
                    from,
                    reason: "unreachable".to_string(),
                });
            }
            for number in start..=end {
                let mut block = self.0[number as usize].clone();
                if from == 2 && number == 2 {
                    if let Some(data) = block.data.as_mut() {
                        data.data.push(b"forged".to_vec());
                    }
                }
                sink(block)?;
            }
            Ok(())
        }
    }

    fn chain(len: u64) -> Vec<common::Block> {
        let mut blocks: Vec<common::Block> = Vec::new();
        for n in 0..len {
            let previous = blocks
                .last()
                .map(|b| block_header_hash(b.header.as_ref().expect("header")).to_vec())
                .unwrap_or_default();
            blocks.push(assemble_block(n, previous, vec![vec![n as u8; 4]]));
        }
        blocks
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-orderer-catchup-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn catch_up_skips_failing_and_tampering_consenters_and_checks_the_named_block() {
        let dir = scratch("failover");
        let blocks = chain(5);
        let ledger = Ledger::open(&dir, "c").expect("ledger");
        ledger.append_block(&blocks[0]).expect("genesis");
        let snapshot = SnapshotData {
            block_number: 4,
            header_hash: block_header_hash(blocks[4].header.as_ref().expect("header")),
            raft_index: 40,
        };
        let source = Prepared(blocks.clone());
        // Consenter 1 is unreachable, 2 forges block 2 (after block 1 was appended), 3 serves.
        catch_up(&ledger, &snapshot, &[1, 2, 3], &source, &AnySignature).expect("caught up");
        assert_eq!(ledger.height(), 5);
        for (n, block) in blocks.iter().enumerate() {
            assert_eq!(
                ledger.block(n as u64).expect("read").as_ref(),
                Some(block),
                "block {n}"
            );
        }
        // Already there: nothing to fetch, the named block is checked.
        catch_up(&ledger, &snapshot, &[], &source, &AnySignature).expect("present");
        let wrong = SnapshotData {
            header_hash: [9; 32],
            ..snapshot
        };
        assert!(matches!(
            catch_up(&ledger, &wrong, &[], &source, &AnySignature),
            Err(CatchUpError::Diverged { number: 4, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_block_that_is_not_the_one_the_snapshot_names_is_never_appended() {
        let dir = scratch("named");
        let blocks = chain(4);
        let ledger = Ledger::open(&dir, "c").expect("ledger");
        ledger.append_block(&blocks[0]).expect("genesis");
        let snapshot = SnapshotData {
            block_number: 3,
            header_hash: [7; 32],
            raft_index: 30,
        };
        let err = catch_up(&ledger, &snapshot, &[3], &Prepared(blocks), &AnySignature)
            .expect_err("the named block differs");
        assert!(
            matches!(err, CatchUpError::Exhausted { wanted: 3, .. }),
            "{err}"
        );
        assert_eq!(ledger.height(), 3, "blocks before the named one were sound");
        let _ = std::fs::remove_dir_all(&dir);
    }

    const CRYPTO: &str = r#"
seed = "gridledger-catchup-tests"

[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }]

[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
"#;

    const CHANNEL: &str = r#"
name = "market"

[[orderer.organizations]]
msp_id = "OrdererMSP"
msp_dir = "organizations/OrdererMSP/msp"
endpoints = ["127.0.0.1:7050"]

[[orderer.consenters]]
host = "127.0.0.1"
port = 7050
client_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
server_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"

[[organizations]]
msp_id = "DSOMSP"
msp_dir = "organizations/DSOMSP/msp"
"#;

    #[test]
    fn pulled_blocks_need_orderer_signatures_satisfying_block_validation() {
        use gridledger_identity::material::{self, CryptoConfig};

        let dir = scratch("policy");
        let crypto: CryptoConfig = toml::from_str(CRYPTO).expect("crypto config");
        material::generate(&crypto, &dir, 0).expect("material");
        std::fs::write(dir.join("market.toml"), CHANNEL).expect("channel file");
        let (spec, config) =
            gridledger_channels::config::config_from_file(&dir.join("market.toml"))
                .expect("channel builds");
        let genesis = gridledger_channels::genesis::genesis_block(
            &spec.name,
            config,
            gridledger_proto::prost_types::Timestamp::default(),
        );
        let ledger = Ledger::open(&dir.join("ledger"), "market").expect("ledger");
        ledger.append_block(&genesis).expect("genesis");
        let load = |msp: &str, path: &str| {
            let msp_dir = dir.join(path);
            SigningIdentity::load(
                msp,
                &msp_dir.join("signcerts/cert.pem"),
                &msp_dir.join("keystore/key.pem"),
            )
            .expect("identity")
        };
        let orderer = load(
            "OrdererMSP",
            "organizations/OrdererMSP/orderers/orderer0/msp",
        );
        let peer = load("DSOMSP", "organizations/DSOMSP/peers/peer0.dso/msp");
        let next = assemble_block(
            1,
            ledger.info().current_block_hash,
            vec![b"envelope".to_vec()],
        );
        let signed_by = |signer: &SigningIdentity| {
            let mut block = next.clone();
            crate::block::sign_block(
                &mut block,
                signer,
                0,
                &crate::block::RaftBlockMetadata::default(),
                &[1; crate::block::NONCE_LEN],
            );
            block
        };
        let check = PolicySignatures::default();
        check
            .check(&ledger, &signed_by(&orderer))
            .expect("an orderer's signature satisfies BlockValidation");
        let err = check
            .check(&ledger, &signed_by(&peer))
            .expect_err("a peer is not an orderer");
        assert!(err.contains("BlockValidation"), "{err}");
        let mut forged = signed_by(&orderer);
        if let Some(header) = forged.header.as_mut() {
            header.data_hash[0] ^= 1; // the signature covers the header
        }
        assert!(check.check(&ledger, &forged).is_err());
        assert!(
            check.check(&ledger, &next).is_err(),
            "an unsigned block is refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
