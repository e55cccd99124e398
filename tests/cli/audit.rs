//! `alos audit` and `alos audit verify` on real logs, intact and tampered with.

use super::common::Run;
use super::common::Sandbox;

fn logged_sandbox() -> Sandbox {
  let sandbox = Sandbox::new();
  sandbox.write("a.txt", "a");
  sandbox
    .run(
      "a.ts",
      r#"await libos.fs.readText("a.txt"); await libos.fs.readText("nope").catch(() => {}); await libos.fs.writeText("b.txt", "b").catch(() => {});"#,
      &["--allow", "fs.read"],
    )
    .expect_code(0);
  sandbox
}

fn verify(sandbox: &Sandbox) -> Run {
  Run::from(sandbox.alos().args(["audit", "verify"]).output().unwrap())
}

/// Tampers with the audit table the way someone with the `sqlite3` tool could.
fn rewrite(sandbox: &Sandbox, edit: impl FnOnce(&mut Vec<String>)) {
  let db = rusqlite::Connection::open(sandbox.path().join(".alos/alos.db")).unwrap();
  let mut lines: Vec<String> = {
    let mut stmt = db.prepare("SELECT record FROM audit ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
  };
  edit(&mut lines);
  db.execute("DELETE FROM audit", []).unwrap();
  for (index, line) in lines.iter().enumerate() {
    db.execute("INSERT INTO audit (seq, record) VALUES (?1, ?2)", rusqlite::params![index as i64 + 1, line]).unwrap();
  }
}

#[test]
fn an_intact_log_verifies_and_shows() {
  let sandbox = logged_sandbox();
  verify(&sandbox).expect_code(0).stdout_has("5 audit records, chain intact");
  let shown = Run::from(sandbox.alos().arg("audit").output().unwrap());
  shown.expect_code(0).stdout_has("fs.readText a.txt allow by grant").stdout_has("fs.writeText b.txt deny by no grant");
  let json = Run::from(sandbox.alos().args(["audit", "--json"]).output().unwrap());
  assert_eq!(json.stdout.lines().count(), 5);
  let other = Run::from(sandbox.alos().args(["audit", "--pid", "p-nobody"]).output().unwrap());
  assert_eq!(other.stdout, "");
}

#[test]
fn one_changed_byte_is_reported_at_its_line() {
  let sandbox = logged_sandbox();
  rewrite(&sandbox, |lines| lines[2] = lines[2].replacen("\"ok\"", "\"oK\"", 1).replacen("NotFound", "NotFounD", 1));
  verify(&sandbox).expect_code(1).stderr_has("broken at record 3").stderr_has("edited");
}

#[test]
fn a_deleted_record_is_reported() {
  let sandbox = logged_sandbox();
  rewrite(&sandbox, |lines| {
    lines.remove(1);
  });
  verify(&sandbox).expect_code(1).stderr_has("broken at record 2").stderr_has("dropped");
}

#[test]
fn swapped_records_are_reported() {
  let sandbox = logged_sandbox();
  rewrite(&sandbox, |lines| lines.swap(2, 3));
  verify(&sandbox).expect_code(1).stderr_has("broken at record 3");
}

#[test]
fn concurrent_runs_extend_one_chain() {
  let sandbox = Sandbox::new();
  sandbox.write("a.ts", "for (let i = 0; i < 20; i++) await libos.fs.stat('.');");
  let children: Vec<_> = (0..4)
    .map(|_| {
      sandbox.spawn(&["run", "a.ts", "--allow", "fs.read"])
    })
    .collect();
  for mut child in children {
    assert!(child.wait().unwrap().success());
  }
  // 4 × (spawn + 20 stats + exit).
  verify(&sandbox).expect_code(0).stdout_has("88 audit records, chain intact");
}

#[test]
fn control_characters_in_records_are_escaped_on_display() {
  let sandbox = Sandbox::new();
  sandbox.run("a.ts", r#"await libos.fs.readText("evil\u001b[2J\rname").catch(() => {});"#, &["--allow", "fs.read"]);
  let shown = Run::from(sandbox.alos().arg("audit").output().unwrap());
  assert!(!shown.stdout.contains('\u{1b}'), "{:?}", shown.stdout);
  shown.stdout_has("evil\\u{1b}[2J\\u{d}name");
}

/// `alos audit | head` ends quietly when head stops reading: no panic, no "Broken pipe".
#[test]
fn a_listing_piped_into_head_ends_quietly() {
  let sandbox = super::common::Sandbox::new();
  sandbox.write("data/a.txt", "x");
  // Enough records that the listing outgrows a pipe's buffer.
  sandbox.run("many.ts", "for (let i = 0; i < 1500; i++) await libos.fs.stat('data/a.txt');", &["--allow", "fs.read:data/**"]).expect_code(0);
  let alos = assert_cmd::cargo::cargo_bin("alos");
  let out = std::process::Command::new("sh")
    .arg("-c")
    .arg(format!("'{}' audit | head -n 1", alos.display()))
    .current_dir(sandbox.path())
    .output()
    .unwrap();
  let stderr = String::from_utf8_lossy(&out.stderr);
  assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
  assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
