//! The audit log: one hash-chained record per decision and per side effect.
//!
//! Each record carries the hash of the one before it, so editing, dropping, inserting
//! or reordering any record breaks the chain at that point. Arguments are recorded as a
//! digest, never in clear.

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use sha2::Sha256;

use crate::store::audit_file::AuditFile;

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

pub struct AuditLog {
  file: AuditFile,
  next_seq: u64,
  last_hash: String,
}

impl AuditLog {
  /// Opens the log and finds the end of its chain.
  pub fn open(file: AuditFile) -> Result<AuditLog, String> {
    let lines = file.lines().map_err(|e| format!("cannot read audit log {}: {e}", file.path().display()))?;
    let (next_seq, last_hash) = match lines.iter().rev().find(|l| !l.trim().is_empty()) {
      None => (1, GENESIS.to_string()),
      Some(line) => {
        let record: Record = serde_json::from_str(line)
          .map_err(|e| format!("audit log {} ends with an unreadable record: {e}", file.path().display()))?;
        (record.seq + 1, record.hash)
      }
    };
    Ok(AuditLog { file, next_seq, last_hash })
  }

  pub fn append(&mut self, entry: Entry) -> std::io::Result<Record> {
    let seq = self.next_seq;
    let hash = chain_hash(seq, &entry, &self.last_hash);
    let record = Record { seq, entry, prev_hash: self.last_hash.clone(), hash };
    let line = serde_json::to_string(&record).expect("audit records always serialize");
    self.file.append(&line)?;
    self.next_seq += 1;
    self.last_hash = record.hash.clone();
    Ok(record)
  }

  pub fn records(&self) -> Result<Vec<Record>, String> {
    let lines = self.file.lines().map_err(|e| e.to_string())?;
    lines
      .iter()
      .enumerate()
      .filter(|(_, l)| !l.trim().is_empty())
      .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
      .collect()
  }
}
