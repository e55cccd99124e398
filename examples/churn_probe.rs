//! Isolate churn probe: prints RSS every 50 isolates (the per-isolate growth is the leak).
//!
//! `PROBE=<mode>` picks the experiment (default `isolate`, the real `Isolate::start`):
//!   isolate       alos Isolate::start + join (our extension, loader, entry module, own thread)
//!   plain-same    JsRuntime::new(Default), no extensions, all on the main thread
//!   plain-thread  JsRuntime::new(Default), one fresh OS thread per runtime
//!   ext-same      JsRuntime with only our extension, all on the main thread
//!   ext-thread    JsRuntime with only our extension, one fresh OS thread per runtime
//!   threads       only spawn + join a thread that builds a tokio current-thread runtime
//!   v8-iso        bare v8::Isolate::new + drop (no deno_core)
//!   v8-ctx        bare isolate + Context::new
//!   v8-script     bare isolate + context + compile/run `1 + 1`
//!   v8-tmpl       bare isolate + context + `T` FunctionTemplates (+ External data if `DATA`)
//!   v8-synth-fn   bare isolate + context + a synthetic module exporting a function
//!   v8-synth-obj  same, exporting a plain object
//! `N` = total isolates (default 400); `EXEC=1` also runs a script in the plain/ext modes;
//! the first argument is the entry script's source for `isolate`.
//!
//! Findings (v8x 149.4.0-rc.4, QuickJS): v8-iso/ctx/script stay flat; v8-tmpl with T=1 and
//! v8-synth-* grow ~495 KiB per isolate; every deno_core runtime ~770 KiB. One leaked
//! reference into a context (a template's cached prototype, a synthetic-module export copy,
//! a module handle) keeps the whole context alive past JS_FreeRuntime, and its >512-byte
//! allocations are never freed. Running more than ~270 runtimes on one thread also fails
//! (v8x's per-thread dispatch index overflows QuickJS's int16 `magic`), so isolate threads
//! must not be pooled/reused.
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

fn raw(ctx: bool, script: bool) {
  use deno_core::v8;
  let isolate = &mut v8::Isolate::new(Default::default());
  if ctx {
    let scope = std::pin::pin!(v8::HandleScope::new(isolate));
    let scope = &mut scope.init();
    let context = v8::Context::new(scope, Default::default());
    let scope = &mut v8::ContextScope::new(scope, context);
    if script {
      let code = v8::String::new(scope, "1 + 1").unwrap();
      let script = v8::Script::compile(scope, code, None).unwrap();
      script.run(scope).unwrap();
    }
  }
}

fn raw_tmpl(n: usize, data: bool) {
  use deno_core::v8;
  fn cb(_s: &mut v8::PinScope, _a: v8::FunctionCallbackArguments, _r: v8::ReturnValue) {}
  let isolate = &mut v8::Isolate::new(Default::default());
  let scope = std::pin::pin!(v8::HandleScope::new(isolate));
  let scope = &mut scope.init();
  let context = v8::Context::new(scope, Default::default());
  let scope = &mut v8::ContextScope::new(scope, context);
  let global = context.global(scope);
  for i in 0..n {
    let mut b = v8::FunctionTemplate::builder(cb);
    if data { let ext = v8::External::new(scope, std::ptr::null_mut::<std::ffi::c_void>().wrapping_add(i + 1)); b = b.data(ext.into()); }
    let t = b.build(scope);
    if std::env::var("CLASSNAME").is_ok() { t.set_class_name(v8::String::new(scope, "cls").unwrap()); }
    let f = t.get_function(scope).unwrap();
    if std::env::var("SETNAME").is_ok() { f.set_name(v8::String::new(scope, "nm").unwrap()); }
    let k = v8::String::new(scope, &format!("f{i}")).unwrap();
    global.set(scope, k.into(), f.into());
  }
  if let Ok(src) = std::env::var("TEARDOWN") {
    let code = v8::String::new(scope, &src).unwrap();
    let script = v8::Script::compile(scope, code, None).unwrap();
    script.run(scope).unwrap();
  }
}

fn raw_synth(kind: &str) {
  use deno_core::v8;
  thread_local! { static EXP: std::cell::RefCell<Option<v8::Global<v8::Value>>> = const { std::cell::RefCell::new(None) }; }
  fn steps<'s>(context: v8::Local<'s, v8::Context>, module: v8::Local<'s, v8::Module>) -> Option<v8::Local<'s, v8::Value>> {
    v8::callback_scope!(unsafe scope, context);
    let name = v8::String::new(scope, "f").unwrap();
    let g = EXP.with(|e| e.borrow_mut().take()).unwrap();
    let value = v8::Local::new(scope, g);
    module.set_synthetic_module_export(scope, name, value).unwrap();
    Some(v8::undefined(scope).into())
  }
  fn resolve<'s>(_c: v8::Local<'s, v8::Context>, _s: v8::Local<'s, v8::String>, _a: v8::Local<'s, v8::FixedArray>, _r: v8::Local<'s, v8::Module>) -> Option<v8::Local<'s, v8::Module>> { None }
  let isolate = &mut v8::Isolate::new(Default::default());
  let scope = std::pin::pin!(v8::HandleScope::new(isolate));
  let scope = &mut scope.init();
  let context = v8::Context::new(scope, Default::default());
  let scope = &mut v8::ContextScope::new(scope, context);
  let value: v8::Local<v8::Value> = match kind {
    "obj" => v8::Object::new(scope).into(),
    _ => v8::Function::new(scope, |_s: &mut v8::PinScope, _a: v8::FunctionCallbackArguments, _r: v8::ReturnValue| {}).unwrap().into(),
  };
  EXP.with(|e| *e.borrow_mut() = Some(v8::Global::new(scope, value)));
  let name = v8::String::new(scope, "ext:probe").unwrap();
  let f = v8::String::new(scope, "f").unwrap();
  let m = v8::Module::create_synthetic_module(scope, name, &[f], steps);
  m.instantiate_module(scope, resolve).unwrap();
  m.evaluate(scope).unwrap();
}

fn main() {
  JsRuntime::init_platform(None);
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
        "v8-iso" => raw(false, false),
        "v8-ctx" => raw(true, false),
        "v8-script" => raw(true, true),
        "v8-tmpl" => raw_tmpl(std::env::var("T").ok().and_then(|s| s.parse().ok()).unwrap_or(1), std::env::var("DATA").is_ok()),
        "v8-synth-fn" => raw_synth("fn"),
        "v8-synth-obj" => raw_synth("obj"),
        m => panic!("unknown mode {m}"),
      }
    }
    println!("after {} isolates: {} KiB", (round + 1) * step, rss());
  }
}
