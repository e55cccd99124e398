//! Grants: the capabilities a process holds, each with where it came from, how often
//! and how long it may be used, and (for a human's one-off approval) the one operation
//! it is bound to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::capability::{Capability, Request};

/// Identifies a grant in the audit log and in revocation; displayed as `g12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(pub u64);

impl fmt::Display for GrantId {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "g{}", self.0)
  }
}

/// A string that is not a grant id (`g` followed by decimal digits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid grant id {0:?}: expected g followed by a number, as in g12")]
pub struct InvalidGrantId(pub String);

impl FromStr for GrantId {
  type Err = InvalidGrantId;

  fn from_str(text: &str) -> Result<GrantId, InvalidGrantId> {
    text
      .strip_prefix('g')
      // `u64::from_str` would also take a leading '+'; an id is digits only.
      .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
      .and_then(|digits| digits.parse().ok())
      .map(GrantId)
      .ok_or_else(|| InvalidGrantId(text.to_owned()))
  }
}

/// Where a grant came from — recorded so the audit log can say who gave the authority.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
  /// `--allow` on the command line.
  Cli,
  /// The capability list of the named image.
  Image(String),
  /// The named policy.
  Policy(String),
  /// A human's answer to the named request.
  Human { request: String },
  /// Passed down (attenuated) by the named parent process.
  Parent { pid: String },
}

impl fmt::Display for GrantSource {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      GrantSource::Cli => f.write_str("cli"),
      GrantSource::Image(name) => write!(f, "image {name:?}"),
      GrantSource::Policy(name) => write!(f, "policy {name:?}"),
      GrantSource::Human { request } => write!(f, "human request {request:?}"),
      GrantSource::Parent { pid } => write!(f, "parent {pid:?}"),
    }
  }
}

/// One capability held by one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
  pub id: GrantId,
  pub capability: Capability,
  pub source: GrantSource,
  /// Uses remaining; `None` = unlimited, `Some(1)` = one-shot, `Some(0)` = spent.
  pub uses_left: Option<u32>,
  /// The first instant (ms) at which the grant no longer applies; `None` = no expiry.
  pub expires_at_ms: Option<u64>,
  /// Set for a grant a human minted for one exact operation: it applies only to the
  /// operation with this digest, so a changed operand does not inherit the approval.
  pub bound_digest: Option<String>,
  /// The grant this one was derived from; revoking that one revokes this one.
  pub parent: Option<GrantId>,
}

impl Grant {
  /// An unlimited, non-expiring, unbound grant with no parent.
  pub fn new(id: GrantId, capability: Capability, source: GrantSource) -> Grant {
    Grant { id, capability, source, uses_left: None, expires_at_ms: None, bound_digest: None, parent: None }
  }

  /// Neither spent nor expired at `now_ms`.
  pub fn is_live(&self, now_ms: u64) -> bool {
    self.uses_left != Some(0) && self.expires_at_ms.is_none_or(|expiry| now_ms < expiry)
  }

  /// Whether this grant authorises `request` at `now_ms`. A bound grant applies only
  /// when `op_digest` is the digest it was bound to.
  pub fn covers(&self, request: &Request, now_ms: u64, op_digest: Option<&str>) -> bool {
    let binding_ok = match &self.bound_digest {
      None => true,
      Some(bound) => op_digest == Some(bound.as_str()),
    };
    binding_ok && self.is_live(now_ms) && self.capability.covers(request)
  }

  /// Records one use. Returns `false`, changing nothing, if no use was left — the caller
  /// must then not perform the effect. The kernel calls this atomically with the effect
  /// (DESIGN §4: a one-shot grant is consumed with what it authorises).
  pub fn spend(&mut self) -> bool {
    match &mut self.uses_left {
      None => true,
      Some(0) => false,
      Some(uses) => {
        *uses -= 1;
        true
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::kernel::capability::Kind;

  fn grant(capability: &str) -> Grant {
    Grant::new(GrantId(7), capability.parse().unwrap(), GrantSource::Cli)
  }

  fn read(path: &str) -> Request {
    Request::new(Kind::FsRead, path)
  }

  #[test]
  fn grant_ids_display_and_parse() {
    assert_eq!(GrantId(12).to_string(), "g12");
    assert_eq!("g12".parse::<GrantId>(), Ok(GrantId(12)));
    assert_eq!("g0".parse::<GrantId>(), Ok(GrantId(0)));
    for bad in ["12", "g", "g+1", "g-1", "G12", "g1x", "g99999999999999999999"] {
      assert_eq!(bad.parse::<GrantId>(), Err(InvalidGrantId(bad.into())), "{bad}");
    }
  }

  #[test]
  fn a_plain_grant_is_live_forever_and_covers_what_its_capability_covers() {
    let g = grant("fs.read:data/**");
    assert!(g.is_live(0));
    assert!(g.is_live(u64::MAX));
    assert!(g.covers(&read("data/a"), 5, None));
    assert!(g.covers(&read("data/a"), 5, Some("any digest")));
    assert!(!g.covers(&read("secrets/a"), 5, None));
  }

  #[test]
  fn expiry_is_exclusive() {
    let g = Grant { expires_at_ms: Some(1_000), ..grant("fs.read") };
    assert!(g.is_live(999));
    assert!(g.covers(&read("a"), 999, None));
    assert!(!g.is_live(1_000));
    assert!(!g.covers(&read("a"), 1_000, None));
    assert!(!g.is_live(5_000));
  }

  #[test]
  fn one_shot_grants_are_spent_by_one_use() {
    let mut g = Grant { uses_left: Some(1), ..grant("fs.read") };
    assert!(g.covers(&read("a"), 0, None));
    assert!(g.spend());
    assert_eq!(g.uses_left, Some(0));
    assert!(!g.is_live(0));
    assert!(!g.covers(&read("a"), 0, None));
    assert!(!g.spend(), "a spent grant cannot be spent again");
    assert_eq!(g.uses_left, Some(0));

    let mut unlimited = grant("fs.read");
    assert!(unlimited.spend());
    assert_eq!(unlimited.uses_left, None);
  }

  #[test]
  fn bound_grants_apply_only_to_their_operation() {
    let g = Grant { bound_digest: Some("abc".into()), uses_left: Some(1), ..grant("fs.write:notes.md") };
    let write = Request::new(Kind::FsWrite, "notes.md");
    assert!(g.covers(&write, 0, Some("abc")));
    assert!(!g.covers(&write, 0, Some("abd")), "a changed operand does not inherit the approval");
    assert!(!g.covers(&write, 0, None));
    assert!(!g.covers(&Request::new(Kind::FsWrite, "other.md"), 0, Some("abc")));
  }

  #[test]
  fn serde_round_trip() {
    let g = Grant {
      uses_left: Some(1),
      expires_at_ms: Some(9),
      bound_digest: Some("d".into()),
      parent: Some(GrantId(3)),
      source: GrantSource::Human { request: "r1".into() },
      ..grant("net:example.com:443")
    };
    let json = serde_json::to_value(&g).unwrap();
    assert_eq!(json["id"], 7);
    assert_eq!(json["capability"], "net:example.com:443");
    assert_eq!(json["source"], serde_json::json!({ "human": { "request": "r1" } }));
    assert_eq!(json["parent"], 3);
    assert_eq!(serde_json::from_value::<Grant>(json).unwrap(), g);
    for source in [
      GrantSource::Cli,
      GrantSource::Image("demo".into()),
      GrantSource::Policy("p.toml".into()),
      GrantSource::Parent { pid: "p1".into() },
    ] {
      let text = serde_json::to_string(&source).unwrap();
      assert_eq!(serde_json::from_str::<GrantSource>(&text).unwrap(), source);
    }
  }

  #[test]
  fn sources_display_for_the_audit_log() {
    assert_eq!(GrantSource::Cli.to_string(), "cli");
    assert_eq!(GrantSource::Image("demo".into()).to_string(), "image \"demo\"");
    assert_eq!(GrantSource::Human { request: "r1".into() }.to_string(), "human request \"r1\"");
    assert_eq!(GrantSource::Parent { pid: "p\u{1b}1".into() }.to_string(), "parent \"p\\u{1b}1\"");
  }
}
