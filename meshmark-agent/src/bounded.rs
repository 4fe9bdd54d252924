//! Reading files the user names without trusting their size.
//!
//! A configuration, a saved profile or a CA file may be anything: `/dev/zero`, a FIFO, a file
//! of many gigabytes. Every such read goes through here, stops one byte past its limit and says
//! which flag raises the limit, so that no input can make the agent hold more than the limit.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Default for `--max-config-bytes`: a configuration of 16,000 rules is about 1 MiB.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Default for `--max-profile-bytes`: a profile is about 1 KiB per process, so this holds a
/// node with a quarter of a million processes.
pub const DEFAULT_MAX_PROFILE_BYTES: u64 = 256 << 20;

/// How much of one kind of file may be read, and the flag that changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    /// The flag a refusal names as the way to raise the limit; `None` for a fixed limit far
    /// above what the file ever needs.
    pub flag: Option<&'static str>,
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read.
    Io { path: PathBuf, error: io::Error },
    /// The file holds more than the limit allows.
    TooLarge { path: PathBuf, limit: Limit },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ReadError::TooLarge { path, limit } => {
                let (path, bytes) = (path.display(), limit.bytes);
                match limit.flag {
                    Some(flag) => write!(
                        f,
                        "{path} is larger than {bytes} bytes, the most {flag} allows; if the \
                         file is meant to be that large, raise the limit with {flag}"
                    ),
                    None => write!(
                        f,
                        "{path} is larger than {bytes} bytes, far more than such a file needs; \
                         name the right file"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// A reader that fails with [`LimitExceeded`] (as an `io::Error`) once more than `limit` bytes
/// have come through, so a streaming parser stops there too.
pub struct LimitedReader<R> {
    inner: R,
    left: u64,
}

/// The error a [`LimitedReader`] returns past its limit.
#[derive(Debug)]
pub struct LimitExceeded;

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("input larger than its limit")
    }
}

impl std::error::Error for LimitExceeded {}

impl<R: Read> LimitedReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        LimitedReader { inner, left: limit }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // One more byte decides between "exactly the limit" and "over it".
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(LimitExceeded)),
            };
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got = self.inner.read(&mut buf[..want])?;
        self.left = self.left.saturating_sub(got as u64);
        Ok(got)
    }
}

/// Whether `error` is a [`LimitedReader`] saying its limit was passed.
pub fn is_limit_exceeded(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<LimitExceeded>())
}

/// Opens `path` for a streaming read of at most `limit.bytes`. A regular file already larger
/// than the limit is refused before anything is read.
pub fn open(path: &Path, limit: Limit) -> Result<LimitedReader<io::BufReader<File>>, ReadError> {
    let io_error = |error| ReadError::Io {
        path: path.to_owned(),
        error,
    };
    let file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if metadata.is_dir() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory; name a file",
        )));
    }
    if metadata.is_file() && metadata.len() > limit.bytes {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(LimitedReader::new(io::BufReader::new(file), limit.bytes))
}

/// The whole of `path`, if it holds at most `limit.bytes`.
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, ReadError> {
    let mut reader = open(path, limit)?;
    let mut bytes = Vec::new();
    match reader.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(error) if is_limit_exceeded(&error) => Err(ReadError::TooLarge {
            path: path.to_owned(),
            limit,
        }),
        Err(error) => Err(ReadError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        bytes: 10,
        flag: Some("--max-test-bytes"),
    };

    #[test]
    fn exactly_the_limit_is_read_one_more_byte_is_refused() {
        let mut exact = Vec::new();
        LimitedReader::new(&[7u8; 10][..], 10)
            .read_to_end(&mut exact)
            .unwrap();
        assert_eq!(exact, [7u8; 10]);
        let err = LimitedReader::new(&[7u8; 11][..], 10)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(is_limit_exceeded(&err), "{err}");
    }

    #[test]
    fn endless_devices_are_refused_quickly_and_named() {
        let started = std::time::Instant::now();
        let err = read(Path::new("/dev/zero"), LIMIT).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/dev/zero is larger than 10 bytes")
                && text.contains("raise the limit with --max-test-bytes"),
            "{text}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn large_regular_files_are_refused_before_reading_and_directories_named() {
        let dir = std::env::temp_dir().join(format!("meshmark-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        std::fs::write(&big, [b'x'; 11]).unwrap();
        assert!(matches!(read(&big, LIMIT), Err(ReadError::TooLarge { .. })));
        std::fs::write(&big, [b'x'; 10]).unwrap();
        assert_eq!(read(&big, LIMIT).unwrap().len(), 10);
        let err = read(&dir, LIMIT).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
