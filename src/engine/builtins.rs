//! The built-in modules served as `libos:NAME`, compiled into the binary so what runs is
//! exactly the source that was shipped. Tool isolates get `libos:tool` (what every tool
//! imports) and each built-in tool as `libos:tools/NAME`; agent scripts get `libos:agent`
//! (the agent loop, js/agent.js).

use super::loader::Builtins;

/// Prefix of the built-in tools' module names.
const TOOL_PREFIX: &str = "tools/";

/// Each built-in tool's module, from `tools/NAME.ts`.
macro_rules! tools {
  ($($name:literal),* $(,)?) => {
    &[
      ("tool", include_str!("../../js/tool.js")),
      $((concat!("tools/", $name), include_str!(concat!("../../tools/", $name, ".ts"))),)*
    ]
  };
}

// Same order as `kernel::image::BUILTIN_TOOLS` (a test checks that they agree).
static MODULES: Builtins = tools![
  "read_file",
  "write_file",
  "list_dir",
  "search_text",
  "stat",
  "make_dir",
  "delete",
  "mem_get",
  "mem_put",
  "mem_list",
  "shell",
  "http_get",
  "ask_human",
  "sleep",
  "now",
  "spawn_agent",
  "wait_agent",
  "file_to_object",
  "object_to_file",
];

/// The modules an agent script may import.
static SCRIPT_MODULES: Builtins = &[("agent", include_str!("../../js/agent.js"))];

/// Every built-in module of tool isolates, as `(name after "libos:", source)`.
pub fn modules() -> Builtins {
  MODULES
}

/// The built-in modules of agent scripts' isolates (`libos:agent`).
pub fn script_modules() -> Builtins {
  SCRIPT_MODULES
}

/// The names of the built-in tools (`read_file`, ...), in table order.
pub fn tool_names() -> impl Iterator<Item = &'static str> {
  MODULES.iter().filter_map(|(name, _)| name.strip_prefix(TOOL_PREFIX))
}

/// The source of built-in tool `name`, if there is one.
pub fn tool_source(name: &str) -> Option<&'static str> {
  MODULES.iter().find(|(module, _)| module.strip_prefix(TOOL_PREFIX) == Some(name)).map(|(_, code)| *code)
}

#[cfg(test)]
mod tests {
  use std::collections::BTreeSet;

  use super::*;
  use crate::kernel::image::BUILTIN_TOOLS;

  #[test]
  fn the_list_matches_the_kernels_builtin_tools() {
    assert_eq!(tool_names().collect::<Vec<_>>(), BUILTIN_TOOLS);
    assert_eq!(modules().len(), BUILTIN_TOOLS.len() + 1, "libos:tool plus one module per tool");
    assert!(modules().iter().any(|(name, code)| *name == "tool" && code.contains("export function defineTool")));
  }

  #[test]
  fn scripts_get_the_agent_loop_and_no_tool_modules() {
    let names: Vec<&str> = script_modules().iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["agent"]);
    assert!(script_modules()[0].1.contains("export async function runAgent"));
    assert!(script_modules()[0].1.is_ascii(), "js/agent.js must stay ASCII");
  }

  #[test]
  fn every_file_in_tools_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
      .expect("read tools/")
      .map(|entry| entry.expect("tools/ entry").file_name().into_string().expect("UTF-8 file name"))
      .collect();
    let listed: BTreeSet<String> = tool_names().map(|name| format!("{name}.ts")).collect();
    assert_eq!(on_disk, listed, "tools/ and the built-in module list differ");
  }

  #[test]
  fn each_tool_module_defines_the_tool_it_is_named_after() {
    for name in tool_names() {
      let code = tool_source(name).unwrap();
      assert!(code.contains(r#"from "libos:tool""#), "{name} does not import libos:tool");
      assert!(code.contains(&format!("name: \"{name}\",")), "tools/{name}.ts does not define a tool named {name}");
    }
    assert_eq!(tool_source("nope"), None);
  }

  /// The host reads each spec without running it: no findings, and the literal spec
  /// names the tool and declares only capabilities that parse.
  #[test]
  fn every_builtin_tool_passes_static_analysis() {
    use crate::engine::analysis::analyze;
    use crate::kernel::capability::Capability;

    for name in tool_names() {
      let analysis = analyze(&format!("tools/{name}.ts"), tool_source(name).unwrap());
      assert!(analysis.findings.is_empty(), "{name}: {:#?}", analysis.findings);
      let spec = analysis.spec.unwrap_or_else(|| panic!("{name}: no literal spec"));
      assert_eq!(spec["name"], name);
      assert_eq!(spec["input"]["additionalProperties"], false, "{name}: input must refuse unknown fields");
      for cap in spec["capabilities"].as_array().unwrap() {
        cap.as_str().unwrap().parse::<Capability>().unwrap_or_else(|e| panic!("{name}: {e}"));
      }
    }
  }

  /// Each tool's own tests pass when it is loaded the way it runs: from memory as
  /// `libos:tools/NAME`, able to import `libos:*` only.
  #[test]
  fn every_builtin_tool_passes_its_tests_as_a_builtin_module() {
    use crate::engine::tool::ToolSource;
    use crate::engine::tool_test::test_source;
    use crate::engine::tool_test::TestLimits;

    let mut failures = Vec::new();
    for name in tool_names() {
      let source =
        ToolSource { url: format!("libos:tools/{name}"), code: tool_source(name).unwrap().into(), dir: None };
      match test_source(&source, name, Vec::new(), &[], &TestLimits::default(), modules()) {
        Ok(report) if report.ok() && report.passed() > 0 => {}
        Ok(report) => failures.push(report.render()),
        Err(why) => failures.push(format!("{name}: {why}")),
      }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
  }
}
