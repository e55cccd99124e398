//! The durable-state benchmarks (issue 4). Run them with `scripts/bench`
//! (or `cargo bench --bench state`); they print one markdown table in which each alos
//! figure stands beside a peer measured in the same run, and the ratio alos / peer.
//!
//! | Measurement | alos | Peer |
//! |---|---|---|
//! | journal append | `Db::commit` (journal + audit + runtime), as per syscall | raw rusqlite, same rows, same pragmas |
//! | audit append | `AuditLog::append` | a plain file, `write` + `fdatasync` per line |
//! | audit verify | `audit::verify` | JSON-parsing the same lines (no chain) |
//! | Object Memory put / get | `Db::mem_write` / `Db::mem_get` | raw `INSERT OR REPLACE` / `SELECT` |
//! | memory per hibernated process | bench RSS growth / P | a live waiting alos isolate; a waiting Deno process |
//! | resume latency | answer → exit, per process | a cold start of a script that exits at once |
//!
//! Environment knobs (all optional):
//!
//! - `ALOS_BENCH_N` (2000): commits, audit records and memory operations per throughput
//!   measurement. Every write is one fsync'd transaction, so this is disk-bound.
//! - `ALOS_BENCH_PROCS` (10000): P, the processes hibernated at once. Each one starts an
//!   isolate first (~20 ms of CPU), so the default takes minutes.
//! - `ALOS_BENCH_LIVE` (50): live waiting isolates, the in-process memory peer.
//! - `ALOS_BENCH_WINDOW` (8): processes starting, or resuming, at the same time.
//! - `ALOS_BENCH_DENO` (unset): a `deno` binary for the memory peer, or `none`;
//!   `scripts/bench` fetches one into `target/bench-peers/` when it can.
//! - `ALOS_BENCH_DIR` (`target/bench-tmp`): where the temporary state goes. Keep it on a
//!   real disk: fsync is much of what is measured.
//!
//! The memory figures are each taken in a fresh child process (this binary run again
//! with `ALOS_BENCH_CHILD`), so memory one measurement frees cannot be reused by the next.
//! Without `--bench` (as `cargo test --all-targets` runs it) it only says how to run it.

use std::fs::File;
use std::io::BufRead;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

mod common;

use common::bench_dir;
use common::cli_grants;
use common::open_kernel;
use common::deno_binary;
use common::deno_version;
use common::io;
use common::knob;
use common::percentile;
use common::Fig;
use common::Res;
use common::Table;

use alos::kernel::audit;
use alos::kernel::audit::Actor;
use alos::kernel::audit::AuditLog;
use alos::kernel::audit::Entry;
use alos::kernel::audit::Verdict;
use alos::kernel::human::HumanMode;
use alos::kernel::process::ExitStatus;
use alos::kernel::process::ProcessLimits;
use alos::kernel::Kernel;
use alos::kernel::ProcessSpec;
use alos::provider::clock::rfc3339;
use alos::provider::clock::Clock;
use alos::provider::clock::SystemClock;
use alos::store::human::Answer;
use alos::store::journal::Commit;
use alos::store::journal::JournalRecord;
use alos::store::journal::JournalStatus;
use alos::store::memory::MemWrite;
use alos::store::processes::ProcessRow;
use alos::store::Db;
use rusqlite::params;
use rusqlite::Connection;
use serde_json::json;
use serde_json::Value;

const CHILD_ENV: &str = "ALOS_BENCH_CHILD";
/// Where a child puts its temporary state (inside the parent's, which removes it).
const CHILD_DIR_ENV: &str = "ALOS_BENCH_CHILD_DIR";
const RESULT_PREFIX: &str = "ALOS_BENCH_RESULT ";

fn main() {
  if let Ok(which) = std::env::var(CHILD_ENV) {
    child_main(&which);
    return;
  }
  if !std::env::args().any(|a| a == "--bench") {
    println!("the durable-state benchmarks run with `scripts/bench` (or `cargo bench --bench state`)");
    return;
  }
  let n = knob("ALOS_BENCH_N", 2000);
  let procs = knob("ALOS_BENCH_PROCS", 10_000);
  let live = knob("ALOS_BENCH_LIVE", 50);
  let window = knob("ALOS_BENCH_WINDOW", 8);
  eprintln!("state bench: N={n} P={procs} live={live} window={window}, temporary state in {}", bench_dir().display());

  let mut table = Table::default();
  let mut notes: Vec<String> = vec![];

  eprintln!("[1/4] journal append ({n} commits, then the raw peer)");
  match journal_append(n) {
    Ok((alos, raw)) => table.row(
      "Journal append (`Db::commit`: journal + audit + runtime, 1 tx/syscall)",
      Fig::rate(alos, "commits/s"),
      "raw rusqlite, same rows and bytes, WAL + synchronous=FULL, 1 tx each",
      Some(Fig::rate(raw, "commits/s")),
    ),
    Err(e) => table.failed("Journal append", &e),
  }

  eprintln!("[2/4] audit append and verify ({n} records, then the plain-file peer)");
  match audit_append_and_verify(n) {
    Ok(a) => {
      table.row(
        "Audit append (`AuditLog::append`)",
        Fig::rate(a.append, "records/s"),
        "append the same lines to a file, write + fdatasync each",
        Some(Fig::rate(a.file_append, "records/s")),
      );
      table.row(
        "Audit verify (`audit::verify`)",
        Fig::rate(a.verify, "records/s"),
        "read the same lines back and JSON-parse each (no chain check)",
        Some(Fig::rate(a.file_parse, "records/s")),
      );
    }
    Err(e) => table.failed("Audit append / verify", &e),
  }

  eprintln!("[3/4] Object Memory put/get ({n} each, then the raw peer)");
  match memory_put_get(n) {
    Ok(m) => {
      table.row(
        "Object Memory put (`Db::mem_write`, new keys)",
        Fig::rate(m.put, "ops/s"),
        "raw `INSERT OR REPLACE`, equivalent table, same pragmas, 1 tx each",
        Some(Fig::rate(m.raw_put, "ops/s")),
      );
      table.row(
        "Object Memory get (`Db::mem_get`)",
        Fig::rate(m.get, "ops/s"),
        "raw prepared `SELECT` of the same row, value JSON-parsed",
        Some(Fig::rate(m.raw_get, "ops/s")),
      );
    }
    Err(e) => table.failed("Object Memory put / get", &e),
  }

  eprintln!("[4/4] hibernated processes (P={procs}; progress below)");
  process_rows(&mut table, &mut notes, procs, live, window);

  println!();
  println!("{}", table.render());
  for note in notes {
    println!("- {note}");
  }
}

/// A number a child reported (NaN when it is missing, which prints as n/a).
fn num(report: &Value, key: &str) -> f64 {
  report[key].as_f64().unwrap_or(f64::NAN)
}

/// The rows of measurement 4, from its child processes and the Deno peer.
fn process_rows(table: &mut Table, notes: &mut Vec<String>, procs: usize, live: usize, window: usize) {
  let hibernation = run_child("hibernate");
  let live_peer = if live > 0 { Some(run_child("live")) } else { None };
  let deno_peer = deno_waiting();
  match &hibernation {
    Ok(h) => {
      let per = num(h, "kib_per_process");
      let what = format!("Memory per hibernated process (bench VmRSS growth / P, P={procs})");
      match &live_peer {
        Some(Ok(l)) => table.row(
          &what,
          Fig::kib(per),
          &format!("a live alos isolate waiting (sleeping below the hibernation threshold), {live} of them"),
          Some(Fig::kib(num(l, "kib_per_process"))),
        ),
        Some(Err(e)) => table.row(&what, Fig::kib(per), &format!("live alos isolates: failed: {e}"), None),
        None => table.row(&what, Fig::kib(per), "live alos isolates: skipped (ALOS_BENCH_LIVE=0)", None),
      }
      match &deno_peer {
        Ok(d) => {
          table.row(
            "  the same, against Deno",
            Fig::kib(per),
            &format!("Deno {}: one OS process awaiting a pending timer, VmRSS", d.version),
            Some(Fig::kib(d.vm_rss_kib)),
          );
          table.row(
            "  the same, against Deno's private memory",
            Fig::kib(per),
            &format!("Deno {}: the same process, RssAnon (without shared binary pages)", d.version),
            Some(Fig::kib(d.rss_anon_kib)),
          );
        }
        Err(e) => table.row("  the same, against Deno", Fig::kib(per), &format!("peer unavailable: {e}"), None),
      }
      let trimmed = num(h, "kib_per_process_trimmed");
      table.row(
        "  the same, after `malloc_trim(0)`",
        Fig::kib(trimmed),
        "(no peer: what glibc kept of the freed isolates, returned)",
        None,
      );
      match h["resume_error"].as_str() {
        Some(e) => table.failed("Resume of all P", e),
        None => {
          table.row(
            &format!("Resume, all P (answers from {window} threads → every process exited)"),
            Fig::secs(num(h, "resume_total_s")),
            "(no peer)",
            None,
          );
          table.row(
            "Resume latency per process, p50 (answer recorded → exited)",
            Fig::ms(num(h, "resume_p50_ms")),
            "cold start of a script that exits at once (`start_root` → exited), p50",
            Some(Fig::ms(num(h, "cold_p50_ms"))),
          );
          table.row(
            "Resume latency per process, p99",
            Fig::ms(num(h, "resume_p99_ms")),
            "cold start, p99",
            Some(Fig::ms(num(h, "cold_p99_ms"))),
          );
        }
      }
      let fds: Vec<f64> = h["fds"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
      if let [before, hibernated, ..] = fds[..] {
        let per = (hibernated - before) / procs as f64;
        if per >= 0.5 {
          let kept = match fds.get(2) {
            Some(after) if *after >= hibernated => format!(", and were {after} after the resumes: none is closed"),
            _ => String::new(),
          };
          notes.push(format!(
            "Open file descriptors grew by {per:.2} per hibernated process ({before} → {hibernated}){kept}; \
             the limit here is {}.",
            h["fd_limit"]
          ));
        }
      }
      if let Some(e) = h["cold_error"].as_str() {
        notes.push(format!("Cold starts failed: {e}"));
      }
      notes.push(format!(
        "Hibernation: {} processes hibernated in {:.1} s; bench VmRSS {} → {} KiB ({} KiB after malloc_trim), \
         {} threads left; open fds before / hibernated / after the resumes: {}.",
        h["procs"],
        num(h, "hibernate_s"),
        h["rss_before_kib"],
        h["rss_after_kib"],
        h["rss_trimmed_kib"],
        h["threads_after"],
        h["fds"],
      ));
      notes.push(
        "Resume: a hibernated process is woken by the kernel's host loop, which polls, then its isolate starts \
         again and replays its journal; its latency includes up to one poll period."
          .to_string(),
      );
    }
    Err(e) => table.failed("Hibernated processes", e),
  }
  if let Ok(d) = &deno_peer {
    notes.push(format!("Deno peer: {} processes measured, {}.", d.samples, d.binary.display()));
  }
}

// ---------------------------------------------------------------------------------------
// 1. Journal append

/// A small result, as an `fs.readText` of a short file would journal.
fn sample_result(i: usize) -> Value {
  json!({ "ok": format!("line {i}: {}", "lorem ipsum dolor sit amet ".repeat(6)) })
}

/// A runtime state shaped like the kernel's `runtime_of` for a process holding two grants.
fn sample_runtime() -> Value {
  json!({
    "cwd": "",
    "grants": [
      { "id": 1, "capability": "fs.read:data/**", "source": "cli", "usesLeft": null, "expiresAtMs": null, "boundDigest": null, "parent": null },
      { "id": 2, "capability": "human.ask", "source": "cli", "usesLeft": null, "expiresAtMs": null, "boundDigest": null, "parent": null }
    ],
    "childrenSpawned": 0,
    "cursors": {},
    "wake": null
  })
}

fn sample_entry(pid: &str, i: usize) -> Entry {
  Entry {
    time: rfc3339(SystemClock.now_ms()),
    pid: pid.to_string(),
    lineage: vec![pid.to_string()],
    actor: Actor::Process,
    syscall: "fs.readText".into(),
    capability: Some("fs.read:data/**".into()),
    resource: Some(format!("data/file-{i}.txt")),
    decision: Verdict::Allow,
    decided_by: Some("grant g1".into()),
    args_digest: audit::digest(format!("{{\"path\":\"data/file-{i}.txt\"}}").as_bytes()),
    outcome: "ok".into(),
    tool: None,
  }
}

fn sample_journal(pid: &str, i: usize) -> JournalRecord {
  JournalRecord {
    pid: pid.to_string(),
    seq: i as u64,
    syscall: "fs.readText".into(),
    args_digest: audit::digest(format!("{{\"path\":\"data/file-{i}.txt\"}}").as_bytes()),
    status: JournalStatus::Done,
    wait: None,
    result: Some(sample_result(i)),
    at_ms: SystemClock.now_ms(),
  }
}

/// `(alos, raw)` in commits/s.
fn journal_append(n: usize) -> Res<(f64, f64)> {
  let dir = temp_dir("journal")?;
  let db = Db::open(dir.path()).map_err(|e| e.to_string())?;
  let pid = "p0000bench";
  // The process row the runtime update changes, as the kernel writes it at spawn.
  db.upsert_process(&ProcessRow {
    pid: pid.into(),
    parent: None,
    lineage: vec![pid.into()],
    image: "bench.ts".into(),
    mode: "restricted".into(),
    state: "running".into(),
    exit: None,
    host_pid: std::process::id(),
    started_ms: SystemClock.now_ms(),
    ended_ms: None,
    spec: None,
    runtime: Some(sample_runtime()),
  })
  .map_err(|e| e.to_string())?;
  // Built outside the timed loop, like the kernel has them at hand when it commits.
  let records: Vec<(JournalRecord, Entry)> = (0..n).map(|i| (sample_journal(pid, i), sample_entry(pid, i))).collect();
  let runtime = sample_runtime();
  let start = Instant::now();
  for (record, entry) in records {
    db.commit(Commit {
      journal: Some(record),
      audit: vec![audit::next_record(entry)],
      runtime: Some((pid.to_string(), runtime.clone())),
      memory: None,
    })
    .map_err(|e| e.to_string())?;
  }
  let alos = n as f64 / start.elapsed().as_secs_f64();

  // The peer writes exactly the bytes alos wrote (the audit lines are alos's own, hashes
  // and all), into the same three tables, with the same pragmas and one immediate
  // transaction per syscall: the floor that SQLite and the disk set. What it skips is
  // alos's work: reading the chain's end, hashing, serializing.
  let audit_lines = db.audit_lines().map_err(|e| e.to_string())?;
  let raw_dir = temp_dir("journal-raw")?;
  let mut conn = raw_connection(&raw_dir.path().join("raw.db"))?;
  conn
    .execute_batch(
      "CREATE TABLE audit (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
       CREATE TABLE journal (pid TEXT NOT NULL, seq INTEGER NOT NULL, syscall TEXT NOT NULL, args_digest TEXT NOT NULL,
         status TEXT NOT NULL, wait TEXT, result TEXT, result_blob TEXT, at_ms INTEGER NOT NULL, PRIMARY KEY (pid, seq));
       CREATE TABLE processes (pid TEXT PRIMARY KEY, runtime TEXT);",
    )
    .map_err(sql)?;
  conn.execute("INSERT INTO processes (pid, runtime) VALUES (?1, ?2)", params![pid, runtime.to_string()]).map_err(sql)?;
  let rows: Vec<(JournalRecord, String)> =
    (0..n).map(|i| sample_journal(pid, i)).zip(audit_lines).collect();
  let runtime_text = runtime.to_string();
  let start = Instant::now();
  for (seq, (record, line)) in rows.into_iter().enumerate() {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
    tx.prepare_cached(
      "INSERT INTO journal (pid, seq, syscall, args_digest, status, wait, result, result_blob, at_ms)
       VALUES (?1, ?2, ?3, ?4, 'done', NULL, ?5, NULL, ?6)",
    )
    .and_then(|mut s| {
      s.execute(params![
        record.pid,
        record.seq as i64,
        record.syscall,
        record.args_digest,
        record.result.as_ref().map(Value::to_string),
        record.at_ms as i64
      ])
    })
    .map_err(sql)?;
    tx.prepare_cached("UPDATE processes SET runtime = ?2 WHERE pid = ?1")
      .and_then(|mut s| s.execute(params![pid, runtime_text]))
      .map_err(sql)?;
    tx.prepare_cached("INSERT INTO audit (seq, record) VALUES (?1, ?2)")
      .and_then(|mut s| s.execute(params![seq as i64 + 1, line]))
      .map_err(sql)?;
    tx.commit().map_err(sql)?;
  }
  let raw = n as f64 / start.elapsed().as_secs_f64();
  Ok((alos, raw))
}

// ---------------------------------------------------------------------------------------
// 2. Audit append and verify

struct AuditFigures {
  append: f64,
  verify: f64,
  file_append: f64,
  file_parse: f64,
}

fn audit_append_and_verify(n: usize) -> Res<AuditFigures> {
  let dir = temp_dir("audit")?;
  let log = AuditLog::open(Arc::new(Db::open(dir.path()).map_err(|e| e.to_string())?));
  let entries: Vec<Entry> = (0..n).map(|i| sample_entry("p0000bench", i)).collect();
  let start = Instant::now();
  for entry in entries {
    log.append(entry)?;
  }
  let append = n as f64 / start.elapsed().as_secs_f64();
  let lines = log.lines()?;
  let verify = repeat_rate(lines.len(), || {
    audit::verify(&lines).map(|_| ()).map_err(|b| format!("the chain broke at line {}: {}", b.line, b.reason))
  })?;

  // The peer is what a plain append-only log costs with the same durability: each line
  // written to a file and fdatasync'd before the next (alos's commit is durable when it
  // returns, so the peer's line must be too). Its reader only parses the JSON.
  let path = dir.path().join("plain.jsonl");
  let mut file = File::options().create(true).append(true).open(&path).map_err(io)?;
  let start = Instant::now();
  for line in &lines {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    file.write_all(&bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
  }
  let file_append = n as f64 / start.elapsed().as_secs_f64();
  let file_parse = repeat_rate(lines.len(), || {
    let text = std::fs::read_to_string(&path).map_err(io)?;
    for line in text.lines() {
      serde_json::from_str::<Value>(line).map_err(|e| e.to_string())?;
    }
    Ok(())
  })?;
  Ok(AuditFigures { append, verify, file_append, file_parse })
}

// ---------------------------------------------------------------------------------------
// 3. Object Memory put and get

struct MemFigures {
  put: f64,
  get: f64,
  raw_put: f64,
  raw_get: f64,
}

fn sample_value(i: usize) -> Value {
  json!({ "title": format!("note {i}"), "tags": ["bench", "state"], "body": "x".repeat(64), "n": i })
}

fn memory_put_get(n: usize) -> Res<MemFigures> {
  let dir = temp_dir("memory")?;
  let db = Db::open(dir.path()).map_err(|e| e.to_string())?;
  let now = SystemClock.now_ms();
  let writes: Vec<MemWrite> = (0..n)
    .map(|i| MemWrite::Put {
      ns: "bench".into(),
      key: format!("k{i:06}"),
      type_name: "note".into(),
      value: sample_value(i),
      if_version: None,
      creator: "p0000bench".into(),
      now_ms: now,
    })
    .collect();
  let start = Instant::now();
  for write in &writes {
    db.mem_write(write).map_err(|e| e.to_string())?.map_err(|c| c.to_string())?;
  }
  let put = n as f64 / start.elapsed().as_secs_f64();
  let keys: Vec<String> = (0..n).map(|i| format!("k{i:06}")).collect();
  let get = repeat_rate(n, || {
    for key in &keys {
      db.mem_get("bench", key).map_err(|e| e.to_string())?.ok_or("a put object is missing")?;
    }
    Ok(())
  })?;

  // The peer: the same row in an equivalent table, written with one `INSERT OR REPLACE`
  // per immediate transaction (no version check first: that is the versioning alos adds)
  // and read back with a prepared `SELECT`, its JSON value parsed as alos parses it.
  let mut conn = raw_connection(&dir.path().join("raw.db"))?;
  conn
    .execute_batch(
      "CREATE TABLE memory (ns TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,
         version INTEGER NOT NULL, creator TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
         PRIMARY KEY (ns, key));",
    )
    .map_err(sql)?;
  let values: Vec<String> = (0..n).map(|i| sample_value(i).to_string()).collect();
  let start = Instant::now();
  for (key, value) in keys.iter().zip(&values) {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
    tx.prepare_cached(
      "INSERT OR REPLACE INTO memory (ns, key, type, value, version, creator, created_ms, updated_ms)
       VALUES ('bench', ?1, 'note', ?2, 1, 'p0000bench', ?3, ?3)",
    )
    .and_then(|mut s| s.execute(params![key, value, now as i64]))
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
  }
  let raw_put = n as f64 / start.elapsed().as_secs_f64();
  let raw_get = repeat_rate(n, || {
    let mut stmt = conn
      .prepare_cached(
        "SELECT ns, key, type, value, version, creator, created_ms, updated_ms FROM memory WHERE ns = ?1 AND key = ?2",
      )
      .map_err(sql)?;
    for key in &keys {
      let (text, _meta) = stmt
        .query_row(params!["bench", key], |r| {
          let meta: (String, String, String, i64, String, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
          Ok((r.get::<_, String>(3)?, meta))
        })
        .map_err(sql)?;
      serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())?;
    }
    Ok(())
  })?;
  Ok(MemFigures { put, get, raw_put, raw_get })
}

// ---------------------------------------------------------------------------------------
// 4. Hibernated processes (each in a child process of its own)

const WAIT_SCRIPT: &str = "const a = await libos.human.ask(\"go?\");\nlibos.exit(a);\n";
const WARM_SCRIPT: &str = "libos.exit(\"warm\");\n";
const COLD_SCRIPT: &str = "libos.exit(\"yes\");\n";
/// Sleeps below `HIBERNATE_AFTER_MS` (2 s) keep their isolate: a live waiting process.
const LIVE_SCRIPT: &str = "for (;;) await libos.sleep(1_900);\n";

fn child_main(which: &str) {
  let log = bench_dir().join(format!("{which}-stderr.log"));
  redirect_stderr(&log);
  progress(&format!("  ({which}: the kernel's notices go to {})", log.display()));
  let result = match which {
    "hibernate" => hibernation(knob("ALOS_BENCH_PROCS", 10_000), knob("ALOS_BENCH_WINDOW", 8)),
    "live" => live_isolates(knob("ALOS_BENCH_LIVE", 50)),
    other => Err(format!("unknown child {other}")),
  };
  let line = match result {
    Ok(value) => json!({ "ok": value }),
    Err(e) => json!({ "error": e }),
  };
  println!("{RESULT_PREFIX}{line}");
  let _ = std::io::stdout().flush();
  // SAFETY: ends the process at once, without running the engine's static destructors
  // under isolate threads that may still be live; stdout is flushed above.
  unsafe { libc::_exit(0) };
}

/// Runs this binary again as child `which`; its figures come back as one JSON line. Its
/// state goes in a directory removed here when it is over, however it ended.
fn run_child(which: &str) -> Res<Value> {
  let exe = std::env::current_exe().map_err(io)?;
  let state = temp_dir(which)?;
  let out = Command::new(exe)
    .arg("--bench")
    .env(CHILD_ENV, which)
    .env(CHILD_DIR_ENV, state.path())
    .stdin(Stdio::null())
    .stderr(Stdio::inherit())
    .output()
    .map_err(|e| format!("cannot run the {which} child: {e}"))?;
  let text = String::from_utf8_lossy(&out.stdout);
  let line = text
    .lines()
    .find_map(|l| l.strip_prefix(RESULT_PREFIX))
    .ok_or_else(|| format!("the {which} child reported nothing ({}); see {}", out.status, bench_dir().join(format!("{which}-stderr.log")).display()))?;
  let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
  match value.get("error") {
    Some(e) => Err(e.as_str().unwrap_or("failed").to_string()),
    None => Ok(value["ok"].clone()),
  }
}

struct Host {
  kernel: Kernel,
  /// A connection of our own, as `alos ps` or `alos inbox` would use.
  db: Arc<Db>,
  state_dir: PathBuf,
  workspace: PathBuf,
  _dir: tempfile::TempDir,
}

/// A kernel like `alos run --human queue` opens, on a fresh workspace holding the scripts.
fn open_host(name: &str) -> Res<Host> {
  let dir = temp_dir(name)?;
  let workspace = dir.path().join("ws");
  let state_dir = dir.path().join("state");
  std::fs::create_dir_all(&workspace).map_err(io)?;
  for (file, text) in [("wait.ts", WAIT_SCRIPT), ("warm.ts", WARM_SCRIPT), ("cold.ts", COLD_SCRIPT), ("live.ts", LIVE_SCRIPT)] {
    std::fs::write(workspace.join(file), text).map_err(io)?;
  }
  let kernel = open_kernel(&workspace, &state_dir, HumanMode::Queue)?;
  let db = Arc::new(Db::open(&state_dir).map_err(|e| e.to_string())?);
  Ok(Host { kernel, db, state_dir, workspace, _dir: dir })
}

impl Host {
  fn start(&self, script: &str, caps: &[&str]) -> Res<String> {
    let grants = cli_grants(caps)?;
    self.kernel.start_root(ProcessSpec {
      image: script.to_string(),
      entry: self.workspace.join(script),
      args: vec![],
      goal: None,
      grants,
      limits: ProcessLimits::default(),
      tools: None,
    })
  }

  /// Starts one process and waits for it to exit, so that what the first isolate of a
  /// run initializes once is not counted per process.
  fn warm_up(&self) -> Res<()> {
    let pid = self.start("warm.ts", &[])?;
    match self.kernel.wait_exit(&pid) {
      Some(ExitStatus::Ok { .. }) => Ok(()),
      other => Err(format!("the warm-up process ended {other:?}")),
    }
  }

  fn state_of(&self, pid: &str) -> Res<String> {
    Ok(self.db.process(pid).map_err(|e| e.to_string())?.ok_or_else(|| format!("{pid} has no row"))?.state)
  }
}

/// Hibernates P processes and reads the memory they take, then resumes them all and
/// cold-starts a few for comparison. The memory figures stand even if a later part fails
/// (that part's error is reported in their place).
fn hibernation(procs: usize, window: usize) -> Res<Value> {
  let host = Arc::new(open_host("hibernate")?);
  let mut report = hibernate_all(&host, procs, window)?;
  match resume_all(&host, procs, window) {
    Ok(figures) => merge(&mut report, figures),
    Err(e) => report["resume_error"] = json!(e),
  }
  if let Some(fds) = report["fds"].as_array_mut() {
    fds.push(json!(open_fds()));
  }
  match cold_starts(&host, procs.clamp(1, 50)) {
    Ok(figures) => merge(&mut report, figures),
    Err(e) => report["cold_error"] = json!(e),
  }
  Ok(report)
}

fn merge(into: &mut Value, from: Value) {
  if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
    into.extend(from);
  }
}

fn hibernate_all(host: &Arc<Host>, procs: usize, window: usize) -> Res<Value> {
  let threads_idle = threads();
  host.warm_up()?;
  settle_threads(threads_idle, Duration::from_secs(10));
  let rss_before = vm_rss_kib("self")?;
  let fds_before = open_fds();

  // Start P processes, `window` at a time; each worker starts one and waits until its
  // row says it hibernated (its question is in the queue and its isolate is stopped).
  let started = Instant::now();
  run_pool(procs, window, "hibernated", {
    let host = host.clone();
    move |_| {
      let pid = host.start("wait.ts", &["human.ask"])?;
      loop {
        let state = host.state_of(&pid)?;
        if state.starts_with("hibernated") {
          return Ok(());
        }
        if state == "exited" {
          return Err(format!("{pid} exited instead of hibernating: {:?}", host.db.process(&pid).ok().flatten().and_then(|r| r.exit)));
        }
        std::thread::sleep(Duration::from_millis(2));
      }
    }
  })?;
  let hibernate_s = started.elapsed().as_secs_f64();
  let hibernated = host.db.processes().map_err(|e| e.to_string())?.iter().filter(|r| r.state.starts_with("hibernated")).count();
  if hibernated != procs {
    return Err(format!("{hibernated} of {procs} processes are hibernated"));
  }
  // Their isolate threads are on their way out; wait for them before reading the RSS.
  // The host loop's thread stays (it wakes hibernated processes).
  let threads_after = settle_threads(threads_idle + 1, Duration::from_secs(60));
  let rss_after = vm_rss_kib("self")?;
  let fds_hibernated = open_fds();
  // SAFETY: malloc_trim only returns free heap memory to the system.
  #[cfg(target_env = "gnu")]
  unsafe {
    libc::malloc_trim(0);
  }
  let rss_trimmed = vm_rss_kib("self")?;
  progress(&format!(
    "  {procs} hibernated in {hibernate_s:.1} s; VmRSS {rss_before} → {rss_after} KiB ({rss_trimmed} trimmed); \
     open fds {fds_before} → {fds_hibernated}"
  ));
  Ok(json!({
    "procs": procs,
    "hibernate_s": hibernate_s,
    "rss_before_kib": rss_before,
    "rss_after_kib": rss_after,
    "rss_trimmed_kib": rss_trimmed,
    "threads_after": threads_after,
    "fds": [fds_before, fds_hibernated],
    "fd_limit": fd_limit(),
    "kib_per_process": (rss_after as f64 - rss_before as f64) / procs as f64,
    "kib_per_process_trimmed": (rss_trimmed as f64 - rss_before as f64) / procs as f64,
  }))
}

/// Answers every question from `window` threads, like humans at terminals would
/// (`alos approve`), and times each process from its answer being recorded to its exit.
fn resume_all(host: &Arc<Host>, procs: usize, window: usize) -> Res<Value> {
  let requests = host.db.pending_requests().map_err(|e| e.to_string())?;
  if requests.len() != procs {
    return Err(format!("{} questions are pending, {procs} were expected", requests.len()));
  }
  let requests = Arc::new(Mutex::new(requests.into_iter()));
  let started = Instant::now();
  let mut latencies = run_pool(procs, window, "resumed", {
    let host = host.clone();
    move |_| {
      let request = requests.lock().unwrap_or_else(|e| e.into_inner()).next().ok_or("ran out of questions")?;
      alos::kernel::human::answer(&host.state_dir, &request.id, Answer::Value("yes".into()), "bench", SystemClock.now_ms())?;
      let answered = Instant::now();
      match host.kernel.wait_exit(&request.pid) {
        Some(ExitStatus::Ok { result }) if result == json!("yes") => Ok(answered.elapsed().as_secs_f64() * 1e3),
        other => Err(format!("{} ended {other:?} after its answer", request.pid)),
      }
    }
  })?;
  Ok(json!({
    "resume_total_s": started.elapsed().as_secs_f64(),
    "resume_p50_ms": percentile(&mut latencies, 0.50),
    "resume_p99_ms": percentile(&mut latencies, 0.99),
  }))
}

/// The peer of a resume: a cold start of a script that exits at once, one at a time.
fn cold_starts(host: &Host, count: usize) -> Res<Value> {
  let mut cold = vec![];
  for _ in 0..count {
    let start = Instant::now();
    let pid = host.start("cold.ts", &[])?;
    match host.kernel.wait_exit(&pid) {
      Some(ExitStatus::Ok { .. }) => cold.push(start.elapsed().as_secs_f64() * 1e3),
      other => return Err(format!("a cold start ended {other:?}")),
    }
  }
  Ok(json!({ "cold_p50_ms": percentile(&mut cold, 0.50), "cold_p99_ms": percentile(&mut cold, 0.99) }))
}

/// The in-process peer: the same number of bytes per process when a waiting process
/// keeps its isolate (sleeping in steps too short to hibernate).
fn live_isolates(count: usize) -> Res<Value> {
  let host = open_host("live")?;
  let threads_idle = threads();
  host.warm_up()?;
  settle_threads(threads_idle, Duration::from_secs(10));
  let rss_before = vm_rss_kib("self")?;
  let mut pids = vec![];
  for _ in 0..count {
    pids.push(host.start("live.ts", &[])?);
  }
  // Long enough for every one to be in (at least) its second sleep.
  std::thread::sleep(Duration::from_millis(4_000));
  for pid in &pids {
    if host.state_of(pid)? == "exited" {
      return Err(format!("{pid} exited; it should sleep forever"));
    }
  }
  let rss_after = vm_rss_kib("self")?;
  progress(&format!("  {count} live isolates: VmRSS {rss_before} → {rss_after} KiB"));
  for pid in &pids {
    host.kernel.finish(pid, ExitStatus::Killed { reason: "bench over".into() });
  }
  Ok(json!({
    "count": count,
    "kib_per_process": (rss_after as f64 - rss_before as f64) / count as f64,
  }))
}

/// Runs `job(i)` for i in 0..total on `width` threads; any error stops the run.
fn run_pool<T: Send + 'static>(
  total: usize,
  width: usize,
  what: &str,
  job: impl Fn(usize) -> Res<T> + Send + Sync + 'static,
) -> Res<Vec<T>> {
  let job = Arc::new(job);
  let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
  let (tx, rx) = mpsc::channel::<Res<T>>();
  for _ in 0..width.max(1) {
    let (job, next, tx) = (job.clone(), next.clone(), tx.clone());
    std::thread::spawn(move || loop {
      let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
      if i >= total {
        return;
      }
      let result = job(i);
      if result.is_err() {
        // No worker takes another job.
        next.fetch_add(total, std::sync::atomic::Ordering::SeqCst);
      }
      if tx.send(result).is_err() {
        return;
      }
    });
  }
  drop(tx);
  let started = Instant::now();
  let mut last_report = Instant::now();
  let mut out = Vec::with_capacity(total);
  for result in rx {
    out.push(result.map_err(|e| format!("{e} (after {} of {total} {what})", out.len()))?);
    if last_report.elapsed() >= Duration::from_secs(5) || out.len() == total {
      last_report = Instant::now();
      let rate = out.len() as f64 / started.elapsed().as_secs_f64();
      progress(&format!("  {what} {}/{total} ({rate:.0}/s, {} open fds)", out.len(), open_fds()));
    }
  }
  if out.len() != total {
    return Err(format!("only {} of {total} {what}", out.len()));
  }
  Ok(out)
}

// ---------------------------------------------------------------------------------------
// The Deno peer

struct DenoFigures {
  version: String,
  binary: PathBuf,
  samples: usize,
  vm_rss_kib: f64,
  rss_anon_kib: f64,
}

/// What one waiting agent costs as its own Deno process: a script that awaits a promise
/// that a long timer resolves (a bare never-resolving promise would make Deno exit, as
/// nothing keeps its event loop alive). Averaged over a few processes waiting together.
fn deno_waiting() -> Res<DenoFigures> {
  let binary = deno_binary()?;
  let version = deno_version(&binary)?;
  let dir = temp_dir("deno")?;
  let script = dir.path().join("wait.js");
  std::fs::write(
    &script,
    "const a = await new Promise((resolve) => { setTimeout(() => resolve(\"yes\"), 2 ** 31 - 1); console.log(\"ready\"); });\nconsole.log(a);\n",
  )
  .map_err(io)?;
  const SAMPLES: usize = 5;
  let mut children = vec![];
  for _ in 0..SAMPLES {
    let child = Command::new(&binary)
      .args(["run", "--quiet", "--no-config", "--no-lock"])
      .arg(&script)
      .env("DENO_DIR", dir.path().join("deno-dir"))
      .env("DENO_NO_UPDATE_CHECK", "1")
      .env("NO_COLOR", "1")
      .stdin(Stdio::null())
      .stdout(Stdio::piped())
      .stderr(Stdio::inherit())
      .spawn()
      .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    children.push(child);
  }
  let measured = (|| {
    for child in &mut children {
      let mut line = String::new();
      std::io::BufReader::new(child.stdout.as_mut().ok_or("no stdout")?).read_line(&mut line).map_err(io)?;
      if line.trim() != "ready" {
        return Err(format!("deno printed {line:?} instead of ready"));
      }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (mut rss, mut anon) = (0.0, 0.0);
    for child in &children {
      let pid = child.id().to_string();
      rss += vm_rss_kib(&pid)? as f64;
      anon += status_kib(&pid, "RssAnon:")? as f64;
    }
    Ok((rss / SAMPLES as f64, anon / SAMPLES as f64))
  })();
  for child in &mut children {
    let _ = child.kill();
    let _ = child.wait();
  }
  let (vm_rss_kib, rss_anon_kib) = measured?;
  Ok(DenoFigures { version, binary, samples: SAMPLES, vm_rss_kib, rss_anon_kib })
}

// ---------------------------------------------------------------------------------------
// Helpers

fn temp_dir(name: &str) -> Res<tempfile::TempDir> {
  let root = std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from).unwrap_or_else(bench_dir);
  tempfile::Builder::new().prefix(&format!("{name}-")).tempdir_in(root).map_err(io)
}

/// A connection with the pragmas `Db::open` sets.
fn raw_connection(path: &Path) -> Res<Connection> {
  let conn = Connection::open(path).map_err(sql)?;
  conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
  conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;").map_err(sql)?;
  Ok(conn)
}

fn sql(e: rusqlite::Error) -> String {
  e.to_string()
}

/// Items per second of `f` over `items`, repeated until it has run for at least 300 ms
/// (the fast, in-memory measurements are over in a few milliseconds otherwise).
fn repeat_rate(items: usize, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
  let start = Instant::now();
  let mut rounds = 0;
  while rounds == 0 || start.elapsed() < Duration::from_millis(300) {
    f()?;
    rounds += 1;
  }
  Ok((items * rounds) as f64 / start.elapsed().as_secs_f64())
}

/// A `KEY:  N kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: &str, key: &str) -> Res<u64> {
  let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(io)?;
  text
    .lines()
    .find_map(|l| l.strip_prefix(key))
    .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

fn vm_rss_kib(pid: &str) -> Res<u64> {
  status_kib(pid, "VmRSS:")
}

fn threads() -> usize {
  std::fs::read_to_string("/proc/self/status")
    .ok()
    .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()))
    .unwrap_or(0)
}

/// The soft limit on open file descriptors (`ulimit -n`).
fn fd_limit() -> libc::rlim_t {
  let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
  // SAFETY: getrlimit writes into the struct we pass.
  if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
    limit.rlim_cur
  } else {
    0
  }
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
  std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Waits until this process has at most `target` threads, or their count has not
/// moved for a second (or `limit` passed); returns the count.
fn settle_threads(target: usize, limit: Duration) -> usize {
  let start = Instant::now();
  let (mut last, mut since) = (threads(), Instant::now());
  while last > target && since.elapsed() < Duration::from_secs(1) && start.elapsed() < limit {
    std::thread::sleep(Duration::from_millis(20));
    let now = threads();
    if now != last {
      (last, since) = (now, Instant::now());
    }
  }
  std::thread::sleep(Duration::from_millis(200));
  threads()
}

/// Where progress goes in a child: the terminal's stderr, kept aside when fd 2 is sent
/// to a file (the human queue prints two lines per question there, which for thousands
/// of processes would bury the progress lines).
static PROGRESS: OnceLock<Mutex<File>> = OnceLock::new();

fn redirect_stderr(log: &Path) {
  use std::os::fd::AsRawFd;
  use std::os::fd::FromRawFd;
  let Ok(file) = File::create(log) else { return };
  // SAFETY: fd 2 is open for the life of the process; `dup` gives us a new fd we own.
  unsafe {
    let saved = libc::dup(2);
    if saved < 0 || libc::dup2(file.as_raw_fd(), 2) < 0 {
      return;
    }
    let _ = PROGRESS.set(Mutex::new(File::from_raw_fd(saved)));
  }
  std::panic::set_hook(Box::new(|info| progress(&format!("panic: {info}"))));
}

fn progress(message: &str) {
  match PROGRESS.get() {
    Some(out) => {
      let _ = writeln!(out.lock().unwrap_or_else(|e| e.into_inner()), "{message}");
    }
    None => eprintln!("{message}"),
  }
}
