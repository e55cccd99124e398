//! One tool module in its own isolate, loaded once and called many times ("warm"), from
//! any thread.
//!
//! Like a script's isolate (`isolate.rs`), a tool isolate is a dedicated OS thread with
//! a current-thread tokio runtime, under a heap ceiling and a wall-clock limit per call.
//! Calls arrive over a channel and run one at a time: `run(args)` is called and the
//! event loop driven until its promise settles. The result crosses to the host as JSON
//! text measured inside the isolate first, so an oversized result is refused before the
//! host copies any of it. A limit hit terminates the isolate: it is dead from then on.
//! Between calls the event loop is not driven; the tool's own globals persist.

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use alos_ops::Broker;
use alos_ops::Caller;
use deno_core::error::CoreError;
use deno_core::error::CoreErrorKind;
use deno_core::v8;
use deno_core::JsRuntime;
use deno_core::ModuleSpecifier;
use deno_core::PollEventLoopOptions;
use serde_json::Value;
use tokio::sync::oneshot;

use super::isolate::limited_runtime;
use super::isolate::panic_message;
use super::isolate::watchdog;
use super::isolate::Stopper;
use super::isolate::Termination;
use super::loader::Builtins;
use super::loader::ScriptLoader;

/// A tool module's source and where it comes from.
#[derive(Debug, Clone)]
pub struct ToolSource {
  /// `file:///abs/tool.ts`, `libos:tools/NAME` or `jit:<sha256>`.
  pub url: String,
  pub code: String,
  /// For a file tool, its directory (absolute, canonical): relative imports inside it
  /// are allowed. `None` for in-memory tools, which may import `libos:*` only.
  pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct ToolLimits {
  pub heap_bytes: Option<usize>,
  /// Wall-clock time for loading the module, and then for each call.
  pub call_wall_time: Option<Duration>,
  /// The largest result, in bytes of JSON text.
  pub max_result_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolFailure {
  /// The module did not load, or its default export is not a `defineTool(...)` result.
  Load(String),
  /// `run` threw (or its promise rejected): the error's class name when it has one
  /// (`NotFound`, `TypeError`, ...).
  Threw { class: Option<String>, message: String },
  /// A limit ended the isolate during this call (or the load).
  Terminated(Termination),
  /// `bytes`: the size of its JSON text (for a string result, at least this size: it
  /// is measured without the escapes, so a huge one is not copied again to find out).
  ResultTooLarge { bytes: usize, limit: usize },
  /// The isolate had already ended; start a new one.
  Dead,
}

impl std::fmt::Display for ToolFailure {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      ToolFailure::Load(why) => write!(f, "the tool could not be loaded: {why}"),
      ToolFailure::Threw { class: Some(class), message } => write!(f, "{class}: {message}"),
      ToolFailure::Threw { class: None, message } => f.write_str(message),
      ToolFailure::Terminated(Termination::WallTime(limit)) => {
        write!(f, "the tool ran longer than {} and was stopped", humantime::format_duration(*limit))
      }
      ToolFailure::Terminated(Termination::Heap(bytes)) => {
        write!(f, "the tool used more than its {} MiB heap and was stopped", bytes / (1024 * 1024))
      }
      ToolFailure::Terminated(Termination::Stopped) => f.write_str("the tool was stopped"),
      ToolFailure::ResultTooLarge { bytes, limit } => {
        write!(f, "the tool's result is {bytes} bytes of JSON, more than the {limit}-byte limit")
      }
      ToolFailure::Dead => f.write_str("the tool's isolate has ended"),
    }
  }
}

impl std::error::Error for ToolFailure {}

type CallReply = oneshot::Sender<Result<Value, ToolFailure>>;

enum Request {
  Call(Value, CallReply),
  /// The owner is gone: end the thread.
  Shutdown,
}

/// A loaded tool, ready to be called.
pub struct ToolIsolate {
  requests: tokio::sync::mpsc::UnboundedSender<Request>,
  stopper: Stopper,
  /// Set when the thread stops serving (a limit hit, or it ended).
  ended: Arc<AtomicBool>,
  spec: Value,
  thread: Option<JoinHandle<()>>,
}

/// What the thread hands back once the module has loaded.
struct Loaded {
  stopper: Stopper,
  spec: Value,
}

/// What the thread reports when loading fails; a stopper exists only if the runtime did.
type LoadResult = Result<Loaded, ToolFailure>;

impl ToolIsolate {
  /// Loads the tool with the binary's built-in modules (`libos:tool`, `libos:tools/*`).
  pub fn start(
    pid: String,
    source: ToolSource,
    broker: Arc<dyn Broker + Send + Sync>,
    limits: ToolLimits,
  ) -> Result<ToolIsolate, ToolFailure> {
    ToolIsolate::start_with_builtins(pid, source, broker, limits, super::builtins::modules())
  }

  /// Loads the tool with the given built-in modules. Returns once the module has been
  /// evaluated and its default export checked, within `limits.call_wall_time`.
  pub fn start_with_builtins(
    pid: String,
    source: ToolSource,
    broker: Arc<dyn Broker + Send + Sync>,
    limits: ToolLimits,
    builtins: Builtins,
  ) -> Result<ToolIsolate, ToolFailure> {
    let (ready_tx, ready_rx) = mpsc::sync_channel::<LoadResult>(1);
    let (requests, inbox) = tokio::sync::mpsc::unbounded_channel::<Request>();
    let ended = Arc::new(AtomicBool::new(false));
    let thread_ended = ended.clone();
    let thread = std::thread::Builder::new()
      .name(format!("tool-{pid}"))
      .spawn(move || {
        serve(Setup { pid, source, broker, limits, builtins }, ready_tx, inbox);
        thread_ended.store(true, Ordering::Release);
      })
      .map_err(|e| ToolFailure::Load(format!("cannot start the tool's thread: {e}")))?;
    match ready_rx.recv() {
      Ok(Ok(Loaded { stopper, spec })) => Ok(ToolIsolate { requests, stopper, ended, spec, thread: Some(thread) }),
      Ok(Err(failure)) => {
        let _ = thread.join();
        Err(failure)
      }
      Err(_) => Err(ToolFailure::Load(match thread.join() {
        Err(panic) => format!("the tool's thread panicked: {}", panic_message(&panic)),
        Ok(()) => "the tool's thread ended before the module loaded".to_string(),
      })),
    }
  }

  /// Runs the default export's `run(args)` and resolves with its JSON result. Calls are
  /// served one at a time, in order; the wall-time limit counts from when a call starts.
  pub fn call(&self, args: Value) -> impl Future<Output = Result<Value, ToolFailure>> + Send + 'static {
    let requests = self.requests.clone();
    async move {
      let (reply, answer) = oneshot::channel();
      requests.send(Request::Call(args, reply)).map_err(|_| ToolFailure::Dead)?;
      // The thread drops the reply without answering only when it has ended.
      answer.await.unwrap_or(Err(ToolFailure::Dead))
    }
  }

  /// Stops (and restarts) the current call's wall-time clock while the tool waits for a
  /// human: an approval may take hours, and waiting is not running.
  pub fn pause_clock(&self) {
    self.stopper.pause_clock();
  }

  pub fn resume_clock(&self) {
    self.stopper.resume_clock();
  }

  /// Terminated, limit hit or crashed: discard it and start another.
  pub fn is_dead(&self) -> bool {
    self.ended.load(Ordering::Acquire) || self.stopper.cause().is_some()
  }

  /// The default export as JSON: what `JSON.stringify` keeps of it (everything but `run`).
  pub fn spec(&self) -> &Value {
    &self.spec
  }
}

impl Drop for ToolIsolate {
  fn drop(&mut self) {
    // Stop a call in progress (queued calls then answer `Dead`), then end the thread.
    self.stopper.stop();
    let _ = self.requests.send(Request::Shutdown);
    if let Some(thread) = self.thread.take() {
      // Joining here means a dropped tool holds no thread or descriptor afterwards; a
      // tool dropped from its own thread (it cannot be: nothing there owns it) would
      // deadlock, so that case is only detached.
      if thread.thread().id() != std::thread::current().id() {
        let _ = thread.join();
      }
    }
  }
}

struct Setup {
  pid: String,
  source: ToolSource,
  broker: Arc<dyn Broker + Send + Sync>,
  limits: ToolLimits,
  builtins: Builtins,
}

/// The isolate thread: load the module, report, then serve calls until shut down or
/// terminated.
fn serve(setup: Setup, ready: mpsc::SyncSender<LoadResult>, mut inbox: tokio::sync::mpsc::UnboundedReceiver<Request>) {
  let tokio = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
    Ok(rt) => rt,
    Err(e) => {
      let _ = ready.send(Err(ToolFailure::Load(format!("cannot start the tool's event loop: {e}"))));
      return;
    }
  };
  tokio.block_on(async move {
    let Setup { pid, source, broker, limits, builtins } = setup;
    let loader = match ModuleSpecifier::parse(&source.url)
      .map_err(|e| format!("bad module URL {:?}: {e}", source.url))
      .and_then(|url| {
        ScriptLoader::in_memory(&url, source.code, source.dir.as_deref(), builtins)
          .map(|loader| (url, loader))
          .map_err(|e| e.to_string())
      }) {
      Ok(loaded) => loaded,
      Err(why) => {
        let _ = ready.send(Err(ToolFailure::Load(why)));
        return;
      }
    };
    let (url, loader) = loader;
    let (mut runtime, stopper) = limited_runtime(Caller { pid, broker }, Rc::new(loader), limits.heap_bytes);
    // Taken before any tool code runs, so a tool that replaces `JSON.stringify` cannot
    // misreport the size of its result.
    let stringify = json_stringify(&mut runtime);

    let loaded = {
      let _deadline = limits.call_wall_time.map(|limit| watchdog(stopper.clone(), limit));
      load(&mut runtime, &stopper, &url, &stringify).await
    };
    let tool = match loaded {
      Ok(tool) => tool,
      Err(failure) => {
        stopper.unwatch();
        let _ = ready.send(Err(failure));
        return;
      }
    };
    if ready.send(Ok(Loaded { stopper: stopper.clone(), spec: tool.spec })).is_err() {
      return;
    }

    while let Some(Request::Call(args, reply)) = inbox.recv().await {
      if stopper.cause().is_some() {
        let _ = reply.send(Err(ToolFailure::Dead));
        continue;
      }
      let result = {
        let _deadline = limits.call_wall_time.map(|limit| watchdog(stopper.clone(), limit));
        invoke(&mut runtime, &stopper, &tool.run, &stringify, args, limits.max_result_bytes).await
      };
      let _ = reply.send(result);
      if stopper.cause().is_some() {
        break;
      }
    }
    stopper.unwatch();
  });
}

struct Tool {
  run: v8::Global<v8::Function>,
  spec: Value,
}

/// Why driving the event loop ended without the value waited for.
enum Drive {
  Stopped(Termination),
  Failed(CoreError),
  /// The event loop has nothing left to do, yet the value is still pending.
  NeverSettles,
}

/// Polls `future` (the module's evaluation) and the event loop together until the future
/// is ready, leaving at once if the isolate is stopped (a terminated isolate's promises
/// never settle).
async fn drive<T, E>(
  runtime: &mut JsRuntime,
  stopper: &Stopper,
  mut future: impl Future<Output = Result<T, E>> + Unpin,
) -> Result<T, Drive>
where
  CoreError: From<E>,
{
  std::future::poll_fn(|cx| {
    stopper.watch(cx);
    if let Some(cause) = stopper.cause() {
      return Poll::Ready(Err(Drive::Stopped(cause)));
    }
    if let Poll::Ready(result) = poll_unpin(&mut future, cx) {
      return Poll::Ready(result.map_err(|e| Drive::Failed(e.into())));
    }
    match runtime.poll_event_loop(cx, PollEventLoopOptions::default()) {
      Poll::Pending => Poll::Pending,
      Poll::Ready(Err(error)) => Poll::Ready(Err(Drive::Failed(error))),
      Poll::Ready(Ok(())) => match poll_unpin(&mut future, cx) {
        Poll::Ready(result) => Poll::Ready(result.map_err(|e| Drive::Failed(e.into()))),
        Poll::Pending => Poll::Ready(Err(Drive::NeverSettles)),
      },
    }
  })
  .await
  .map_err(|drive| match stopper.cause() {
    // A termination surfaces as an error from whatever was running; the cause wins.
    Some(cause) => Drive::Stopped(cause),
    None => drive,
  })
}

fn poll_unpin<F: Future + Unpin>(future: &mut F, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
  std::pin::Pin::new(future).poll(cx)
}

/// The error a call or load ended with, as the caller sees it.
fn failure_of(drive: Drive) -> ToolFailure {
  match drive {
    Drive::Stopped(cause) => ToolFailure::Terminated(cause),
    Drive::Failed(error) => match error.into_kind() {
      CoreErrorKind::Js(js) => ToolFailure::Threw {
        message: js.message.clone().unwrap_or_else(|| js.exception_message.clone()),
        class: js.name,
      },
      other => ToolFailure::Threw { class: None, message: other.to_string() },
    },
    Drive::NeverSettles => ToolFailure::Threw {
      class: None,
      message: "run() returned a promise that can never settle (nothing it waits for is pending)".to_string(),
    },
  }
}

/// Loads and evaluates the module, then checks its default export.
async fn load(
  runtime: &mut JsRuntime,
  stopper: &Stopper,
  url: &ModuleSpecifier,
  stringify: &v8::Global<v8::Function>,
) -> Result<Tool, ToolFailure> {
  let id = match runtime.load_main_es_module(url).await {
    Ok(id) => id,
    Err(error) => {
      return Err(match stopper.cause() {
        Some(cause) => ToolFailure::Terminated(cause),
        None => ToolFailure::Load(error.to_string()),
      })
    }
  };
  let evaluation = runtime.mod_evaluate(id);
  drive(runtime, stopper, Box::pin(evaluation)).await.map_err(|drive| match failure_of(drive) {
    ToolFailure::Threw { class, message } => {
      ToolFailure::Load(format!("evaluating {url} threw {}: {message}", class.as_deref().unwrap_or("an error")))
    }
    other => other,
  })?;
  let namespace = runtime.get_module_namespace(id).map_err(|e| ToolFailure::Load(e.to_string()))?;

  deno_core::scope!(scope, runtime);
  let not_a_tool = |what: &str| {
    ToolFailure::Load(format!(
      "{url} does not default-export a defineTool(...) result: {what}. A tool module ends with \
       `export default defineTool({{ name, description, input, capabilities, run }})` \
       (import {{ defineTool }} from \"libos:tool\")"
    ))
  };
  let namespace = v8::Local::new(scope, namespace);
  let key = v8::String::new(scope, "default").unwrap();
  let export = namespace.get(scope, key.into()).filter(|v| !v.is_undefined());
  let Some(export) = export else {
    return Err(not_a_tool("it has no default export"));
  };
  let Some(object) = export.to_object(scope).filter(|_| export.is_object() && !export.is_array()) else {
    return Err(not_a_tool(&format!("the default export is {}", describe(scope, export))));
  };
  let key = v8::String::new(scope, "run").unwrap();
  let run = object.get(scope, key.into());
  let Some(run) = run.and_then(|run| v8::Local::<v8::Function>::try_from(run).ok()) else {
    return Err(not_a_tool("the default export has no run function"));
  };
  let run = v8::Global::new(scope, run);
  let spec = match to_json(scope, stringify, export, usize::MAX) {
    Ok(spec) => spec,
    Err(JsonError::Terminated) => return Err(ToolFailure::Terminated(stopper.cause().unwrap_or(Termination::Stopped))),
    Err(JsonError::Threw(why)) => return Err(not_a_tool(&format!("its spec is not JSON ({why})"))),
    Err(JsonError::OutOfMemory(why)) => {
      return Err(ToolFailure::Load(format!("its spec does not fit in the heap ({why})")))
    }
    Err(JsonError::TooLarge(_)) => unreachable!("no limit on the spec"),
  };
  Ok(Tool { run, spec })
}

/// One call of `run(args)`. The returned promise is watched by polling its state after
/// each turn of the event loop, not through `JsRuntime::call_with_args`: that attaches
/// Rust handlers which, if the promise never settles (the call is terminated), are
/// never freed, and with them the task waker that keeps this thread's I/O driver (two
/// descriptors) alive.
async fn invoke(
  runtime: &mut JsRuntime,
  stopper: &Stopper,
  run: &v8::Global<v8::Function>,
  stringify: &v8::Global<v8::Function>,
  args: Value,
  max_result_bytes: usize,
) -> Result<Value, ToolFailure> {
  let returned = {
    deno_core::scope!(scope, runtime);
    let args = deno_core::serde_v8::to_v8(scope, &args)
      .map_err(|e| ToolFailure::Threw { class: Some("InvalidArgument".into()), message: format!("arguments: {e}") })?;
    v8::tc_scope!(let tc, scope);
    let run = v8::Local::new(tc, run);
    let undefined = v8::undefined(tc).into();
    match run.call(tc, undefined, &[args]) {
      Some(value) => match v8::Local::<v8::Promise>::try_from(value) {
        Ok(promise) => {
          // Its rejection is ours to report, not an unhandled one.
          promise.mark_as_handled();
          Returned::Promise(v8::Global::new(tc, promise))
        }
        Err(_) => Returned::Value(v8::Global::new(tc, value)),
      },
      None if tc.has_terminated() || tc.is_execution_terminating() || stopper.cause().is_some() => {
        return Err(ToolFailure::Terminated(stopper.cause().unwrap_or(Termination::Stopped)))
      }
      None => {
        let exception = tc.exception().unwrap_or_else(|| v8::undefined(tc).into());
        return Err(threw(tc, exception));
      }
    }
  };
  let value = match returned {
    Returned::Value(value) => value,
    Returned::Promise(promise) => settle(runtime, stopper, &promise).await?,
  };

  deno_core::scope!(scope, runtime);
  let value = v8::Local::new(scope, value);
  to_json(scope, stringify, value, max_result_bytes).map_err(|error| match error {
    JsonError::TooLarge(bytes) => ToolFailure::ResultTooLarge { bytes, limit: max_result_bytes },
    JsonError::Threw(why) => ToolFailure::Threw {
      class: Some("TypeError".into()),
      message: format!("the result of run() is not JSON-serialisable: {why}"),
    },
    JsonError::OutOfMemory(why) => ToolFailure::Threw {
      class: Some("LimitExceeded".into()),
      message: format!("the result of run() is too large to serialise within the tool's heap ({why})"),
    },
    JsonError::Terminated => ToolFailure::Terminated(stopper.cause().unwrap_or(Termination::Stopped)),
  })
}

enum Returned {
  Value(v8::Global<v8::Value>),
  Promise(v8::Global<v8::Promise>),
}

/// Drives the event loop until `promise` settles, the isolate is stopped, or nothing is
/// left that could settle it.
async fn settle(
  runtime: &mut JsRuntime,
  stopper: &Stopper,
  promise: &v8::Global<v8::Promise>,
) -> Result<v8::Global<v8::Value>, ToolFailure> {
  let settled = |runtime: &mut JsRuntime| {
    deno_core::scope!(scope, runtime);
    let promise = v8::Local::new(scope, promise);
    match promise.state() {
      v8::PromiseState::Pending => None,
      v8::PromiseState::Fulfilled => Some(Ok(v8::Global::new(scope, promise.result(scope)))),
      v8::PromiseState::Rejected => {
        let reason = promise.result(scope);
        Some(Err(threw(scope, reason)))
      }
    }
  };
  std::future::poll_fn(|cx| {
    stopper.watch(cx);
    if let Some(cause) = stopper.cause() {
      return Poll::Ready(Err(ToolFailure::Terminated(cause)));
    }
    if let Some(result) = settled(runtime) {
      return Poll::Ready(result);
    }
    let turn = runtime.poll_event_loop(cx, PollEventLoopOptions::default());
    if let Some(cause) = stopper.cause() {
      return Poll::Ready(Err(ToolFailure::Terminated(cause)));
    }
    if let Some(result) = settled(runtime) {
      return Poll::Ready(result);
    }
    match turn {
      Poll::Pending => Poll::Pending,
      Poll::Ready(Err(error)) => Poll::Ready(Err(failure_of(Drive::Failed(error)))),
      Poll::Ready(Ok(())) => Poll::Ready(Err(failure_of(Drive::NeverSettles))),
    }
  })
  .await
}

/// A thrown value as the caller sees it: its class name (`NotFound`, `TypeError`) and
/// message; for a thrown non-error, its text.
fn threw<'s, 'i>(scope: &mut v8::PinScope<'s, 'i>, exception: v8::Local<'s, v8::Value>) -> ToolFailure {
  let js = deno_core::error::JsError::from_v8_exception(scope, exception);
  ToolFailure::Threw { message: js.message.clone().unwrap_or_else(|| js.exception_message.clone()), class: js.name }
}

fn json_stringify(runtime: &mut JsRuntime) -> v8::Global<v8::Function> {
  deno_core::scope!(scope, runtime);
  let global = scope.get_current_context().global(scope);
  let json = v8::String::new(scope, "JSON").unwrap();
  let json = global.get(scope, json.into()).and_then(|v| v.to_object(scope)).expect("the JSON global");
  let stringify = v8::String::new(scope, "stringify").unwrap();
  let stringify = json.get(scope, stringify.into()).expect("JSON.stringify");
  let stringify = v8::Local::<v8::Function>::try_from(stringify).expect("JSON.stringify is a function");
  v8::Global::new(scope, stringify)
}

enum JsonError {
  /// Its JSON text has (at least) this many bytes, over the limit.
  TooLarge(usize),
  /// The JSON text does not fit in the heap.
  OutOfMemory(String),
  Threw(String),
  Terminated,
}

/// `value` as JSON, through `JSON.stringify` inside the isolate: its size is known
/// before the host copies the text, and `toJSON`, `undefined` properties and the like
/// behave as JavaScript programmers expect. `undefined` itself becomes `null`.
fn to_json<'s, 'i>(
  scope: &mut v8::PinScope<'s, 'i>,
  stringify: &v8::Global<v8::Function>,
  value: v8::Local<'s, v8::Value>,
  max_bytes: usize,
) -> Result<Value, JsonError> {
  // A huge text is the usual huge result: refuse it before stringify copies it again.
  if let Ok(text) = v8::Local::<v8::String>::try_from(value) {
    let quoted = text.utf8_length(scope).saturating_add(2);
    if quoted > max_bytes {
      return Err(JsonError::TooLarge(quoted));
    }
  }
  v8::tc_scope!(let tc, scope);
  let stringify = v8::Local::new(tc, stringify);
  let undefined = v8::undefined(tc).into();
  let text = stringify.call(tc, undefined, &[value]);
  let Some(text) = text else {
    if tc.has_terminated() || tc.is_execution_terminating() {
      return Err(JsonError::Terminated);
    }
    let why = tc.exception().map(|e| e.to_rust_string_lossy(tc)).unwrap_or_else(|| "it threw".to_string());
    // The engine refuses an allocation the heap cannot take with a catchable error.
    if why.contains("out of memory") || why.contains("Invalid string length") {
      return Err(JsonError::OutOfMemory(why));
    }
    return Err(JsonError::Threw(why));
  };
  if text.is_undefined() {
    return Ok(Value::Null);
  }
  let Ok(text) = v8::Local::<v8::String>::try_from(text) else {
    return Err(JsonError::Threw("JSON.stringify did not return a string".to_string()));
  };
  let bytes = text.utf8_length(tc);
  if bytes > max_bytes {
    return Err(JsonError::TooLarge(bytes));
  }
  serde_json::from_str(&text.to_rust_string_lossy(tc)).map_err(|e| JsonError::Threw(e.to_string()))
}

fn describe<'s, 'i>(scope: &mut v8::PinScope<'s, 'i>, value: v8::Local<'s, v8::Value>) -> String {
  if value.is_null() {
    "null".to_string()
  } else if value.is_array() {
    "an array".to_string()
  } else if value.is_function() {
    "a function".to_string()
  } else {
    let kind = value.type_of(scope).to_rust_string_lossy(scope);
    format!("a {kind}")
  }
}

#[cfg(test)]
mod tests {
  use serde_json::json;

  use super::*;
  use crate::engine::mock::MockBroker;

  const BUILTINS: Builtins = &[("tool", include_str!("../../js/tool.js"))];

  fn limits() -> ToolLimits {
    ToolLimits { heap_bytes: Some(64 << 20), call_wall_time: Some(Duration::from_secs(20)), max_result_bytes: 1 << 20 }
  }

  fn jit(code: &str) -> ToolSource {
    ToolSource { url: "jit:abc123".into(), code: code.into(), dir: None }
  }

  fn tool(run: &str) -> String {
    format!(
      "import {{ defineTool }} from \"libos:tool\";\n\
       export default defineTool({{ name: \"t\", description: \"a test tool\", input: {{ type: \"object\" }},\n\
       capabilities: [\"fs.read:**\"], run: {run} }});\n"
    )
  }

  fn start_with(code: &str, rules: Value, limits: ToolLimits) -> Result<ToolIsolate, ToolFailure> {
    let broker = Arc::new(MockBroker::from_json(&rules).unwrap());
    ToolIsolate::start_with_builtins("p-tool".into(), jit(code), broker, limits, BUILTINS)
  }

  fn start(code: &str) -> ToolIsolate {
    start_with(code, json!([]), limits()).unwrap()
  }

  fn call(isolate: &ToolIsolate, args: Value) -> Result<Value, ToolFailure> {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(isolate.call(args))
  }

  fn load_error(code: &str) -> String {
    match start_with(code, json!([]), limits()) {
      Err(ToolFailure::Load(why)) => why,
      Err(other) => panic!("not a load error: {other:?}"),
      Ok(_) => panic!("the module loaded"),
    }
  }

  #[test]
  fn the_spec_is_the_default_export_without_run() {
    let isolate = start(&tool("async (args) => args"));
    assert_eq!(
      isolate.spec(),
      &json!({ "name": "t", "description": "a test tool", "input": { "type": "object" }, "capabilities": ["fs.read:**"] })
    );
  }

  #[test]
  fn calls_return_json_and_the_isolate_stays_warm() {
    let isolate = start(&tool(
      "(args) => { globalThis.count = (globalThis.count ?? 0) + 1; return { args, count: globalThis.count }; }",
    ));
    assert_eq!(call(&isolate, json!({ "a": 1 })), Ok(json!({ "args": { "a": 1 }, "count": 1 })));
    assert_eq!(call(&isolate, json!([true])), Ok(json!({ "args": [true], "count": 2 })));
    assert!(!isolate.is_dead());
  }

  #[test]
  fn undefined_becomes_null_and_json_rules_apply() {
    let isolate =
      start(&tool("(args) => args.kind === 'u' ? undefined : { when: { toJSON: () => 'now' }, gone: undefined }"));
    assert_eq!(call(&isolate, json!({ "kind": "u" })), Ok(Value::Null));
    assert_eq!(call(&isolate, json!({})), Ok(json!({ "when": "now" })));
  }

  #[test]
  fn typescript_is_transpiled_for_in_memory_tools() {
    let isolate = start(&tool("async (args: { n: number }): Promise<number> => args.n * 2"));
    assert_eq!(call(&isolate, json!({ "n": 21 })), Ok(json!(42)));
  }

  #[test]
  fn syscalls_go_to_the_broker_with_the_pid() {
    let rules = json!([{ "call": "fs.readText", "args": { "path": "a.txt" }, "reply": { "ok": "hello" } }]);
    let isolate = start_with(
      &tool("async ({ path }) => ({ text: await libos.fs.readText(path), pid: libos.pid })"),
      rules,
      limits(),
    )
    .unwrap();
    assert_eq!(call(&isolate, json!({ "path": "a.txt" })), Ok(json!({ "text": "hello", "pid": "p-tool" })));
  }

  #[test]
  fn a_thrown_libos_error_keeps_its_class() {
    let rules =
      json!([{ "call": "fs.readText", "reply": { "err": { "class": "NotFound", "message": "no such file" } } }]);
    let isolate = start_with(&tool("async ({ path }) => libos.fs.readText(path)"), rules, limits()).unwrap();
    assert_eq!(
      call(&isolate, json!({ "path": "x" })),
      Err(ToolFailure::Threw { class: Some("NotFound".into()), message: "no such file".into() })
    );
    assert!(!isolate.is_dead(), "a thrown error does not end the isolate");
  }

  #[test]
  fn other_throws_keep_their_name_or_none() {
    let isolate = start(&tool("(args) => { if (args.s) throw 'plain'; throw new RangeError('too far'); }"));
    assert_eq!(
      call(&isolate, json!({})),
      Err(ToolFailure::Threw { class: Some("RangeError".into()), message: "too far".into() })
    );
    match call(&isolate, json!({ "s": true })) {
      Err(ToolFailure::Threw { class: None, message }) => assert!(message.contains("plain"), "{message}"),
      other => panic!("{other:?}"),
    }
  }

  #[test]
  fn a_promise_that_can_never_settle_is_an_error_not_a_hang() {
    let isolate = start(&tool("() => new Promise(() => {})"));
    match call(&isolate, json!({})) {
      Err(ToolFailure::Threw { message, .. }) => assert!(message.contains("can never settle"), "{message}"),
      other => panic!("{other:?}"),
    }
  }

  #[test]
  fn a_result_over_the_limit_is_refused() {
    let small = ToolLimits { max_result_bytes: 100, ..limits() };
    let isolate = start_with(&tool("(args) => 'x'.repeat(args.n)"), json!([]), small).unwrap();
    // 98 characters plus two quotes is exactly the limit.
    assert_eq!(call(&isolate, json!({ "n": 98 })), Ok(json!("x".repeat(98))));
    assert_eq!(call(&isolate, json!({ "n": 99 })), Err(ToolFailure::ResultTooLarge { bytes: 101, limit: 100 }));
    assert!(!isolate.is_dead());
  }

  #[test]
  fn a_result_whose_json_does_not_fit_in_the_heap_is_a_limit_error() {
    let small = ToolLimits { heap_bytes: Some(32 << 20), max_result_bytes: 1 << 30, ..limits() };
    let code = tool("() => ({ text: 'x'.repeat(20 * 1024 * 1024) })");
    let isolate = start_with(&code, json!([]), small).unwrap();
    match call(&isolate, json!({})) {
      Err(ToolFailure::Threw { class: Some(class), message }) => {
        assert_eq!(class, "LimitExceeded");
        assert!(message.starts_with("the result of run() is too large to serialise within the tool's heap"), "{message}");
      }
      other => panic!("{other:?}"),
    }
  }

  #[test]
  fn a_huge_string_result_is_refused_before_it_is_serialised() {
    let isolate = start(&tool("() => 'x'.repeat(40 * 1024 * 1024)"));
    assert_eq!(call(&isolate, json!({})), Err(ToolFailure::ResultTooLarge { bytes: (40 << 20) + 2, limit: 1 << 20 }));
  }

  #[test]
  fn a_result_that_is_not_json_is_an_error() {
    let isolate = start(&tool("() => { const a = {}; a.self = a; return a; }"));
    match call(&isolate, json!({})) {
      Err(ToolFailure::Threw { class: Some(class), message }) => {
        assert_eq!(class, "TypeError");
        assert!(message.starts_with("the result of run() is not JSON-serialisable"), "{message}");
      }
      other => panic!("{other:?}"),
    }
  }

  #[test]
  fn replacing_json_stringify_does_not_fool_the_size_check() {
    let small = ToolLimits { max_result_bytes: 10, ..limits() };
    let code = tool("() => { JSON.stringify = () => '1'; return 'a long result string'; }");
    let isolate = start_with(&code, json!([]), small).unwrap();
    assert_eq!(call(&isolate, json!({})), Err(ToolFailure::ResultTooLarge { bytes: 22, limit: 10 }));
  }

  #[test]
  fn the_wall_time_limit_ends_a_looping_call_and_the_isolate() {
    let short = ToolLimits { call_wall_time: Some(Duration::from_millis(200)), ..limits() };
    let isolate =
      start_with(&tool("(args) => { if (args.spin) while (true) {} return 1; }"), json!([]), short).unwrap();
    assert_eq!(call(&isolate, json!({})), Ok(json!(1)));
    assert_eq!(
      call(&isolate, json!({ "spin": true })),
      Err(ToolFailure::Terminated(Termination::WallTime(Duration::from_millis(200))))
    );
    assert!(isolate.is_dead());
    assert_eq!(call(&isolate, json!({})), Err(ToolFailure::Dead));
  }

  #[test]
  fn the_wall_time_limit_ends_a_call_waiting_forever_on_a_syscall() {
    struct Never;
    impl Broker for Never {
      fn syscall(&self, pid: &str, _: &str, _: Value) -> alos_ops::Reply {
        Ok(json!({ "pid": pid, "args": [] }))
      }
      fn syscall_async(&self, _: &str, _: &str, _: Value) -> alos_ops::PendingReply {
        Box::pin(std::future::pending())
      }
    }
    let short = ToolLimits { call_wall_time: Some(Duration::from_millis(200)), ..limits() };
    let isolate = ToolIsolate::start_with_builtins(
      "p".into(),
      jit(&tool("() => libos.sleep(1000000)")),
      Arc::new(Never),
      short,
      BUILTINS,
    )
    .unwrap();
    assert_eq!(
      call(&isolate, json!({})),
      Err(ToolFailure::Terminated(Termination::WallTime(Duration::from_millis(200))))
    );
    assert!(isolate.is_dead());
  }

  #[test]
  fn the_heap_limit_ends_an_allocating_call() {
    let small = ToolLimits { heap_bytes: Some(32 << 20), ..limits() };
    let code = tool("() => { const hoard = []; while (true) hoard.push(new Array(100000).fill('x'.repeat(16))); }");
    let isolate = start_with(&code, json!([]), small).unwrap();
    assert_eq!(call(&isolate, json!({})), Err(ToolFailure::Terminated(Termination::Heap(32 << 20))));
    assert!(isolate.is_dead());
  }

  #[test]
  fn a_module_that_loops_at_load_is_stopped() {
    let short = ToolLimits { call_wall_time: Some(Duration::from_millis(200)), ..limits() };
    let code = format!("while (true) {{}}\n{}", tool("() => 1"));
    match start_with(&code, json!([]), short) {
      Err(ToolFailure::Terminated(Termination::WallTime(_))) => {}
      other => panic!("{:?}", other.map(|_| "loaded")),
    }
  }

  #[test]
  fn a_module_must_default_export_a_tool() {
    assert!(load_error("export const x = 1;")
      .contains("does not default-export a defineTool(...) result: it has no default export"));
    assert!(load_error("export default 42;").contains("the default export is a number"));
    assert!(load_error("export default [1];").contains("the default export is an array"));
    assert!(load_error("export default { name: 'x' };").contains("the default export has no run function"));
  }

  #[test]
  fn define_tool_checks_the_shape_and_names_the_field() {
    let cases = [
      ("{ name: 'Bad', description: 'd', input: {}, capabilities: [], run: () => 1 }", "defineTool: name must match"),
      ("{ name: 'ok', input: {}, capabilities: [], run: () => 1 }", "defineTool: description must be a non-empty string"),
      ("{ name: 'ok', description: 'd', input: 3, capabilities: [], run: () => 1 }", "defineTool: input must be a JSON Schema object, got a number"),
      ("{ name: 'ok', description: 'd', input: {}, run: () => 1 }", "defineTool: capabilities must be an array"),
      ("{ name: 'ok', description: 'd', input: {}, capabilities: [1], run: () => 1 }", "defineTool: capabilities[0] must be a capability string"),
      ("{ name: 'ok', description: 'd', input: {}, capabilities: [] }", "defineTool: run must be a function, got a undefined"),
      ("{ name: 'ok', description: 'd', input: {}, capabilities: [], run: () => 1, extra: 1 }", "defineTool: extra is not a tool field"),
      ("{ name: 'ok', description: 'd', input: {}, capabilities: [], run: () => 1, tests: [{ args: {} }] }", "defineTool: tests[0].name must be a non-empty string"),
      (
        "{ name: 'ok', description: 'd', input: {}, capabilities: [], run: () => 1, tests: [{ name: 'n', expect: 1, expectError: 'NotFound' }] }",
        "defineTool: tests[0] has both expect and expectError",
      ),
    ];
    for (spec, expected) in cases {
      let why = load_error(&format!("import {{ defineTool }} from 'libos:tool';\nexport default defineTool({spec});"));
      assert!(why.contains("TypeError") && why.contains(expected), "{spec}: {why}");
    }
  }

  #[test]
  fn define_tool_freezes_the_spec() {
    let isolate = start(&tool("() => { 'use strict'; const t = globalThis.t; return Object.isFrozen(t) && Object.isFrozen(t.input) && Object.isFrozen(t.capabilities); }").replace(
      "export default defineTool(",
      "const t = defineTool(",
    ).replace("});\n", "});\nglobalThis.t = t;\nexport default t;\n"));
    assert_eq!(call(&isolate, json!({})), Ok(json!(true)));
  }

  #[test]
  fn sha256_hex_and_truncate_work() {
    let isolate = start(
      "import { defineTool, sha256Hex, truncate } from 'libos:tool';\n\
       export default defineTool({ name: 'h', description: 'd', input: {}, capabilities: [], run: (a) => ({\n\
         empty: sha256Hex(''), abc: sha256Hex('abc'), bytes: sha256Hex(new Uint8Array([97, 98, 99])),\n\
         long: sha256Hex('a'.repeat(1000)), utf8: sha256Hex('\u{e9}\u{1F600}'),\n\
         cut: truncate('abc\u{e9} and more', 4), whole: truncate('abc', 3), emoji: truncate('\u{1F600}x', 3),\n\
       }) });",
    );
    let value = call(&isolate, json!({})).unwrap();
    let hex = |data: &[u8]| {
      use sha2::Digest;
      hex::encode(sha2::Sha256::digest(data))
    };
    assert_eq!(value["empty"], json!(hex(b"")));
    assert_eq!(value["abc"], json!(hex(b"abc")));
    assert_eq!(value["bytes"], json!(hex(b"abc")));
    assert_eq!(value["long"], json!(hex("a".repeat(1000).as_bytes())));
    assert_eq!(value["utf8"], json!(hex("\u{e9}\u{1F600}".as_bytes())));
    assert_eq!(value["cut"], json!({ "text": "abc", "truncated": true, "bytes": 14 }));
    assert_eq!(value["whole"], json!({ "text": "abc", "truncated": false, "bytes": 3 }));
    assert_eq!(value["emoji"], json!({ "text": "", "truncated": true, "bytes": 5 }));
  }

  #[test]
  fn in_memory_tools_may_import_libos_modules_only() {
    let why = load_error(&format!("import './helper.ts';\n{}", tool("() => 1")));
    assert!(why.contains("a built-in or JIT module cannot import files"), "{why}");
    let why = load_error(&format!("import 'https://example.com/x.js';\n{}", tool("() => 1")));
    assert!(why.contains("the \"https:\" scheme is not available"), "{why}");
    let why = load_error(&format!("import 'libos:nope';\n{}", tool("() => 1")));
    assert!(why.contains("no such built-in module"), "{why}");
  }

  #[test]
  fn a_file_tool_imports_relative_modules_inside_its_directory_only() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().join("tools");
    std::fs::create_dir(&dir_path).unwrap();
    let dir_path = dir_path.canonicalize().unwrap();
    std::fs::write(dir_path.join("helper.ts"), "export const twice = (n: number): number => n * 2;").unwrap();
    std::fs::write(dir.path().join("outside.ts"), "export const x = 1;").unwrap();
    let source = |code: String| ToolSource {
      url: ModuleSpecifier::from_file_path(dir_path.join("t.ts")).unwrap().to_string(),
      code,
      dir: Some(dir_path.clone()),
    };
    let broker = || Arc::new(MockBroker::new(Vec::new()));
    let code = format!("import {{ twice }} from './helper.ts';\n{}", tool("(a) => twice(a.n)"));
    let isolate = ToolIsolate::start_with_builtins("p".into(), source(code), broker(), limits(), BUILTINS).unwrap();
    assert_eq!(call(&isolate, json!({ "n": 4 })), Ok(json!(8)));
    let code = format!("import {{ x }} from '../outside.ts';\n{}", tool("() => x"));
    match ToolIsolate::start_with_builtins("p".into(), source(code), broker(), limits(), BUILTINS) {
      Err(ToolFailure::Load(why)) => assert!(why.contains("it leads outside the script directory"), "{why}"),
      other => panic!("{:?}", other.map(|_| "loaded")),
    }
  }

  #[test]
  fn globals_a_tool_mutates_stay_in_its_isolate() {
    let first = start(&tool("() => { globalThis.shared = 'mine'; Array.prototype.evil = 1; return 1; }"));
    let second = start(&tool("() => [typeof globalThis.shared, typeof [].evil]"));
    assert_eq!(call(&first, json!({})), Ok(json!(1)));
    assert_eq!(call(&second, json!({})), Ok(json!(["undefined", "undefined"])));
  }

  #[test]
  fn calls_from_many_threads_are_served_in_turn() {
    let isolate = Arc::new(start(&tool("async (a) => { await null; return a.n + 1; }")));
    let handles: Vec<_> = (0..8)
      .map(|n| {
        let isolate = isolate.clone();
        std::thread::spawn(move || call(&isolate, json!({ "n": n })))
      })
      .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, (0..8).map(|n| Ok(json!(n + 1))).collect::<Vec<_>>());
  }

  #[test]
  fn a_tool_isolate_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ToolIsolate>();
  }
}
