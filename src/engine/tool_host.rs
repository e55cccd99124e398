//! The engine side of the tool table: the kernel's [`ToolHost`].
//!
//! Tool calls are cheap after the first: each (process, tool) pair keeps its tool's
//! isolate warm between calls (a "frame"), and a frame whose isolate was stopped (a
//! limit hit, a runaway call) or whose tool changed is started afresh. Frames are
//! per process, so state a tool leaves in its globals never reaches another process
//! or another tool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use serde_json::json;
use serde_json::Value;

use super::tool::ToolFailure;
use super::tool::ToolIsolate;
use super::tool::ToolLimits;
use super::tool::ToolSource;
use crate::kernel::error::SyscallError;
use crate::kernel::tools::Analyzed;
use crate::kernel::tools::Tested;
use crate::kernel::tools::ToolCode;
use crate::kernel::tools::ToolFuture;
use crate::kernel::tools::ToolHost;
use crate::kernel::Kernel;

/// Heap of one tool isolate.
pub const TOOL_HEAP_BYTES: usize = 128 << 20;
/// Largest result a tool may return (serialized JSON).
pub const TOOL_MAX_RESULT_BYTES: usize = 4 << 20;

struct Frame {
  url: String,
  source_hash: String,
  isolate: Arc<ToolIsolate>,
}

type Frames = Arc<Mutex<HashMap<String, Frame>>>;

pub struct EngineToolHost {
  limits: ToolLimits,
  frames: Frames,
}

impl EngineToolHost {
  pub fn new(limits: ToolLimits) -> EngineToolHost {
    EngineToolHost { limits, frames: Frames::default() }
  }
}

/// The frame's warm isolate for `code`, or a new one.
fn isolate(
  frames: &Frames,
  limits: &ToolLimits,
  kernel: &Kernel,
  frame: &str,
  code: &ToolCode,
) -> Result<Arc<ToolIsolate>, SyscallError> {
  let hash = crate::store::blob_hash(code.source.as_bytes());
  let stale = {
    let mut frames = frames.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(warm) = frames.get(frame) {
      if warm.url == code.url && warm.source_hash == hash && !warm.isolate.is_dead() {
        return Ok(warm.isolate.clone());
      }
    }
    frames.remove(frame)
  };
  // Dropping a stopped isolate joins its thread: outside the lock.
  drop(stale);
  let source = ToolSource { url: code.url.clone(), code: code.source.clone(), dir: file_dir(&code.url) };
  let isolate = ToolIsolate::start(frame.to_string(), source, Arc::new(kernel.clone()), *limits)
    .map_err(|e| failure(frame, e))?;
  let isolate = Arc::new(isolate);
  let fresh = Frame { url: code.url.clone(), source_hash: hash, isolate: isolate.clone() };
  // A concurrent start (a pre-warm racing the first call) replaces the other one; that
  // one is dropped once its callers are done, outside the lock.
  let replaced = frames.lock().unwrap_or_else(|e| e.into_inner()).insert(frame.to_string(), fresh);
  drop(replaced);
  Ok(isolate)
}

/// The directory of a `file://` tool module (its relative imports stay inside it).
fn file_dir(url: &str) -> Option<std::path::PathBuf> {
  let path = url::Url::parse(url).ok().filter(|u| u.scheme() == "file")?.to_file_path().ok()?;
  path.parent().map(std::path::Path::to_path_buf)
}

/// A failed tool call as its caller sees it.
fn failure(frame: &str, error: ToolFailure) -> SyscallError {
  let tool = crate::kernel::tools::split_frame(frame).map_or(frame, |(_, tool)| tool);
  match error {
    ToolFailure::Threw { class, message } => {
      let text = format!("tool {tool}: {message}");
      match class.as_deref() {
        Some("PermissionDenied") => SyscallError::PermissionDenied {
          syscall: "tools.call".into(),
          capability: String::new(),
          reason: format!("inside tool {tool}"),
          message: text,
        },
        Some("InvalidArgument" | "TypeError" | "RangeError" | "SyntaxError") => SyscallError::InvalidArgument(text),
        Some("NotFound") => SyscallError::NotFound(text),
        Some("Conflict") => SyscallError::Conflict(text),
        Some("LimitExceeded") => SyscallError::LimitExceeded(text),
        Some("Timeout") => SyscallError::Timeout(text),
        Some("Cancelled") => SyscallError::Cancelled(text),
        _ => SyscallError::OperationFailed(text),
      }
    }
    ToolFailure::ResultTooLarge { bytes, limit } => {
      SyscallError::LimitExceeded(format!("tool {tool} returned {bytes} bytes; a tool result may be at most {limit}"))
    }
    ToolFailure::Terminated(why) => SyscallError::LimitExceeded(format!("tool {tool} was stopped: {why:?}")),
    ToolFailure::Load(message) => SyscallError::OperationFailed(format!("tool {tool} cannot be loaded: {message}")),
    ToolFailure::Dead => SyscallError::OperationFailed(format!("tool {tool}: its isolate has stopped")),
  }
}

impl ToolHost for EngineToolHost {
  fn builtins(&self) -> Vec<ToolCode> {
    super::builtins::modules()
      .iter()
      .filter_map(|(name, source)| {
        name.strip_prefix("tools/").map(|_| ToolCode { url: format!("libos:{name}"), source: source.to_string() })
      })
      .collect()
  }

  fn analyze(&self, code: &ToolCode) -> Analyzed {
    let analysis = super::analysis::analyze(&code.url, &code.source);
    Analyzed {
      findings: analysis
        .findings
        .iter()
        .map(|f| json!({ "line": f.line, "col": f.col, "rule": f.rule, "message": f.message }))
        .collect(),
      spec: analysis.spec,
    }
  }

  fn test(&self, code: ToolCode, tests: Value) -> ToolFuture<Tested> {
    Box::pin(async move {
      let source = ToolSource { url: code.url.clone(), code: code.source.clone(), dir: None };
      let tests: Vec<Value> = tests.as_array().cloned().unwrap_or_default();
      let outcome = tokio::task::spawn_blocking(move || super::tool_test::run_candidate_tests(source, &tests)).await;
      match outcome {
        Ok(results) => {
          let passed = results.iter().filter(|r| r["ok"] == true).count();
          Tested { passed, failed: results.len() - passed, results: Value::Array(results) }
        }
        Err(e) => Tested { passed: 0, failed: 1, results: json!([{ "name": "(runner)", "ok": false, "message": e.to_string() }]) },
      }
    })
  }

  fn call(&self, kernel: Kernel, frame: String, code: Arc<ToolCode>, args: Value) -> ToolFuture<Result<Value, SyscallError>> {
    let isolate = isolate(&self.frames, &self.limits, &kernel, &frame, &code);
    Box::pin(async move {
      let isolate = isolate?;
      isolate.call(args).await.map(alos_ops::whole_numbers).map_err(|e| failure(&frame, e))
    })
  }

  fn prewarm(&self, kernel: Kernel, frame: String, code: Arc<ToolCode>) {
    let (frames, limits) = (self.frames.clone(), self.limits);
    // Off the caller's path: its first call then finds the isolate loaded.
    let _ = std::thread::Builder::new().name(format!("prewarm-{frame}")).spawn(move || {
      if let Err(e) = isolate(&frames, &limits, &kernel, &frame, &code) {
        tracing::debug!("pre-warming {frame} failed: {e}");
      }
    });
  }

  fn human_wait(&self, frame: &str, waiting: bool) {
    let frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(warm) = frames.get(frame) {
      if waiting {
        warm.isolate.pause_clock();
      } else {
        warm.isolate.resume_clock();
      }
    }
  }

  fn release(&self, pid: &str) {
    let prefix = format!("{pid}/");
    let released: Vec<Frame> = {
      let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
      let names: Vec<String> = frames.keys().filter(|frame| frame.starts_with(&prefix)).cloned().collect();
      names.iter().filter_map(|name| frames.remove(name)).collect()
    };
    // Dropping joins each isolate's thread: outside the lock.
    drop(released);
  }
}
