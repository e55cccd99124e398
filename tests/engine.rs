//! The engine boundary, tested from Rust: the exact op surface, the ops crate's
//! no-host-access rule, and that isolates can be created and dropped without leaking.

use std::sync::Arc;

use alos::engine::Isolate;
use alos::engine::IsolateLimits;
use alos::engine::IsolateSpec;
use alos::engine::Outcome;
use alos_ops::Broker;
use alos_ops::ErrorClass;
use alos_ops::Fault;
use alos_ops::PendingReply;
use alos_ops::Reply;
use serde_json::json;
use serde_json::Value;

/// A broker that knows only what a bare script needs.
struct Minimal;

impl Broker for Minimal {
  fn syscall(&self, pid: &str, name: &str, _args: Value) -> Reply {
    match name {
      "proc.self" => Ok(json!({ "pid": pid, "args": [], "cwd": "." })),
      _ => Err(Fault::new(ErrorClass::InvalidArgument, format!("unknown syscall {name}"))),
    }
  }
  fn syscall_async(&self, pid: &str, name: &str, args: Value) -> PendingReply {
    match name {
      // A wait that never ends, as a hibernating process's last call does.
      "sleep" => Box::pin(std::future::pending()),
      _ => Box::pin(std::future::ready(self.syscall(pid, name, args))),
    }
  }
}

fn spec(entry: &std::path::Path) -> IsolateSpec {
  IsolateSpec {
    pid: "p-test".into(),
    entry: entry.to_path_buf(),
    root: entry.parent().unwrap().to_path_buf(),
    broker: Arc::new(Minimal),
    limits: IsolateLimits::default(),
    builtins: &[],
  }
}

/// Every op a script's isolate has: deno_core's built-ins (unreachable from user code,
/// since the bootstrap deletes `Deno.core`) and alos's three. A dependency upgrade that
/// adds an op fails this test until someone reviews it.
#[test]
fn the_op_surface_is_exactly_the_reviewed_list() {
  let names = alos::engine::isolate::op_names();
  let ours: Vec<&str> = names.iter().map(String::as_str).filter(|n| alos_ops::OP_NAMES.contains(n)).collect();
  assert_eq!(ours, alos_ops::OP_NAMES);
  let expected: Vec<&str> =
    include_str!("op_names.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
  let actual: Vec<&str> = names.iter().map(String::as_str).collect();
  let added: Vec<&&str> = actual.iter().filter(|n| !expected.contains(n)).collect();
  let removed: Vec<&&str> = expected.iter().filter(|n| !actual.contains(n)).collect();
  assert!(added.is_empty() && removed.is_empty(), "op surface changed: added {added:?}, removed {removed:?}");
}

/// Ops only forward: nothing in `ops/` may touch the host directly.
#[test]
fn ops_never_touch_the_host() {
  let forbidden = ["std::fs", "std::process", "std::net", "std::env", "tokio::fs", "tokio::process", "tokio::net"];
  let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops");
  let mut stack = vec![root];
  let mut scanned = 0;
  while let Some(dir) = stack.pop() {
    for entry in std::fs::read_dir(&dir).unwrap() {
      let path = entry.unwrap().path();
      if path.is_dir() {
        stack.push(path);
      } else if path.extension().is_some_and(|e| e == "rs") {
        scanned += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
          for word in forbidden {
            assert!(!line.contains(word), "{}:{}: ops must not use {word}: {line}", path.display(), n + 1);
          }
        }
      }
    }
  }
  assert!(scanned > 0, "no sources scanned");
}

fn rss_kib() -> u64 {
  let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
  let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
  pages * 4
}

/// Creates and drops hundreds of isolates (each on its own thread) and checks the
/// process's resident memory levels off instead of growing with each one.
#[test]
fn creating_and_dropping_isolates_does_not_leak() {
  let dir = tempfile::tempdir().unwrap();
  let entry = dir.path().join("main.js");
  std::fs::write(&entry, "const xs = []; for (let i = 0; i < 1000; i++) xs.push({ i, s: 'x' + i }); libos.pid;").unwrap();
  let entry = entry.canonicalize().unwrap();
  let run_one = || match Isolate::start(spec(&entry), |_| {}).unwrap().join() {
    Outcome::Finished => {}
    other => panic!("isolate failed: {other:?}"),
  };
  for _ in 0..50 {
    run_one();
  }
  let warm = rss_kib();
  for _ in 0..250 {
    run_one();
  }
  let end = rss_kib();
  let growth = end.saturating_sub(warm);
  // 250 isolates that each kept even 200 KiB would grow by 50 MiB.
  assert!(growth < 24 * 1024, "RSS grew by {growth} KiB over 250 isolates (from {warm} to {end})");
}

fn open_fds() -> usize {
  std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Every isolate holds a handle on its script directory; dropping the isolate must close
/// it, or a long-running host runs out of file descriptors after a few thousand agents.
#[test]
fn creating_and_dropping_isolates_does_not_leak_file_descriptors() {
  let dir = tempfile::tempdir().unwrap();
  let entry = dir.path().join("main.js");
  std::fs::write(&entry, "libos.pid; await libos.sleep(60000);").unwrap();
  let entry = entry.canonicalize().unwrap();
  // Each isolate is stopped while its last syscall is pending, as hibernation does.
  let run_one = || {
    let isolate = Isolate::start(spec(&entry), |_| {}).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    isolate.stopper().stop();
    match isolate.join() {
      Outcome::Terminated(_) => {}
      other => panic!("isolate was not stopped: {other:?}"),
    }
  };
  run_one();
  let before = open_fds();
  for _ in 0..100 {
    run_one();
  }
  let after = open_fds();
  assert!(after < before + 10, "open file descriptors grew from {before} to {after} over 100 isolates");
}

fn threads() -> usize {
  std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn tool_source(run: &str) -> alos::engine::tool::ToolSource {
  alos::engine::tool::ToolSource {
    url: "jit:leak-check".into(),
    code: format!(
      "import {{ defineTool }} from \"libos:tool\";\n\
       export default defineTool({{ name: \"leak\", description: \"d\", input: {{}}, capabilities: [], run: {run} }});"
    ),
    dir: None,
  }
}

/// Tool isolates are started, called and dropped for every tool call of a long-lived
/// host: each must give back its threads (isolate and watchdog) and descriptors, whether
/// it returned normally, was stopped by its wall-time limit during a pending syscall, or
/// never finished loading.
#[test]
fn creating_and_dropping_tool_isolates_leaks_no_threads_or_descriptors() {
  use alos::engine::tool::ToolFailure;
  use alos::engine::tool::ToolIsolate;
  use alos::engine::tool::ToolLimits;
  let limits = ToolLimits {
    heap_bytes: Some(64 << 20),
    call_wall_time: Some(std::time::Duration::from_millis(50)),
    max_result_bytes: 1 << 20,
  };
  let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
  let run_one = |run: &str| {
    let isolate = ToolIsolate::start("p-tool".into(), tool_source(run), Arc::new(Minimal), limits).unwrap();
    let result = rt.block_on(isolate.call(json!({ "n": 1 })));
    let dead = isolate.is_dead();
    drop(isolate);
    (result, dead)
  };
  let cycle = || {
    assert_eq!(run_one("(a) => a.n + 1"), (Ok(json!(2)), false));
    match run_one("() => libos.sleep(60000)") {
      (Err(ToolFailure::Terminated(_)), true) => {}
      other => panic!("a pending tool call was not stopped: {other:?}"),
    }
    // A module that never finishes loading is stopped too, and start fails.
    let mut looping = tool_source("() => 1");
    looping.code.insert_str(0, "await libos.sleep(60000);\n");
    match ToolIsolate::start("p-tool".into(), looping, Arc::new(Minimal), limits) {
      Err(ToolFailure::Terminated(_)) => {}
      other => panic!("a module that never loads was not stopped: {:?}", other.map(|_| "loaded")),
    }
  };
  cycle();
  let (fds_before, threads_before) = (open_fds(), threads());
  for _ in 0..50 {
    cycle();
  }
  let (fds_after, threads_after) = (open_fds(), threads());
  assert!(
    fds_after < fds_before + 10,
    "open file descriptors grew from {fds_before} to {fds_after} over 150 tool isolates"
  );
  assert!(
    threads_after < threads_before + 10,
    "threads grew from {threads_before} to {threads_after} over 150 tool isolates"
  );
}

/// Warm calls into one tool isolate must not grow the host's memory either.
#[test]
fn many_calls_into_one_tool_isolate_do_not_leak() {
  use alos::engine::tool::ToolIsolate;
  use alos::engine::tool::ToolLimits;
  let limits = ToolLimits { heap_bytes: Some(64 << 20), call_wall_time: None, max_result_bytes: 1 << 20 };
  let code = "(a) => ({ items: Array.from({ length: 100 }, (_, i) => `${a.tag}-${i}`) })";
  let isolate = ToolIsolate::start("p-tool".into(), tool_source(code), Arc::new(Minimal), limits).unwrap();
  let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
  let call = |n: usize| {
    let result = rt.block_on(isolate.call(json!({ "tag": n }))).unwrap();
    assert_eq!(result["items"].as_array().map(Vec::len), Some(100));
  };
  for n in 0..500 {
    call(n);
  }
  let warm = rss_kib();
  for n in 0..5000 {
    call(n);
  }
  let growth = rss_kib().saturating_sub(warm);
  // 5000 calls that each kept their ~2 KiB result would grow by 10 MiB.
  assert!(growth < 8 * 1024, "RSS grew by {growth} KiB over 5000 calls");
}
