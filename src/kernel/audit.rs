//! The audit log: one hash-chained record per decision and per side effect.
//!
//! Each record carries the hash of the one before it, so editing, dropping, inserting
//! or reordering any record breaks the chain at that point. Arguments are recorded as a
//! digest, never in clear.

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use sha2::Sha256;

use crate::store::Db;

/// Who acted.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
  Process,
  Human,
  System,
}

/// What the kernel decided about an operation.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
  Allow,
  Deny,
  /// Sent to a human; the operation waits for the answer.
  Ask,
  /// No capability was needed (lifecycle, clock, cwd).
  None,
}

/// The content of a record, as the kernel describes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
  pub time: String,
  pub pid: String,
  pub lineage: Vec<String>,
  pub actor: Actor,
  pub syscall: String,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub capability: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub resource: Option<String>,
  pub decision: Verdict,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub decided_by: Option<String>,
  pub args_digest: String,
  pub outcome: String,
  /// The tool that made the syscall on the process's behalf.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub tool: Option<String>,
}

/// A record as stored: its position, its content and the chain.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
  pub seq: u64,
  #[serde(flatten)]
  pub entry: Entry,
  pub prev_hash: String,
  pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn chain_hash(seq: u64, entry: &Entry, prev_hash: &str) -> String {
  let body = serde_json::to_string(entry).expect("audit entries always serialize");
  let mut hasher = Sha256::new();
  hasher.update(prev_hash.as_bytes());
  hasher.update(b"\n");
  hasher.update(seq.to_string().as_bytes());
  hasher.update(b"\n");
  hasher.update(body.as_bytes());
  hex::encode(hasher.finalize())
}

/// The digest recorded for a syscall's arguments.
pub fn digest(bytes: &[u8]) -> String {
  format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The next record after `last` (the chain's current end), as `(seq, line)`; the store
/// calls it inside the transaction that appends it, so concurrent `alos` processes
/// extend one chain.
pub fn next_record(mut entry: Entry) -> crate::store::journal::AuditNext {
  Box::new(move |last: Option<&str>, memory| {
    if let Some(Err(conflict)) = memory {
      entry.outcome = format!("error Conflict: {conflict}");
    }
    let (seq, prev_hash) = match last {
      None => (1, GENESIS.to_string()),
      Some(line) => {
        let record: Record = serde_json::from_str(line)
          .map_err(|e| format!("the audit log ends with an unreadable record ({e}); run `alos audit verify`"))?;
        (record.seq + 1, record.hash)
      }
    };
    let hash = chain_hash(seq, &entry, &prev_hash);
    let record = Record { seq, entry, prev_hash, hash };
    Ok((seq, serde_json::to_string(&record).expect("audit records always serialize")))
  })
}

/// The hash-chained log, kept in the state database beside what it describes.
pub struct AuditLog {
  db: std::sync::Arc<Db>,
}

impl AuditLog {
  pub fn open(db: std::sync::Arc<Db>) -> AuditLog {
    AuditLog { db }
  }

  pub fn append(&self, entry: Entry) -> Result<(), String> {
    let commit = crate::store::journal::Commit { audit: vec![next_record(entry)], ..Default::default() };
    self.db.commit(commit).map(|_| ()).map_err(|e| e.to_string())
  }

  pub fn lines(&self) -> Result<Vec<String>, String> {
    self.db.audit_lines().map_err(|e| e.to_string())
  }
}

/// Appends one record to the audit log of `state_dir`, for the acts of a human at a
/// terminal (answers, kills), which happen outside any running kernel.
pub fn append_to(state_dir: &std::path::Path, entry: Entry) -> Result<(), String> {
  let db = Db::open(state_dir).map_err(|e| e.to_string())?;
  AuditLog::open(std::sync::Arc::new(db)).append(entry).map_err(|e| format!("cannot write the audit log: {e}"))
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
  /// 1-based position of the record in the log.
  pub line: usize,
  pub reason: String,
}

/// What an intact chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
  pub records: u64,
  /// The hash of the last record (the genesis hash for an empty log). Keep it elsewhere
  /// to detect truncation of the tail, which no chain can show by itself.
  pub head: String,
}

/// Checks every record in order and reports the first that was edited, dropped,
/// inserted or reordered.
pub fn verify(lines: &[String]) -> Result<ChainSummary, ChainBreak> {
  let mut expected_seq = 1;
  let mut prev_hash = GENESIS.to_string();
  for (index, line) in lines.iter().enumerate() {
    let at = |reason: String| ChainBreak { line: index + 1, reason };
    if line.trim().is_empty() {
      return Err(at("an empty line where a record should be".into()));
    }
    let record: Record =
      serde_json::from_str(line).map_err(|e| at(format!("not a valid record ({e}): it was edited")))?;
    if record.prev_hash != prev_hash {
      return Err(at(format!(
        "seq {} does not follow the record before it (prev_hash mismatch): a record before it was dropped, \
         or records were inserted or reordered",
        record.seq
      )));
    }
    if record.seq != expected_seq {
      return Err(at(format!("seq {} where seq {expected_seq} was expected: records were dropped, inserted or reordered", record.seq)));
    }
    if chain_hash(record.seq, &record.entry, &record.prev_hash) != record.hash {
      return Err(at(format!("seq {}: its content does not match its hash: the record was edited", record.seq)));
    }
    prev_hash = record.hash;
    expected_seq += 1;
  }
  Ok(ChainSummary { records: expected_seq - 1, head: prev_hash })
}

#[cfg(test)]
mod tests {
  use super::*;

  fn entry(n: u64) -> Entry {
    Entry {
      time: format!("t{n}"),
      pid: "p1".into(),
      lineage: vec!["p1".into()],
      actor: Actor::Process,
      syscall: "fs.readText".into(),
      capability: Some("fs.read:a".into()),
      resource: Some("a".into()),
      decision: Verdict::Allow,
      decided_by: Some("grant g1".into()),
      args_digest: digest(n.to_string().as_bytes()),
      outcome: "ok".into(),
      tool: None,
    }
  }

  fn log_of(n: u64) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(std::sync::Arc::new(Db::open(dir.path()).unwrap()));
    for i in 0..n {
      log.append(entry(i)).unwrap();
    }
    let lines = log.lines().unwrap();
    (dir, lines)
  }

  #[test]
  fn an_intact_chain_verifies() {
    let (_dir, lines) = log_of(5);
    let summary = verify(&lines).unwrap();
    assert_eq!(summary.records, 5);
    assert_eq!(verify(&[]).unwrap().head, GENESIS);
  }

  #[test]
  fn one_changed_byte_is_found() {
    let (_dir, mut lines) = log_of(5);
    lines[2] = lines[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"ko\"");
    let found = verify(&lines).unwrap_err();
    assert_eq!(found.line, 3);
    assert!(found.reason.contains("edited"), "{}", found.reason);
  }

  #[test]
  fn a_dropped_record_is_found() {
    let (_dir, mut lines) = log_of(5);
    lines.remove(1);
    let found = verify(&lines).unwrap_err();
    assert_eq!(found.line, 2);
    assert!(found.reason.contains("dropped"), "{}", found.reason);
  }

  #[test]
  fn swapped_records_are_found() {
    let (_dir, mut lines) = log_of(5);
    lines.swap(1, 2);
    assert_eq!(verify(&lines).unwrap_err().line, 2);
  }

  #[test]
  fn an_inserted_record_is_found() {
    let (_dir, mut lines) = log_of(3);
    let copy = lines[1].clone();
    lines.insert(2, copy);
    assert_eq!(verify(&lines).unwrap_err().line, 3);
  }

  #[test]
  fn a_rehashed_forgery_still_breaks_the_chain_after_it() {
    // Editing a record and recomputing its own hash is caught by the next record.
    let (_dir, mut lines) = log_of(4);
    let mut forged: Record = serde_json::from_str(&lines[1]).unwrap();
    forged.entry.outcome = "forged".into();
    forged.hash = chain_hash(forged.seq, &forged.entry, &forged.prev_hash);
    lines[1] = serde_json::to_string(&forged).unwrap();
    let found = verify(&lines).unwrap_err();
    assert_eq!(found.line, 3);
  }
}
