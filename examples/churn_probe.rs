//! Isolate churn probe: prints RSS every 50 isolates.
//!
//! `PROBE=<mode>` picks the experiment (default `isolate`, the real `Isolate::start`):
//!   isolate      alos Isolate::start + join, one OS thread per isolate
//!   plain-same   JsRuntime::new(Default) with no extensions, all on one thread
//!   plain-thread JsRuntime::new(Default), one fresh OS thread per runtime
//!   ext-same     JsRuntime with our extension, all on one thread
//!   ext-thread   JsRuntime with our extension, one fresh OS thread per runtime
//!   threads      only spawn+join a thread that builds a tokio current-thread runtime
//! `N` = total isolates (default 400); the first arg is the script source.
use std::sync::Arc;
use alos::engine::*;
use alos_ops::{Broker, Reply, PendingReply, Caller};
use deno_core::{JsRuntime, RuntimeOptions};
use serde_json::{json, Value};
struct Minimal;
impl Broker for Minimal {
  fn syscall(&self, pid: &str, _name: &str, _args: Value) -> Reply { Ok(json!({ "pid": pid, "args": [] })) }
  fn syscall_async(&self, pid: &str, name: &str, args: Value) -> PendingReply { Box::pin(std::future::ready(self.syscall(pid, name, args))) }
}
fn rss() -> u64 { let s = std::fs::read_to_string("/proc/self/statm").unwrap(); s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4 }

fn plain(ext: bool) {
  let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
  let _g = tokio.enter();
  let extensions = if ext { vec![alos_ops::extension(Caller { pid: "p".into(), broker: Arc::new(Minimal) })] } else { vec![] };
  let mut rt = JsRuntime::new(RuntimeOptions { extensions, ..Default::default() });
  if std::env::var("EXEC").is_ok() { rt.execute_script("probe", "1 + 1").unwrap(); }
  drop(rt);
}

fn main() {
  let _ = std::fs::create_dir_all("/tmp/churn");
  let entry = std::path::Path::new("/tmp/churn/main.js");
  std::fs::write(entry, std::env::args().nth(1).unwrap_or("libos.pid;".into())).unwrap();
  let mode = std::env::var("PROBE").unwrap_or("isolate".into());
  let n: usize = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
  let step = 50.min(n);
  println!("mode {mode}: start {} KiB", rss());
  for round in 0..n / step {
    for _ in 0..step {
      match mode.as_str() {
        "isolate" => {
          let spec = IsolateSpec { pid: "p".into(), entry: entry.to_path_buf(), root: entry.parent().unwrap().to_path_buf(), broker: Arc::new(Minimal), limits: IsolateLimits::default(), builtins: &[] };
          Isolate::start(spec, |_| {}).unwrap().join();
        }
        "plain-same" => plain(false),
        "ext-same" => plain(true),
        "plain-thread" => std::thread::spawn(|| plain(false)).join().unwrap(),
        "ext-thread" => std::thread::spawn(|| plain(true)).join().unwrap(),
        "threads" => std::thread::spawn(|| { tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(); }).join().unwrap(),
        m => panic!("unknown mode {m}"),
      }
    }
    println!("after {} isolates: {} KiB", (round + 1) * step, rss());
  }
}
