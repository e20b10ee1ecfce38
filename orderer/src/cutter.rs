//! The block cutter: decides where one block ends and the next begins.
//!
//! A plain state machine without I/O or clock: envelopes go in as they are ordered, batches
//! (the envelopes of one block, in order) come out. The rules are Fabric's
//! (`orderer/common/blockcutter`), with the values of the channel's `Orderer/BatchSize` and
//! `Orderer/BatchTimeout`:
//!
//! - **MaxMessageCount** — a batch is cut as soon as it holds this many envelopes.
//! - **PreferredMaxBytes** — an envelope that would push the pending batch past this size cuts
//!   the pending batch first; an envelope larger than this on its own goes in a block by
//!   itself (after the pending batch, if any, is cut).
//! - **AbsoluteMaxBytes** — not enforced here: Broadcast rejects larger envelopes before they
//!   are ordered ([`BatchSettings::absolute_max_bytes`] is kept for that check).
//! - **BatchTimeout** — a pending batch is due this long after its *first* envelope entered;
//!   time is an input ([`BlockCutter::cut_if_due`], [`BlockCutter::deadline`]).
//!
//! Sizes are the envelope's encoded length (Fabric counts payload + signature, a few framing
//! bytes less).

use std::time::{Duration, Instant};

use gridledger_channels::config::BatchConfig;

/// The batch rules of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most envelopes in one block (at least 1).
    pub max_message_count: u32,
    /// Largest envelope Broadcast accepts, in bytes.
    pub absolute_max_bytes: u32,
    /// A block stops growing once it would pass this many bytes.
    pub preferred_max_bytes: u32,
    /// How long the first pending envelope may wait for a block.
    pub batch_timeout: Duration,
}

impl BatchSettings {
    /// The settings from a channel's `ChannelConfig::orderer().batch`. A zero
    /// `max_message_count` (which the channel config rejects anyway) is read as 1.
    pub fn from_config(batch: &BatchConfig) -> BatchSettings {
        BatchSettings {
            max_message_count: batch.max_message_count.max(1),
            absolute_max_bytes: batch.absolute_max_bytes,
            preferred_max_bytes: batch.preferred_max_bytes,
            batch_timeout: Duration::from_millis(batch.batch_timeout_ms),
        }
    }
}

/// The envelopes of one block, in order.
pub type Batch = Vec<Vec<u8>>;

/// Accumulates ordered envelopes and cuts them into batches.
#[derive(Debug)]
pub struct BlockCutter {
    settings: BatchSettings,
    pending: Vec<Vec<u8>>,
    pending_bytes: u64,
    /// When the first pending envelope entered; `None` while nothing is pending.
    pending_since: Option<Instant>,
}

impl BlockCutter {
    /// An empty cutter with these rules.
    pub fn new(settings: BatchSettings) -> BlockCutter {
        BlockCutter {
            settings,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_since: None,
        }
    }

    /// The rules in force.
    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// Replaces the batch rules (a config block changed them); what is pending stays and is
    /// cut by the new rules.
    pub fn set_settings(&mut self, settings: BatchSettings) {
        self.settings = settings;
    }

    /// Adds the next ordered envelope, received at `now`, and returns the batches this closes:
    /// none, one, or two (the pending batch, then an oversized envelope alone).
    pub fn ordered(&mut self, envelope: Vec<u8>, now: Instant) -> Vec<Batch> {
        let size = envelope.len() as u64;
        let preferred = u64::from(self.settings.preferred_max_bytes);
        let mut batches = Vec::new();

        if size > preferred {
            // Too big to share a block: flush what is pending, then this envelope alone.
            if let Some(batch) = self.cut() {
                batches.push(batch);
            }
            batches.push(vec![envelope]);
            return batches;
        }

        if !self.pending.is_empty() && self.pending_bytes + size > preferred {
            if let Some(batch) = self.cut() {
                batches.push(batch);
            }
        }

        if self.pending.is_empty() {
            self.pending_since = Some(now);
        }
        self.pending.push(envelope);
        self.pending_bytes += size;

        if self.pending.len() >= self.settings.max_message_count as usize {
            if let Some(batch) = self.cut() {
                batches.push(batch);
            }
        }
        batches
    }

    /// Cuts whatever is pending (a batch timeout was decided); `None` when nothing is.
    pub fn cut(&mut self) -> Option<Batch> {
        self.pending_since = None;
        self.pending_bytes = 0;
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }

    /// When the pending batch times out; `None` while nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending_since
            .map(|since| since + self.settings.batch_timeout)
    }

    /// Cuts the pending batch if its timeout has passed at `now`.
    pub fn cut_if_due(&mut self, now: Instant) -> Option<Batch> {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.cut(),
            _ => None,
        }
    }

    /// How many envelopes are pending.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// How many bytes are pending.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(count: u32, preferred: u32, timeout_ms: u64) -> BatchSettings {
        BatchSettings {
            max_message_count: count,
            absolute_max_bytes: 10 * preferred,
            preferred_max_bytes: preferred,
            batch_timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn env(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    #[test]
    fn cuts_at_max_message_count() {
        let now = Instant::now();
        let mut cutter = BlockCutter::new(settings(3, 1000, 2000));
        assert!(cutter.ordered(env(1, 10), now).is_empty());
        assert!(cutter.ordered(env(2, 10), now).is_empty());
        let batches = cutter.ordered(env(3, 10), now);
        assert_eq!(batches, vec![vec![env(1, 10), env(2, 10), env(3, 10)]]);
        assert_eq!(cutter.pending_count(), 0);
        assert_eq!(cutter.deadline(), None);
    }

    #[test]
    fn overflowing_preferred_bytes_cuts_pending_first() {
        let now = Instant::now();
        let mut cutter = BlockCutter::new(settings(10, 100, 2000));
        assert!(cutter.ordered(env(1, 60), now).is_empty());
        let batches = cutter.ordered(env(2, 60), now);
        assert_eq!(batches, vec![vec![env(1, 60)]]);
        assert_eq!(cutter.pending_count(), 1);
        assert_eq!(cutter.pending_bytes(), 60);
    }

    #[test]
    fn envelope_larger_than_preferred_goes_alone() {
        let now = Instant::now();
        let mut cutter = BlockCutter::new(settings(10, 100, 2000));
        assert!(cutter.ordered(env(1, 10), now).is_empty());
        let batches = cutter.ordered(env(2, 150), now);
        assert_eq!(batches, vec![vec![env(1, 10)], vec![env(2, 150)]]);
        assert_eq!(cutter.pending_count(), 0);
        // With nothing pending, the big envelope is one batch.
        assert_eq!(cutter.ordered(env(3, 101), now), vec![vec![env(3, 101)]]);
    }

    #[test]
    fn timeout_counts_from_first_pending_envelope() {
        let start = Instant::now();
        let mut cutter = BlockCutter::new(settings(10, 1000, 500));
        assert!(cutter.ordered(env(1, 10), start).is_empty());
        assert!(
            cutter
                .ordered(env(2, 10), start + Duration::from_millis(400))
                .is_empty()
        );
        assert_eq!(cutter.deadline(), Some(start + Duration::from_millis(500)));
        assert_eq!(cutter.cut_if_due(start + Duration::from_millis(499)), None);
        assert_eq!(
            cutter.cut_if_due(start + Duration::from_millis(500)),
            Some(vec![env(1, 10), env(2, 10)])
        );
        assert_eq!(cutter.deadline(), None);
        // The next batch's timer starts with its own first envelope.
        let later = start + Duration::from_millis(900);
        assert!(cutter.ordered(env(3, 10), later).is_empty());
        assert_eq!(cutter.deadline(), Some(later + Duration::from_millis(500)));
    }

    #[test]
    fn cut_with_nothing_pending_is_none() {
        let mut cutter = BlockCutter::new(settings(10, 1000, 500));
        assert_eq!(cutter.cut(), None);
        assert_eq!(cutter.cut_if_due(Instant::now()), None);
    }

    #[test]
    fn max_count_of_one_cuts_every_envelope() {
        let now = Instant::now();
        let mut cutter = BlockCutter::new(settings(1, 1000, 500));
        assert_eq!(cutter.ordered(env(1, 5), now), vec![vec![env(1, 5)]]);
        assert_eq!(cutter.ordered(env(2, 5), now), vec![vec![env(2, 5)]]);
    }
}
