//! The audit log on disk: one JSON record per line, appended and flushed to the OS on
//! every write, opened with `O_APPEND` so concurrent writers never interleave within a
//! line.

use std::fs::File;
use std::fs::OpenOptions;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

pub struct AuditFile {
  path: PathBuf,
  file: File,
}

impl AuditFile {
  pub fn open(path: &Path) -> std::io::Result<AuditFile> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(AuditFile { path: path.to_path_buf(), file })
  }

  pub fn path(&self) -> &Path {
    &self.path
  }

  /// Appends one line (which must not contain a newline) and syncs it to disk: an audit
  /// record that a crash can lose is not an audit record.
  pub fn append(&mut self, line: &str) -> std::io::Result<()> {
    debug_assert!(!line.contains('\n'));
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    self.file.write_all(&buf)?;
    self.file.sync_data()
  }

  /// Every line, in order.
  pub fn lines(&self) -> std::io::Result<Vec<String>> {
    let file = File::open(&self.path)?;
    BufReader::new(file).lines().collect()
  }
}
