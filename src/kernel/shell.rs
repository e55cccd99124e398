//! The `shell.exec` primitive: argv only, never a shell string. The program is resolved
//! in the kernel's configured search path when the decision is made. That exact file
//! (held open) is what runs, in a cwd confined to the workspace, with only the
//! environment the caller passes, and with bounded time and output.
//!
//! The operation an approval is bound to covers the program's content and the content
//! of every workspace file named in the arguments. An approval of `sh a.sh` therefore
//! does not apply once `a.sh` has changed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::Value;
use sha2::Digest;
use sha2::Sha256;

use super::error::SyscallError;
use super::Kernel;
use crate::provider::fs::WsPath;
use crate::provider::shell;
use crate::provider::shell::ExecOptions;
use crate::provider::shell::Program;
use crate::provider::shell::ShellError;

/// Where programs are looked up by default; the agent's environment never changes it
/// (the operator can, with `alos run --shell-path`).
pub const SEARCH_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Arguments naming workspace files up to this size are digested into the operation.
const MAX_DIGESTED_ARG_FILE: u64 = 16 << 20;

/// Arguments of `shell.exec`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShellArgs {
  pub program: String,
  #[serde(default)]
  pub args: Vec<String>,
  #[serde(default)]
  pub cwd: Option<String>,
  #[serde(default)]
  pub stdin: Option<String>,
  #[serde(default)]
  pub timeout_ms: Option<u64>,
  #[serde(default)]
  pub env: BTreeMap<String, String>,
}

/// A shell call ready to decide and run: the resolved program and the digest of exactly
/// what would run.
pub struct Prepared {
  pub program: Program,
  pub cwd: WsPath,
  pub op_digest: String,
  /// What a human approving it is shown.
  pub detail: String,
}

fn shell_error(error: ShellError) -> SyscallError {
  let message = format!("shell.exec: {error}");
  match error {
    ShellError::NotFound { .. } => SyscallError::NotFound(message),
    ShellError::InvalidName { .. } | ShellError::InvalidArgument { .. } | ShellError::NotExecutable { .. } => {
      SyscallError::InvalidArgument(message)
    }
    ShellError::ProgramChanged { .. } => SyscallError::PermissionDenied {
      syscall: "shell.exec".into(),
      capability: String::new(),
      reason: "the program changed after it was checked".into(),
      message,
    },
    _ => SyscallError::OperationFailed(message),
  }
}

/// Checks a program name before anything is looked up.
pub fn validate_name(name: &str) -> Result<(), SyscallError> {
  shell::validate_program_name(name).map_err(shell_error)
}

impl Kernel {
  /// Where `pid` looks programs up: the search path it was started with (a resumed
  /// process keeps its own), else this host's.
  pub(super) fn shell_path_of(&self, pid: &str) -> Vec<std::path::PathBuf> {
    super::lock(&self.0.processes).get(pid).and_then(|p| p.shell_path.clone()).unwrap_or_else(|| self.0.shell_path.clone())
  }

  pub(super) fn prepare_shell(&self, pid: &str, args: &ShellArgs, cwd: &WsPath) -> Result<Prepared, SyscallError> {
    let program = self.0.shell.resolve(&args.program, &self.shell_path_of(pid)).map_err(shell_error)?;
    let cwd = match &args.cwd {
      None => cwd.clone(),
      Some(dir) => WsPath::resolve(cwd, dir)
        .map_err(|e| SyscallError::InvalidArgument(format!("shell.exec: cwd \"{dir}\": {e}")))?,
    };
    let mut hasher = Sha256::new();
    hasher.update(program.path().as_os_str().as_encoded_bytes());
    hasher.update(program.digest());
    hasher.update(cwd.as_str().as_bytes());
    let mut named = Vec::new();
    for arg in &args.args {
      hasher.update([0]);
      hasher.update(arg.as_bytes());
      // A workspace file named in the arguments is part of what runs (`sh a.sh`).
      let Ok(path) = WsPath::resolve(&cwd, arg) else { continue };
      if let Ok(bytes) = self.0.workspace.read(&path, MAX_DIGESTED_ARG_FILE, &|_| Ok(())) {
        let file = Sha256::digest(&bytes);
        hasher.update(file);
        named.push(format!("{path} sha256:{}", hex::encode(&file[..8])));
      }
    }
    for (key, value) in &args.env {
      hasher.update(format!("\0{key}={value}").as_bytes());
    }
    if let Some(stdin) = &args.stdin {
      hasher.update(Sha256::digest(stdin.as_bytes()));
    }
    let argv: Vec<String> = args.args.iter().map(|a| format!("{a:?}")).collect();
    // Show what actually runs: a link's target, not just its name.
    let shown = if program.real_path() == program.path() {
      program.path().display().to_string()
    } else {
      format!("{} (-> {})", program.path().display(), program.real_path().display())
    };
    let detail = format!(
      "shell.exec {shown} {} (in \"{cwd}\"; program sha256:{}{})",
      argv.join(" "),
      &program.digest_hex()[..16],
      if named.is_empty() { String::new() } else { format!("; files: {}", named.join(", ")) }
    );
    Ok(Prepared { program, cwd, op_digest: format!("sha256:{}", hex::encode(hasher.finalize())), detail })
  }

  /// Runs a prepared call on a blocking thread, so the isolate's event loop keeps going.
  pub(super) async fn exec_shell(&self, pid: &str, args: ShellArgs, prepared: Prepared) -> Result<Value, SyscallError> {
    let dir = self.0.workspace.directory(&prepared.cwd, &|_| Ok(())).map_err(|e| super::dispatch::fs_error("shell.exec", e))?;
    let mut env: Vec<(String, String)> = args.env.into_iter().collect();
    // Scripts expect a PATH; give them the configured one, never the host's.
    if !env.iter().any(|(k, _)| k == "PATH") {
      let path: Vec<String> = self.shell_path_of(pid).iter().map(|d| d.display().to_string()).collect();
      env.push(("PATH".into(), path.join(":")));
    }
    let timeout = args.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
    let stdin = args.stdin.map(String::into_bytes);
    let argv = args.args;
    let provider = self.0.shell.clone();
    let output = tokio::task::spawn_blocking(move || {
      provider.exec(
        &prepared.program,
        &argv,
        ExecOptions { cwd: &dir, stdin, env, timeout, max_output_bytes: MAX_OUTPUT_BYTES },
      )
    })
    .await
    .map_err(|e| SyscallError::OperationFailed(format!("shell.exec: the command's thread failed: {e}")))?
    .map_err(shell_error)?;
    Ok(json!({
      "code": output.status.code(),
      "signal": match output.status { shell::ExitStatus::Signaled(sig) => Some(sig), _ => None },
      "stdout": String::from_utf8_lossy(&output.stdout),
      "stderr": String::from_utf8_lossy(&output.stderr),
      "stdoutTruncated": output.stdout_truncated,
      "stderrTruncated": output.stderr_truncated,
      "timedOut": output.timed_out,
      "durationMs": output.duration.as_millis() as u64,
    }))
  }
}
