//! Typed errors of the library. Bad input is an `Err`; solver outcomes are a [`crate::solver::Status`].

use std::path::PathBuf;

/// Everything that can go wrong before or around a solve because of what the caller gave us.
#[derive(Debug, thiserror::Error)]
pub enum CvxnnError {
    /// A file could not be opened, read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error (in the message, not repeated as a source).
        error: std::io::Error,
    },
    /// A data file is malformed: names the file and, where known, the line and column.
    #[error("{}", format_data_error(path, *line, column.as_deref(), message))]
    Data {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number in the file (the header is line 1).
        line: Option<usize>,
        /// Column name (or 1-based index) concerned.
        column: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// An argument or setting is out of its domain (negative lambda, zero patterns, ...).
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument {
        /// The argument's name as the user knows it.
        name: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Arrays whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A numerical routine failed on finite input (an SVD that did not converge).
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// A model file or directory that cannot be used.
    #[error("model {path}: {message}")]
    Model {
        /// The model file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn format_data_error(
    path: &std::path::Path,
    line: Option<usize>,
    column: Option<&str>,
    message: &str,
) -> String {
    let mut s = path.display().to_string();
    if let Some(l) = line {
        s.push_str(&format!(", line {l}"));
    }
    if let Some(c) = column {
        s.push_str(&format!(", column `{c}`"));
    }
    s.push_str(": ");
    s.push_str(message);
    s
}

impl CvxnnError {
    /// Shorthand for [`CvxnnError::InvalidArgument`].
    pub fn arg(name: impl Into<String>, message: impl Into<String>) -> Self {
        CvxnnError::InvalidArgument {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`CvxnnError::Data`] error without a line or column.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CvxnnError::Data {
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// Shorthand for [`CvxnnError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CvxnnError::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// Result alias of the library.
pub type Result<T> = std::result::Result<T, CvxnnError>;
