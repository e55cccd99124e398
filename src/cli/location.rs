//! Where a command finds the workspace and alos's state directory.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct Location {
  /// The workspace: the only directory a process's paths can reach.
  #[arg(long, value_name = "DIR", default_value = ".", global = true)]
  pub workspace: PathBuf,

  /// Where alos keeps its state (default: .alos/ in the workspace). No capability reaches it.
  #[arg(long, value_name = "DIR", global = true)]
  pub state: Option<PathBuf>,
}

impl Location {
  /// The workspace as an absolute, canonical directory.
  pub fn workspace_dir(&self) -> Result<PathBuf, String> {
    match self.workspace.canonicalize() {
      Ok(path) if path.is_dir() => Ok(path),
      Ok(path) => Err(format!("workspace {} is not a directory", path.display())),
      Err(e) => Err(format!("cannot open workspace {}: {e}", self.workspace.display())),
    }
  }

  /// The state directory, absolute (it may not exist yet).
  pub fn state_dir(&self) -> Result<PathBuf, String> {
    match &self.state {
      Some(dir) => std::path::absolute(dir).map_err(|e| format!("invalid state directory {}: {e}", dir.display())),
      None => Ok(self.workspace_dir()?.join(".alos")),
    }
  }
}
