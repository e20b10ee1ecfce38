//! Following a channel this orderer is not a consenter of: it pulls the channel's blocks
//! from the consenters, verifies and appends them, and — once a config block makes it a
//! consenter — starts ordering (Fabric's onboarding of an orderer joined to an existing
//! channel, and what a removed consenter does after a restart).
//!
//! Blocks come from the consenters' Deliver ([`DeliverSource`], mutual TLS with this
//! orderer's client certificate) and are checked exactly as a catch-up checks them (number,
//! hash chain, data hash, `/Channel/Orderer/BlockValidation` signatures of the config in force)
//! before they are appended. A config block replaces the channel's config and consenters in
//! the [`ChannelView`]; if it makes this orderer a consenter the follower hands over to the
//! registry, which starts the channel's ordering loop from the ledger (with a new, empty Raft
//! log: the leader sends what follows, entries or a snapshot).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use gridledger_channels::config::ChannelConfig;
use gridledger_ledger::Ledger;
use gridledger_proto::common;

use crate::block::orderer_metadata;
use crate::catchup::{BlockSource, CatchUpError, SignatureCheck, check_block};
use crate::cluster::{Members, is_consenter};
use crate::registry::Registry;
use crate::view::ChannelView;

/// Blocks asked for per Deliver request.
const BLOCKS_PER_PULL: u64 = 256;
/// Pause after a round in which no consenter had a new block.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// A running follower.
pub(crate) struct FollowerHandle {
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl FollowerHandle {
    /// Asks the follower to stop and waits for it (blocking).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() && handle.join().is_err() {
                tracing::error!("a follower thread panicked");
            }
        }
    }
}

/// What the follower needs.
pub(crate) struct FollowerSetup {
    /// The channel id.
    pub channel_id: String,
    /// The channel's ledger.
    pub ledger: Arc<Ledger>,
    /// The channel's config and consenters (observed, this orderer not among them).
    pub view: Arc<ChannelView>,
    /// Where blocks come from.
    pub source: Box<dyn BlockSource>,
    /// How their orderer signatures are checked.
    pub signatures: Box<dyn SignatureCheck>,
    /// The registry to hand over to once this orderer is a consenter.
    pub registry: Weak<Registry>,
    /// For a channel joined with a later config block: that block and the file keeping it.
    /// The blocks before it are pulled first, and it is appended only if they lead to it.
    pub join_block: Option<(common::Block, std::path::PathBuf)>,
}

/// Starts following on a thread of its own.
pub(crate) fn start(setup: FollowerSetup) -> std::io::Result<FollowerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("follow-{}", setup.channel_id))
        .spawn(move || follow(setup, &stopping))?;
    Ok(FollowerHandle {
        stop,
        thread: std::sync::Mutex::new(Some(thread)),
    })
}

/// Why a pull ended early on purpose.
const BECAME_CONSENTER: &str = "this orderer became a consenter";

fn follow(setup: FollowerSetup, stop: &AtomicBool) {
    let FollowerSetup {
        channel_id,
        ledger,
        view,
        source,
        signatures,
        registry,
        mut join_block,
    } = setup;
    tracing::info!(channel = %channel_id, height = ledger.height(),
        "following the channel's blocks from its consenters");
    let mut promoted = false;
    while !stop.load(Ordering::SeqCst) && !promoted {
        // Joined with a later config block: once every block before it is here, it must
        // extend them.
        if let Some((block, file)) = join_block
            .take_if(|(b, _)| b.header.as_ref().map_or(0, |h| h.number) == ledger.height())
        {
            match append_join_block(&ledger, &block, &*signatures) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&file);
                    tracing::info!(channel = %channel_id, height = ledger.height(),
                        "pulled every block before the join block, which extends them");
                    if is_consenter(&view.config().orderer().consenters, view.own_tls_cert()) {
                        promoted = true;
                        break;
                    }
                }
                Err(reason) => {
                    tracing::error!(channel = %channel_id, reason = %reason,
                        "the blocks the consenters served do not lead to the join block; remove the channel (gridledger orderer remove) and join it again");
                    return;
                }
            }
        }
        // While joining, pull only up to the block before the join block.
        let limit = join_block
            .as_ref()
            .map_or(u64::MAX, |(b, _)| b.header.as_ref().map_or(0, |h| h.number));
        let members = view.members();
        let mut progressed = false;
        for member in &members.members {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let start = ledger.height();
            if start >= limit {
                break;
            }
            let end = (start + BLOCKS_PER_PULL - 1).min(limit - 1);
            let joining = limit != u64::MAX;
            let outcome = source.pull(member.id, start, end, &mut |block| {
                let number = ledger.height();
                let refuse = |reason: String| CatchUpError::BadBlock {
                    from: member.id,
                    number,
                    reason,
                };
                check_block(&ledger, &block, number).map_err(refuse)?;
                // A genesis block carries no signature; a joining orderer trusts it once
                // the chain from it reaches the join block.
                if number > 0 {
                    signatures.check(&ledger, &block).map_err(refuse)?;
                }
                ledger.append_block(&block)?;
                // While joining, the join block's config stays in force: it names the
                // consenters to pull from.
                if !joining && is_config_block(&block, number) && install_config(&view, &block) {
                    return Err(CatchUpError::Source {
                        from: member.id,
                        reason: BECAME_CONSENTER.to_string(),
                    });
                }
                Ok(())
            });
            if ledger.height() > start {
                progressed = true;
                tracing::debug!(channel = %channel_id, from = start, to = ledger.height(),
                    consenter = member.id, "followed blocks");
            }
            match outcome {
                Err(CatchUpError::Source { reason, .. }) if reason == BECAME_CONSENTER => {
                    promoted = true;
                    break;
                }
                Err(CatchUpError::Ledger(e)) => {
                    tracing::error!(channel = %channel_id, error = %e,
                        "the ledger failed while following the channel; following stopped");
                    return;
                }
                Err(CatchUpError::BadBlock {
                    from,
                    number,
                    reason,
                }) => {
                    tracing::warn!(channel = %channel_id, consenter = from, block = number,
                        reason = %reason, "refused a block while following; trying another consenter");
                }
                // Reaching a consenter's tip ends its stream early; that is the normal case.
                Ok(()) | Err(_) => {}
            }
            if progressed {
                break;
            }
        }
        if !progressed && !promoted {
            std::thread::sleep(IDLE_POLL);
        }
    }
    if promoted {
        tracing::info!(channel = %channel_id, height = ledger.height(),
            "a config block made this orderer a consenter; starting to order the channel");
        match registry.upgrade() {
            Some(registry) => {
                if let Err(e) = registry.promote(&channel_id, ledger) {
                    tracing::error!(channel = %channel_id, error = %e,
                        "cannot start ordering the channel after joining its consenters");
                }
            }
            None => tracing::debug!(channel = %channel_id, "the orderer is stopping"),
        }
    }
}

/// Appends the join block after checking it extends the pulled blocks and carries the
/// ordering service's signatures.
fn append_join_block(
    ledger: &Ledger,
    block: &common::Block,
    signatures: &dyn SignatureCheck,
) -> Result<(), String> {
    let number = ledger.height();
    check_block(ledger, block, number)?;
    signatures.check(ledger, block)?;
    ledger.append_block(block).map_err(|e| e.to_string())
}

/// Whether `block` (number `number`) is a config block: it names itself its last config.
fn is_config_block(block: &common::Block, number: u64) -> bool {
    number > 0 && orderer_metadata(block).is_ok_and(|m| m.last_config_index == number)
}

/// Installs a followed config block's config and consenters in `view`; true when it makes
/// this orderer a consenter (it was not one under the previous config). A removed consenter
/// whose ledger still names it is not promoted by the configs it catches up on.
fn install_config(view: &ChannelView, block: &common::Block) -> bool {
    let was_member = is_consenter(&view.config().orderer().consenters, view.own_tls_cert());
    let config = match ChannelConfig::from_block(block) {
        Ok(config) => Arc::new(config),
        Err(e) => {
            tracing::error!(error = %e, "a followed config block does not decode; keeping the previous config");
            return false;
        }
    };
    let ids = orderer_metadata(block)
        .map(|m| m.consenter_ids)
        .unwrap_or_default();
    let consenters = &config.orderer().consenters;
    let is_member = is_consenter(consenters, view.own_tls_cert());
    match Members::observing(consenters, &ids) {
        Ok(members) => view.set_members(members),
        Err(e) => {
            tracing::error!(error = %e, "a followed config block lists unreadable consenters")
        }
    }
    view.set_config(config);
    is_member && !was_member
}
