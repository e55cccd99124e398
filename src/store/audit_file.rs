//! The audit log on disk: one JSON record per line, append-only.
//!
//! Appends take an exclusive `flock` and read the current last line under it, so several
//! `alos` processes sharing a state directory extend one chain instead of forking it.
//! Every append is synced to disk: an audit record a crash can lose is not a record.

use std::fs::File;
use std::fs::OpenOptions;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use rustix::fs::flock;
use rustix::fs::FlockOperation;

pub struct AuditFile {
  path: PathBuf,
  file: File,
}

impl AuditFile {
  pub fn open(path: &Path) -> std::io::Result<AuditFile> {
    let file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
    Ok(AuditFile { path: path.to_path_buf(), file })
  }

  pub fn path(&self) -> &Path {
    &self.path
  }

  /// Appends the line `next(last line)` returns, atomically with respect to other
  /// appenders. The line must not contain a newline.
  pub fn append_after<E: From<std::io::Error>>(
    &self,
    next: impl FnOnce(Option<&str>) -> Result<String, E>,
  ) -> Result<String, E> {
    flock(&self.file, FlockOperation::LockExclusive).map_err(std::io::Error::from)?;
    let result = (|| {
      let last = last_line(&self.file)?;
      let line = next(last.as_deref())?;
      debug_assert!(!line.contains('\n'));
      let mut buf = Vec::with_capacity(line.len() + 1);
      buf.extend_from_slice(line.as_bytes());
      buf.push(b'\n');
      (&self.file).write_all(&buf)?;
      self.file.sync_data()?;
      Ok(line)
    })();
    // Closing would release the lock too; unlock now so other appenders need not wait.
    let _ = flock(&self.file, FlockOperation::Unlock);
    result
  }

  /// Every line, in order.
  pub fn lines(&self) -> std::io::Result<Vec<String>> {
    BufReader::new(File::open(&self.path)?).lines().collect()
  }
}

/// The last non-empty line, read backwards from the end in chunks.
fn last_line(file: &File) -> std::io::Result<Option<String>> {
  const CHUNK: u64 = 8192;
  let mut file = file;
  let len = file.seek(SeekFrom::End(0))?;
  let mut end = len;
  let mut tail: Vec<u8> = Vec::new();
  while end > 0 {
    let start = end.saturating_sub(CHUNK);
    let mut chunk = vec![0; (end - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut chunk)?;
    chunk.extend_from_slice(&tail);
    tail = chunk;
    end = start;
    let trimmed = tail.trim_ascii_end();
    if let Some(newline) = trimmed.iter().rposition(|b| *b == b'\n') {
      return Ok(Some(String::from_utf8_lossy(&trimmed[newline + 1..]).into_owned()));
    }
  }
  let trimmed = tail.trim_ascii_end();
  Ok((!trimmed.is_empty()).then(|| String::from_utf8_lossy(trimmed).into_owned()))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn finds_the_last_line_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let file = AuditFile::open(&path).unwrap();
    assert_eq!(last_line(&file.file).unwrap(), None);
    let long = "x".repeat(20_000);
    for line in ["first", long.as_str(), "third"] {
      file.append_after(|_| Ok::<_, std::io::Error>(line.to_string())).unwrap();
    }
    assert_eq!(last_line(&file.file).unwrap().as_deref(), Some("third"));
    file.append_after(|last| Ok::<_, std::io::Error>(format!("after {}", last.unwrap()))).unwrap();
    assert_eq!(file.lines().unwrap().last().unwrap(), "after third");
    file.append_after(|_| Ok::<_, std::io::Error>(long.clone())).unwrap();
    assert_eq!(last_line(&file.file).unwrap().unwrap().len(), 20_000);
  }

  #[test]
  fn concurrent_appenders_see_each_others_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let threads: Vec<_> = (0..4)
      .map(|_| {
        let path = path.clone();
        std::thread::spawn(move || {
          // Separate opens, as separate processes would have.
          let file = AuditFile::open(&path).unwrap();
          for _ in 0..50 {
            file
              .append_after(|last| {
                let n: u64 = last.map(|l| l.parse().unwrap()).unwrap_or(0);
                Ok::<_, std::io::Error>((n + 1).to_string())
              })
              .unwrap();
          }
        })
      })
      .collect();
    for t in threads {
      t.join().unwrap();
    }
    let lines = AuditFile::open(&path).unwrap().lines().unwrap();
    let expected: Vec<String> = (1..=200).map(|n| n.to_string()).collect();
    assert_eq!(lines, expected);
  }
}
