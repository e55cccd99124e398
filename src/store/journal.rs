//! The journal and the one write path that keeps it consistent with everything it
//! describes. A [`Commit`] is one SQLite transaction: a syscall's journal record, the
//! audit records of its decision and effect, the process's runtime state after it
//! (grants spent, cwd, event positions) and, for Object Memory, the write itself.
//! So a crash leaves either all of them or none.

use rusqlite::params;
use rusqlite::OptionalExtension;
use rusqlite::Transaction;
use serde_json::Value;

use super::db::Db;
use super::db::StoreError;
use super::memory::MemConflict;
use super::memory::MemWrite;

/// Results larger than this are stored once in `blobs`, by content hash.
const INLINE_RESULT_BYTES: usize = 8 << 10;

/// How far a journaled syscall got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalStatus {
  /// Waiting (for a human, a timer, an event, a child); nothing was done yet.
  Waiting,
  /// Its side effect may have begun: without a result it is *in doubt*.
  Started,
  /// Its result is recorded.
  Done,
}

impl JournalStatus {
  fn as_str(self) -> &'static str {
    match self {
      JournalStatus::Waiting => "waiting",
      JournalStatus::Started => "started",
      JournalStatus::Done => "done",
    }
  }

  fn parse(text: &str) -> JournalStatus {
    match text {
      "waiting" => JournalStatus::Waiting,
      "started" => JournalStatus::Started,
      _ => JournalStatus::Done,
    }
  }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
  pub pid: String,
  pub seq: u64,
  pub syscall: String,
  pub args_digest: String,
  pub status: JournalStatus,
  /// What it waits on (a human request id, a wake-up time), to pick the wait up again.
  pub wait: Option<Value>,
  /// `{"ok": value}` or `{"error": fault}`, once done.
  pub result: Option<Value>,
  pub at_ms: u64,
}

/// Computes the next audit record from the last one: `(seq, line)`; it also sees what
/// the commit's Object Memory write did, so the record can say so.
pub type AuditNext = Box<dyn FnOnce(Option<&str>, Option<&Result<Value, MemConflict>>) -> Result<(u64, String), String> + Send>;

/// One atomic write. Every part is optional.
#[derive(Default)]
pub struct Commit {
  pub journal: Option<JournalRecord>,
  pub audit: Vec<AuditNext>,
  /// `(pid, runtime state)` of the process after this step.
  pub runtime: Option<(String, Value)>,
  pub memory: Option<MemWrite>,
}

impl Commit {
  pub fn is_empty(&self) -> bool {
    self.journal.is_none() && self.audit.is_empty() && self.runtime.is_none() && self.memory.is_none()
  }
}

/// What a commit's Object Memory write did, when it had one.
pub type MemOutcome = Option<Result<Value, MemConflict>>;

fn audit_append(tx: &Transaction, next: AuditNext, mem: Option<&Result<Value, MemConflict>>) -> rusqlite::Result<()> {
  let last: Option<String> =
    tx.query_row("SELECT record FROM audit ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).optional()?;
  let (seq, line) = next(last.as_deref(), mem).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
  tx.execute("INSERT INTO audit (seq, record) VALUES (?1, ?2)", params![seq as i64, line])?;
  Ok(())
}

fn journal_write(tx: &Transaction, record: &JournalRecord) -> rusqlite::Result<()> {
  let result = record.result.as_ref().map(Value::to_string);
  let (inline, blob) = match result {
    Some(text) if text.len() > INLINE_RESULT_BYTES => {
      let hash = super::blob_hash(text.as_bytes());
      tx.execute(
        "INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?1, ?2, ?3)",
        params![hash, text.len() as i64, text.as_bytes()],
      )?;
      (None, Some(hash))
    }
    other => (other, None),
  };
  tx.execute(
    "INSERT INTO journal (pid, seq, syscall, args_digest, status, wait, result, result_blob, at_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (pid, seq) DO UPDATE SET status = excluded.status,
       wait = COALESCE(excluded.wait, journal.wait), result = excluded.result,
       result_blob = excluded.result_blob, at_ms = excluded.at_ms",
    params![
      record.pid,
      record.seq as i64,
      record.syscall,
      record.args_digest,
      record.status.as_str(),
      record.wait.as_ref().map(Value::to_string),
      inline,
      blob,
      record.at_ms as i64,
    ],
  )?;
  Ok(())
}

fn journal_row(row: &rusqlite::Row) -> rusqlite::Result<JournalRecord> {
  let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
  let inline: Option<String> = row.get("result")?;
  let blob: Option<Vec<u8>> = row.get("blob_data")?;
  let result = inline.or_else(|| blob.map(|b| String::from_utf8_lossy(&b).into_owned()));
  Ok(JournalRecord {
    pid: row.get("pid")?,
    seq: row.get::<_, i64>("seq")? as u64,
    syscall: row.get("syscall")?,
    args_digest: row.get("args_digest")?,
    status: JournalStatus::parse(&row.get::<_, String>("status")?),
    wait: parse(row.get("wait")?),
    result: parse(result),
    at_ms: row.get::<_, i64>("at_ms")? as u64,
  })
}

const SELECT_JOURNAL: &str = "SELECT j.*, b.data AS blob_data FROM journal j LEFT JOIN blobs b ON b.hash = j.result_blob";

impl Db {
  /// Writes every part of `commit` in one transaction.
  pub fn commit(&self, commit: Commit) -> Result<MemOutcome, StoreError> {
    self.write(|tx| {
      let mem = match &commit.memory {
        Some(write) => Some(super::memory::apply_write(tx, write)?),
        None => None,
      };
      if let Some(record) = &commit.journal {
        // A memory write's result is what it did, decided inside this transaction.
        let mut record = record.clone();
        if let (None, Some(outcome)) = (&record.result, &mem) {
          record.result = Some(match outcome {
            Ok(value) => serde_json::json!({ "ok": value }),
            Err(conflict) => serde_json::json!({ "conflict": conflict.to_string() }),
          });
        }
        journal_write(tx, &record)?;
      }
      if let Some((pid, runtime)) = &commit.runtime {
        tx.execute("UPDATE processes SET runtime = ?2 WHERE pid = ?1", params![pid, runtime.to_string()])?;
      }
      for next in commit.audit {
        audit_append(tx, next, mem.as_ref())?;
      }
      Ok(mem)
    })
  }

  pub fn journal_entry(&self, pid: &str, seq: u64) -> Result<Option<JournalRecord>, StoreError> {
    self.read(|c| {
      c.query_row(&format!("{SELECT_JOURNAL} WHERE j.pid = ?1 AND j.seq = ?2"), params![pid, seq as i64], journal_row)
        .optional()
    })
  }

  /// The journal of `pid` from `from_seq` on, in order.
  pub fn journal(&self, pid: &str, from_seq: u64) -> Result<Vec<JournalRecord>, StoreError> {
    self.read(|c| {
      let mut stmt = c.prepare(&format!("{SELECT_JOURNAL} WHERE j.pid = ?1 AND j.seq >= ?2 ORDER BY j.seq"))?;
      let rows = stmt.query_map(params![pid, from_seq as i64], journal_row)?;
      rows.collect()
    })
  }

  /// Every audit record, oldest first, as stored (one JSON object each).
  pub fn audit_lines(&self) -> Result<Vec<String>, StoreError> {
    self.audit_lines_after(0)
  }

  /// The audit records after sequence number `seq` (records are numbered from 1), oldest
  /// first: what a watcher has not seen yet.
  pub fn audit_lines_after(&self, seq: u64) -> Result<Vec<String>, StoreError> {
    self.read(|c| {
      let mut stmt = c.prepare("SELECT record FROM audit WHERE seq > ?1 ORDER BY seq")?;
      let rows = stmt.query_map([seq as i64], |r| r.get(0))?;
      rows.collect()
    })
  }
}
