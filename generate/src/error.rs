//! The generator's one error type. Variants are named after what failed and
//! carry what a user needs to fix it.

use std::path::PathBuf;

/// Result with the generator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options ask for something the generator cannot write; every
    /// problem at once.
    #[error("generate: {0}")]
    InvalidOptions(String),

    #[error("could not read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a user reads (the same words the library's errors use).
    #[test]
    fn messages_users_see() {
        assert_eq!(
            Error::InvalidOptions("students must be at least 1".into()).to_string(),
            "generate: students must be at least 1"
        );
        let write = Error::WriteFile {
            path: PathBuf::from("/out/students.csv"),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            write.to_string(),
            "could not write /out/students.csv: permission denied"
        );
    }
}
