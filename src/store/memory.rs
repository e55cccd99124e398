//! Object Memory's rows: typed JSON objects in namespaces, each with a version for
//! compare-and-set, its creator and timestamps (DESIGN §4).
//!
//! Writes are [`apply_write`] inside a caller's transaction, so the journal can record a
//! write and its result atomically; [`Db::mem_write`] is the same in a transaction of its
//! own. Checkpoints take a namespace whole ([`snapshot_ns`]) and put it back exactly,
//! versions included ([`restore_ns`]).
//!
//! Versions start at 1 and grow by one per put. A deleted key is gone: putting it again
//! starts over at version 1, so a writer holding an old version of a deleted-and-recreated
//! object can win a compare-and-set (there are no tombstones).

use rusqlite::params;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::Row;
use rusqlite::Transaction;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::db::Db;
use super::db::StoreError;

/// One stored object, as JS sees it (`libos.mem.get`) and as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemObject {
  pub ns: String,
  pub key: String,
  #[serde(rename = "type")]
  pub type_name: String,
  pub value: Value,
  pub version: u64,
  /// Who created it: a process id, or `human:<name>`. Updates keep it.
  pub creator: String,
  pub created_ms: u64,
  pub updated_ms: u64,
}

/// One line of a listing: an object's metadata and the size of its value, with the value
/// itself only when it is small (a listing must stay bounded; `get` gives any value).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemEntry {
  pub ns: String,
  pub key: String,
  #[serde(rename = "type")]
  pub type_name: String,
  pub version: u64,
  pub creator: String,
  pub created_ms: u64,
  pub updated_ms: u64,
  /// Bytes of the value's JSON text.
  pub size: u64,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub value: Option<Value>,
}

/// A change to Object Memory. `if_version` is a compare-and-set: the object's current
/// version must equal it, and `Some(0)` means "must not exist".
#[derive(Debug, Clone, PartialEq)]
pub enum MemWrite {
  Put { ns: String, key: String, type_name: String, value: Value, if_version: Option<u64>, creator: String, now_ms: u64 },
  Delete { ns: String, key: String, if_version: Option<u64> },
}

/// A compare-and-set that did not match: nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemConflict {
  /// The version the writer expected (0: that it did not exist).
  pub expected: u64,
  /// The version found, `None` if there was no such object.
  pub found: Option<u64>,
}

impl std::fmt::Display for MemConflict {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let expected = match self.expected {
      0 => "no object".to_string(),
      n => format!("version {n}"),
    };
    match self.found {
      Some(found) => write!(f, "expected {expected}, found version {found}"),
      None => write!(f, "expected {expected}, found no object"),
    }
  }
}

const COLUMNS: &str = "ns, key, type, value, version, creator, created_ms, updated_ms";

fn object(row: &Row) -> rusqlite::Result<MemObject> {
  let text: String = row.get("value")?;
  Ok(MemObject {
    ns: row.get("ns")?,
    key: row.get("key")?,
    type_name: row.get("type")?,
    // Only `apply_write` and `restore_ns` write this column, always serialized JSON.
    value: serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e)))?,
    version: row.get::<_, i64>("version")? as u64,
    creator: row.get("creator")?,
    created_ms: row.get::<_, i64>("created_ms")? as u64,
    updated_ms: row.get::<_, i64>("updated_ms")? as u64,
  })
}

fn current_version(tx: &Transaction, ns: &str, key: &str) -> rusqlite::Result<Option<u64>> {
  tx.query_row("SELECT version FROM memory WHERE ns = ?1 AND key = ?2", params![ns, key], |r| r.get::<_, i64>(0))
    .optional()
    .map(|v| v.map(|v| v as u64))
}

/// Applies one write inside the caller's transaction (it opens none of its own). Put
/// returns `{version}`, Delete `{deleted}`; a compare-and-set mismatch is `Ok(Err(..))`
/// and changes nothing.
pub fn apply_write(tx: &Transaction, w: &MemWrite) -> rusqlite::Result<Result<Value, MemConflict>> {
  match w {
    MemWrite::Put { ns, key, type_name, value, if_version, creator, now_ms } => {
      let found = current_version(tx, ns, key)?;
      if let Some(expected) = *if_version {
        if found.unwrap_or(0) != expected {
          return Ok(Err(MemConflict { expected, found }));
        }
      }
      let version = found.unwrap_or(0) + 1;
      // An update keeps the creator and creation time; the row is replaced in place.
      tx.execute(
        "INSERT INTO memory (ns, key, type, value, version, creator, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (ns, key) DO UPDATE SET type = excluded.type, value = excluded.value,
           version = excluded.version, updated_ms = excluded.updated_ms",
        params![ns, key, type_name, value.to_string(), version as i64, creator, *now_ms as i64],
      )?;
      Ok(Ok(json!({ "version": version })))
    }
    MemWrite::Delete { ns, key, if_version } => {
      let found = current_version(tx, ns, key)?;
      if let Some(expected) = *if_version {
        if found.unwrap_or(0) != expected {
          return Ok(Err(MemConflict { expected, found }));
        }
      }
      let deleted = tx.execute("DELETE FROM memory WHERE ns = ?1 AND key = ?2", params![ns, key])? > 0;
      Ok(Ok(json!({ "deleted": deleted })))
    }
  }
}

/// Every object of namespace `ns`, ordered by key, values included. Works on a
/// transaction too (it derefs to a connection).
pub fn snapshot_ns(conn: &Connection, ns: &str) -> rusqlite::Result<Vec<MemObject>> {
  let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM memory WHERE ns = ?1 ORDER BY key"))?;
  let rows = stmt.query_map([ns], object)?;
  rows.collect()
}

/// Makes namespace `ns` hold exactly `objects` (versions, creators and times as given),
/// inside the caller's transaction. The objects are written into `ns` whatever their own
/// `ns` field says.
pub fn restore_ns(tx: &Transaction, ns: &str, objects: &[MemObject]) -> rusqlite::Result<()> {
  tx.execute("DELETE FROM memory WHERE ns = ?1", [ns])?;
  let mut insert = tx.prepare(&format!("INSERT INTO memory ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))?;
  for o in objects {
    insert.execute(params![
      ns,
      o.key,
      o.type_name,
      o.value.to_string(),
      o.version as i64,
      o.creator,
      o.created_ms as i64,
      o.updated_ms as i64
    ])?;
  }
  Ok(())
}

impl Db {
  /// [`apply_write`] in a transaction of its own.
  pub fn mem_write(&self, w: &MemWrite) -> Result<Result<Value, MemConflict>, StoreError> {
    self.write(|tx| apply_write(tx, w))
  }

  pub fn mem_get(&self, ns: &str, key: &str) -> Result<Option<MemObject>, StoreError> {
    self.read(|c| {
      c.query_row(&format!("SELECT {COLUMNS} FROM memory WHERE ns = ?1 AND key = ?2"), params![ns, key], object)
        .optional()
    })
  }

  /// Up to `limit` objects of namespace `ns` (every namespace if `None`) whose key starts
  /// with `prefix`, ordered by namespace and key. A value is included only when its JSON
  /// text is at most `inline_bytes` long (bigger ones are not even read).
  pub fn mem_list(&self, ns: Option<&str>, prefix: &str, limit: usize, inline_bytes: usize) -> Result<Vec<MemEntry>, StoreError> {
    self.read(|c| {
      // `substr` and `length` count characters on both sides, so this is an exact prefix
      // test (LIKE would be case-insensitive and treat `%` and `_` as wildcards).
      let mut stmt = c.prepare(
        "SELECT ns, key, type, version, creator, created_ms, updated_ms,
                length(CAST(value AS BLOB)) AS size,
                CASE WHEN length(CAST(value AS BLOB)) <= ?3 THEN value END AS small
         FROM memory
         WHERE (?1 IS NULL OR ns = ?1) AND substr(key, 1, length(?2)) = ?2
         ORDER BY ns, key
         LIMIT ?4",
      )?;
      let rows = stmt.query_map(params![ns, prefix, inline_bytes as i64, limit as i64], |row| {
        let small: Option<String> = row.get("small")?;
        Ok(MemEntry {
          ns: row.get("ns")?,
          key: row.get("key")?,
          type_name: row.get("type")?,
          version: row.get::<_, i64>("version")? as u64,
          creator: row.get("creator")?,
          created_ms: row.get::<_, i64>("created_ms")? as u64,
          updated_ms: row.get::<_, i64>("updated_ms")? as u64,
          size: row.get::<_, i64>("size")? as u64,
          value: small.and_then(|text| serde_json::from_str(&text).ok()),
        })
      })?;
      rows.collect()
    })
  }

  /// Every namespace that holds at least one object, sorted.
  pub fn mem_namespaces(&self) -> Result<Vec<String>, StoreError> {
    self.read(|c| {
      let mut stmt = c.prepare("SELECT DISTINCT ns FROM memory ORDER BY ns")?;
      let rows = stmt.query_map([], |r| r.get(0))?;
      rows.collect()
    })
  }

  /// [`snapshot_ns`] on this database.
  pub fn mem_snapshot(&self, ns: &str) -> Result<Vec<MemObject>, StoreError> {
    self.read(|c| snapshot_ns(c, ns))
  }

  /// [`restore_ns`] in a transaction of its own.
  pub fn mem_restore(&self, ns: &str, objects: &[MemObject]) -> Result<(), StoreError> {
    self.write(|tx| restore_ns(tx, ns, objects))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn put(ns: &str, key: &str, value: Value, if_version: Option<u64>) -> MemWrite {
    MemWrite::Put {
      ns: ns.into(),
      key: key.into(),
      type_name: "json".into(),
      value,
      if_version,
      creator: "p1".into(),
      now_ms: 1000,
    }
  }

  fn delete(ns: &str, key: &str, if_version: Option<u64>) -> MemWrite {
    MemWrite::Delete { ns: ns.into(), key: key.into(), if_version }
  }

  #[test]
  fn versions_count_up_and_cas_guards_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.mem_write(&put("t", "k", json!(1), Some(0))).unwrap(), Ok(json!({"version": 1})));
    assert_eq!(
      db.mem_write(&put("t", "k", json!(2), Some(0))).unwrap(),
      Err(MemConflict { expected: 0, found: Some(1) }),
      "ifVersion 0: must not exist"
    );
    assert_eq!(db.mem_write(&put("t", "k", json!(2), None)).unwrap(), Ok(json!({"version": 2})));
    assert_eq!(db.mem_write(&put("t", "k", json!(3), Some(1))).unwrap(), Err(MemConflict { expected: 1, found: Some(2) }));
    assert_eq!(db.mem_write(&put("t", "k", json!(3), Some(2))).unwrap(), Ok(json!({"version": 3})));
    assert_eq!(db.mem_write(&put("t", "new", json!(3), Some(4))).unwrap(), Err(MemConflict { expected: 4, found: None }));
    assert!(db.mem_get("t", "new").unwrap().is_none(), "a failed CAS writes nothing");

    let later = MemWrite::Put {
      ns: "t".into(),
      key: "k".into(),
      type_name: "note".into(),
      value: json!({"a": [1, "x"]}),
      if_version: None,
      creator: "p2".into(),
      now_ms: 2000,
    };
    db.mem_write(&later).unwrap().unwrap();
    let got = db.mem_get("t", "k").unwrap().unwrap();
    assert_eq!(
      got,
      MemObject {
        ns: "t".into(),
        key: "k".into(),
        type_name: "note".into(),
        value: json!({"a": [1, "x"]}),
        version: 4,
        creator: "p1".into(),
        created_ms: 1000,
        updated_ms: 2000,
      }
    );
    let js = serde_json::to_value(&got).unwrap();
    assert_eq!(js["type"], "note");
    assert_eq!(js["createdMs"], 1000);
    assert_eq!(js["updatedMs"], 2000);
    assert!(db.mem_get("other", "k").unwrap().is_none(), "namespaces are separate");
  }

  #[test]
  fn delete_reports_and_checks_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.mem_write(&put("t", "k", json!("v"), None)).unwrap().unwrap();
    assert_eq!(db.mem_write(&delete("t", "k", Some(7))).unwrap(), Err(MemConflict { expected: 7, found: Some(1) }));
    assert_eq!(db.mem_write(&delete("t", "k", Some(1))).unwrap(), Ok(json!({"deleted": true})));
    assert_eq!(db.mem_write(&delete("t", "k", None)).unwrap(), Ok(json!({"deleted": false})));
    assert_eq!(db.mem_write(&delete("t", "k", Some(0))).unwrap(), Ok(json!({"deleted": false})));
    assert_eq!(db.mem_write(&put("t", "k", json!("again"), Some(0))).unwrap(), Ok(json!({"version": 1})));
  }

  #[test]
  fn lists_by_namespace_and_exact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for (ns, key) in [("a", "x/1"), ("a", "x/2"), ("a", "X/3"), ("a", "x%"), ("a", "y"), ("b", "x/9")] {
      db.mem_write(&put(ns, key, json!(key), None)).unwrap().unwrap();
    }
    db.mem_write(&put("a", "x/big", json!("z".repeat(100)), None)).unwrap().unwrap();
    let keys = |entries: Vec<MemEntry>| entries.into_iter().map(|e| format!("{}:{}", e.ns, e.key)).collect::<Vec<_>>();
    assert_eq!(keys(db.mem_list(Some("a"), "x/", 100, 64).unwrap()), ["a:x/1", "a:x/2", "a:x/big"]);
    assert_eq!(keys(db.mem_list(None, "x/", 100, 64).unwrap()), ["a:x/1", "a:x/2", "a:x/big", "b:x/9"]);
    assert_eq!(keys(db.mem_list(Some("a"), "x_", 100, 64).unwrap()), Vec::<String>::new(), "_ is no wildcard");
    assert_eq!(keys(db.mem_list(Some("a"), "x%", 100, 64).unwrap()), ["a:x%"]);
    assert_eq!(keys(db.mem_list(Some("a"), "", 2, 64).unwrap()), ["a:X/3", "a:x%"], "bounded, in key order");
    let entries = db.mem_list(Some("a"), "x/", 100, 64).unwrap();
    assert_eq!(entries[0].value, Some(json!("x/1")));
    assert_eq!(entries[0].size, 5);
    assert_eq!(entries[2].value, None, "a big value is left out");
    assert_eq!(entries[2].size, 102);
    assert_eq!(db.mem_namespaces().unwrap(), ["a", "b"]);
  }

  #[test]
  fn snapshot_and_restore_a_namespace_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.mem_write(&put("t", "a", json!(1), None)).unwrap().unwrap();
    db.mem_write(&put("t", "a", json!(2), None)).unwrap().unwrap();
    db.mem_write(&put("t", "b", json!({"n": null}), None)).unwrap().unwrap();
    db.mem_write(&put("u", "a", json!("other ns"), None)).unwrap().unwrap();
    let snapshot = db.mem_snapshot("t").unwrap();
    assert_eq!(snapshot.iter().map(|o| (o.key.as_str(), o.version)).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);

    db.mem_write(&put("t", "a", json!(3), None)).unwrap().unwrap();
    db.mem_write(&delete("t", "b", None)).unwrap().unwrap();
    db.mem_write(&put("t", "c", json!(true), None)).unwrap().unwrap();
    db.mem_restore("t", &snapshot).unwrap();
    assert_eq!(db.mem_snapshot("t").unwrap(), snapshot);
    assert_eq!(db.mem_get("u", "a").unwrap().unwrap().value, json!("other ns"), "other namespaces untouched");
    // Round trip through JSON, as a checkpoint stores it.
    let stored: Vec<MemObject> = serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
    assert_eq!(stored, snapshot);
    db.mem_restore("t", &[]).unwrap();
    assert!(db.mem_snapshot("t").unwrap().is_empty());
  }

  #[test]
  fn apply_write_joins_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    // A failure later in the same transaction undoes the write.
    let failed = db.write(|tx| {
      apply_write(tx, &put("t", "k", json!(1), None))?.expect("no conflict");
      tx.execute("INSERT INTO no_such_table VALUES (1)", [])
    });
    assert!(failed.is_err());
    assert!(db.mem_get("t", "k").unwrap().is_none());
  }

  #[test]
  fn two_handles_on_one_file_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    Db::open(dir.path()).unwrap();
    const PER_WRITER: u64 = 50;
    let writers: Vec<_> = (0..2)
      .map(|_| {
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
          let db = Db::open(&path).unwrap();
          let mut conflicts = 0;
          for _ in 0..PER_WRITER {
            // Read, then write only if nobody wrote in between; else read again.
            loop {
              let current = db.mem_get("shared", "counter").unwrap();
              let (count, version) = current.map(|o| (o.value.as_u64().unwrap(), o.version)).unwrap_or((0, 0));
              match db.mem_write(&put("shared", "counter", json!(count + 1), Some(version))).unwrap() {
                Ok(_) => break,
                Err(_) => conflicts += 1,
              }
            }
          }
          conflicts
        })
      })
      .collect();
    for writer in writers {
      writer.join().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    let counter = db.mem_get("shared", "counter").unwrap().unwrap();
    assert_eq!(counter.value, json!(2 * PER_WRITER));
    assert_eq!(counter.version, 2 * PER_WRITER);
  }
}
