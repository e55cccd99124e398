//! TypeScript loading, source-mapped errors, the import policy and isolate hardening.

use super::common::Sandbox;

#[test]
fn typescript_runs_and_relative_imports_work() {
  let sandbox = Sandbox::new();
  sandbox.write("lib/math.ts", "export function add(a: number, b: number): number { return a + b; }\n");
  sandbox.write("lib/names.js", "export const name = 'js module';\n");
  let run = sandbox.run(
    "main.ts",
    r#"
    import { add } from "./lib/math.ts";
    import { name } from "./lib/names.js";
    type Pair = [number, number];
    const pair: Pair = [2, 3];
    const dynamic = await import("./lib/math.ts");
    console.log(add(...pair), name, dynamic.add(1, 1));"#,
    &[],
  );
  run.expect_code(0).stdout_has("5 js module 2");
}

#[test]
fn a_syntax_error_points_at_the_ts_line() {
  let sandbox = Sandbox::new();
  let run = sandbox.run("bad.ts", "const ok: number = 1;\nconst broken = (;\n", &[]);
  run.expect_code(1).stderr_has("bad.ts:2:");
}

#[test]
fn an_uncaught_error_shows_the_ts_position_and_stack() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "thrower.ts",
    "interface Shape { sides: number }\n\nfunction check(s: Shape): void {\n  if (s.sides < 3) {\n    throw new Error(`not a polygon: ${s.sides}`);\n  }\n}\n\ncheck({ sides: 2 });\n",
    &[],
  );
  run
    .expect_code(1)
    .stderr_has("Error: not a polygon: 2")
    // Line 5, column 11 of the .ts source, not of the stripped JavaScript.
    .stderr_has("thrower.ts:5:11")
    .stderr_has("thrower.ts:9:1");
}

#[test]
fn imports_outside_the_policy_are_refused() {
  let sandbox = Sandbox::new();
  let outside = tempfile::tempdir().unwrap();
  std::fs::write(outside.path().join("evil.ts"), "export const x = 1;").unwrap();
  std::os::unix::fs::symlink(outside.path().join("evil.ts"), sandbox.path().join("app/linked.ts")).ok();
  sandbox.write("up.ts", "export const up = 1;");
  for (specifier, needle) in [
    ("node:fs", "\"node:\" scheme"),
    ("npm:lodash", "\"npm:\" scheme"),
    ("https://example.com/x.ts", "\"https:\" scheme"),
    ("file:///etc/passwd", "\"file:\" scheme"),
    ("data:text/javascript,export default 1", "\"data:\" scheme"),
    ("ext:core/ops", "\"ext:\" scheme"),
    ("lodash", "bare module names"),
    ("/etc/passwd", "absolute paths"),
    ("../up.ts", "outside the script directory"),
    ("libos:nope", "no such built-in module"),
  ] {
    for form in ["static", "dynamic"] {
      let code = match form {
        "static" => format!("import * as m from {specifier:?};\nconsole.log('loaded', m);"),
        _ => format!("try {{ await import({specifier:?}); console.log('loaded'); }} catch (e) {{ console.log('refused:', e.message); }}"),
      };
      let run = sandbox.run("app/main.ts", &code, &[]);
      let all = format!("{}{}", run.stdout, run.stderr);
      assert!(!all.contains("loaded"), "{form} import of {specifier} was loaded:\n{all}");
      assert!(all.contains(needle), "{form} import of {specifier}: expected {needle:?} in\n{all}");
    }
  }
  let run = sandbox.run("app/main2.ts", "import { x } from './linked.ts'; console.log('loaded', x);", &[]);
  run.expect_code(1);
  assert!(!run.stdout.contains("loaded"), "{}", run.stdout);
}

#[test]
fn no_path_leads_back_to_the_engine() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "probe.ts",
    r#"
    const g = Function("return this")();
    const found: string[] = [];
    const suspicious = /deno|bootstrap|core|^op_|internals|primordials/i;
    for (const obj of [globalThis, g, Object.getPrototypeOf(globalThis)]) {
      if (!obj) continue;
      for (const key of Reflect.ownKeys(obj)) if (suspicious.test(String(key))) found.push(String(key));
    }
    // libos and its parts expose no engine object either.
    const walk = (o: any, path: string, depth: number) => {
      if (depth > 4 || o === null || (typeof o !== "object" && typeof o !== "function")) return;
      for (const key of Reflect.ownKeys(o)) {
        if (suspicious.test(String(key))) found.push(path + "." + String(key));
        let v; try { v = o[key]; } catch { continue; }
        if (typeof v === "object" && v !== null && !(v instanceof Function)) walk(v, path + "." + String(key), depth + 1);
      }
    };
    walk(libos, "libos", 0);
    console.log(JSON.stringify({
      found,
      Deno: typeof (globalThis as any).Deno,
      viaFunction: typeof g.Deno,
      bootstrap: typeof (globalThis as any).__bootstrap,
      frozen: Object.isFrozen(libos) && Object.isFrozen(libos.fs) && Object.isFrozen(libos.errors),
    }));
    // Tampering with libos does not stick.
    try { (libos as any).fs = null; } catch {}
    try { (libos.fs as any).readText = () => "forged"; } catch {}
    try { delete (globalThis as any).libos; } catch {}
    console.log(typeof libos.fs.readText, libos.fs.readText === (globalThis as any).libos.fs.readText);"#,
    &[],
  );
  run.expect_code(0);
  let first: serde_json::Value = serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
  assert_eq!(first["found"], serde_json::json!([]), "{}", run.stdout);
  assert_eq!(first["Deno"], "undefined");
  assert_eq!(first["viaFunction"], "undefined");
  assert_eq!(first["bootstrap"], "undefined");
  assert_eq!(first["frozen"], true);
  run.stdout_has("function true");
}

#[test]
fn the_global_object_holds_only_ecmascript_console_and_libos() {
  let sandbox = Sandbox::new();
  let run = sandbox.run("g.js", "console.log(JSON.stringify(Object.getOwnPropertyNames(globalThis).sort()));", &[]);
  run.expect_code(0);
  let names: Vec<String> = serde_json::from_str(run.stdout.trim()).unwrap();
  // Besides ECMAScript: alos's two, two web basics of the engine, and the QuickJS
  // backend's internal helpers (non-enumerable; it looks them up at run time). A new
  // global after an engine upgrade fails here until it is reviewed.
  let reviewed = [
    "console", "libos", "queueMicrotask", "globalThis", "atob", "btoa", "DOMException",
    "__v8xAtomicsCancelWaiter", "__v8xAtomicsNotifyWaiters", "__v8xAtomicsNumUnresolvedAsyncPromisesForTesting",
    "__v8xAtomicsNumWaitersForTesting", "__v8xAtomicsRegisterWaiter", "__v8xPostForegroundTask",
    "__v8xTemporalTimeZone", "__v8x_import_source", "__v8x_snapshot_intrinsics",
  ];
  for name in &names {
    let is_ecmascript = name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
      || ["eval", "isFinite", "isNaN", "parseFloat", "parseInt", "decodeURI", "decodeURIComponent", "encodeURI",
          "encodeURIComponent", "escape", "unescape", "undefined", "NaN", "Infinity"]
        .contains(&name.as_str());
    assert!(is_ecmascript || reviewed.contains(&name.as_str()), "unexpected global {name}: {names:?}");
  }
  for removed in ["Deno", "__bootstrap", "WebAssembly", "gc", "performance"] {
    assert!(!names.iter().any(|n| n == removed), "{removed} is visible: {names:?}");
  }
}

/// The engine's own module-source helper still goes through alos's loader.
#[test]
fn engine_helpers_do_not_bypass_the_loader() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "h.js",
    r#"
    const helper = globalThis["__v8x_import_source"];
    for (const spec of ["node:fs", "file:///etc/passwd", "../x.js"]) {
      try { await helper?.(import.meta.url, spec); console.log("loaded " + spec); }
      catch (e) { console.log("refused " + spec); }
    }"#,
    &[],
  );
  assert!(!run.stdout.contains("loaded"), "{}{}", run.stdout, run.stderr);
}
