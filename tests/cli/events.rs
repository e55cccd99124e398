//! `libos.events` between processes, and `libos.sleep`.

use super::common::Sandbox;

#[test]
fn events_pass_between_processes_and_need_topic_capabilities() {
  let sandbox = Sandbox::new();
  sandbox.write(
    "child.ts",
    r#"
    await libos.events.emit("jobs/done", { n: 1 });
    await libos.events.emit("jobs/done", { n: 2 });
    let denied = "";
    try { await libos.events.emit("other", 1); } catch (e) { denied = e.name; }
    libos.exit(denied);"#,
  );
  let run = sandbox.run(
    "main.ts",
    r#"
    const pid = await libos.proc.spawn({ entry: "child.ts", caps: ["event.emit:jobs/*"] });
    const a = await libos.events.next("jobs/done");
    const b = await libos.events.next("jobs/done");
    let timeout = "";
    try { await libos.events.next("jobs/done", { timeoutMs: 100 }); } catch (e) { timeout = e.name; }
    let denied = "";
    try { await libos.events.next("secret"); } catch (e) { denied = e.name; }
    const child = (await libos.proc.wait(pid)).exit.result;
    const before = libos.now();
    await libos.sleep(50);
    libos.exit({ payloads: [a.payload.n, b.payload.n], from: a.from === pid, timeout, denied, child, slept: libos.now() - before >= 50 });"#,
    &["--allow", "proc.spawn", "--allow", "event.emit:jobs/*", "--allow", "event.wait:jobs/*", "--json"],
  );
  run.expect_code(0);
  let end: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
  assert_eq!(
    end["result"],
    serde_json::json!({ "payloads": [1, 2], "from": true, "timeout": "Timeout", "denied": "PermissionDenied", "child": "PermissionDenied", "slept": true })
  );
}
