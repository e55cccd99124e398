//! The process table as other terminals see it, and the signals they send.

use rusqlite::params;
use rusqlite::OptionalExtension;
use rusqlite::Row;
use serde::Serialize;

use super::db::Db;
use super::db::StoreError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
  pub pid: String,
  pub parent: Option<String>,
  pub lineage: Vec<String>,
  pub image: String,
  pub mode: String,
  pub state: String,
  pub exit: Option<serde_json::Value>,
  /// The OS process id of the `alos` that hosts it.
  pub host_pid: u32,
  pub started_ms: u64,
  pub ended_ms: Option<u64>,
  /// What another host needs to start it again (written once).
  #[serde(skip)]
  pub spec: Option<serde_json::Value>,
  /// Its state after its last journaled syscall (kept by the journal's commits; this
  /// row only sets the first).
  #[serde(skip)]
  pub runtime: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalRow {
  pub id: i64,
  pub pid: String,
  pub signal: String,
  pub sent_by: String,
}

fn process_row(row: &Row) -> rusqlite::Result<ProcessRow> {
  Ok(ProcessRow {
    pid: row.get("pid")?,
    parent: row.get("parent")?,
    lineage: serde_json::from_str(&row.get::<_, String>("lineage")?).unwrap_or_default(),
    image: row.get("image")?,
    mode: row.get("mode")?,
    state: row.get("state")?,
    exit: row.get::<_, Option<String>>("exit")?.and_then(|e| serde_json::from_str(&e).ok()),
    host_pid: row.get("host_pid")?,
    started_ms: row.get::<_, i64>("started_ms")? as u64,
    ended_ms: row.get::<_, Option<i64>>("ended_ms")?.map(|v| v as u64),
    spec: row.get::<_, Option<String>>("spec")?.and_then(|e| serde_json::from_str(&e).ok()),
    runtime: row.get::<_, Option<String>>("runtime")?.and_then(|e| serde_json::from_str(&e).ok()),
  })
}

impl Db {
  pub fn upsert_process(&self, row: &ProcessRow) -> Result<(), StoreError> {
    self.write(|tx| {
      tx.execute(
        "INSERT INTO processes (pid, parent, lineage, image, mode, state, exit, host_pid, started_ms, ended_ms, spec, runtime)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (pid) DO UPDATE SET state = excluded.state, exit = excluded.exit, ended_ms = excluded.ended_ms,
           host_pid = excluded.host_pid, spec = COALESCE(processes.spec, excluded.spec),
           runtime = COALESCE(processes.runtime, excluded.runtime)",
        params![
          row.pid,
          row.parent,
          serde_json::to_string(&row.lineage).unwrap_or_default(),
          row.image,
          row.mode,
          row.state,
          row.exit.as_ref().map(|e| e.to_string()),
          row.host_pid,
          row.started_ms as i64,
          row.ended_ms.map(|v| v as i64),
          row.spec.as_ref().map(|v| v.to_string()),
          row.runtime.as_ref().map(|v| v.to_string()),
        ],
      )
    })?;
    Ok(())
  }

  pub fn processes(&self) -> Result<Vec<ProcessRow>, StoreError> {
    self.read(|c| {
      let mut stmt = c.prepare("SELECT * FROM processes ORDER BY started_ms, pid")?;
      let rows = stmt.query_map([], process_row)?;
      rows.collect()
    })
  }

  pub fn process(&self, pid: &str) -> Result<Option<ProcessRow>, StoreError> {
    self.read(|c| c.query_row("SELECT * FROM processes WHERE pid = ?1", [pid], process_row).optional())
  }

  pub fn send_signal(&self, pid: &str, signal: &str, sent_by: &str, now_ms: u64) -> Result<i64, StoreError> {
    self.write(|tx| {
      tx.execute(
        "INSERT INTO signals (pid, signal, sent_by, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![pid, signal, sent_by, now_ms as i64],
      )?;
      Ok(tx.last_insert_rowid())
    })
  }

  /// Signals not yet handled for any of `pids`.
  pub fn pending_signals(&self, pids: &[String]) -> Result<Vec<SignalRow>, StoreError> {
    let all: Vec<SignalRow> = self.read(|c| {
      let mut stmt = c.prepare("SELECT id, pid, signal, sent_by FROM signals WHERE handled_ms IS NULL ORDER BY id")?;
      let rows = stmt.query_map([], |r| Ok(SignalRow { id: r.get(0)?, pid: r.get(1)?, signal: r.get(2)?, sent_by: r.get(3)? }))?;
      rows.collect()
    })?;
    Ok(all.into_iter().filter(|s| pids.contains(&s.pid)).collect())
  }

  pub fn signal_handled(&self, id: i64, now_ms: u64) -> Result<bool, StoreError> {
    self.write(|tx| {
      let changed =
        tx.execute("UPDATE signals SET handled_ms = ?2 WHERE id = ?1 AND handled_ms IS NULL", params![id, now_ms as i64])?;
      Ok(changed == 1)
    })
  }

  pub fn signal_is_handled(&self, id: i64) -> Result<bool, StoreError> {
    self.read(|c| c.query_row("SELECT handled_ms IS NOT NULL FROM signals WHERE id = ?1", [id], |r| r.get(0)))
  }
}
