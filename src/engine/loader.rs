//! The module loader: which modules a script may import, and TypeScript type-stripping.
//!
//! A script may import relative modules inside its own directory (the "script root")
//! and `libos:*` built-ins; nothing else: no URLs, `node:`, `npm:`, bare names, absolute
//! paths, or `..` out of the root, statically or through dynamic `import()`. Modules are
//! read through a directory handle on the script root (cap-std), so a symlink inside the
//! root cannot lead a module load outside it.
//!
//! A tool's entry module is served from memory (the source that was checked is the
//! source that runs): a file tool under its `file:` URL, with its directory as the root;
//! a built-in or JIT tool under `libos:tools/NAME` or `jit:<sha256>`, with no root at all,
//! so it can import `libos:*` only. Built-ins and in-memory modules are TypeScript.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::path::PathBuf;

use cap_std::fs::Dir;
use deno_ast::MediaType;
use deno_ast::ModuleSpecifier;
use deno_ast::ParseParams;
use deno_ast::SourceMapOption;
use deno_core::error::ModuleLoaderError;
use deno_core::ModuleLoadOptions;
use deno_core::ModuleLoadReferrer;
use deno_core::ModuleLoadResponse;
use deno_core::ModuleLoader;
use deno_core::ModuleSource;
use deno_core::ModuleSourceCode;
use deno_core::ModuleType;
use deno_core::ResolutionKind;
use deno_error::JsErrorBox;

/// Built-in modules served from the binary, by `libos:NAME`.
pub type Builtins = &'static [(&'static str, &'static str)];

pub struct ScriptLoader {
  /// The directory relative imports are read from; `None` for in-memory modules.
  root: Option<(Dir, ModuleSpecifier)>,
  entry_url: Option<ModuleSpecifier>,
  /// The entry module's source, when it is served from memory rather than read.
  entry_code: Option<String>,
  root_display: String,
  builtins: Builtins,
  /// Source maps and original text of transpiled modules, for stack traces.
  transpiled: RefCell<HashMap<String, Transpiled>>,
}

struct Transpiled {
  source_map: Vec<u8>,
  original: String,
}

impl ScriptLoader {
  /// A loader confined to `root` (an absolute, canonical directory) whose main module is
  /// `entry` (a file inside it).
  pub fn new(root: &Path, entry: Option<&Path>, builtins: Builtins) -> std::io::Result<ScriptLoader> {
    // The engine's one use of ambient authority: the directory the user pointed us at.
    let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    let root_url = ModuleSpecifier::from_directory_path(root).map_err(|()| {
      std::io::Error::new(std::io::ErrorKind::InvalidInput, "script root is not absolute")
    })?;
    let entry_url = entry.and_then(|path| ModuleSpecifier::from_file_path(path).ok());
    Ok(ScriptLoader {
      root: Some((dir, root_url)),
      entry_url,
      entry_code: None,
      root_display: root.display().to_string(),
      builtins,
      transpiled: RefCell::default(),
    })
  }

  /// A loader whose main module `url` is `code`, served from memory. With `root` (the
  /// module's directory, absolute and canonical) it may import relative modules inside
  /// it, as a script does; without, `libos:*` built-ins only.
  pub fn in_memory(
    url: &ModuleSpecifier,
    code: String,
    root: Option<&Path>,
    builtins: Builtins,
  ) -> std::io::Result<ScriptLoader> {
    let mut loader = match root {
      Some(root) => ScriptLoader::new(root, None, builtins)?,
      None => ScriptLoader {
        root: None,
        entry_url: None,
        entry_code: None,
        root_display: String::new(),
        builtins,
        transpiled: RefCell::default(),
      },
    };
    let inside = match url.scheme() {
      "file" => loader.relative_path(url).is_some(),
      "libos" | "jit" => root.is_none(),
      _ => false,
    };
    if !inside {
      let why = match root {
        Some(root) => format!("{url} is not a module inside {}", root.display()),
        None => format!("{url} is not a libos: or jit: module (an in-memory module has no directory)"),
      };
      return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    }
    loader.entry_url = Some(url.clone());
    loader.entry_code = Some(code);
    Ok(loader)
  }

  /// The path of `url` relative to the script root, if it lies inside it.
  fn relative_path(&self, url: &ModuleSpecifier) -> Option<PathBuf> {
    let (_, root_url) = self.root.as_ref()?;
    if url.scheme() != "file" {
      return None;
    }
    let rel = url.as_str().strip_prefix(root_url.as_str())?;
    let path = url.to_file_path().ok()?;
    let root = root_url.to_file_path().ok()?;
    let rel_path = path.strip_prefix(&root).ok()?.to_path_buf();
    // `url` is normalised by the URL parser, so no `..` survives in it; still, refuse
    // anything odd rather than trust that.
    if rel.is_empty() || rel_path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
      return None;
    }
    Some(rel_path)
  }

  fn refuse(&self, specifier: &str, referrer: &str, why: &str) -> ModuleLoaderError {
    let allowed = match self.root {
      Some(_) => format!("Scripts may import relative modules inside {} and libos:* built-ins only", self.root_display),
      None => "Built-in and JIT modules may import libos:* built-ins only".to_string(),
    };
    JsErrorBox::new("TypeError", format!("import \"{specifier}\" from {referrer} is not allowed: {why}. {allowed}"))
  }

  fn load_file(&self, url: &ModuleSpecifier) -> Result<ModuleSource, ModuleLoaderError> {
    let rel = self.relative_path(url).ok_or_else(|| {
      JsErrorBox::type_error(format!("module {url} is outside the script directory {}", self.root_display))
    })?;
    let media_type = MediaType::from_path(&rel);
    let transpile = match media_type {
      MediaType::TypeScript | MediaType::Mts => true,
      MediaType::JavaScript | MediaType::Mjs => false,
      _ => {
        return Err(JsErrorBox::type_error(format!(
          "cannot import {url}: only .ts, .mts, .js and .mjs modules can be loaded"
        )))
      }
    };
    let Some((root, _)) = &self.root else {
      return Err(JsErrorBox::type_error(format!("cannot load module {url}: there is no module directory")));
    };
    let text = root.read_to_string(&rel).map_err(|e| {
      let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
        "it leads outside the script directory".to_string()
      } else {
        e.to_string()
      };
      JsErrorBox::new("TypeError", format!("cannot load module {url}: {why}"))
    })?;
    let code = if transpile { self.transpile(url, media_type, text)? } else { text };
    Ok(ModuleSource::new(ModuleType::JavaScript, ModuleSourceCode::String(code.into()), url, None))
  }

  /// A module whose source is in memory: a `file:` URL's extension says whether it is
  /// TypeScript; `libos:` and `jit:` modules always are (plain JavaScript is valid
  /// TypeScript, so built-ins may be either).
  fn load_in_memory(&self, url: &ModuleSpecifier, code: String) -> Result<ModuleSource, ModuleLoaderError> {
    let media_type = match url.scheme() {
      "file" => MediaType::from_specifier(url),
      _ => MediaType::TypeScript,
    };
    let code = match media_type {
      MediaType::TypeScript | MediaType::Mts => self.transpile(url, media_type, code)?,
      MediaType::JavaScript | MediaType::Mjs => code,
      _ => {
        return Err(JsErrorBox::type_error(format!(
          "cannot load {url}: only .ts, .mts, .js and .mjs modules can be loaded"
        )))
      }
    };
    Ok(ModuleSource::new(ModuleType::JavaScript, ModuleSourceCode::String(code.into()), url, None))
  }

  /// Strips types with swc, keeping a separate source map so stack traces point at the
  /// `.ts` line and column.
  fn transpile(&self, url: &ModuleSpecifier, media_type: MediaType, text: String) -> Result<String, ModuleLoaderError> {
    let parsed = deno_ast::parse_module(ParseParams {
      specifier: url.clone(),
      text: text.clone().into(),
      media_type,
      capture_tokens: false,
      scope_analysis: false,
      maybe_syntax: None,
    })
    .map_err(|e| JsErrorBox::new("SyntaxError", e.to_string()))?;
    let emitted = parsed
      .transpile(
        &deno_ast::TranspileOptions {
          imports_not_used_as_values: deno_ast::ImportsNotUsedAsValues::Remove,
          decorators: deno_ast::DecoratorsTranspileOption::Ecma,
          ..Default::default()
        },
        &deno_ast::TranspileModuleOptions { module_kind: None },
        &deno_ast::EmitOptions { source_map: SourceMapOption::Separate, inline_sources: true, ..Default::default() },
      )
      .map_err(|e| JsErrorBox::new("SyntaxError", e.to_string()))?
      .into_source();
    let source_map = emitted.source_map.map(|m| m.into_bytes()).unwrap_or_default();
    self.transpiled.borrow_mut().insert(url.to_string(), Transpiled { source_map, original: text });
    Ok(emitted.text)
  }
}

impl ModuleLoader for ScriptLoader {
  fn resolve(&self, specifier: &str, referrer: &str, kind: ResolutionKind) -> Result<ModuleSpecifier, ModuleLoaderError> {
    if kind == ResolutionKind::MainModule {
      if let Some(entry) = self.entry_url.as_ref().filter(|entry| entry.as_str() == specifier) {
        return Ok(entry.clone());
      }
    }
    if let Some(name) = specifier.strip_prefix("libos:") {
      if self.builtins.iter().any(|(n, _)| *n == name) {
        return ModuleSpecifier::parse(specifier).map_err(JsErrorBox::from_err);
      }
      let known: Vec<String> = self.builtins.iter().map(|(n, _)| format!("libos:{n}")).collect();
      let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
      return Err(JsErrorBox::type_error(format!(
        "import \"{specifier}\": no such built-in module (available: {known})"
      )));
    }
    if !(specifier.starts_with("./") || specifier.starts_with("../")) {
      let why = match specifier.split_once(':') {
        Some((scheme, _)) if !scheme.contains('/') => format!("the \"{scheme}:\" scheme is not available"),
        _ if specifier.starts_with('/') => "absolute paths are not allowed".to_string(),
        _ => "bare module names are not resolvable (there is no package manager)".to_string(),
      };
      return Err(self.refuse(specifier, referrer, &why));
    }
    let base = ModuleSpecifier::parse(referrer).map_err(JsErrorBox::from_err)?;
    if base.scheme() != "file" || self.root.is_none() {
      return Err(self.refuse(specifier, referrer, "a built-in or JIT module cannot import files"));
    }
    let url = base.join(specifier).map_err(JsErrorBox::from_err)?;
    if self.relative_path(&url).is_none() {
      return Err(self.refuse(specifier, referrer, "it leads outside the script directory"));
    }
    Ok(url)
  }

  fn load(&self, url: &ModuleSpecifier, _referrer: Option<&ModuleLoadReferrer>, _options: ModuleLoadOptions) -> ModuleLoadResponse {
    if let Some(code) = self.entry_code.as_ref().filter(|_| self.entry_url.as_ref() == Some(url)) {
      return ModuleLoadResponse::Sync(self.load_in_memory(url, code.clone()));
    }
    if url.scheme() == "libos" {
      let found = self.builtins.iter().find(|(n, _)| *n == url.path());
      return ModuleLoadResponse::Sync(match found {
        Some((_, code)) => self.load_in_memory(url, (*code).to_string()),
        None => Err(JsErrorBox::type_error(format!("no such built-in module {url}"))),
      });
    }
    ModuleLoadResponse::Sync(self.load_file(url))
  }

  fn get_source_map(&self, file_name: &str) -> Option<Cow<'_, [u8]>> {
    self.transpiled.borrow().get(file_name).map(|t| Cow::Owned(t.source_map.clone()))
  }

  fn get_source_mapped_source_line(&self, file_name: &str, line_number: usize) -> Option<String> {
    let transpiled = self.transpiled.borrow();
    transpiled.get(file_name)?.original.lines().nth(line_number).map(str::to_string)
  }
}
