//! The state database: one SQLite file in the state directory (WAL, foreign keys,
//! versioned migrations). Every SQL statement of alos lives under `src/store/`.
//!
//! Several `alos` processes share it (one running an agent, another answering its
//! approvals), so connections wait on locks (`busy_timeout`) instead of failing, and each
//! change is one short transaction.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use rusqlite::Connection;

/// The schema, one migration per version; never edit a released one, append.
const MIGRATIONS: &[&str] = &[
  // 1: the human queue and the rules human answers persist.
  "CREATE TABLE human_requests (
     id            INTEGER PRIMARY KEY AUTOINCREMENT,
     kind          TEXT NOT NULL CHECK (kind IN ('approval', 'question')),
     pid           TEXT NOT NULL,
     lineage       TEXT NOT NULL,
     syscall       TEXT NOT NULL,
     capability    TEXT,
     resource      TEXT,
     op_digest     TEXT NOT NULL,
     detail        TEXT NOT NULL,
     choices       TEXT,
     default_answer TEXT,
     created_ms    INTEGER NOT NULL,
     deadline_ms   INTEGER,
     status        TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'approved', 'denied', 'answered', 'timed_out', 'cancelled')),
     scope         TEXT CHECK (scope IN ('once', 'process', 'always')),
     answer        TEXT,
     reason        TEXT,
     answered_by   TEXT,
     answered_ms   INTEGER
   );
   CREATE INDEX human_requests_pending ON human_requests (status) WHERE status = 'pending';
   CREATE TABLE human_rules (
     capability TEXT NOT NULL,
     request    INTEGER NOT NULL REFERENCES human_requests (id),
     created_ms INTEGER NOT NULL
   );",
  // 2: the process table, for `alos ps` and `alos kill` from any terminal.
  "CREATE TABLE processes (
     pid        TEXT PRIMARY KEY,
     parent     TEXT,
     lineage    TEXT NOT NULL,
     image      TEXT NOT NULL,
     mode       TEXT NOT NULL,
     state      TEXT NOT NULL,
     exit       TEXT,
     host_pid   INTEGER NOT NULL,
     started_ms INTEGER NOT NULL,
     ended_ms   INTEGER
   );
   CREATE TABLE signals (
     id         INTEGER PRIMARY KEY AUTOINCREMENT,
     pid        TEXT NOT NULL,
     signal     TEXT NOT NULL CHECK (signal IN ('cancel')),
     sent_by    TEXT NOT NULL,
     created_ms INTEGER NOT NULL,
     handled_ms INTEGER
   );",
  // 3: durable state: the audit chain, the journal, blobs, Object Memory, checkpoints,
  // images, topic events, and what a process needs to be resumed by another host.
  "CREATE TABLE audit (
     seq    INTEGER PRIMARY KEY,
     record TEXT NOT NULL
   );
   CREATE TABLE blobs (
     hash TEXT PRIMARY KEY,
     size INTEGER NOT NULL,
     data BLOB NOT NULL
   );
   CREATE TABLE journal (
     pid         TEXT NOT NULL,
     seq         INTEGER NOT NULL,
     syscall     TEXT NOT NULL,
     args_digest TEXT NOT NULL,
     status      TEXT NOT NULL CHECK (status IN ('waiting', 'started', 'done')),
     wait        TEXT,
     result      TEXT,
     result_blob TEXT REFERENCES blobs (hash),
     at_ms       INTEGER NOT NULL,
     PRIMARY KEY (pid, seq)
   );
   ALTER TABLE processes ADD COLUMN spec TEXT;
   ALTER TABLE processes ADD COLUMN runtime TEXT;
   CREATE TABLE memory (
     ns         TEXT NOT NULL,
     key        TEXT NOT NULL,
     type       TEXT NOT NULL,
     value      TEXT NOT NULL,
     version    INTEGER NOT NULL,
     creator    TEXT NOT NULL,
     created_ms INTEGER NOT NULL,
     updated_ms INTEGER NOT NULL,
     PRIMARY KEY (ns, key)
   );
   CREATE TABLE checkpoints (
     id          INTEGER PRIMARY KEY AUTOINCREMENT,
     pid         TEXT NOT NULL,
     label       TEXT,
     journal_seq INTEGER NOT NULL,
     memory      TEXT NOT NULL,
     runtime     TEXT NOT NULL,
     created_ms  INTEGER NOT NULL
   );
   CREATE TABLE images (
     name      TEXT NOT NULL,
     version   TEXT NOT NULL,
     hash      TEXT NOT NULL,
     manifest  TEXT NOT NULL,
     dir       TEXT NOT NULL,
     added_ms  INTEGER NOT NULL,
     PRIMARY KEY (name, version)
   );
   CREATE TABLE events (
     seq     INTEGER PRIMARY KEY AUTOINCREMENT,
     root    TEXT NOT NULL,
     topic   TEXT NOT NULL,
     from_pid TEXT NOT NULL,
     payload TEXT NOT NULL,
     at_ms   INTEGER NOT NULL
   );
   CREATE INDEX events_topic ON events (root, topic, seq);",
  // 4: JIT tools: proposed candidates (source in blobs) and registrations.
  "CREATE TABLE tool_candidates (
     id          TEXT PRIMARY KEY,
     proposer    TEXT NOT NULL,
     spec        TEXT NOT NULL,
     source_hash TEXT NOT NULL REFERENCES blobs (hash),
     report      TEXT NOT NULL,
     passed      INTEGER NOT NULL,
     created_ms  INTEGER NOT NULL
   );
   CREATE TABLE tools (
     id            INTEGER PRIMARY KEY AUTOINCREMENT,
     name          TEXT NOT NULL,
     scope         TEXT NOT NULL CHECK (scope IN ('process', 'task', 'image')),
     owner         TEXT NOT NULL,
     root          TEXT NOT NULL,
     image         TEXT,
     candidate     TEXT NOT NULL REFERENCES tool_candidates (id),
     registered_by TEXT NOT NULL,
     registered_ms INTEGER NOT NULL,
     revoked_ms    INTEGER
   );
   CREATE INDEX tools_active ON tools (name) WHERE revoked_ms IS NULL;",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
  #[error("state database {path}: {source}")]
  Sqlite { path: PathBuf, source: rusqlite::Error },
  #[error(
    "state database {path} has schema version {found}, newer than this alos understands ({known}); \
     use a newer alos or another --state directory (nothing was changed)"
  )]
  NewerSchema { path: PathBuf, found: i64, known: i64 },
  #[error("{0}")]
  Invalid(String),
}

pub struct Db {
  path: PathBuf,
  conn: Mutex<Connection>,
}

impl Db {
  /// Opens (creating if needed) `alos.db` in `state_dir` and brings its schema up to date.
  pub fn open(state_dir: &Path) -> Result<Db, StoreError> {
    let path = state_dir.join("alos.db");
    let fail = |source| StoreError::Sqlite { path: path.clone(), source };
    let conn = Connection::open(&path).map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(fail)?;
    conn
      .execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
      .map_err(fail)?;
    let db = Db { path: path.clone(), conn: Mutex::new(conn) };
    db.migrate()?;
    Ok(db)
  }

  fn migrate(&self) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    self.write(|tx| {
      tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
      let found: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
      if found > known {
        return Ok(Err(found));
      }
      for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(migration)?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [index as i64 + 1])?;
      }
      Ok(Ok(()))
    })?
    .map_err(|found| StoreError::NewerSchema { path: self.path.clone(), found, known })
  }

  fn conn(&self) -> MutexGuard<'_, Connection> {
    self.conn.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Runs `f` in one immediate (write-locking) transaction.
  pub(super) fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>) -> Result<T, StoreError> {
    let mut conn = self.conn();
    let tx = conn
      .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
      .map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })?;
    let value = f(&tx).map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })?;
    tx.commit().map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })?;
    Ok(value)
  }

  /// Changes whenever another connection (another `alos`) commits to the database: a
  /// cheap way to know that something read before may be stale.
  pub fn data_version(&self) -> Result<i64, StoreError> {
    self.read(|c| c.query_row("PRAGMA data_version", [], |r| r.get(0)))
  }

  pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
    f(&self.conn()).map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn migrates_once_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    Db::open(dir.path()).unwrap();
    let db = Db::open(dir.path()).unwrap();
    let version: i64 = db.read(|c| c.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    db.write(|tx| tx.execute("INSERT INTO schema_version (version) VALUES (99)", [])).unwrap();
    drop(db);
    let err = Db::open(dir.path()).err().expect("newer schema refused");
    assert!(err.to_string().contains("schema version 99"), "{err}");
  }

  #[test]
  fn a_corrupt_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alos.db"), b"this is not a database, just bytes padded out well past a header".repeat(100)).unwrap();
    let err = Db::open(dir.path()).err().expect("corrupt db refused");
    assert!(err.to_string().contains("alos.db"), "{err}");
  }
}
