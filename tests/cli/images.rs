//! AgentImages: `alos image add|ls` and `alos spawn IMAGE[@VERSION]`, with the example
//! image in examples/image.

use std::path::Path;

use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;

/// A workspace holding the example image in `image/` (manifest and entry) and the files
/// its agent reads: data/greeting.txt and secrets/token.txt.
fn sandbox() -> Sandbox {
  let sandbox = Sandbox::new();
  let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/image");
  for rel in ["image.toml", "agent.ts"] {
    sandbox.write(&format!("image/{rel}"), std::fs::read(example.join(rel)).unwrap());
  }
  for rel in ["data/greeting.txt", "secrets/token.txt"] {
    sandbox.write(rel, std::fs::read(example.join(rel)).unwrap());
  }
  sandbox
}

fn add(sandbox: &Sandbox, manifest: &str) -> Run {
  sandbox.cmd(&["image", "add", manifest])
}

/// `alos spawn IMAGE --json ARGS...`, expecting exit 0; the process's result.
fn spawn_ok(sandbox: &Sandbox, image: &str, args: &[&str]) -> Value {
  let mut all = vec!["spawn", image, "--json"];
  all.extend_from_slice(args);
  let run = sandbox.cmd(&all);
  run.expect_code(0);
  let out: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
  out["result"].clone()
}

#[test]
fn add_ls_then_spawn_runs_the_entry() {
  let sandbox = sandbox();
  sandbox.cmd(&["image", "ls"]).expect_code(0).stdout_has("no images");
  add(&sandbox, "image/image.toml").expect_code(0).stdout_has("added hello-image@0.1.0 (sha256:");

  let ls = sandbox.cmd(&["image", "ls"]);
  ls.expect_code(0).stdout_has("hello-image").stdout_has("0.1.0").stdout_has("agent.ts").stdout_has("sha256:");
  let listed: Value = serde_json::from_str(&sandbox.cmd(&["image", "ls", "--json"]).stdout).unwrap();
  // The added image, then the built-in ones.
  assert_eq!(listed.as_array().unwrap().iter().filter(|i| i["builtin"] == false).count(), 1, "{listed}");
  assert_eq!(listed[0]["name"], "hello-image");
  assert_eq!(listed[0]["entry"], "agent.ts");
  assert!(listed[0]["hash"].as_str().unwrap().starts_with("sha256:"), "{listed}");

  // Text output: the result, as `alos run` prints it.
  let run = sandbox.cmd(&["spawn", "hello-image", "--", "one", "two"]);
  run.expect_code(0).stdout_has("\"greeting\": \"Hello from an image\"").stdout_has("\"one\"");
  let result = spawn_ok(&sandbox, "hello-image", &[]);
  assert_eq!(result["greeting"], "Hello from an image");
  assert_eq!(result["goal"], Value::Null, "no --goal: libos.goal is null");
  assert_eq!(result["write"], "denied", "the image grants no write");
  assert!(!sandbox.exists("out/hello.txt"));

  // The process table names the image and its version.
  let ps: Value = serde_json::from_str(&sandbox.cmd(&["ps", "--all", "--json"]).stdout).unwrap();
  let images: Vec<&str> = ps.as_array().unwrap().iter().map(|p| p["image"].as_str().unwrap()).collect();
  assert_eq!(images, ["hello-image@0.1.0", "hello-image@0.1.0"]);
}

#[test]
fn the_goal_reaches_libos_goal() {
  let sandbox = sandbox();
  add(&sandbox, "image/image.toml").expect_code(0);
  let result = spawn_ok(&sandbox, "hello-image", &["--goal", "summarise data/ in one line", "--", "x"]);
  assert_eq!(result["goal"], "summarise data/ in one line");
  assert_eq!(result["args"], serde_json::json!(["x"]));
}

#[test]
fn a_version_means_one_content() {
  let sandbox = sandbox();
  add(&sandbox, "image/image.toml").expect_code(0);
  add(&sandbox, "image/image.toml").expect_code(0).stdout_has("already added hello-image@0.1.0");
  let json: Value = serde_json::from_str(&sandbox.cmd(&["image", "add", "image/image.toml", "--json"]).stdout).unwrap();
  assert_eq!(json["added"], false);

  // Other content (the entry changed) under the same version is refused.
  let entry = sandbox.read("image/agent.ts");
  sandbox.write("image/agent.ts", format!("{entry}\n// changed\n"));
  add(&sandbox, "image/image.toml")
    .expect_code(2)
    .stderr_has("image hello-image 0.1.0 already exists with other content; bump the version");
  // And the stored version no longer matches what is on disk, so it does not run.
  sandbox
    .cmd(&["spawn", "hello-image"])
    .expect_code(2)
    .stderr_has("image hello-image@0.1.0 has changed since it was added");
  let listed: Value = serde_json::from_str(&sandbox.cmd(&["image", "ls", "--json"]).stdout).unwrap();
  assert_eq!(listed.as_array().unwrap().iter().filter(|i| i["builtin"] == false).count(), 1, "{listed}");
}

#[test]
fn allow_is_bounded_by_the_ceiling() {
  let sandbox = sandbox();
  add(&sandbox, "image/image.toml").expect_code(0);
  for outside in ["net", "fs.write:**", "fs.delete:out/**"] {
    sandbox
      .cmd(&["spawn", "hello-image", "--allow", outside])
      .expect_code(2)
      .stderr_has(&format!("--allow {outside} is outside the capability ceiling of image hello-image@0.1.0"))
      .stderr_has("(fs.read:**, fs.write:out/**)");
  }
  // An allow rule in a policy file cannot widen it either.
  sandbox.write("policy.toml", "allow = [\"shell\"]\n");
  sandbox
    .cmd(&["spawn", "hello-image", "--policy", "policy.toml"])
    .expect_code(2)
    .stderr_has("allows shell, outside the capability ceiling");
  // Within the ceiling, it is granted.
  let result = spawn_ok(&sandbox, "hello-image", &["--allow", "fs.write:out/**"]);
  assert_eq!(result["write"], "ok");
  assert_eq!(sandbox.read("out/hello.txt"), "Hello from an image\n");
}

#[test]
fn the_images_deny_rule_holds() {
  let sandbox = sandbox();
  add(&sandbox, "image/image.toml").expect_code(0);
  // Even an explicit grant of the file (within the ceiling) does not beat the image's deny.
  let result = spawn_ok(&sandbox, "hello-image", &["--allow", "fs.read:secrets/token.txt"]);
  assert_eq!(result["secret"], "denied");
  let denial = sandbox.audit().into_iter().find(|r| r["resource"] == "secrets/token.txt").expect("a denial record");
  assert_eq!(denial["decision"], "deny");
  let by = denial["decided_by"].as_str().unwrap();
  assert!(by.contains("deny fs.read:secrets/**") && by.contains("image \"hello-image@0.1.0\""), "{denial}");
}

#[test]
fn limits_flags_only_lower_the_images() {
  let sandbox = sandbox();
  add(&sandbox, "image/image.toml").expect_code(0);
  sandbox
    .cmd(&["spawn", "hello-image", "--timeout", "1h"])
    .expect_code(0)
    .stderr_has("--timeout 1h is above image hello-image@0.1.0's limit; using 1m");
  // A lower budget applies: the agent makes more than two syscalls.
  sandbox.cmd(&["spawn", "hello-image", "--max-syscalls", "2"]).expect_code(4);
}

#[test]
fn at_version_selects_an_older_version() {
  let sandbox = sandbox();
  add(&sandbox, "image/image.toml").expect_code(0);
  let manifest = sandbox.read("image/image.toml").replace("version = \"0.1.0\"", "version = \"0.10.0\"");
  sandbox.write("image2/image.toml", manifest);
  sandbox.write("image2/agent.ts", "libos.exit({ version: 'second' });\n");
  add(&sandbox, "image2/image.toml").expect_code(0).stdout_has("added hello-image@0.10.0");

  // The highest version by semver (0.10.0 > 0.1.0) is the default.
  assert_eq!(spawn_ok(&sandbox, "hello-image", &[])["version"], "second");
  assert_eq!(spawn_ok(&sandbox, "hello-image@0.10.0", &[])["version"], "second");
  assert_eq!(spawn_ok(&sandbox, "hello-image@0.1.0", &[])["greeting"], "Hello from an image");
  let ls = sandbox.cmd(&["image", "ls"]);
  assert!(ls.stdout.find("0.1.0").unwrap() < ls.stdout.find("0.10.0").unwrap(), "{}", ls.stdout);
}

#[test]
fn an_unknown_image_lists_what_exists() {
  let sandbox = sandbox();
  sandbox.cmd(&["spawn", "hello-image"]).expect_code(2).stderr_has("no images have been added");
  add(&sandbox, "image/image.toml").expect_code(0);
  sandbox
    .cmd(&["spawn", "helo-image"])
    .expect_code(2)
    .stderr_has("unknown image \"helo-image\"")
    .stderr_has("hello-image@0.1.0");
  sandbox
    .cmd(&["spawn", "hello-image@2.0.0"])
    .expect_code(2)
    .stderr_has("unknown image \"hello-image@2.0.0\": hello-image has the versions 0.1.0");
}

#[test]
fn an_invalid_manifest_lists_every_problem_and_stores_nothing() {
  let sandbox = sandbox();
  sandbox.write(
    "bad/image.toml",
    "name = \"Bad Name\"\nversion = \"1\"\nentry = \"../image/agent.ts\"\nmodle = \"x\"\ntools = [\"rm_rf\"]\n\
     [capabilities]\nceiling = [\"fs.read:data/**\"]\ngrant = [\"fs.write:**\", \"fs.raed:x\"]\n",
  );
  let run = add(&sandbox, "bad/image.toml");
  run
    .expect_code(2)
    .stderr_has("image bad/image.toml is invalid (7 problems)")
    .stderr_has("bad/image.toml:1: name \"Bad Name\"")
    .stderr_has("bad/image.toml:2: version \"1\"")
    .stderr_has("bad/image.toml:3: entry \"../image/agent.ts\": leads outside")
    .stderr_has("bad/image.toml:4: unknown field `modle`")
    .stderr_has("bad/image.toml:5: tools: unknown tool \"rm_rf\"")
    .stderr_has("bad/image.toml:8: capabilities.grant: fs.write:** is not within the ceiling (fs.read:data/**)")
    .stderr_has("bad/image.toml:8: capabilities.grant: invalid capability \"fs.raed:x\"");
  sandbox.cmd(&["image", "ls"]).expect_code(0).stdout_has("no images");
}
