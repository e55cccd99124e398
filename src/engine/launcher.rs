//! The kernel's `Launcher`, implemented with isolates: every process, root or child,
//! runs on its own isolate thread, and how the isolate ended becomes the process's exit
//! status.

use std::sync::Arc;

use super::isolate::Isolate;
use super::isolate::IsolateLimits;
use super::isolate::IsolateSpec;
use super::isolate::Outcome;
use super::isolate::Termination;
use super::loader::Builtins;
use crate::kernel::lifecycle::Launch;
use crate::kernel::lifecycle::Launcher;
use crate::kernel::process::ExitStatus;
use crate::kernel::Kernel;

pub struct IsolateLauncher {
  pub limits: IsolateLimits,
  pub builtins: Builtins,
}

impl Launcher for IsolateLauncher {
  fn launch(&self, kernel: &Kernel, launch: Launch) -> Result<(), String> {
    let pid = launch.pid;
    let spec = IsolateSpec {
      pid: pid.clone(),
      entry: launch.entry,
      root: launch.script_root,
      broker: Arc::new(kernel.clone()),
      limits: self.limits,
      builtins: self.builtins,
    };
    let attach_to = kernel.clone();
    let attach_pid = pid.clone();
    let isolate = Isolate::start(spec, move |stopper| {
      let stopper = stopper.clone();
      attach_to.attach(&attach_pid, Box::new(move || stopper.stop()));
    })
    .map_err(|e| e.to_string())?;
    let reaper = kernel.clone();
    std::thread::Builder::new()
      .name(format!("reap-{pid}"))
      .spawn(move || {
        let outcome = isolate.join();
        reaper.finish(&pid, exit_status(outcome));
      })
      .map(|_| ())
      .map_err(|e| format!("cannot start a thread to wait for the isolate: {e}"))
  }
}

/// How the process ended, from how its isolate ended. If the kernel already ended the
/// process (`exit`, a cancel, an exhausted budget), that status stands.
pub fn exit_status(outcome: Outcome) -> ExitStatus {
  match outcome {
    Outcome::Finished => ExitStatus::Ok { result: serde_json::Value::Null },
    Outcome::Failed { class, text } => ExitStatus::Error { class, error: text },
    Outcome::Terminated(Termination::WallTime(limit)) => ExitStatus::LimitExceeded {
      limit: format!("timeout: the script ran longer than {}", humantime::format_duration(limit)),
    },
    Outcome::Terminated(Termination::Heap(bytes)) => ExitStatus::LimitExceeded {
      limit: format!("heap: the script used more than its {} MiB heap", bytes / (1024 * 1024)),
    },
    Outcome::Terminated(Termination::Stopped) => ExitStatus::Killed { reason: "stopped by the kernel".to_string() },
  }
}
