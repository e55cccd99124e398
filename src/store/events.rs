//! Topic events, durable so that a hibernated process can be woken by one and a
//! resumed one finds what was emitted while it was gone. Streams are per process tree.

use rusqlite::params;
use rusqlite::OptionalExtension;
use serde_json::Value;

use super::db::Db;
use super::db::StoreError;

impl Db {
  /// Appends an event to `topic` of the tree rooted at `root`; returns its seq.
  pub fn event_append(&self, root: &str, topic: &str, from: &str, payload: &Value, at_ms: u64) -> Result<u64, StoreError> {
    self.write(|tx| {
      tx.execute(
        "INSERT INTO events (root, topic, from_pid, payload, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![root, topic, from, payload.to_string(), at_ms as i64],
      )?;
      Ok(tx.last_insert_rowid() as u64)
    })
  }

  /// The first event of `topic` in `root`'s tree after seq `after`: `(seq, from, payload, at_ms)`.
  pub fn event_after(&self, root: &str, topic: &str, after: u64) -> Result<Option<(u64, String, Value, u64)>, StoreError> {
    self.read(|c| {
      c.query_row(
        "SELECT seq, from_pid, payload, at_ms FROM events WHERE root = ?1 AND topic = ?2 AND seq > ?3 ORDER BY seq LIMIT 1",
        params![root, topic, after as i64],
        |r| {
          let payload: String = r.get(2)?;
          Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, serde_json::from_str(&payload).unwrap_or(Value::Null), r.get::<_, i64>(3)? as u64))
        },
      )
      .optional()
    })
  }
}
