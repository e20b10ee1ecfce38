//! Forwards raft-rs's `slog` records to `tracing`, so the Raft core logs where the rest of the
//! orderer does (target `gridledger_orderer::raft`, with the logger's key-values such as
//! `channel` appended to the message).
//!
//! raft-rs's routine INFO lines (role changes, configuration switches) become DEBUG here:
//! operators see leadership changes through the orderer's own INFO lines.

use std::fmt::{self, Write};

/// The `slog` drain that writes through `tracing`.
pub(crate) struct TracingDrain;

/// Collects `key=value` pairs of a record and its logger.
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        // Writing into a String cannot fail.
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<Self::Ok, Self::Err> {
        let mut pairs = Pairs(String::new());
        // A failing serializer only loses key-values, never the message.
        let _ = slog::KV::serialize(&record.kv(), record, &mut pairs);
        let _ = slog::KV::serialize(values, record, &mut pairs);
        let message = record.msg();
        let pairs = pairs.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "gridledger_orderer::raft", "{message}{pairs}")
            }
            slog::Level::Warning => {
                tracing::warn!(target: "gridledger_orderer::raft", "{message}{pairs}")
            }
            slog::Level::Info | slog::Level::Debug => {
                tracing::debug!(target: "gridledger_orderer::raft", "{message}{pairs}")
            }
            slog::Level::Trace => {
                tracing::trace!(target: "gridledger_orderer::raft", "{message}{pairs}")
            }
        }
        Ok(())
    }
}

/// A root logger for one channel's Raft node.
pub(crate) fn logger(channel_id: &str) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("channel" => channel_id.to_string()))
}
