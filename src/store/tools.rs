//! JIT tools: candidates an agent proposed (with the report of their checks) and the
//! registrations that put them in tool tables. A candidate's source is a blob, stored
//! once by content hash; a registration is never deleted, only revoked.

use rusqlite::params;
use rusqlite::OptionalExtension;
use rusqlite::Row;
use serde_json::Value;

use super::db::Db;
use super::db::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRow {
  pub id: String,
  pub proposer: String,
  /// name, description, input, output, capabilities, tests.
  pub spec: Value,
  pub source: String,
  pub source_hash: String,
  /// Findings and test results.
  pub report: Value,
  /// Whether static analysis and the candidate's tests passed.
  pub passed: bool,
  pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolRow {
  pub id: i64,
  pub name: String,
  /// "process", "task" or "image".
  pub scope: String,
  pub owner: String,
  pub root: String,
  pub image: Option<String>,
  pub candidate: CandidateRow,
  pub registered_by: String,
  pub registered_ms: u64,
}

fn json(text: String) -> Value {
  serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn candidate_row(row: &Row) -> rusqlite::Result<CandidateRow> {
  let source: Vec<u8> = row.get("source")?;
  Ok(CandidateRow {
    id: row.get("id")?,
    proposer: row.get("proposer")?,
    spec: json(row.get("spec")?),
    source: String::from_utf8_lossy(&source).into_owned(),
    source_hash: row.get("source_hash")?,
    report: json(row.get("report")?),
    passed: row.get::<_, i64>("passed")? != 0,
    created_ms: row.get::<_, i64>("created_ms")? as u64,
  })
}

const SELECT_CANDIDATE: &str = "SELECT c.*, b.data AS source FROM tool_candidates c JOIN blobs b ON b.hash = c.source_hash";

impl Db {
  /// Stores a candidate; proposing the same candidate again changes nothing.
  pub fn put_candidate(&self, candidate: &CandidateRow) -> Result<(), StoreError> {
    self.write(|tx| {
      tx.execute(
        "INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?1, ?2, ?3)",
        params![candidate.source_hash, candidate.source.len() as i64, candidate.source.as_bytes()],
      )?;
      tx.execute(
        "INSERT OR IGNORE INTO tool_candidates (id, proposer, spec, source_hash, report, passed, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
          candidate.id,
          candidate.proposer,
          candidate.spec.to_string(),
          candidate.source_hash,
          candidate.report.to_string(),
          candidate.passed as i64,
          candidate.created_ms as i64
        ],
      )?;
      Ok(())
    })
  }

  pub fn candidate(&self, id: &str) -> Result<Option<CandidateRow>, StoreError> {
    self.read(|conn| conn.query_row(&format!("{SELECT_CANDIDATE} WHERE c.id = ?1"), [id], candidate_row).optional())
  }

  /// Records a registration; returns its id.
  #[allow(clippy::too_many_arguments)]
  pub fn register_tool(
    &self,
    name: &str,
    scope: &str,
    owner: &str,
    root: &str,
    image: Option<&str>,
    candidate: &str,
    registered_by: &str,
    now_ms: u64,
  ) -> Result<i64, StoreError> {
    self.write(|tx| {
      tx.execute(
        "INSERT INTO tools (name, scope, owner, root, image, candidate, registered_by, registered_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![name, scope, owner, root, image, candidate, registered_by, now_ms as i64],
      )?;
      Ok(tx.last_insert_rowid())
    })
  }

  /// Every registration not revoked, oldest first, with its candidate.
  pub fn active_tools(&self) -> Result<Vec<ToolRow>, StoreError> {
    self.active_tools_named(None)
  }

  /// The registrations not revoked, of tools named `name` (all when `None`), oldest first.
  pub fn active_tools_named(&self, name: Option<&str>) -> Result<Vec<ToolRow>, StoreError> {
    self.read(|conn| {
      let mut statement = conn.prepare_cached(
        "SELECT t.id AS tool_id, t.name, t.scope, t.owner, t.root, t.image, t.registered_by, t.registered_ms,
                c.*, b.data AS source
         FROM tools t JOIN tool_candidates c ON c.id = t.candidate JOIN blobs b ON b.hash = c.source_hash
         WHERE t.revoked_ms IS NULL AND (?1 IS NULL OR t.name = ?1) ORDER BY t.id",
      )?;
      let rows = statement.query_map([name], |row| {
        Ok(ToolRow {
          id: row.get("tool_id")?,
          name: row.get("name")?,
          scope: row.get("scope")?,
          owner: row.get("owner")?,
          root: row.get("root")?,
          image: row.get("image")?,
          candidate: candidate_row(row)?,
          registered_by: row.get("registered_by")?,
          registered_ms: row.get::<_, i64>("registered_ms")? as u64,
        })
      })?;
      rows.collect()
    })
  }

  /// Revokes a registration; false if it was already revoked or never existed.
  pub fn revoke_tool(&self, id: i64, now_ms: u64) -> Result<bool, StoreError> {
    self.write(|tx| {
      let changed =
        tx.execute("UPDATE tools SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, now_ms as i64])?;
      Ok(changed == 1)
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn candidate(id: &str, source: &str) -> CandidateRow {
    CandidateRow {
      id: id.into(),
      proposer: "p1".into(),
      spec: json!({ "name": "count_lines" }),
      source: source.into(),
      source_hash: crate::store::blob_hash(source.as_bytes()),
      report: json!({ "tests": [] }),
      passed: true,
      created_ms: 5,
    }
  }

  #[test]
  fn candidates_register_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let c = candidate("c-1", "export default 1;");
    db.put_candidate(&c).unwrap();
    // Proposing the same candidate again keeps the first.
    db.put_candidate(&CandidateRow { created_ms: 9, ..c.clone() }).unwrap();
    assert_eq!(db.candidate("c-1").unwrap(), Some(c.clone()));
    assert_eq!(db.candidate("c-2").unwrap(), None);

    let id = db.register_tool("count_lines", "process", "p1", "p1", None, "c-1", "grant g1", 7).unwrap();
    let active = db.active_tools().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].name.as_str(), active[0].candidate.source.as_str()), ("count_lines", "export default 1;"));
    assert!(db.revoke_tool(id, 8).unwrap());
    assert!(!db.revoke_tool(id, 9).unwrap());
    assert!(db.active_tools().unwrap().is_empty());
  }

  #[test]
  fn a_registration_needs_a_known_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert!(db.register_tool("x", "process", "p1", "p1", None, "c-missing", "test", 1).is_err());
    assert!(db.register_tool("x", "galaxy", "p1", "p1", None, "c-missing", "test", 1).is_err());
  }
}
