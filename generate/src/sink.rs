//! Buffered output files for the generator: byte counting, optional gzip,
//! and NDJSON streams split into numbered files of a fixed number of lines.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::{Error, Result};

const BUFFER_BYTES: usize = 1 << 20;

/// A file that counts the bytes written to it.
#[derive(Debug)]
struct CountingFile {
    file: File,
    bytes: u64,
}

impl Write for CountingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

// One per open output file: the gzip state's size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Inner {
    Plain(BufWriter<CountingFile>),
    Gzip(GzEncoder<BufWriter<CountingFile>>),
}

/// One output file, buffered and optionally gzip-compressed. Call
/// [`OutputFile::finish`] to flush it and learn its size on disk.
#[derive(Debug)]
pub(crate) struct OutputFile {
    path: PathBuf,
    inner: Inner,
}

impl OutputFile {
    /// Creates (or truncates) `path`.
    pub(crate) fn create(path: PathBuf, gzip: bool) -> Result<Self> {
        let file = File::create(&path).map_err(|source| Error::WriteFile {
            path: path.clone(),
            source,
        })?;
        let counting = BufWriter::with_capacity(BUFFER_BYTES, CountingFile { file, bytes: 0 });
        // flate2's default header has no file name and mtime 0, so output is
        // byte-identical across runs. Level 1 keeps gzip from dominating the run time.
        let inner = if gzip {
            Inner::Gzip(GzEncoder::new(counting, Compression::fast()))
        } else {
            Inner::Plain(counting)
        };
        Ok(Self { path, inner })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes everything and returns the number of bytes on disk.
    pub(crate) fn finish(self) -> Result<u64> {
        let path = self.path;
        let wrap = |source: io::Error| Error::WriteFile {
            path: path.clone(),
            source,
        };
        let buffered = match self.inner {
            Inner::Plain(w) => w,
            Inner::Gzip(gz) => gz.finish().map_err(wrap)?,
        };
        let mut counting = buffered.into_inner().map_err(|e| wrap(e.into_error()))?;
        counting.flush().map_err(wrap)?;
        Ok(counting.bytes)
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(w) => w.write(buf),
            Inner::Gzip(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(w) => w.write_all(buf),
            Inner::Gzip(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(w) => w.flush(),
            Inner::Gzip(w) => w.flush(),
        }
    }
}

/// An NDJSON stream split into `dir/<stem>-00001.jsonl[.gz]`, `-00002`, … of
/// at most `lines_per_file` lines each. Files are opened on the first line, so
/// an empty stream writes no file.
#[derive(Debug)]
pub(crate) struct SplitNdjson {
    dir: PathBuf,
    stem: &'static str,
    gzip: bool,
    lines_per_file: u64,
    current: Option<OutputFile>,
    lines_in_current: u64,
    /// Files finished so far.
    pub(crate) files: usize,
    /// Bytes on disk of the finished files.
    pub(crate) bytes: u64,
    /// Lines written so far.
    pub(crate) lines: u64,
}

impl SplitNdjson {
    pub(crate) fn new(dir: PathBuf, stem: &'static str, gzip: bool, lines_per_file: u64) -> Self {
        Self {
            dir,
            stem,
            gzip,
            lines_per_file: lines_per_file.max(1),
            current: None,
            lines_in_current: 0,
            files: 0,
            bytes: 0,
            lines: 0,
        }
    }

    /// The name of the `n`th file (1-based).
    pub(crate) fn file_name(stem: &str, n: usize, gzip: bool) -> String {
        let ext = if gzip { "jsonl.gz" } else { "jsonl" };
        format!("{stem}-{n:05}.{ext}")
    }

    /// Writes one complete line (ending in `\n`).
    pub(crate) fn write_line(&mut self, line: &[u8]) -> Result<()> {
        let file = match self.current.take() {
            Some(file) => file,
            None => {
                let name = Self::file_name(self.stem, self.files + 1, self.gzip);
                OutputFile::create(self.dir.join(name), self.gzip)?
            }
        };
        let file = self.current.insert(file);
        file.write_all(line).map_err(|source| Error::WriteFile {
            path: file.path().to_path_buf(),
            source,
        })?;
        self.lines += 1;
        self.lines_in_current += 1;
        if self.lines_in_current >= self.lines_per_file {
            self.close_current()?;
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(file) = self.current.take() {
            self.bytes += file.finish()?;
            self.files += 1;
            self.lines_in_current = 0;
        }
        Ok(())
    }

    /// Finishes the last file.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.close_current()
    }
}
