//! Test helpers: unique temporary directories removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::CvxnnError;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, deleted (with its contents) when dropped.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new unique directory.
    pub(crate) fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "cvxnn-data-test-{}-{}-{}",
            std::process::id(),
            nanos,
            k
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns the file's path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Unpacks a [`CvxnnError::Data`] error, panicking (test failure) on anything else.
pub(crate) fn expect_data_error<T: std::fmt::Debug>(
    r: crate::error::Result<T>,
) -> (PathBuf, Option<usize>, Option<String>, String) {
    match r {
        Err(CvxnnError::Data {
            path,
            line,
            column,
            message,
        }) => (path, line, column, message),
        other => panic!("expected a Data error, got {other:?}"),
    }
}
