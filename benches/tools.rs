//! The tool-call benchmarks (issue 5, item 5). Run them with `scripts/bench` (or
//! `cargo bench --bench tools`); they print one markdown table in which each alos figure
//! stands beside a Deno peer measured in the same run, and the ratio alos / peer.
//!
//! The tool is small and the same on both sides: `count_lines` counts the lines of a
//! ~2 KiB text passed as its argument (no syscall), and `count_file_lines` does the same
//! after one `libos.fs.readText` (`Deno.readTextFile` in the peer) of that text.
//!
//! | Measurement | alos | Peer: Deno tool server, NDJSON over stdin/stdout |
//! |---|---|---|
//! | cold call, engine | `ToolIsolate::start` + first `call`, a minimal in-process broker | spawn `deno run` + first request/response |
//! | cold call, end to end | a child process's first `libos.tools.call` of a JIT tool its parent registered for the task | the same spawns |
//! | first call after `register` | the registrant's own first call, which races the kernel's pre-warm of that tool | the same spawns |
//! | warm call, engine | `call` on a loaded `ToolIsolate` | one request/response on a running server |
//! | warm call, end to end | `libos.tools.call` in a loop (kernel checks, audit, journal) | the same requests |
//! | JIT | `tools.propose` (analysis + tests) → `register` → first `call`, from a script | write the tool file + spawn + first result |
//!
//! Engine figures are timed with `Instant` around each operation; end-to-end figures are
//! timed inside the script with `Date.now()` (scripts have no finer clock), so those rows
//! give the mean over many calls, and the peer's mean stands beside them. `register`
//! pre-warms the tool's isolate for the registrant in the background; the cold rows time
//! a first call in another process of the task (nothing pre-warmed it), and the script
//! pauses (untimed) after each registration so that no background start overlaps what is
//! timed next. Every tool is revoked after use, so the tool table stays small.
//!
//! Environment knobs (all optional):
//!
//! - `ALOS_BENCH_TOOL_N` (200): fresh tool isolates per variant at the engine level.
//! - `ALOS_BENCH_TOOL_CALLS` (2000): warm calls per variant (engine, script, Deno).
//! - `ALOS_BENCH_TOOL_COLD` (40): end-to-end cold calls and JIT proposals per variant,
//!   and Deno processes spawned per peer measurement.
//! - `ALOS_BENCH_DENO` (unset): a `deno` binary for the peer, or `none`; `scripts/bench`
//!   fetches one into `target/bench-peers/` when it can.
//! - `ALOS_BENCH_DIR` (`target/bench-tmp`): where the temporary state goes (the kernel's
//!   database is fsync'd per syscall, so keep it on a real disk).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it only says how to run it.

mod common;

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::ChildStdout;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use alos::engine::tool::ToolIsolate;
use alos::engine::tool::ToolLimits;
use alos::engine::tool::ToolSource;
use alos::engine::tool_host::EngineToolHost;
use alos::engine::tool_host::TOOL_HEAP_BYTES;
use alos::engine::tool_host::TOOL_MAX_RESULT_BYTES;
use alos::kernel::human::HumanMode;
use alos::kernel::process::ExitStatus;
use alos::kernel::process::ProcessLimits;
use alos::kernel::ProcessSpec;
use alos_ops::Broker;
use alos_ops::ErrorClass;
use alos_ops::Fault;
use alos_ops::PendingReply;
use alos_ops::Reply;
use common::bench_dir;
use common::cli_grants;
use common::open_kernel;
use common::deno_binary;
use common::deno_version;
use common::io;
use common::knob;
use common::mean;
use common::percentile;
use common::Fig;
use common::Res;
use common::Table;
use serde_json::json;
use serde_json::Value;

/// Untimed rounds before each timed series (first-use costs of the process).
const WARMUP: usize = 3;
/// Where the readText variants read (workspace-relative; the peer's cwd is its workspace).
const DATA_FILE: &str = "data/notes.txt";

fn main() {
  if !std::env::args().any(|a| a == "--bench") {
    println!("the tool-call benchmarks run with `scripts/bench` (or `cargo bench --bench tools`)");
    return;
  }
  let n = knob("ALOS_BENCH_TOOL_N", 200).max(1);
  let calls = knob("ALOS_BENCH_TOOL_CALLS", 2000).max(1);
  let cold = knob("ALOS_BENCH_TOOL_COLD", 40).max(1);
  eprintln!(
    "tools bench: N={n} fresh isolates, {calls} warm calls, {cold} end-to-end cold calls / proposals / Deno spawns; \
     temporary state in {}",
    bench_dir().display()
  );
  let text = sample_text();

  eprintln!("[1/4] engine: cold and warm calls of a ToolIsolate");
  let engine = engine_figures(&text, n, calls);
  eprintln!("[2/4] end to end: a script registering and calling JIT tools through the kernel");
  let e2e = e2e_figures(&text, cold, calls);
  eprintln!("[3/4] Deno peer: a tool server spawned per call, then kept running");
  let deno = deno_figures(&text, cold, calls);

  eprintln!("[4/4] done");
  let mut table = Table::default();
  let mut notes: Vec<String> = vec![];
  let peer = |f: fn(&DenoFigures) -> Fig| deno.as_ref().ok().map(f);
  let peer_what = |what: &str| match &deno {
    Ok(_) => what.to_string(),
    Err(e) => format!("Deno peer skipped: {e}"),
  };

  // 1. Cold
  match &engine {
    Ok(e) => {
      table.row(
        "**Cold** tool call, engine: `ToolIsolate::start` + first `call`, count_lines (no syscall), p50",
        Fig::ms2(e.cold.p50),
        &peer_what("spawn `deno run` on the tool server + first NDJSON request/response, p50"),
        peer(|d| Fig::ms2(d.cold.p50)),
      );
      table.row("  the same, p99", Fig::ms2(e.cold.p99), &peer_what("the same, p99"), peer(|d| Fig::ms2(d.cold.p99)));
      table.row(
        "Cold, engine, with one `libos.fs.readText` (a minimal broker reads the file), p50",
        Fig::ms2(e.cold_read.p50),
        &peer_what("the same spawn with `--allow-read=DIR`, one `Deno.readTextFile`, p50"),
        peer(|d| Fig::ms2(d.cold_read.p50)),
      );
      table.row(
        "  the same, p99",
        Fig::ms2(e.cold_read.p99),
        &peer_what("the same, p99"),
        peer(|d| Fig::ms2(d.cold_read.p99)),
      );
    }
    Err(e) => table.failed("Cold tool call, engine", e),
  }
  match &e2e {
    Ok(e) => {
      table.row(
        &format!(
          "Cold tool call, end to end: first `libos.tools.call` of a registered JIT tool in a process that did not \
           register it (no pre-warm), count_lines, mean of {}",
          e.cold_samples
        ),
        Fig::ms2(e.cold_ms),
        &peer_what("spawn + first request/response (as above), mean"),
        peer(|d| Fig::ms2(d.cold.mean)),
      );
      table.row(
        "  the same, with one `fs.readText` (checked, audited and journaled as the caller's)",
        Fig::ms2(e.cold_read_ms),
        &peer_what("spawn with `--allow-read=DIR` + first result, mean"),
        peer(|d| Fig::ms2(d.cold_read.mean)),
      );
      table.row(
        "  the registrant's first call right after `register` (racing the kernel's background pre-warm), mean",
        Fig::ms2(e.after_register_ms),
        &peer_what("spawn + first request/response, mean"),
        peer(|d| Fig::ms2(d.cold.mean)),
      );
      table.row(
        "  the same, with one `fs.readText`",
        Fig::ms2(e.after_register_read_ms),
        &peer_what("spawn with `--allow-read=DIR` + first result, mean"),
        peer(|d| Fig::ms2(d.cold_read.mean)),
      );
    }
    Err(e) => table.failed("Cold tool call, end to end", e),
  }

  // 2. Warm
  match &engine {
    Ok(e) => {
      table.row(
        "**Warm** tool call, engine: `call` on a loaded `ToolIsolate`, count_lines, p50",
        Fig::us(e.warm.p50),
        &peer_what("one request/response on a running Deno tool server, p50"),
        peer(|d| Fig::us(d.warm.p50)),
      );
      table.row("  the same, p99", Fig::us(e.warm.p99), &peer_what("the same, p99"), peer(|d| Fig::us(d.warm.p99)));
      table.row(
        "Warm, engine, with one `libos.fs.readText`, p50",
        Fig::us(e.warm_read.p50),
        &peer_what("the same with one `Deno.readTextFile`, p50"),
        peer(|d| Fig::us(d.warm_read.p50)),
      );
      table.row(
        "  the same, p99",
        Fig::us(e.warm_read.p99),
        &peer_what("the same, p99"),
        peer(|d| Fig::us(d.warm_read.p99)),
      );
    }
    Err(e) => table.failed("Warm tool call, engine", e),
  }
  match &e2e {
    Ok(e) => {
      table.row(
        &format!("Warm tool call, end to end: `libos.tools.call` from a script (kernel checks, audit, journal), count_lines, mean of {calls}"),
        Fig::us(e.warm_us),
        &peer_what("one request/response on a running server, mean"),
        peer(|d| Fig::us(d.warm.mean)),
      );
      table.row(
        "  the same, with one `fs.readText`",
        Fig::us(e.warm_read_us),
        &peer_what("the same with one `Deno.readTextFile`, mean"),
        peer(|d| Fig::us(d.warm_read.mean)),
      );
    }
    Err(e) => table.failed("Warm tool call, end to end", e),
  }

  // 3. JIT
  match &e2e {
    Ok(e) => {
      table.row(
        "**JIT** `tools.propose` (static analysis + 1 test in a fresh isolate, mock broker) → `register` → first `call`, from a script, p50",
        Fig::ms2(e.jit.p50),
        &peer_what("write the tool file + spawn `deno run` + first result (no analysis, no tests), p50"),
        peer(|d| Fig::ms2(d.jit.p50)),
      );
      table.row("  the same, p99", Fig::ms2(e.jit.p99), &peer_what("the same, p99"), peer(|d| Fig::ms2(d.jit.p99)));
      notes.push(format!(
        "JIT, end to end: `propose` + `register` took {} of the {} (means) up to the first result. Script \
         timings use `Date.now()` (1 ms steps): single samples are quantised, means over many are not.",
        Fig::ms2(e.propose_register_mean_ms).render(),
        Fig::ms2(e.jit.mean).render(),
      ));
    }
    Err(e) => table.failed("JIT propose → first result", e),
  }

  println!();
  println!("{}", table.render());
  notes.push(
    "The JIT rows do not do the same work: alos analyses the source statically, runs its test in a fresh \
     isolate against the mock broker, records the candidate and the registration (fsync'd), and then makes \
     the cold call; Deno only writes the file and starts it (it transpiles the new `.ts` file, no analysis, no tests)."
      .into(),
  );
  notes.push(
    "End-to-end alos calls include the kernel's work per syscall: table lookup and input-schema check, the \
     policy decision, a hash-chained audit record and a journal commit (one SQLite transaction, synchronous=FULL); \
     the readText variant makes a second, nested syscall with the same costs. The Deno peer records nothing."
      .into(),
  );
  match &deno {
    Ok(d) => notes.push(format!(
      "Deno peer: {} ({}), `deno run --no-prompt` with `DENO_DIR` in a temporary directory (its module cache is \
       filled by untimed runs first, except for the JIT files), no permission but `--allow-read=DIR` for the \
       readText variant; each server is a `.ts` file holding the tool and an NDJSON loop over stdin/stdout.",
      d.version,
      d.binary.display()
    )),
    Err(e) => notes.push(format!("Deno peer rows are empty: {e}.")),
  }
  notes.push(format!(
    "Timed on {} CPU(s) shared with whatever else runs on the machine; the tool isolates' limits are the CLI's \
     (heap {} MiB, 30 s per call, {} MiB of result).",
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    TOOL_HEAP_BYTES >> 20,
    TOOL_MAX_RESULT_BYTES >> 20
  ));
  for note in notes {
    println!("- {note}");
  }
}

/// p50, p99 and mean of a series.
#[derive(Clone, Copy, Debug)]
struct Stats {
  p50: f64,
  p99: f64,
  mean: f64,
}

impl Stats {
  fn of(mut values: Vec<f64>) -> Stats {
    let mean = mean(&values);
    Stats { p50: percentile(&mut values, 0.50), p99: percentile(&mut values, 0.99), mean }
  }
}

/// ~2 KiB of text in 48 lines: what both tools count.
fn sample_text() -> String {
  (0..48).map(|i| format!("line {i:02}: lorem ipsum dolor sit amet, consectetur adipiscing\n")).collect()
}

fn lines_of(text: &str) -> Value {
  json!({ "lines": text.split('\n').count(), "bytes": text.len() })
}

// ---------------------------------------------------------------------------------------
// The tools, for alos and for Deno

const DESCRIPTION: &str = "Counts the lines of a text";
const FILE_DESCRIPTION: &str = "Counts the lines of a workspace file";

/// The body shared by both runtimes: `text` in, `{ lines, bytes }` out.
const COUNT: &str = "({ lines: text.split(\"\\n\").length, bytes: text.length })";

fn input_schema(read: bool) -> Value {
  match read {
    false => json!({ "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"] }),
    true => json!({ "type": "object", "properties": { "path": { "type": "string" } }, "required": ["path"] }),
  }
}

fn capabilities(read: bool) -> Value {
  if read {
    json!(["fs.read:data/**"])
  } else {
    json!([])
  }
}

/// An alos tool module named `name`: count_lines, or (with `read`) the same after one
/// `libos.fs.readText`.
fn alos_tool(name: &str, read: bool) -> String {
  let run = if read {
    format!("async (args) => {{ const text = await libos.fs.readText(args.path); return {COUNT}; }}")
  } else {
    format!("async (args) => {{ const text = args.text; return {COUNT}; }}")
  };
  format!(
    "import {{ defineTool }} from \"libos:tool\";\n\
     export default defineTool({{\n  name: {name},\n  description: {description},\n  input: {input},\n  \
     capabilities: {caps},\n  run: {run},\n}});\n",
    name = json!(name),
    description = json!(if read { FILE_DESCRIPTION } else { DESCRIPTION }),
    input = input_schema(read),
    caps = capabilities(read),
  )
}

fn args_for(read: bool, text: &str) -> Value {
  if read {
    json!({ "path": DATA_FILE })
  } else {
    json!({ "text": text })
  }
}

/// The peer: the same tool and a loop answering one NDJSON request per line
/// (`{id, args}` → `{id, ok}` or `{id, err}`), as the paper's Python prototype serves tools.
fn deno_server(name: &str, read: bool) -> String {
  let run = if read {
    format!("async (args) => {{ const text = await Deno.readTextFile(args.path); return {COUNT}; }}")
  } else {
    format!("async (args) => {{ const text = args.text; return {COUNT}; }}")
  };
  format!(
    r#"const tool = {{ name: {name}, run: {run} }};
const encoder = new TextEncoder();
const decoder = new TextDecoder();
async function writeAll(bytes: Uint8Array) {{
  let at = 0;
  while (at < bytes.length) at += await Deno.stdout.write(bytes.subarray(at));
}}
let buffered = "";
const reader = Deno.stdin.readable.getReader();
for (;;) {{
  const {{ value, done }} = await reader.read();
  if (done) break;
  buffered += decoder.decode(value, {{ stream: true }});
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {{
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    if (line.length === 0) continue;
    const request = JSON.parse(line);
    let reply;
    try {{
      reply = {{ id: request.id, ok: await tool.run(request.args) }};
    }} catch (e) {{
      reply = {{ id: request.id, err: String(e) }};
    }}
    await writeAll(encoder.encode(JSON.stringify(reply) + "\n"));
  }}
}}
"#,
    name = json!(name),
  )
}

// ---------------------------------------------------------------------------------------
// 1. The engine: ToolIsolate with a minimal in-process broker

/// The least a broker can be: it answers the bootstrap's `proc.self` and serves
/// `fs.readText` from a directory; no checks, no audit, no journal.
struct FileBroker {
  root: PathBuf,
}

impl Broker for FileBroker {
  fn syscall(&self, pid: &str, name: &str, _args: Value) -> Reply {
    match name {
      "proc.self" => Ok(json!({ "pid": pid, "args": [], "cwd": "." })),
      other => Err(Fault::new(ErrorClass::InvalidArgument, format!("bench broker: no syscall {other}"))),
    }
  }

  fn syscall_async(&self, _pid: &str, name: &str, args: Value) -> PendingReply {
    let reply = match (name, args.get("path").and_then(Value::as_str)) {
      ("fs.readText", Some(path)) if !path.starts_with('/') && !path.split('/').any(|s| s == "..") => {
        std::fs::read_to_string(self.root.join(path)).map(Value::String).map_err(|e| {
          let class = if e.kind() == std::io::ErrorKind::NotFound { ErrorClass::NotFound } else { ErrorClass::OperationFailed };
          Fault::new(class, format!("{path}: {e}"))
        })
      }
      _ => Err(Fault::new(ErrorClass::InvalidArgument, format!("bench broker: cannot {name} {args}"))),
    };
    Box::pin(std::future::ready(reply))
  }
}

fn tool_limits() -> ToolLimits {
  ToolLimits {
    heap_bytes: Some(TOOL_HEAP_BYTES),
    call_wall_time: Some(Duration::from_secs(30)),
    max_result_bytes: TOOL_MAX_RESULT_BYTES,
  }
}

struct EngineFigures {
  /// Milliseconds.
  cold: Stats,
  cold_read: Stats,
  /// Microseconds.
  warm: Stats,
  warm_read: Stats,
}

fn engine_figures(text: &str, n: usize, calls: usize) -> Res<EngineFigures> {
  let dir = temp_dir("engine")?;
  write_workspace(dir.path(), text)?;
  let broker: Arc<dyn Broker + Send + Sync> = Arc::new(FileBroker { root: dir.path().to_path_buf() });
  let rt = tokio::runtime::Builder::new_current_thread().build().map_err(io)?;
  let expected = lines_of(text);
  let mut out = vec![];
  for read in [false, true] {
    let source =
      ToolSource { url: format!("jit:bench{}", if read { "read" } else { "count" }), code: alos_tool("count_lines", read), dir: None };
    let args = args_for(read, text);
    let start = |i: usize| {
      ToolIsolate::start(format!("pbench{i}"), source.clone(), broker.clone(), tool_limits())
        .map_err(|e| format!("the tool did not start: {e}"))
    };
    let check = |result: Result<Value, alos::engine::tool::ToolFailure>| match result {
      Ok(v) if v == expected => Ok(()),
      other => Err(format!("the tool answered {other:?}, not {expected}")),
    };
    // Cold: a fresh isolate (thread, runtime, module load) and its first call; the
    // isolate's teardown is not timed.
    let mut cold = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
      let began = Instant::now();
      let isolate = start(i)?;
      let result = rt.block_on(isolate.call(args.clone()));
      let took = began.elapsed();
      check(result)?;
      drop(isolate);
      if i >= WARMUP {
        cold.push(took.as_secs_f64() * 1e3);
      }
    }
    progress(&format!("  engine cold ({}): p50 {:.2} ms", variant(read), Stats::of(cold.clone()).p50));
    // Warm: one isolate, called again and again.
    let isolate = start(n + WARMUP)?;
    let mut warm = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
      let began = Instant::now();
      let result = rt.block_on(isolate.call(args.clone()));
      let took = began.elapsed();
      check(result)?;
      if i >= WARMUP {
        warm.push(took.as_secs_f64() * 1e6);
      }
    }
    progress(&format!("  engine warm ({}): p50 {:.1} µs", variant(read), Stats::of(warm.clone()).p50));
    out.push((Stats::of(cold), Stats::of(warm)));
  }
  Ok(EngineFigures { cold: out[0].0, warm: out[0].1, cold_read: out[1].0, warm_read: out[1].1 })
}

fn variant(read: bool) -> &'static str {
  if read {
    "readText"
  } else {
    "in memory"
  }
}

// ---------------------------------------------------------------------------------------
// 2. End to end: a script on the real kernel

struct E2eFigures {
  /// Milliseconds: a first call in a process that did not register the tool (no pre-warm).
  cold_ms: f64,
  cold_read_ms: f64,
  /// Milliseconds: the registrant's first call right after `register` (its pre-warm races it).
  after_register_ms: f64,
  after_register_read_ms: f64,
  /// Microseconds per call.
  warm_us: f64,
  warm_read_us: f64,
  /// Milliseconds, per proposal.
  jit: Stats,
  propose_register_mean_ms: f64,
  cold_samples: usize,
}

/// Tools a child process first-calls (one child per batch; the table stays small).
const BATCH: usize = 5;
/// How long the script lets the kernel's pre-warm of a just-registered tool run before
/// it goes on (untimed), so that background isolate starts do not overlap what is timed.
const SETTLE_MS: usize = 150;

/// What both scripts share: the tools, their arguments and the expected answer.
fn e2e_prelude(text: &str) -> String {
  format!(
    r#"const TEXT = {text};
const EXPECTED = {expected};
const TEMPLATES = {{ count: {count_tpl}, read: {read_tpl} }};
const SPECS = {{ count: {count_spec}, read: {read_spec} }};
const ARGS = {{ count: {{ text: TEXT }}, read: {{ path: {path} }} }};
function check(result, name) {{
  if (JSON.stringify(result) !== JSON.stringify(EXPECTED)) {{
    throw new Error(`${{name}} answered ${{JSON.stringify(result)}}, not ${{JSON.stringify(EXPECTED)}}`);
  }}
}}
"#,
    text = json!(text),
    expected = lines_of(text),
    count_tpl = json!(alos_tool("__NAME__", false)),
    read_tpl = json!(alos_tool("__NAME__", true)),
    count_spec = json!({ "description": DESCRIPTION, "input": input_schema(false), "capabilities": capabilities(false) }),
    read_spec = json!({ "description": FILE_DESCRIPTION, "input": input_schema(true), "capabilities": capabilities(true) }),
    path = json!(DATA_FILE),
  )
}

/// The child: first calls of the tools its parent registered for the task, each timed.
fn e2e_child(text: &str) -> String {
  format!(
    r#"{prelude}
const [kind, ...names] = libos.args;
const firsts = [];
for (const name of names) {{
  const began = Date.now();
  const result = await libos.tools.call(name, ARGS[kind]);
  firsts.push(Date.now() - began);
  check(result, name);
}}
libos.exit(firsts);
"#,
    prelude = e2e_prelude(text)
  )
}

/// The root script. Per variant: cold first calls in child processes (tools registered
/// for the task, `BATCH` per child), first calls right after `register`, then one tool
/// called `calls` times; then `cold` proposals timed up to their first result. Every
/// tool is revoked after use, so the table never grows.
fn e2e_script(text: &str, cold: usize, calls: usize) -> String {
  format!(
    r#"{prelude}
const COLD = {cold}, CALLS = {calls}, BATCH = {BATCH}, SETTLE_MS = {SETTLE_MS};
const TESTS = [{{ name: "counts", args: {{ text: "a\nb" }}, expect: {{ lines: 2, bytes: 3 }} }}];

async function propose(kind, name, tests) {{
  const source = TEMPLATES[kind].replace("__NAME__", name);
  const report = await libos.tools.propose({{ ...SPECS[kind], name, source, tests }});
  if (!report.ok) throw new Error(`the proposal of ${{name}} failed: ${{JSON.stringify(report)}}`);
  return report.candidateId;
}}
async function register(kind, name, scope) {{
  await libos.tools.register(await propose(kind, name, []), {{ scope }});
}}

// What the first tool call of a host initialises once (the built-in tools' table).
await libos.tools.list();
for (const kind of ["count", "read"]) {{
  for (let i = 0; i < 2; i++) {{
    const name = `warmup_${{kind}}_${{i}}`;
    await register(kind, name, "process");
    check(await libos.tools.call(name, ARGS[kind]), name);
    await libos.sleep(SETTLE_MS);
    await libos.tools.revoke(name);
  }}
}}

const out = {{}};
for (const kind of ["count", "read"]) {{
  // Cold: a process's first call of a tool it sees but did not register, so nothing
  // pre-warmed its isolate.
  const cold = [];
  for (let at = 0; at < COLD; at += BATCH) {{
    const names = [];
    for (let i = at; i < Math.min(at + BATCH, COLD); i++) {{
      const name = `cold_${{kind}}_${{i}}`;
      await register(kind, name, "task");
      names.push(name);
    }}
    await libos.sleep(SETTLE_MS * names.length);
    const child = await libos.proc.spawn({{ entry: "child.ts", args: [kind, ...names], caps: ["fs.read:data/**"] }});
    const info = await libos.proc.wait(child, {{ timeoutMs: 600000 }});
    if (info.exit?.status !== "ok") throw new Error(`child ${{child}} ended ${{JSON.stringify(info)}}`);
    cold.push(...info.exit.result);
    for (const name of names) await libos.tools.revoke(name);
  }}
  out[`${{kind}}_cold_ms`] = cold;

  // The registrant's own first call, at once: the kernel pre-warms the tool's isolate
  // in the background when it is registered, and this call races that.
  const after = [];
  for (let i = 0; i < COLD; i++) {{
    const name = `after_${{kind}}_${{i}}`;
    await register(kind, name, "process");
    const began = Date.now();
    const result = await libos.tools.call(name, ARGS[kind]);
    after.push(Date.now() - began);
    check(result, name);
    await libos.sleep(SETTLE_MS);
    await libos.tools.revoke(name);
  }}
  out[`${{kind}}_after_register_ms`] = after;

  // Warm: the same tool again and again.
  const name = `warm_${{kind}}`;
  await register(kind, name, "process");
  check(await libos.tools.call(name, ARGS[kind]), name);
  await libos.sleep(SETTLE_MS);
  check(await libos.tools.call(name, ARGS[kind]), name);
  const began = Date.now();
  for (let i = 0; i < CALLS; i++) await libos.tools.call(name, ARGS[kind]);
  out[`${{kind}}_warm_total_ms`] = Date.now() - began;
  check(await libos.tools.call(name, ARGS[kind]), name);
  await libos.tools.revoke(name);
}}

// JIT: propose (analysis + one test against the mock broker) → register → first call.
const jit = [], registered = [];
for (let i = 0; i < COLD; i++) {{
  const name = `jit_${{i}}`;
  const began = Date.now();
  const id = await propose("count", name, TESTS);
  await libos.tools.register(id);
  const between = Date.now();
  const result = await libos.tools.call(name, ARGS.count);
  jit.push(Date.now() - began);
  registered.push(between - began);
  check(result, name);
  await libos.sleep(SETTLE_MS);
  await libos.tools.revoke(name);
}}
out.jit_ms = jit;
out.propose_register_ms = registered;
libos.exit(out);
"#,
    prelude = e2e_prelude(text)
  )
}

fn e2e_figures(text: &str, cold: usize, calls: usize) -> Res<E2eFigures> {
  let dir = temp_dir("e2e")?;
  let workspace = dir.path().join("ws");
  let state_dir = dir.path().join("state");
  write_workspace(&workspace, text)?;
  std::fs::write(workspace.join("bench.ts"), e2e_script(text, cold, calls)).map_err(io)?;
  std::fs::write(workspace.join("child.ts"), e2e_child(text)).map_err(io)?;
  // A kernel as `alos run --human deny` opens it, with the CLI's tool limits.
  let kernel = open_kernel(&workspace, &state_dir, HumanMode::Deny)?;
  kernel.set_tool_host(Arc::new(EngineToolHost::new(tool_limits())));
  let grants = cli_grants(&["tool.register", "proc.spawn", "fs.read:data/**"])?;
  let began = Instant::now();
  let pid = kernel.start_root(ProcessSpec {
    image: "bench.ts".into(),
    entry: workspace.join("bench.ts"),
    args: vec![],
    goal: None,
    grants,
    // One child per batch of cold tools, per variant.
    limits: ProcessLimits { max_children: (2 * cold.div_ceil(BATCH) + 8) as u32, ..ProcessLimits::default() },
    tools: None,
  })?;
  let out = match kernel.wait_exit(&pid) {
    Some(ExitStatus::Ok { result }) => result,
    other => return Err(format!("the script ended {other:?}")),
  };
  progress(&format!("  the script ran for {:.1} s", began.elapsed().as_secs_f64()));
  let series = |key: &str| -> Res<Vec<f64>> {
    out[key].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).ok_or_else(|| format!("no {key} in {out}"))
  };
  let per_call_us = |key: &str| out[key].as_f64().map(|ms| ms * 1e3 / calls as f64).unwrap_or(f64::NAN);
  Ok(E2eFigures {
    cold_ms: mean(&series("count_cold_ms")?),
    cold_read_ms: mean(&series("read_cold_ms")?),
    after_register_ms: mean(&series("count_after_register_ms")?),
    after_register_read_ms: mean(&series("read_after_register_ms")?),
    warm_us: per_call_us("count_warm_total_ms"),
    warm_read_us: per_call_us("read_warm_total_ms"),
    jit: Stats::of(series("jit_ms")?),
    propose_register_mean_ms: mean(&series("propose_register_ms")?),
    cold_samples: series("count_cold_ms")?.len(),
  })
}

// ---------------------------------------------------------------------------------------
// 3. The Deno peer

struct DenoFigures {
  version: String,
  binary: PathBuf,
  /// Milliseconds.
  cold: Stats,
  cold_read: Stats,
  /// Microseconds.
  warm: Stats,
  warm_read: Stats,
  /// Milliseconds.
  jit: Stats,
}

/// A running tool server.
struct Server {
  child: Child,
  stdin: ChildStdin,
  stdout: BufReader<ChildStdout>,
  next_id: u64,
}

impl Server {
  fn spawn(deno: &Deno, file: &Path, read: bool) -> Res<Server> {
    let mut command = Command::new(&deno.binary);
    command.args(["run", "--quiet", "--no-config", "--no-lock", "--no-prompt"]);
    if read {
      command.arg(format!("--allow-read={}", deno.workspace.display()));
    }
    let mut child = command
      .arg(file)
      .current_dir(&deno.workspace)
      .env("DENO_DIR", &deno.deno_dir)
      .env("DENO_NO_UPDATE_CHECK", "1")
      .env("NO_COLOR", "1")
      .stdin(Stdio::piped())
      .stdout(Stdio::piped())
      .stderr(Stdio::inherit())
      .spawn()
      .map_err(|e| format!("cannot start {}: {e}", deno.binary.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    Ok(Server { child, stdin, stdout, next_id: 1 })
  }

  fn call(&mut self, args: &Value) -> Res<Value> {
    let id = self.next_id;
    self.next_id += 1;
    let mut line = json!({ "id": id, "args": args }).to_string();
    line.push('\n');
    self.stdin.write_all(line.as_bytes()).map_err(io)?;
    self.stdin.flush().map_err(io)?;
    let mut reply = String::new();
    if self.stdout.read_line(&mut reply).map_err(io)? == 0 {
      return Err("the Deno tool server closed its stdout".into());
    }
    let reply: Value = serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply:?}"))?;
    if reply["id"] != json!(id) {
      return Err(format!("reply {reply} is not to request {id}"));
    }
    match reply.get("ok") {
      Some(ok) => Ok(ok.clone()),
      None => Err(format!("the Deno tool failed: {}", reply["err"])),
    }
  }
}

impl Drop for Server {
  fn drop(&mut self) {
    let _ = self.child.kill();
    let _ = self.child.wait();
  }
}

struct Deno {
  binary: PathBuf,
  workspace: PathBuf,
  deno_dir: PathBuf,
}

fn deno_figures(text: &str, cold: usize, calls: usize) -> Res<DenoFigures> {
  let binary = deno_binary()?;
  let version = deno_version(&binary)?;
  let dir = temp_dir("deno")?;
  let workspace = dir.path().join("ws");
  write_workspace(&workspace, text)?;
  let deno = Deno { binary: binary.clone(), workspace: workspace.canonicalize().map_err(io)?, deno_dir: dir.path().join("deno-dir") };
  let expected = lines_of(text);
  let check = |result: Value| if result == expected { Ok(()) } else { Err(format!("the Deno tool answered {result}, not {expected}")) };

  let mut colds = vec![];
  let mut warms = vec![];
  for read in [false, true] {
    let file = workspace.join(if read { "count_file_lines.ts" } else { "count_lines.ts" });
    std::fs::write(&file, deno_server("count_lines", read)).map_err(io)?;
    let args = args_for(read, text);
    // Cold: spawn + first request/response; the first runs (untimed) fill DENO_DIR.
    let mut cold_ms = Vec::with_capacity(cold);
    for i in 0..WARMUP + cold {
      let began = Instant::now();
      let mut server = Server::spawn(&deno, &file, read)?;
      let result = server.call(&args)?;
      let took = began.elapsed();
      check(result)?;
      drop(server);
      if i >= WARMUP {
        cold_ms.push(took.as_secs_f64() * 1e3);
      }
    }
    progress(&format!("  Deno cold ({}): p50 {:.2} ms", variant(read), Stats::of(cold_ms.clone()).p50));
    // Warm: one server, one request after another.
    let mut server = Server::spawn(&deno, &file, read)?;
    let mut warm_us = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
      let began = Instant::now();
      let result = server.call(&args)?;
      let took = began.elapsed();
      check(result)?;
      if i >= WARMUP {
        warm_us.push(took.as_secs_f64() * 1e6);
      }
    }
    progress(&format!("  Deno warm ({}): p50 {:.1} µs", variant(read), Stats::of(warm_us.clone()).p50));
    colds.push(Stats::of(cold_ms));
    warms.push(Stats::of(warm_us));
  }

  // JIT: a new tool file (its own name, so its own module) written, spawned, first result.
  let args = args_for(false, text);
  let mut jit = Vec::with_capacity(cold);
  for i in 0..cold {
    let name = format!("jit_{i}");
    let file = workspace.join(format!("{name}.ts"));
    let began = Instant::now();
    std::fs::write(&file, deno_server(&name, false)).map_err(io)?;
    let mut server = Server::spawn(&deno, &file, false)?;
    let result = server.call(&args)?;
    let took = began.elapsed();
    check(result)?;
    drop(server);
    jit.push(took.as_secs_f64() * 1e3);
  }
  progress(&format!("  Deno JIT: p50 {:.2} ms", Stats::of(jit.clone()).p50));
  Ok(DenoFigures { version, binary, cold: colds[0], cold_read: colds[1], warm: warms[0], warm_read: warms[1], jit: Stats::of(jit) })
}

// ---------------------------------------------------------------------------------------
// Helpers

fn temp_dir(name: &str) -> Res<tempfile::TempDir> {
  tempfile::Builder::new().prefix(&format!("tools-{name}-")).tempdir_in(bench_dir()).map_err(io)
}

/// A workspace holding the file the readText variants read.
fn write_workspace(workspace: &Path, text: &str) -> Res<()> {
  std::fs::create_dir_all(workspace.join("data")).map_err(io)?;
  std::fs::write(workspace.join(DATA_FILE), text).map_err(io)
}

fn progress(message: &str) {
  eprintln!("{message}");
}
