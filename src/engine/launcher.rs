//! The kernel's `Launcher`, implemented with isolates: every process, root or child,
//! runs on an isolate thread of its own, and how the isolate ended becomes the
//! process's exit status. At most `max_isolates` run at once; the others queue in
//! order for a slot, and a process that hibernates or ends gives its slot back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

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

/// The default bound on isolates running at once in one host.
pub const DEFAULT_MAX_ISOLATES: usize = 64;

pub struct IsolateLauncher {
  limits: IsolateLimits,
  builtins: Builtins,
  slots: Arc<Slots>,
}

impl IsolateLauncher {
  pub fn new(limits: IsolateLimits, builtins: Builtins, max_isolates: usize) -> IsolateLauncher {
    IsolateLauncher { limits, builtins, slots: Arc::new(Slots { max: max_isolates.max(1), state: Mutex::default() }) }
  }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fair (first come, first served) bound on running isolates.
struct Slots {
  max: usize,
  /// Isolates running, and launches waiting for a slot.
  state: Mutex<(usize, VecDeque<Job>)>,
}

impl Slots {
  fn submit(&self, job: Job) {
    let run_now = {
      let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
      if state.0 < self.max {
        state.0 += 1;
        Some(job)
      } else {
        state.1.push_back(job);
        None
      }
    };
    if let Some(job) = run_now {
      job();
    }
  }

  /// A slot is free: the next waiting launch takes it.
  fn release(&self) {
    let next = {
      let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
      let next = state.1.pop_front();
      if next.is_none() {
        state.0 -= 1;
      }
      next
    };
    if let Some(job) = next {
      job();
    }
  }
}

impl Launcher for IsolateLauncher {
  fn launch(&self, kernel: &Kernel, launch: Launch) -> Result<(), String> {
    let (kernel, limits, builtins, slots) = (kernel.clone(), self.limits, self.builtins, self.slots.clone());
    self.slots.submit(Box::new(move || {
      if let Err(why) = start(&kernel, launch, limits, builtins, slots.clone()) {
        slots.release();
        tracing::error!("{why}");
      }
    }));
    Ok(())
  }
}

fn start(kernel: &Kernel, launch: Launch, limits: IsolateLimits, builtins: Builtins, slots: Arc<Slots>) -> Result<(), String> {
  let pid = launch.pid;
  let failed_pid = pid.clone();
  let fail = |why: String| {
    kernel.finish(&failed_pid, ExitStatus::Error { class: None, error: format!("could not start: {why}") });
    why
  };
  let spec = IsolateSpec {
    pid: pid.clone(),
    entry: launch.entry,
    root: launch.script_root,
    broker: Arc::new(kernel.clone()),
    limits,
    builtins,
  };
  let attach_to = kernel.clone();
  let attach_pid = pid.clone();
  let isolate = Isolate::start(spec, move |stopper| {
    let stopper = stopper.clone();
    attach_to.attach(&attach_pid, Box::new(move || stopper.stop()));
  })
  .map_err(|e| fail(e.to_string()))?;
  let reaper = kernel.clone();
  std::thread::Builder::new()
    .name(format!("reap-{pid}"))
    .spawn(move || {
      let outcome = isolate.join();
      reaper.isolate_ended(&pid, exit_status(outcome));
      slots.release();
    })
    .map(|_| ())
    .map_err(|e| fail(format!("cannot start a thread to wait for the isolate: {e}")))
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
