//! Whole-workspace tests: the architecture's dependency rules and end-to-end checks of the
//! `gridledger` binary. The crate has no library code of its own beyond the helpers below.

use std::path::{Path, PathBuf};

/// The workspace root (the folder holding the root Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}
