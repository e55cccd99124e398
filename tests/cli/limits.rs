//! Per-isolate limits: wall time, heap, syscall count. A limit hit is a clean, audited
//! failure of that process only (exit code 4).

use super::common::Sandbox;

#[test]
fn a_runaway_loop_is_stopped_by_the_timeout() {
  let sandbox = Sandbox::new();
  let started = std::time::Instant::now();
  let run = sandbox.run("spin.ts", "console.log('spinning'); while (true) {}", &["--timeout", "500ms"]);
  run.expect_code(4).stdout_has("spinning").stderr_has("timeout");
  // Generous bound: this checks the loop was stopped at all, not how fast.
  assert!(started.elapsed() < std::time::Duration::from_secs(60));
  let audit = sandbox.audit();
  let exit = audit.iter().find(|r| r["syscall"] == "exit").expect("exit record");
  assert_eq!(exit["outcome"], "limit_exceeded");
}

#[test]
fn a_heap_bomb_is_stopped_by_the_heap_limit() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "bomb.ts",
    "const hoard: string[][] = []; while (true) { hoard.push(new Array(100000).fill('x'.repeat(16))); }",
    &["--heap-mb", "32", "--timeout", "60s"],
  );
  run.expect_code(4).stderr_has("heap");
}

#[test]
fn the_syscall_budget_ends_the_process() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "chatty.ts",
    "for (let i = 0; i < 1000; i++) { libos.now(); } console.log('finished');",
    &["--max-syscalls", "50"],
  );
  run.expect_code(4).stderr_has("max_syscalls=50");
  assert!(!run.stdout.contains("finished"));
  let audit = sandbox.audit();
  assert!(audit.iter().any(|r| r["decided_by"].as_str().is_some_and(|d| d.contains("max_syscalls=50"))));
}

#[test]
fn uncaught_limit_in_one_run_does_not_affect_the_next() {
  let sandbox = Sandbox::new();
  sandbox.run("spin.ts", "while (true) {}", &["--timeout", "200ms"]).expect_code(4);
  sandbox.run("ok.ts", "libos.exit('fine');", &[]).expect_code(0).stdout_has("fine");
}
