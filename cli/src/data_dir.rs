//! The shared data directory and its single-writer lock.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The engine database inside the data directory.
pub fn state_db(dir: &Path) -> PathBuf {
    dir.join("state.db")
}

/// Holds the data directory's exclusive lock for as long as it lives.
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory if needed and takes its exclusive lock, so two
/// processes never drive the same executions.
pub fn lock(dir: &Path) -> Result<DataDirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let path = dir.join("engine.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another certops process is using the data directory {} (is `certops serve` running?); \
             stop it, or point this command elsewhere with --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
