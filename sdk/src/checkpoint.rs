//! Where an event listener stopped: a [`Checkpoint`] (a block, and the last transaction of it
//! already processed) and [`FileCheckpointer`], which keeps one in a file so that an
//! application restarted after a crash resumes its chaincode or block events exactly after the
//! last one it processed — nothing lost, nothing seen twice.
//!
//! The file is replaced atomically on every save: the new content goes to a temporary file
//! beside it, is flushed to disk, and is renamed over the old one, so a crash at any moment
//! leaves either the previous checkpoint or the new one, never a mixture. Its format is three
//! short text lines (`gridledger-checkpoint v1`, `block N`, and `transaction ID` when a
//! transaction of block N was processed).

use crate::SdkError;
use crate::events::ChaincodeEvent;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The first line of every checkpoint file (its format version).
const HEADER: &str = "gridledger-checkpoint v1";
/// A checkpoint file is a few dozen bytes; anything much larger is not one.
const MAX_FILE_BYTES: u64 = 4096;

/// A position in a channel's stream of events: listening resumes in block `block_number`,
/// after transaction `transaction_id` when one is set (events of that block up to and
/// including it were processed), or at the block's start when not.
///
/// Pass it to [`crate::EventsOptions::checkpoint`]. Block events resume at `block_number`
/// (a block is processed whole, so they ignore the transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The block to resume in.
    pub block_number: u64,
    /// The last transaction of that block already processed, if any.
    pub transaction_id: Option<String>,
}

impl Checkpoint {
    /// The position after a fully processed block: the start of the next one.
    pub fn after_block(block_number: u64) -> Checkpoint {
        Checkpoint {
            block_number: block_number.saturating_add(1),
            transaction_id: None,
        }
    }

    /// The position after transaction `transaction_id` of block `block_number`.
    pub fn after_transaction(block_number: u64, transaction_id: &str) -> Checkpoint {
        Checkpoint {
            block_number,
            transaction_id: Some(transaction_id.to_owned()),
        }
    }

    /// The position after a processed chaincode event (after its transaction).
    pub fn after_event(event: &ChaincodeEvent) -> Checkpoint {
        Checkpoint::after_transaction(event.block_number, &event.tx_id)
    }

    /// The file form.
    fn encode(&self) -> String {
        let mut text = format!("{HEADER}\nblock {}\n", self.block_number);
        if let Some(tx_id) = &self.transaction_id {
            text.push_str(&format!("transaction {tx_id}\n"));
        }
        text
    }

    /// Reads the file form; says what is wrong when it is not one.
    fn decode(text: &str) -> Result<Checkpoint, String> {
        let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
        match lines.next() {
            Some((_, HEADER)) => {}
            Some((_, other)) => {
                return Err(format!(
                    "line 1 is {other:?}, not the header {HEADER:?} (not a checkpoint file, or a newer format)"
                ));
            }
            None => return Err("the file is empty".to_owned()),
        }
        let block_number = match lines.next() {
            Some((n, line)) => line
                .strip_prefix("block ")
                .and_then(|number| number.parse::<u64>().ok())
                .ok_or_else(|| format!("line {n} is {line:?}, not \"block <number>\""))?,
            None => return Err("the block line is missing".to_owned()),
        };
        let transaction_id = match lines.next() {
            Some((n, line)) => {
                let id = line
                    .strip_prefix("transaction ")
                    .ok_or_else(|| format!("line {n} is {line:?}, not \"transaction <id>\""))?;
                check_transaction_id(id).map_err(|e| format!("line {n}: {e}"))?;
                Some(id.to_owned())
            }
            None => None,
        };
        if let Some((n, line)) = lines.next() {
            return Err(format!("unexpected line {n}: {line:?}"));
        }
        if !text.ends_with('\n') {
            return Err("the last line is incomplete".to_owned());
        }
        Ok(Checkpoint {
            block_number,
            transaction_id,
        })
    }
}

/// Transaction ids are written on one line: no whitespace or control characters, and not
/// empty (Fabric's are 64 hexadecimal digits).
fn check_transaction_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 256 {
        return Err(format!(
            "transaction id of {} bytes (1 to 256 expected)",
            id.len()
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "transaction id {id:?} contains whitespace or control characters"
        ));
    }
    Ok(())
}

/// A checkpoint kept in a file, saved atomically after each processed event or block.
///
/// ```no_run
/// # async fn run(network: gridledger_sdk::Network) -> Result<(), gridledger_sdk::SdkError> {
/// use gridledger_sdk::{EventsOptions, FileCheckpointer};
/// let mut checkpointer = FileCheckpointer::open("energy-events.checkpoint")?;
/// let options = EventsOptions::new().checkpoint(checkpointer.checkpoint());
/// let mut events = network.chaincode_events("energy", options).await?;
/// while let Some(event) = events.next().await? {
///     println!("{} in block {}", event.event_name, event.block_number);
///     checkpointer.checkpoint_chaincode_event(&event)?;
/// }
/// # Ok(()) }
/// ```
///
/// Saving writes and flushes a small file synchronously (a millisecond or so on a local
/// disk); one process uses a given file at a time.
#[derive(Debug)]
pub struct FileCheckpointer {
    path: PathBuf,
    current: Option<Checkpoint>,
}

impl FileCheckpointer {
    /// Opens the checkpoint kept at `path`: the one saved there, or none when the file does
    /// not exist yet (it is created by the first save). Fails with [`SdkError::Checkpoint`]
    /// when the file cannot be read or is not a checkpoint file.
    pub fn open(path: impl AsRef<Path>) -> Result<FileCheckpointer, SdkError> {
        let path = path.as_ref().to_path_buf();
        let err = |reason: String| SdkError::Checkpoint {
            path: path.clone(),
            reason,
        };
        let current = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(format!("cannot read it: {e}"))),
            Ok(meta) if !meta.is_file() => return Err(err("it is not a file".to_owned())),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(err(format!(
                    "{} bytes is too large for a checkpoint file",
                    meta.len()
                )));
            }
            Ok(_) => {
                let bytes =
                    std::fs::read(&path).map_err(|e| err(format!("cannot read it: {e}")))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| err("it is not UTF-8 text: not a checkpoint file".to_owned()))?;
                Some(Checkpoint::decode(&text).map_err(err)?)
            }
        };
        Ok(FileCheckpointer { path, current })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved position, or `None` when nothing was saved yet.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.current.clone()
    }

    /// Records that block `block_number` was processed whole: listening resumes at the next.
    pub fn checkpoint_block(&mut self, block_number: u64) -> Result<(), SdkError> {
        self.save(Checkpoint::after_block(block_number))
    }

    /// Records that transaction `transaction_id` of block `block_number`, and every one
    /// before it, was processed.
    pub fn checkpoint_transaction(
        &mut self,
        block_number: u64,
        transaction_id: &str,
    ) -> Result<(), SdkError> {
        self.save(Checkpoint::after_transaction(block_number, transaction_id))
    }

    /// Records that `event`, and every event before it, was processed.
    pub fn checkpoint_chaincode_event(&mut self, event: &ChaincodeEvent) -> Result<(), SdkError> {
        self.save(Checkpoint::after_event(event))
    }

    /// Saves `checkpoint` atomically (temporary file, flush, rename, then the folder flushed).
    pub fn save(&mut self, checkpoint: Checkpoint) -> Result<(), SdkError> {
        let err = |reason: String| SdkError::Checkpoint {
            path: self.path.clone(),
            reason,
        };
        if let Some(id) = &checkpoint.transaction_id {
            check_transaction_id(id).map_err(err)?;
        }
        let temporary = self.temporary_path();
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(checkpoint.encode().as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temporary, &self.path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&temporary);
            return Err(err(format!(
                "cannot save it (through {}): {e}",
                temporary.display()
            )));
        }
        // The rename is durable once the folder's entry is on disk. Folders cannot be opened
        // for this on every platform; there the rename itself is as durable as it gets.
        if let Ok(folder) = std::fs::File::open(self.folder()) {
            let _ = folder.sync_all();
        }
        self.current = Some(checkpoint);
        Ok(())
    }

    /// The folder holding the file.
    fn folder(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The temporary file a save writes first: beside the checkpoint, so the rename stays
    /// within one file system.
    fn temporary_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "checkpoint".into());
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder for one test.
    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-sdk-checkpoint-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a test folder");
        dir
    }

    const TX: &str = "5d41402abc4b2a76b9719d911017c592ae0c1e0f6b7f4f6d3b3b3a0c0e5c9b7a";

    #[test]
    fn a_missing_file_is_no_checkpoint_and_saves_survive_reopening() {
        let dir = folder("reopen");
        let path = dir.join("events.checkpoint");
        let mut checkpointer = FileCheckpointer::open(&path).expect("open");
        assert_eq!(checkpointer.checkpoint(), None);
        assert!(!path.exists(), "opening creates nothing");

        checkpointer.checkpoint_transaction(7, TX).expect("save");
        let reopened = FileCheckpointer::open(&path).expect("reopen");
        assert_eq!(
            reopened.checkpoint(),
            Some(Checkpoint {
                block_number: 7,
                transaction_id: Some(TX.to_owned())
            })
        );

        checkpointer.checkpoint_block(7).expect("save");
        let reopened = FileCheckpointer::open(&path).expect("reopen");
        assert_eq!(reopened.checkpoint(), Some(Checkpoint::after_block(7)));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "gridledger-checkpoint v1\nblock 8\n"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_save_interrupted_before_its_rename_leaves_the_previous_checkpoint() {
        let dir = folder("atomic");
        let path = dir.join("events.checkpoint");
        let mut checkpointer = FileCheckpointer::open(&path).expect("open");
        checkpointer.checkpoint_transaction(3, TX).expect("save");
        // A crash after writing part of the next checkpoint to the temporary file, before
        // the rename: the checkpoint itself is untouched.
        let temporary = dir.join("events.checkpoint.tmp");
        std::fs::write(&temporary, "gridledger-checkpoint v1\nblo").expect("write");
        let reopened = FileCheckpointer::open(&path).expect("reopen after the crash");
        assert_eq!(
            reopened.checkpoint(),
            Some(Checkpoint::after_transaction(3, TX))
        );
        // The next save replaces the leftover and leaves no temporary file behind.
        let mut reopened = reopened;
        reopened.checkpoint_block(3).expect("save");
        assert!(!temporary.exists(), "the temporary file was renamed");
        assert_eq!(
            FileCheckpointer::open(&path).expect("reopen").checkpoint(),
            Some(Checkpoint::after_block(3))
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error_naming_the_file() {
        let dir = folder("corrupt");
        let path = dir.join("events.checkpoint");
        for (content, expected) in [
            ("", "empty"),
            ("{\"blockNumber\":4}\n", "not the header"),
            (
                "gridledger-checkpoint v1\nblock four\n",
                "not \"block <number>\"",
            ),
            ("gridledger-checkpoint v1\n", "block line is missing"),
            (
                "gridledger-checkpoint v1\nblock 4\ntx abc\n",
                "not \"transaction <id>\"",
            ),
            (
                "gridledger-checkpoint v1\nblock 4\ntransaction \n",
                "0 bytes",
            ),
            (
                "gridledger-checkpoint v1\nblock 4\ntransaction abc\nmore\n",
                "unexpected line 4",
            ),
            ("gridledger-checkpoint v1\nblock 4", "incomplete"),
        ] {
            std::fs::write(&path, content).expect("write");
            let err = FileCheckpointer::open(&path).expect_err(content);
            let text = err.to_string();
            assert!(matches!(err, SdkError::Checkpoint { .. }), "{text}");
            assert!(text.contains(expected), "{content:?}: {text}");
            assert!(text.contains("events.checkpoint"), "{text}");
        }
        std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
        let err = FileCheckpointer::open(&path).expect_err("binary");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn transaction_ids_that_cannot_be_written_on_one_line_are_refused() {
        let dir = folder("txid");
        let path = dir.join("events.checkpoint");
        let mut checkpointer = FileCheckpointer::open(&path).expect("open");
        let err = checkpointer
            .checkpoint_transaction(1, "abc\nblock 99")
            .expect_err("a newline in a transaction id");
        assert!(err.to_string().contains("whitespace"), "{err}");
        assert!(!path.exists(), "nothing was written");
        assert_eq!(checkpointer.checkpoint(), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_save_into_a_missing_folder_fails_and_keeps_the_position() {
        let dir = folder("nofolder");
        let path = dir.join("gone").join("events.checkpoint");
        let mut checkpointer = FileCheckpointer::open(&path).expect("open");
        let err = checkpointer.checkpoint_block(1).expect_err("no folder");
        assert!(err.to_string().contains("cannot save"), "{err}");
        assert_eq!(checkpointer.checkpoint(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
