//! The data of the orderer's Raft snapshots: which block the snapshot stands for.
//!
//! An orderer's state machine is its ledger, so a snapshot carries no state of its own: it
//! names the last block its Raft index covers (number, header hash) and that index. A node
//! receiving one fetches the blocks it lacks from the other consenters and checks that the
//! named block is the one it ends up with.
//!
//! Encoding (version 1, 49 bytes): version byte `1`, block number (8 bytes big-endian),
//! header hash (32 bytes), Raft index (8 bytes big-endian). Anything else is an error.

/// The encoding version written by this orderer.
const VERSION: u8 = 1;
/// Length of a block header hash (SHA-256).
pub(crate) const HASH_LEN: usize = 32;
/// Length of a version 1 encoding.
const V1_LEN: usize = 1 + 8 + HASH_LEN + 8;

/// Why snapshot data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotDataError {
    /// The data is empty.
    #[error("raft snapshot data is empty")]
    Empty,
    /// The version byte is not one this orderer reads.
    #[error("raft snapshot data has unknown version {0}")]
    UnknownVersion(u8),
    /// The data has the wrong length for its version.
    #[error("raft snapshot data of version {version} is {len} bytes long, expected {expected}")]
    Length {
        /// The version byte.
        version: u8,
        /// The length found.
        len: usize,
        /// The length that version has.
        expected: usize,
    },
}

/// What a Raft snapshot of an orderer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotData {
    /// The number of the last block the snapshot covers.
    pub block_number: u64,
    /// That block's header hash.
    pub header_hash: [u8; HASH_LEN],
    /// The Raft index that block reflects (the snapshot's index).
    pub raft_index: u64,
}

impl SnapshotData {
    /// The version 1 encoding.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(V1_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.block_number.to_be_bytes());
        out.extend_from_slice(&self.header_hash);
        out.extend_from_slice(&self.raft_index.to_be_bytes());
        out
    }

    /// Decodes snapshot data; malformed bytes are an error.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SnapshotData, SnapshotDataError> {
        let (&version, rest) = bytes.split_first().ok_or(SnapshotDataError::Empty)?;
        if version != VERSION {
            return Err(SnapshotDataError::UnknownVersion(version));
        }
        if bytes.len() != V1_LEN {
            return Err(SnapshotDataError::Length {
                version,
                len: bytes.len(),
                expected: V1_LEN,
            });
        }
        let (number, rest) = rest.split_at(8);
        let (hash, index) = rest.split_at(HASH_LEN);
        Ok(SnapshotData {
            block_number: u64::from_be_bytes(number.try_into().expect("split at 8 bytes")),
            header_hash: hash.try_into().expect("split at the hash length"),
            raft_index: u64::from_be_bytes(index.try_into().expect("8 bytes remain")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_data_round_trips() {
        let data = SnapshotData {
            block_number: 17,
            header_hash: [0xab; HASH_LEN],
            raft_index: 4242,
        };
        let bytes = data.encode();
        assert_eq!(bytes.len(), V1_LEN);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(SnapshotData::decode(&bytes), Ok(data));
    }

    #[test]
    fn malformed_snapshot_data_is_an_error() {
        let good = SnapshotData {
            block_number: 1,
            header_hash: [1; HASH_LEN],
            raft_index: 2,
        }
        .encode();
        assert_eq!(SnapshotData::decode(&[]), Err(SnapshotDataError::Empty));
        let mut other_version = good.clone();
        other_version[0] = 2;
        assert_eq!(
            SnapshotData::decode(&other_version),
            Err(SnapshotDataError::UnknownVersion(2))
        );
        for len in [1, 9, V1_LEN - 1] {
            assert!(matches!(
                SnapshotData::decode(&good[..len]),
                Err(SnapshotDataError::Length { len: l, .. }) if l == len
            ));
        }
        let mut longer = good;
        longer.push(0);
        assert!(matches!(
            SnapshotData::decode(&longer),
            Err(SnapshotDataError::Length { .. })
        ));
    }
}
