//! The human queue's records: durable requests, answered from any terminal.

use rusqlite::params;
use rusqlite::OptionalExtension;
use rusqlite::Row;
use serde::Serialize;

use super::db::Db;
use super::db::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
  /// May this operation happen?
  Approval,
  /// A process's question to a human (`libos.human.ask`).
  Question,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HumanRequest {
  /// `r<n>`.
  pub id: String,
  pub kind: RequestKind,
  pub pid: String,
  pub lineage: Vec<String>,
  pub syscall: String,
  pub capability: Option<String>,
  pub resource: Option<String>,
  /// The digest of the exact operation; an approval applies to nothing else.
  pub op_digest: String,
  /// What the human is shown: the operation with a preview, or the question.
  pub detail: String,
  pub choices: Option<Vec<String>>,
  pub default_answer: Option<String>,
  pub created_ms: u64,
  pub deadline_ms: Option<u64>,
  pub status: String,
  pub scope: Option<String>,
  pub answer: Option<String>,
  pub reason: Option<String>,
  pub answered_by: Option<String>,
}

/// A new request, before it has an id.
pub struct NewRequest {
  pub kind: RequestKind,
  pub pid: String,
  pub lineage: Vec<String>,
  pub syscall: String,
  pub capability: Option<String>,
  pub resource: Option<String>,
  pub op_digest: String,
  pub detail: String,
  pub choices: Option<Vec<String>>,
  pub default_answer: Option<String>,
  pub created_ms: u64,
  pub deadline_ms: Option<u64>,
}

/// A human's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
  /// Approve, for `once`, `process` or `always`.
  Approve { scope: String },
  Deny { reason: Option<String> },
  /// The value answering a question.
  Value(String),
}

/// Parses `r12` (or `12`) into the row id.
fn row_id(id: &str) -> Result<i64, StoreError> {
  id.strip_prefix('r')
    .unwrap_or(id)
    .parse::<i64>()
    .map_err(|_| StoreError::Invalid(format!("\"{id}\" is not a request id (they look like r12)")))
}

fn from_row(row: &Row) -> rusqlite::Result<HumanRequest> {
  let json_list = |text: Option<String>| text.and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok());
  let kind: String = row.get("kind")?;
  Ok(HumanRequest {
    id: format!("r{}", row.get::<_, i64>("id")?),
    kind: if kind == "question" { RequestKind::Question } else { RequestKind::Approval },
    pid: row.get("pid")?,
    lineage: json_list(row.get("lineage")?).unwrap_or_default(),
    syscall: row.get("syscall")?,
    capability: row.get("capability")?,
    resource: row.get("resource")?,
    op_digest: row.get("op_digest")?,
    detail: row.get("detail")?,
    choices: json_list(row.get("choices")?),
    default_answer: row.get("default_answer")?,
    created_ms: row.get::<_, i64>("created_ms")? as u64,
    deadline_ms: row.get::<_, Option<i64>>("deadline_ms")?.map(|d| d as u64),
    status: row.get("status")?,
    scope: row.get("scope")?,
    answer: row.get("answer")?,
    reason: row.get("reason")?,
    answered_by: row.get("answered_by")?,
  })
}

impl Db {
  pub fn create_request(&self, new: NewRequest) -> Result<HumanRequest, StoreError> {
    let id = self.write(|tx| {
      tx.execute(
        "INSERT INTO human_requests (kind, pid, lineage, syscall, capability, resource, op_digest, detail,
           choices, default_answer, created_ms, deadline_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
          if new.kind == RequestKind::Question { "question" } else { "approval" },
          new.pid,
          serde_json::to_string(&new.lineage).unwrap_or_default(),
          new.syscall,
          new.capability,
          new.resource,
          new.op_digest,
          new.detail,
          new.choices.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default()),
          new.default_answer,
          new.created_ms as i64,
          new.deadline_ms.map(|d| d as i64),
        ],
      )?;
      Ok(tx.last_insert_rowid())
    })?;
    self.request(&format!("r{id}"))?.ok_or_else(|| StoreError::Invalid(format!("request r{id} vanished")))
  }

  pub fn request(&self, id: &str) -> Result<Option<HumanRequest>, StoreError> {
    let id = row_id(id)?;
    self.read(|c| c.query_row("SELECT * FROM human_requests WHERE id = ?1", [id], from_row).optional())
  }

  pub fn pending_requests(&self) -> Result<Vec<HumanRequest>, StoreError> {
    self.read(|c| {
      let mut stmt = c.prepare("SELECT * FROM human_requests WHERE status = 'pending' ORDER BY id")?;
      let rows = stmt.query_map([], from_row)?;
      rows.collect()
    })
  }

  /// Records a human's answer to a pending request. Fails (changing nothing) if the
  /// request is not pending any more: the first answer wins.
  pub fn answer_request(&self, id: &str, answer: &Answer, by: &str, now_ms: u64) -> Result<HumanRequest, StoreError> {
    let row = row_id(id)?;
    let (status, scope, value, reason) = match answer {
      Answer::Approve { scope } => ("approved", Some(scope.as_str()), None, None),
      Answer::Deny { reason } => ("denied", None, None, reason.as_deref()),
      Answer::Value(value) => ("answered", None, Some(value.as_str()), None),
    };
    let changed = self.write(|tx| {
      let changed = tx.execute(
        "UPDATE human_requests SET status = ?2, scope = ?3, answer = ?4, reason = ?5, answered_by = ?6, answered_ms = ?7
         WHERE id = ?1 AND status = 'pending'",
        params![row, status, scope, value, reason, by, now_ms as i64],
      )?;
      if changed == 1 && scope == Some("always") {
        let capability: Option<String> =
          tx.query_row("SELECT capability FROM human_requests WHERE id = ?1", [row], |r| r.get(0))?;
        if let Some(capability) = capability {
          tx.execute(
            "INSERT INTO human_rules (capability, request, created_ms) VALUES (?1, ?2, ?3)",
            params![capability, row, now_ms as i64],
          )?;
        }
      }
      Ok(changed)
    })?;
    let request = self.request(id)?.ok_or_else(|| StoreError::Invalid(format!("there is no request {id}")))?;
    if changed == 0 {
      return Err(StoreError::Invalid(format!("request {id} is not pending (it is {})", request.status)));
    }
    Ok(request)
  }

  /// Ends a pending request without a human's answer (`timed_out`, `cancelled`).
  pub fn close_request(&self, id: &str, status: &str, now_ms: u64) -> Result<(), StoreError> {
    let row = row_id(id)?;
    self.write(|tx| {
      tx.execute(
        "UPDATE human_requests SET status = ?2, answered_by = 'system', answered_ms = ?3 WHERE id = ?1 AND status = 'pending'",
        params![row, status, now_ms as i64],
      )
    })?;
    Ok(())
  }

  /// The capabilities humans allowed "always", with the request that did.
  pub fn human_rules(&self) -> Result<Vec<(String, String)>, StoreError> {
    self.read(|c| {
      let mut stmt = c.prepare("SELECT capability, request FROM human_rules ORDER BY rowid")?;
      let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, format!("r{}", r.get::<_, i64>(1)?))))?;
      rows.collect()
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn new(kind: RequestKind) -> NewRequest {
    NewRequest {
      kind,
      pid: "p1".into(),
      lineage: vec!["p1".into()],
      syscall: "fs.writeText".into(),
      capability: Some("fs.write:out/a".into()),
      resource: Some("out/a".into()),
      op_digest: "sha256:x".into(),
      detail: "write".into(),
      choices: None,
      default_answer: None,
      created_ms: 1,
      deadline_ms: None,
    }
  }

  #[test]
  fn the_first_answer_wins_and_always_persists_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let request = db.create_request(new(RequestKind::Approval)).unwrap();
    assert_eq!(request.id, "r1");
    assert_eq!(db.pending_requests().unwrap().len(), 1);
    let approved = db.answer_request("r1", &Answer::Approve { scope: "always".into() }, "alice", 2).unwrap();
    assert_eq!(approved.status, "approved");
    let again = db.answer_request("r1", &Answer::Deny { reason: None }, "mallory", 3).unwrap_err();
    assert!(again.to_string().contains("not pending (it is approved)"), "{again}");
    assert_eq!(db.human_rules().unwrap(), [("fs.write:out/a".to_string(), "r1".to_string())]);
    assert!(db.pending_requests().unwrap().is_empty());
    assert!(db.answer_request("r9", &Answer::Deny { reason: None }, "a", 1).is_err());
    assert!(db.answer_request("bogus", &Answer::Deny { reason: None }, "a", 1).is_err());
  }

  #[test]
  fn two_connections_see_each_others_answers() {
    let dir = tempfile::tempdir().unwrap();
    let waiting = Db::open(dir.path()).unwrap();
    let answering = Db::open(dir.path()).unwrap();
    let request = waiting.create_request(new(RequestKind::Question)).unwrap();
    answering.answer_request(&request.id, &Answer::Value("yes".into()), "bob", 5).unwrap();
    let seen = waiting.request(&request.id).unwrap().unwrap();
    assert_eq!((seen.status.as_str(), seen.answer.as_deref()), ("answered", Some("yes")));
  }
}
