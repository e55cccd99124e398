//! The built-in AgentImages (`images/NAME/`: base-agent, coding-agent, toolmaker-agent,
//! review-agent), compiled into the binary. They are data like any added image: a process
//! needs a real entry file, so the first `alos spawn NAME` writes an image's files to
//! `<state>/images/builtin/NAME/` (a directory no capability reaches, so no agent can
//! edit its own image) and opens it from there like an added one. An added image of the
//! same name takes precedence.

use std::path::Path;
use std::path::PathBuf;

use crate::kernel::image::content_hash;
use crate::kernel::image::Image;
use crate::kernel::image::Manifest;

/// The sub-agent every built-in image can fork (`spawn_agent({ entry: "worker.ts" })`).
const WORKER: &str = include_str!("../../images/worker.ts");

pub struct Builtin {
  pub name: &'static str,
  pub manifest: &'static str,
  pub entry: &'static str,
}

macro_rules! builtins {
  ($($name:literal),* $(,)?) => {
    &[$(Builtin {
      name: $name,
      manifest: include_str!(concat!("../../images/", $name, "/image.toml")),
      entry: include_str!(concat!("../../images/", $name, "/agent.ts")),
    },)*]
  };
}

static BUILTINS: &[Builtin] = builtins!["base-agent", "coding-agent", "toolmaker-agent", "review-agent"];

/// Every built-in image.
pub fn all() -> &'static [Builtin] {
  BUILTINS
}

/// The built-in image `name`, if there is one.
pub fn get(name: &str) -> Option<&'static Builtin> {
  BUILTINS.iter().find(|b| b.name == name)
}

impl Builtin {
  /// The checked manifest (built-ins are checked by a unit test, so this holds).
  pub fn manifest(&self) -> Manifest {
    Manifest::check(self.manifest, None).unwrap_or_else(|problems| panic!("built-in image {}: {problems:?}", self.name))
  }

  /// The content hash, as `alos image add` would compute it.
  pub fn hash(&self) -> String {
    content_hash(self.manifest, self.entry.as_bytes())
  }

  /// Where its files are written under the state directory.
  pub fn dir(&self, state_dir: &Path) -> PathBuf {
    state_dir.join("images").join("builtin").join(self.name)
  }

  /// Writes the image's files under `state_dir` (each only if it differs, atomically)
  /// and opens it.
  pub fn materialise(&self, state_dir: &Path) -> Result<Image, String> {
    let dir = self.dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, text) in [("image.toml", self.manifest), ("agent.ts", self.entry), ("worker.ts", WORKER)] {
      write_if_changed(&dir.join(file), text)?;
    }
    let source = format!("built-in image {}", self.name);
    Image::open(self.manifest.to_string(), dir, &source).map_err(|e| e.to_string())
  }
}

/// Replaces `path` with `text` unless it already holds exactly that; a concurrent
/// `alos` sees either the old file or the new one (rename), never half of one.
fn write_if_changed(path: &Path, text: &str) -> Result<(), String> {
  if std::fs::read(path).is_ok_and(|bytes| bytes == text.as_bytes()) {
    return Ok(());
  }
  let tmp = path.with_extension(format!("tmp{}", std::process::id()));
  std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
  std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn every_builtin_image_is_valid_and_named_after_its_directory() {
    for builtin in all() {
      let manifest = builtin.manifest();
      assert_eq!(manifest.name, builtin.name);
      assert_eq!(manifest.entry, "agent.ts");
      assert!(manifest.description.is_some(), "{}: no description", builtin.name);
      assert!(builtin.entry.contains("from \"libos:agent\""), "{}: its entry is not the agent loop", builtin.name);
    }
    let on_disk: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("images"))
      .unwrap()
      .map(|e| e.unwrap())
      .filter(|e| e.path().is_dir())
      .map(|e| e.file_name().into_string().unwrap())
      .collect();
    let mut listed: Vec<String> = all().iter().map(|b| b.name.to_string()).collect();
    let mut on_disk = on_disk;
    on_disk.sort();
    listed.sort();
    assert_eq!(on_disk, listed, "images/ and the built-in list differ");
  }

  #[test]
  fn the_review_agent_can_never_write() {
    let manifest = get("review-agent").unwrap().manifest();
    for cap in ["fs.write:x", "fs.delete:x", "shell:sh", "net:example.com:443", "tool.register", "proc.spawn"] {
      assert!(!crate::kernel::image::within(&manifest.ceiling, &cap.parse().unwrap()), "{cap} is within its ceiling");
    }
  }

  #[test]
  fn materialising_writes_the_files_and_opens_the_same_hash() {
    let state = tempfile::tempdir().unwrap();
    let builtin = get("coding-agent").unwrap();
    let image = builtin.materialise(state.path()).unwrap();
    assert_eq!(image.id(), "coding-agent@1.0.0");
    assert_eq!(image.hash, builtin.hash());
    assert!(image.dir.join("worker.ts").is_file());
    // A tampered file is put back.
    std::fs::write(image.dir.join("agent.ts"), "libos.exit('evil')").unwrap();
    assert_eq!(builtin.materialise(state.path()).unwrap().hash, builtin.hash());
    assert!(get("nope").is_none());
  }
}
