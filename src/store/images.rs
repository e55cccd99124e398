//! Stored AgentImages: `(name, version)` → the manifest text, the directory it was added
//! from and its content hash. A version, once added, never changes content.
//!
//! "Latest" is by semantic-version precedence ([`compare_versions`]), not by the time a
//! version was added: adding a 1.4.1 backport after 2.0.0 leaves 2.0.0 the latest.
//! Versions of equal precedence (differing only in build metadata) are ordered by when
//! they were added.

use std::cmp::Ordering;

use rusqlite::params;
use rusqlite::OptionalExtension;
use rusqlite::Row;

use super::db::Db;
use super::db::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
  pub name: String,
  pub version: String,
  /// `sha256:…` of the manifest text and the entry file.
  pub hash: String,
  /// The manifest, as TOML text.
  pub manifest: String,
  /// The absolute directory the manifest was added from; the entry and tool modules are
  /// relative to it.
  pub dir: String,
  pub added_ms: u64,
}

/// What [`Db::add_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
  New,
  /// The same name, version and content were already there; nothing changed.
  Unchanged,
}

fn image_row(row: &Row) -> rusqlite::Result<ImageRow> {
  Ok(ImageRow {
    name: row.get("name")?,
    version: row.get("version")?,
    hash: row.get("hash")?,
    manifest: row.get("manifest")?,
    dir: row.get("dir")?,
    added_ms: row.get::<_, i64>("added_ms")? as u64,
  })
}

/// A version's precedence key: `MAJOR.MINOR.PATCH`, an optional `-PRERELEASE` (dot-separated
/// identifiers) and an optional `+BUILD` (ignored for precedence). `None` if `text` is not
/// of that form.
pub fn parse_version(text: &str) -> Option<([u64; 3], Vec<&str>)> {
  let core_and_pre = match text.split_once('+') {
    Some((_, build)) if !ident_list_ok(build) => return None,
    Some((before, _)) => before,
    None => text,
  };
  let (core, pre) = match core_and_pre.split_once('-') {
    Some((core, pre)) if ident_list_ok(pre) => (core, pre.split('.').collect()),
    Some(_) => return None,
    None => (core_and_pre, Vec::new()),
  };
  let mut numbers = [0u64; 3];
  let mut parts = core.split('.');
  for slot in &mut numbers {
    let part = parts.next()?;
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || (part.len() > 1 && part.starts_with('0')) {
      return None;
    }
    *slot = part.parse().ok()?;
  }
  if parts.next().is_some() {
    return None;
  }
  Some((numbers, pre))
}

fn ident_list_ok(text: &str) -> bool {
  text.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Semantic-version precedence (semver.org §11): the numbers in order; then a pre-release
/// sorts before its release; pre-release identifiers compare one by one, numeric ones
/// numerically and below alphanumeric ones. Text that is not a version sorts first.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
  match (parse_version(a), parse_version(b)) {
    (None, None) => a.cmp(b),
    (None, Some(_)) => Ordering::Less,
    (Some(_), None) => Ordering::Greater,
    (Some((na, pa)), Some((nb, pb))) => na.cmp(&nb).then_with(|| match (pa.is_empty(), pb.is_empty()) {
      (true, true) => Ordering::Equal,
      (true, false) => Ordering::Greater,
      (false, true) => Ordering::Less,
      (false, false) => compare_prerelease(&pa, &pb),
    }),
  }
}

fn compare_prerelease(a: &[&str], b: &[&str]) -> Ordering {
  for (x, y) in a.iter().zip(b) {
    let order = match (x.parse::<u64>(), y.parse::<u64>()) {
      (Ok(x), Ok(y)) => x.cmp(&y),
      (Ok(_), Err(_)) => Ordering::Less,
      (Err(_), Ok(_)) => Ordering::Greater,
      (Err(_), Err(_)) => x.cmp(y),
    };
    if order != Ordering::Equal {
      return order;
    }
  }
  a.len().cmp(&b.len())
}

/// Oldest first: by name, then version precedence, then time added.
fn sort(rows: &mut [ImageRow]) {
  rows.sort_by(|a, b| {
    a.name.cmp(&b.name).then_with(|| compare_versions(&a.version, &b.version)).then(a.added_ms.cmp(&b.added_ms))
  });
}

impl Db {
  /// Stores an image version. The same `(name, version)` with the same hash is a no-op;
  /// with another hash it is refused, so a version always means one content.
  pub fn add_image(&self, row: &ImageRow) -> Result<Added, StoreError> {
    let stored = self.write(|tx| {
      let existing: Option<String> = tx
        .query_row(
          "SELECT hash FROM images WHERE name = ?1 AND version = ?2",
          params![row.name, row.version],
          |r| r.get(0),
        )
        .optional()?;
      if existing.is_none() {
        tx.execute(
          "INSERT INTO images (name, version, hash, manifest, dir, added_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
          params![row.name, row.version, row.hash, row.manifest, row.dir, row.added_ms as i64],
        )?;
      }
      Ok(existing)
    })?;
    match stored {
      None => Ok(Added::New),
      Some(hash) if hash == row.hash => Ok(Added::Unchanged),
      Some(_) => Err(StoreError::Invalid(format!(
        "image {} {} already exists with other content; bump the version",
        row.name, row.version
      ))),
    }
  }

  /// One exact version.
  pub fn image(&self, name: &str, version: &str) -> Result<Option<ImageRow>, StoreError> {
    self.read(|c| {
      c.query_row("SELECT * FROM images WHERE name = ?1 AND version = ?2", params![name, version], image_row)
        .optional()
    })
  }

  /// Every version of `name`, oldest (lowest precedence) first.
  pub fn image_versions(&self, name: &str) -> Result<Vec<ImageRow>, StoreError> {
    let mut rows = self.read(|c| {
      let mut stmt = c.prepare("SELECT * FROM images WHERE name = ?1")?;
      let rows = stmt.query_map([name], image_row)?;
      rows.collect::<rusqlite::Result<Vec<_>>>()
    })?;
    sort(&mut rows);
    Ok(rows)
  }

  /// The version of `name` with the highest precedence (see the module docs).
  pub fn latest_image(&self, name: &str) -> Result<Option<ImageRow>, StoreError> {
    Ok(self.image_versions(name)?.pop())
  }

  /// Every version of every image: by name, then oldest version first.
  pub fn images(&self) -> Result<Vec<ImageRow>, StoreError> {
    let mut rows = self.read(|c| {
      let mut stmt = c.prepare("SELECT * FROM images")?;
      let rows = stmt.query_map([], image_row)?;
      rows.collect::<rusqlite::Result<Vec<_>>>()
    })?;
    sort(&mut rows);
    Ok(rows)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn row(name: &str, version: &str, hash: &str, added_ms: u64) -> ImageRow {
    ImageRow {
      name: name.into(),
      version: version.into(),
      hash: hash.into(),
      manifest: format!("name = \"{name}\""),
      dir: "/images".into(),
      added_ms,
    }
  }

  #[test]
  fn versions_parse_as_semver() {
    assert_eq!(parse_version("1.2.3"), Some(([1, 2, 3], vec![])));
    assert_eq!(parse_version("1.0.0-rc.1+build.5"), Some(([1, 0, 0], vec!["rc", "1"])));
    for bad in ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "1.2.3-", "1.2.3+", "1.2.3-a..b", "v1.2.3", "1.2.3 "] {
      assert_eq!(parse_version(bad), None, "{bad:?}");
    }
  }

  #[test]
  fn precedence_follows_semver() {
    let ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0", "1.2.0", "1.10.0", "2.0.0"];
    for pair in ordered.windows(2) {
      assert_eq!(compare_versions(pair[0], pair[1]), Ordering::Less, "{pair:?}");
      assert_eq!(compare_versions(pair[1], pair[0]), Ordering::Greater, "{pair:?}");
    }
    assert_eq!(compare_versions("1.0.0+a", "1.0.0+b"), Ordering::Equal);
  }

  #[test]
  fn add_is_idempotent_and_a_version_never_changes_content() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.add_image(&row("agent", "1.0.0", "sha256:a", 1)).unwrap(), Added::New);
    assert_eq!(db.add_image(&row("agent", "1.0.0", "sha256:a", 2)).unwrap(), Added::Unchanged);
    let err = db.add_image(&row("agent", "1.0.0", "sha256:b", 3)).unwrap_err();
    assert_eq!(err.to_string(), "image agent 1.0.0 already exists with other content; bump the version");
    assert_eq!(db.image("agent", "1.0.0").unwrap().unwrap().hash, "sha256:a");
    assert_eq!(db.image("agent", "1.0.0").unwrap().unwrap().added_ms, 1);
    assert_eq!(db.image("agent", "2.0.0").unwrap(), None);
  }

  #[test]
  fn latest_is_by_precedence_not_by_time_added() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.add_image(&row("agent", "1.10.0", "h1", 1)).unwrap();
    db.add_image(&row("agent", "2.0.0-rc.1", "h2", 2)).unwrap();
    db.add_image(&row("agent", "1.9.0", "h3", 3)).unwrap();
    db.add_image(&row("other", "9.0.0", "h4", 4)).unwrap();
    assert_eq!(db.latest_image("agent").unwrap().unwrap().version, "2.0.0-rc.1");
    db.add_image(&row("agent", "2.0.0", "h5", 5)).unwrap();
    assert_eq!(db.latest_image("agent").unwrap().unwrap().version, "2.0.0");
    assert_eq!(db.latest_image("nobody").unwrap(), None);
    let versions: Vec<_> = db.image_versions("agent").unwrap().into_iter().map(|r| r.version).collect();
    assert_eq!(versions, ["1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]);
    let all: Vec<_> = db.images().unwrap().into_iter().map(|r| format!("{}@{}", r.name, r.version)).collect();
    assert_eq!(all, ["agent@1.9.0", "agent@1.10.0", "agent@2.0.0-rc.1", "agent@2.0.0", "other@9.0.0"]);
  }
}
