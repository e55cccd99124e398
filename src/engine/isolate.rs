//! One isolate, on its own thread, under limits.
//!
//! A `JsRuntime` is `!Send`, so each isolate lives on a dedicated OS thread with a
//! current-thread tokio runtime (created first, so V8's foreground tasks are delivered),
//! and the outside talks to it through a [`Stopper`] and the thread's result.
//! Limits: a heap ceiling (the near-heap-limit callback terminates the script and hands
//! the engine more headroom, so the host never aborts) and a wall-clock deadline kept by
//! a watchdog thread that calls `terminate_execution` (a tokio timeout alone cannot stop
//! a synchronous `while (true) {}`). A terminated isolate is dropped, never reused.
//! Tool isolates (`tool.rs`) are built from the same parts: `limited_runtime`, the
//! `Stopper` and the `watchdog`.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use alos_ops::Broker;
use alos_ops::Caller;
use deno_core::v8;
use deno_core::JsRuntime;
use deno_core::ModuleSpecifier;
use deno_core::PollEventLoopOptions;
use deno_core::RuntimeOptions;

use super::loader::Builtins;
use super::loader::ScriptLoader;

#[derive(Debug, Clone, Copy, Default)]
pub struct IsolateLimits {
  /// Heap ceiling in bytes.
  pub heap_bytes: Option<usize>,
  /// Wall-clock time from the start of the script.
  pub wall_time: Option<Duration>,
}

pub struct IsolateSpec {
  pub pid: String,
  /// Absolute, canonical path of the entry module.
  pub entry: PathBuf,
  /// The directory the script may import modules from (the entry is inside it).
  pub root: PathBuf,
  pub broker: Arc<dyn Broker + Send + Sync>,
  pub limits: IsolateLimits,
  pub builtins: Builtins,
}

/// Why an isolate was stopped from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
  WallTime(Duration),
  Heap(usize),
  /// The kernel stopped it: the process exited, was killed, or ran out of budget.
  Stopped,
}

#[derive(Debug)]
pub enum Outcome {
  /// The entry module evaluated and its event loop drained.
  Finished,
  /// The script failed to load or compile, or threw an uncaught error: the error's
  /// class name when known, and the source-mapped error with its stack.
  Failed { class: Option<String>, text: String },
  Terminated(Termination),
}

/// Stops a running isolate from any thread. Stopping twice, or after the isolate is
/// gone, is harmless.
#[derive(Clone)]
pub struct Stopper {
  handle: v8::IsolateHandle,
  cause: Arc<Mutex<Option<Termination>>>,
  /// The isolate's event loop, to wake it when it idles on a pending op: terminating
  /// execution alone does not reach a loop that has no JavaScript to run.
  event_loop: Arc<Mutex<Option<std::task::Waker>>>,
  /// The running watchdog's control, while one runs (see [`watchdog`]).
  clock: Arc<Mutex<Option<mpsc::Sender<Tick>>>>,
}

impl Stopper {
  pub fn stop(&self) {
    self.stop_because(Termination::Stopped);
  }

  /// A stopper for `runtime`, not yet stopped.
  pub(super) fn for_runtime(runtime: &mut JsRuntime) -> Stopper {
    Stopper {
      handle: runtime.v8_isolate().thread_safe_handle(),
      cause: Arc::default(),
      event_loop: Arc::default(),
      clock: Arc::default(),
    }
  }

  pub(super) fn stop_because(&self, why: Termination) {
    let mut cause = self.cause.lock().unwrap_or_else(|e| e.into_inner());
    // The first cause wins: a heap bomb that also runs out the clock is a heap bomb.
    if cause.is_none() {
      *cause = Some(why);
    }
    drop(cause);
    self.handle.terminate_execution();
    if let Some(waker) = self.event_loop.lock().unwrap_or_else(|e| e.into_inner()).take() {
      waker.wake();
    }
  }

  /// Why the isolate was stopped, once it has been; it never runs JavaScript again.
  pub(super) fn cause(&self) -> Option<Termination> {
    self.cause.lock().unwrap_or_else(|e| e.into_inner()).clone()
  }

  /// Called on each poll of the isolate's event loop, so a stop wakes it.
  pub(super) fn watch(&self, cx: &std::task::Context<'_>) {
    *self.event_loop.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
  }

  /// Drops the event loop's waker: stoppers outlive the isolate (the kernel keeps one
  /// per process), and the waker would keep the thread's event-loop driver and its
  /// descriptors alive.
  pub(super) fn unwatch(&self) {
    self.event_loop.lock().unwrap_or_else(|e| e.into_inner()).take();
  }

  /// Stops the wall-time clock while the isolate waits for a human (an approval, an
  /// answer): such a wait is not the script running. Pauses nest; each needs a resume.
  pub fn pause_clock(&self) {
    self.tick(Tick::Pause);
  }

  pub fn resume_clock(&self) {
    self.tick(Tick::Resume);
  }

  fn tick(&self, tick: Tick) {
    if let Some(clock) = self.clock.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
      let _ = clock.send(tick);
    }
  }
}

/// What a watchdog is told besides "done" (its control being dropped).
pub(super) enum Tick {
  Pause,
  Resume,
}

/// A running watchdog: dropping it ends the watch.
pub(super) struct Deadline {
  clock: Arc<Mutex<Option<mpsc::Sender<Tick>>>>,
}

impl Drop for Deadline {
  fn drop(&mut self) {
    // The only sender: the watchdog thread sees the channel close and ends.
    self.clock.lock().unwrap_or_else(|e| e.into_inner()).take();
  }
}

/// A running isolate.
pub struct Isolate {
  thread: JoinHandle<Outcome>,
  stopper: Stopper,
}

impl Isolate {
  /// Starts the isolate thread and returns once the runtime exists (so it can be
  /// stopped) but before the entry module runs; `ready` is called with the stopper
  /// first, so the kernel can stop the isolate from the script's very first syscall.
  pub fn start(spec: IsolateSpec, ready: impl FnOnce(&Stopper) + Send + 'static) -> std::io::Result<Isolate> {
    let (tx, rx) = mpsc::sync_channel::<Result<Stopper, String>>(1);
    let thread = std::thread::Builder::new()
      .name(format!("isolate-{}", spec.pid))
      .spawn(move || run(spec, tx, ready))?;
    match rx.recv() {
      Ok(Ok(stopper)) => Ok(Isolate { thread, stopper }),
      Ok(Err(message)) => Err(std::io::Error::other(message)),
      Err(_) => {
        let message = match thread.join() {
          Err(panic) => panic_message(&panic),
          Ok(_) => "isolate thread ended before it started".to_string(),
        };
        Err(std::io::Error::other(message))
      }
    }
  }

  pub fn stopper(&self) -> &Stopper {
    &self.stopper
  }

  /// Waits for the script to end.
  pub fn join(self) -> Outcome {
    match self.thread.join() {
      Ok(outcome) => outcome,
      Err(panic) => Outcome::Failed { class: None, text: format!("the isolate thread panicked: {}", panic_message(&panic)) },
    }
  }
}

pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
  panic
    .downcast_ref::<String>()
    .cloned()
    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
    .unwrap_or_else(|| "unknown panic".to_string())
}

fn run(
  spec: IsolateSpec,
  ready_tx: mpsc::SyncSender<Result<Stopper, String>>,
  ready: impl FnOnce(&Stopper),
) -> Outcome {
  let tokio = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
    Ok(rt) => rt,
    Err(e) => {
      let _ = ready_tx.send(Err(format!("cannot start the isolate's event loop: {e}")));
      return Outcome::Failed { class: None, text: e.to_string() };
    }
  };
  tokio.block_on(async move {
    let root = spec.root.clone();
    let loader = match ScriptLoader::new(&root, Some(&spec.entry), spec.builtins) {
      Ok(loader) => loader,
      Err(e) => {
        let message = format!("cannot open the script directory {}: {e}", root.display());
        let _ = ready_tx.send(Err(message.clone()));
        return Outcome::Failed { class: None, text: message };
      }
    };
    let entry_url = match ModuleSpecifier::from_file_path(&spec.entry) {
      Ok(url) => url,
      Err(()) => {
        let message = format!("entry path {} is not absolute", spec.entry.display());
        let _ = ready_tx.send(Err(message.clone()));
        return Outcome::Failed { class: None, text: message };
      }
    };

    let caller = Caller { pid: spec.pid.clone(), broker: spec.broker };
    let (mut runtime, stopper) = limited_runtime(caller, Rc::new(loader), spec.limits.heap_bytes);
    // The watchdog ends when `_deadline` is dropped at the end of this function.
    let _deadline = spec.limits.wall_time.map(|limit| watchdog(stopper.clone(), limit));
    ready(&stopper);
    if ready_tx.send(Ok(stopper.clone())).is_err() {
      return Outcome::Terminated(Termination::Stopped);
    }

    let result = async {
      let id = runtime.load_main_es_module(&entry_url).await?;
      let evaluated = runtime.mod_evaluate(id);
      // Drive the event loop ourselves so a stopped isolate is left at once: after
      // `terminate_execution` the module's evaluation never settles, and waiting for it
      // would only spin.
      std::future::poll_fn(|cx| {
        stopper.watch(cx);
        match stopper.cause() {
          Some(_) => std::task::Poll::Ready(Ok(())),
          None => runtime.poll_event_loop(cx, PollEventLoopOptions::default()),
        }
      })
      .await?;
      match stopper.cause() {
        Some(_) => Ok(()),
        None => evaluated.await,
      }
    }
    .await;
    stopper.unwatch();
    match (result, stopper.cause()) {
      (_, Some(cause)) => Outcome::Terminated(cause),
      (Ok(()), None) => Outcome::Finished,
      (Err(error), None) => failure(error),
    }
  })
}

/// A runtime under a heap ceiling, and the stopper that ends it. The near-heap-limit
/// callback stops the isolate and hands the engine more headroom, so it can unwind
/// instead of aborting the host.
pub(super) fn limited_runtime(
  caller: Caller,
  loader: Rc<ScriptLoader>,
  heap_bytes: Option<usize>,
) -> (JsRuntime, Stopper) {
  let create_params = heap_bytes.map(|max| v8::CreateParams::default().heap_limits(0, max));
  let mut runtime = new_runtime(caller, loader, create_params);
  let stopper = Stopper::for_runtime(&mut runtime);
  if let Some(max) = heap_bytes {
    let heap_stopper = stopper.clone();
    runtime.add_near_heap_limit_callback(move |current, _initial| {
      heap_stopper.stop_because(Termination::Heap(max));
      // The callback may fire again while unwinding; each time it grants the same
      // factor, bounded by the termination already under way.
      current.saturating_mul(2)
    });
  }
  (runtime, stopper)
}

/// The one place a `JsRuntime` is configured: the broker ops and the confined loader,
/// nothing else.
fn new_runtime(caller: Caller, loader: Rc<ScriptLoader>, create_params: Option<v8::CreateParams>) -> JsRuntime {
  JsRuntime::new(RuntimeOptions {
    module_loader: Some(loader),
    extensions: vec![alos_ops::extension(caller)],
    create_params,
    ..Default::default()
  })
}

/// The names of every op a script's isolate has, in registration order.
pub fn op_names() -> Vec<String> {
  struct NoBroker;
  impl Broker for NoBroker {
    fn syscall(&self, _: &str, _: &str, _: serde_json::Value) -> alos_ops::Reply {
      Ok(serde_json::json!({ "pid": "", "args": [] }))
    }
    fn syscall_async(&self, pid: &str, name: &str, args: serde_json::Value) -> alos_ops::PendingReply {
      Box::pin(std::future::ready(self.syscall(pid, name, args)))
    }
  }
  std::thread::spawn(|| {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let _guard = tokio.enter();
    let loader = ScriptLoader::new(&std::env::temp_dir(), None, &[]).expect("temp dir");
    let runtime = new_runtime(Caller { pid: String::new(), broker: Arc::new(NoBroker) }, Rc::new(loader), None);
    runtime.op_names().into_iter().map(str::to_string).collect()
  })
  .join()
  .expect("op listing thread")
}

fn failure(error: deno_core::error::CoreError) -> Outcome {
  match error.into_kind() {
    deno_core::error::CoreErrorKind::Js(js) => Outcome::Failed { class: js.name.clone(), text: js.to_string() },
    other => Outcome::Failed { class: None, text: other.to_string() },
  }
}

/// Terminates the isolate when `limit` passes, unless the returned sender is dropped
/// first.
pub(super) fn watchdog(stopper: Stopper, limit: Duration) -> Deadline {
  let (clock, ticks) = mpsc::channel::<Tick>();
  let watched = stopper.clone();
  let spawned = std::thread::Builder::new().name("isolate-watchdog".into()).spawn(move || {
    // Only running time counts: the clock stops while a human is being waited for.
    let (mut left, mut paused) = (limit, 0u32);
    loop {
      if paused > 0 {
        match ticks.recv() {
          Ok(Tick::Pause) => paused += 1,
          Ok(Tick::Resume) => paused -= 1,
          Err(_) => return,
        }
        continue;
      }
      let started = std::time::Instant::now();
      match ticks.recv_timeout(left) {
        Err(mpsc::RecvTimeoutError::Timeout) => return watched.stop_because(Termination::WallTime(limit)),
        Err(mpsc::RecvTimeoutError::Disconnected) => return,
        Ok(tick) => {
          left = left.saturating_sub(started.elapsed());
          // A resume without a pause (one that raced the start) changes nothing.
          if let Tick::Pause = tick {
            paused = 1;
          }
        }
      }
    }
  });
  if let Err(e) = spawned {
    // Without a watchdog the limit cannot be kept: stop now rather than run unbounded.
    tracing::error!("cannot start the watchdog thread ({e}); stopping the isolate");
    stopper.stop_because(Termination::WallTime(limit));
  }
  *stopper.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(clock);
  Deadline { clock: stopper.clock.clone() }
}
