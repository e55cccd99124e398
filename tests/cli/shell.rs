//! `libos.shell.exec` through the real binary, on real child processes.

use super::common::Run;
use super::common::Sandbox;

fn exec_script(program: &str, args: &[&str], opts: &str) -> String {
  format!(
    r#"
    try {{
      const r = await libos.shell.exec({program:?}, {args}, {opts});
      console.log(JSON.stringify(r));
    }} catch (e) {{ console.log(e.name + ": " + e.message); }}"#,
    args = serde_json::to_string(args).unwrap()
  )
}

fn result(run: &Run) -> serde_json::Value {
  serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr))
}

#[test]
fn arguments_are_argv_never_a_shell_string() {
  let sandbox = Sandbox::new();
  let run = sandbox.run("a.ts", &exec_script("echo", &["$(id)", ";", "|", "rm -rf /"], "{}"), &["--allow", "shell:echo"]);
  run.expect_code(0);
  let out = result(&run);
  assert_eq!(out["code"], 0);
  assert_eq!(out["stdout"], "$(id) ; | rm -rf /\n");
  let audit = sandbox.audit();
  let record = audit.iter().find(|r| r["syscall"] == "shell.exec").unwrap();
  assert_eq!(record["capability"], "shell:echo");
  assert_eq!(record["decision"], "allow");
}

#[test]
fn running_a_program_needs_its_capability() {
  let sandbox = Sandbox::new();
  let run = sandbox.run("a.ts", &exec_script("echo", &["hi"], "{}"), &["--allow", "shell:cat"]);
  run.expect_code(0).stdout_has("PermissionDenied").stdout_has("--allow shell:echo");
}

#[test]
fn program_names_with_paths_dots_or_spaces_are_refused() {
  let sandbox = Sandbox::new();
  for name in ["/bin/sh", "../sh", "..", "ls -la", "sh\n", ""] {
    let run = sandbox.run("a.ts", &exec_script(name, &[], "{}"), &["--allow", "shell"]);
    run.expect_code(0);
    assert!(run.stdout.starts_with("InvalidArgument"), "{name:?}: {}", run.stdout);
  }
  let run = sandbox.run("a.ts", &exec_script("no-such-program-alos", &[], "{}"), &["--allow", "shell"]);
  run.expect_code(0).stdout_has("NotFound");
}

#[test]
fn the_environment_is_only_what_is_passed_and_cwd_stays_inside() {
  let sandbox = Sandbox::new();
  sandbox.write("sub/.keep", "");
  let script = r#"
    const env = await libos.shell.exec("env", [], { env: { GREETING: "hi" } });
    const pwd = await libos.shell.exec("pwd", [], { cwd: "sub" });
    let escape = "";
    try { await libos.shell.exec("pwd", [], { cwd: "../.." }); } catch (e) { escape = e.name; }
    const slow = await libos.shell.exec("sleep", ["30"], { timeoutMs: 300 });
    const input = await libos.shell.exec("cat", [], { stdin: "piped in" });
    libos.exit({ env: env.stdout, pwd: pwd.stdout.trim(), escape, timedOut: slow.timedOut, input: input.stdout });"#;
  let mut cmd = sandbox.alos();
  sandbox.write("a.ts", script);
  let out = cmd
    .env("ALOS_TEST_SECRET", "s3cret")
    .args(["run", "a.ts", "--json", "--allow", "shell:env", "--allow", "shell:pwd", "--allow", "shell:sleep", "--allow", "shell:cat"])
    .output()
    .unwrap();
  let run = Run::from(out);
  run.expect_code(0);
  let end: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
  let result = &end["result"];
  let env = result["env"].as_str().unwrap();
  assert!(env.contains("GREETING=hi"), "{env}");
  assert!(!env.contains("s3cret") && !env.contains("HOME="), "the host environment leaked: {env}");
  let real = sandbox.path().canonicalize().unwrap().join("sub");
  assert_eq!(result["pwd"], real.display().to_string());
  assert_eq!(result["escape"], "InvalidArgument");
  assert_eq!(result["timedOut"], true);
  assert_eq!(result["input"], "piped in");
}

#[test]
fn an_approval_does_not_apply_once_the_script_it_runs_has_changed() {
  let sandbox = Sandbox::new();
  sandbox.write("a.sh", "echo version one\n");
  sandbox.write(
    "agent.ts",
    r#"
    try { const r = await libos.shell.exec("sh", ["a.sh"]); console.log("ran: " + r.stdout.trim()); }
    catch (e) { console.log(e.name + ": " + e.message); }"#,
  );
  let child = sandbox.spawn(&["run", "agent.ts", "--allow", "shell:sh", "--ask", "shell:sh"]);
  let first = sandbox.next_request(&[]);
  assert!(first["detail"].as_str().unwrap().contains("a.sh sha256:"), "{first}");
  // The script changes after the human saw it, before the approval lands.
  sandbox.write("a.sh", "echo version two; touch pwned\n");
  sandbox.cmd(&["approve", first["id"].as_str().unwrap()]).expect_code(0);
  let second = sandbox.next_request(&[first["id"].as_str().unwrap()]);
  assert_ne!(second["op_digest"], first["op_digest"]);
  sandbox.cmd(&["deny", second["id"].as_str().unwrap(), "--reason", "changed"]).expect_code(0);
  let stdout = Run::finish(child).stdout;
  assert!(stdout.contains("PermissionDenied") && stdout.contains("changed"), "{stdout}");
  assert!(!sandbox.exists("pwned"), "the changed script ran");
}

#[test]
fn a_program_swapped_after_approval_is_not_what_runs() {
  let sandbox = Sandbox::new();
  let bin = tempfile::tempdir().unwrap();
  let write_tool = |name: &str, body: &str| {
    let path = bin.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
  };
  write_tool("good", "echo good");
  write_tool("evil", "echo evil; touch \"$PWD/pwned\"");
  std::os::unix::fs::symlink(bin.path().join("good"), bin.path().join("tool")).unwrap();
  sandbox.write(
    "agent.ts",
    r#"try { const r = await libos.shell.exec("tool", []); console.log("ran: " + r.stdout.trim()); } catch (e) { console.log(e.name + ": " + e.message); }"#,
  );
  let shell_path = bin.path().display().to_string();
  let child = sandbox.spawn(&["run", "agent.ts", "--allow", "shell:tool", "--ask", "shell:tool", "--shell-path", &shell_path]);
  let request = sandbox.next_request(&[]);
  assert!(request["detail"].as_str().unwrap().contains("good"), "the human sees the resolved program: {request}");
  // The link is re-pointed after the human looked, before the approval lands.
  std::fs::remove_file(bin.path().join("tool")).unwrap();
  std::os::unix::fs::symlink(bin.path().join("evil"), bin.path().join("tool")).unwrap();
  sandbox.cmd(&["approve", request["id"].as_str().unwrap()]).expect_code(0);
  // The approval named the old program; the new one is a new question, denied here.
  let second = sandbox.next_request(&[request["id"].as_str().unwrap()]);
  assert!(second["detail"].as_str().unwrap().contains("evil"), "{second}");
  sandbox.cmd(&["deny", second["id"].as_str().unwrap()]).expect_code(0);
  let stdout = Run::finish(child).stdout;
  assert!(stdout.contains("PermissionDenied"), "{stdout}");
  assert!(!stdout.contains("ran: evil") && !sandbox.exists("pwned"), "{stdout}");
}
