//! Input sources: files, gzip files and stdin, read as numbered lines of bytes.
//!
//! Gzip is recognised by its magic bytes, not the file name, so `events.ndjson` that is
//! really compressed still reads. Lines are split on `\n`; a trailing `\r` is dropped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

/// Where events are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// `-` means stdin.
    pub fn parse(arg: &Path) -> Self {
        if arg == Path::new("-") {
            Self::Stdin
        } else {
            Self::File(arg.to_path_buf())
        }
    }

    /// The name rejected lines are attributed to.
    pub fn name(&self) -> String {
        match self {
            Self::Stdin => "stdin".to_owned(),
            Self::File(p) => p.display().to_string(),
        }
    }

    /// Size in bytes on disk, when known (for progress bars).
    pub fn size_on_disk(&self) -> Option<u64> {
        match self {
            Self::Stdin => None,
            Self::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
        }
    }

    fn path_for_errors(&self) -> PathBuf {
        match self {
            Self::Stdin => PathBuf::from("stdin"),
            Self::File(p) => p.clone(),
        }
    }

    /// Opens the source for line reading.
    pub fn open(&self) -> Result<LineReader> {
        let raw: Box<dyn Read + Send> = match self {
            Self::Stdin => Box::new(io::stdin()),
            Self::File(p) => Box::new(File::open(p).map_err(|source| Error::Read {
                path: p.clone(),
                source,
            })?),
        };
        let consumed = Arc::new(AtomicU64::new(0));
        let counting = CountingReader {
            inner: raw,
            count: Arc::clone(&consumed),
        };
        let mut buffered = BufReader::with_capacity(1 << 20, counting);
        let is_gzip = buffered
            .fill_buf()
            .map_err(|source| Error::Read {
                path: self.path_for_errors(),
                source,
            })?
            .starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> = if is_gzip {
            Box::new(BufReader::with_capacity(
                1 << 20,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(LineReader {
            reader,
            path: self.path_for_errors(),
            line_number: 0,
            consumed,
        })
    }
}

/// Counts bytes read from the underlying source, compressed or not.
struct CountingReader {
    inner: Box<dyn Read + Send>,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Numbered lines of a source.
pub struct LineReader {
    reader: Box<dyn BufRead + Send>,
    path: PathBuf,
    line_number: u64,
    consumed: Arc<AtomicU64>,
}

impl LineReader {
    /// Bytes consumed from the source so far (compressed bytes for gzip), for progress bars.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Reads the next line into `buf` (without the line ending); returns its 1-based number,
    /// or `None` at the end.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        buf.clear();
        let n = self
            .reader
            .read_until(b'\n', buf)
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        self.line_number += 1;
        Ok(Some(self.line_number))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines_of(source: &Source) -> Vec<(u64, String)> {
        let mut reader = source.open().expect("open");
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(n) = reader.next_line(&mut buf).expect("read") {
            out.push((n, String::from_utf8(buf.clone()).expect("utf8")));
        }
        out
    }

    #[test]
    fn plain_and_gzip_files_read_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("a.ndjson");
        std::fs::write(&plain, b"one\r\ntwo\n\nthree").expect("write");
        let gz = dir.path().join("a.ndjson.gz");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz).expect("create"),
            flate2::Compression::fast(),
        );
        enc.write_all(b"one\r\ntwo\n\nthree").expect("write");
        enc.finish().expect("finish");
        let expected = vec![
            (1, "one".to_owned()),
            (2, "two".to_owned()),
            (3, String::new()),
            (4, "three".to_owned()),
        ];
        assert_eq!(lines_of(&Source::File(plain)), expected);
        assert_eq!(lines_of(&Source::File(gz)), expected);
    }
}
