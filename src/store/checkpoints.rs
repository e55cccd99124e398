//! Checkpoints: a journal position, the process's Object Memory and its runtime state,
//! kept so `alos rollback` can return the process there.

use rusqlite::params;
use rusqlite::OptionalExtension;
use serde_json::Value;

use super::db::Db;
use super::db::StoreError;
use super::memory::restore_ns;
use super::memory::snapshot_ns;
use super::memory::MemObject;

#[derive(Debug, Clone)]
pub struct Checkpoint {
  pub id: i64,
  pub pid: String,
  pub label: Option<String>,
  /// The seq of the `checkpoint` syscall; rollback keeps the journal up to it.
  pub journal_seq: u64,
  pub runtime: Value,
  pub created_ms: u64,
}

impl Db {
  /// Records a checkpoint of `pid` with a copy of its namespace `ns`.
  pub fn checkpoint_create(&self, pid: &str, label: Option<&str>, journal_seq: u64, ns: &str, runtime: &Value, now_ms: u64) -> Result<i64, StoreError> {
    self.write(|tx| {
      let objects = snapshot_ns(tx, ns)?;
      let memory = serde_json::to_string(&objects).unwrap_or_else(|_| "[]".into());
      tx.execute(
        "INSERT INTO checkpoints (pid, label, journal_seq, memory, runtime, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![pid, label, journal_seq as i64, memory, runtime.to_string(), now_ms as i64],
      )?;
      Ok(tx.last_insert_rowid())
    })
  }

  pub fn checkpoint(&self, id: i64) -> Result<Option<Checkpoint>, StoreError> {
    self.read(|c| {
      c.query_row("SELECT id, pid, label, journal_seq, runtime, created_ms FROM checkpoints WHERE id = ?1", [id], |r| {
        Ok(Checkpoint {
          id: r.get(0)?,
          pid: r.get(1)?,
          label: r.get(2)?,
          journal_seq: r.get::<_, i64>(3)? as u64,
          runtime: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
          created_ms: r.get::<_, i64>(5)? as u64,
        })
      })
      .optional()
    })
  }

  /// Returns `pid` to checkpoint `id`: its namespace `ns` as it was, its journal cut
  /// after the checkpoint, `runtime` as its state, and the process unfinished again so
  /// a host resumes it. One transaction; the audit record comes with it.
  pub fn rollback(&self, id: i64, ns: &str, runtime: &Value, audit: super::journal::AuditNext) -> Result<(), StoreError> {
    self.write(|tx| {
      let (pid, seq, memory): (String, i64, String) =
        tx.query_row("SELECT pid, journal_seq, memory FROM checkpoints WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
      let objects: Vec<MemObject> = serde_json::from_str(&memory).unwrap_or_default();
      restore_ns(tx, ns, &objects)?;
      tx.execute("DELETE FROM journal WHERE pid = ?1 AND seq > ?2", params![pid, seq])?;
      tx.execute(
        "UPDATE processes SET runtime = ?2, state = 'running', exit = NULL, ended_ms = NULL WHERE pid = ?1",
        params![pid, runtime.to_string()],
      )?;
      let last: Option<String> = tx.query_row("SELECT record FROM audit ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).optional()?;
      let (audit_seq, line) = audit(last.as_deref(), None).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
      tx.execute("INSERT INTO audit (seq, record) VALUES (?1, ?2)", params![audit_seq as i64, line])?;
      Ok(())
    })
  }
}
