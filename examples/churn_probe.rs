use std::sync::Arc;
use alos::engine::*;
use alos_ops::{Broker, Reply, PendingReply};
use serde_json::{json, Value};
struct Minimal;
impl Broker for Minimal {
  fn syscall(&self, pid: &str, _name: &str, _args: Value) -> Reply { Ok(json!({ "pid": pid, "args": [] })) }
  fn syscall_async(&self, pid: &str, name: &str, args: Value) -> PendingReply { Box::pin(std::future::ready(self.syscall(pid, name, args))) }
}
fn rss() -> u64 { let s = std::fs::read_to_string("/proc/self/statm").unwrap(); s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4 }
fn main() {
  let entry = std::path::Path::new("/tmp/churn/main.js");
  std::fs::write(entry, std::env::args().nth(1).unwrap_or("libos.pid;".into())).unwrap();
  for round in 0..8 {
    for _ in 0..50 {
      let spec = IsolateSpec { pid: "p".into(), entry: entry.to_path_buf(), broker: Arc::new(Minimal), limits: IsolateLimits::default(), builtins: &[] };
      Isolate::start(spec, |_| {}).unwrap().join();
    }
    println!("after {} isolates: {} KiB", (round + 1) * 50, rss());
  }
}
