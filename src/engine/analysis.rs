//! Static analysis of a tool module (DESIGN §6, contract §1): before a proposed tool
//! runs, its syntax tree is checked for imports outside `libos:*`, code built from
//! strings (`eval`, the `Function` constructor, dynamic `import()`), reach into engine
//! internals, and the shape of its `export default defineTool({...})`, whose literal
//! spec is read without running the module.
//!
//! This is the first line of defence, not the boundary: a property key computed at run
//! time (`f[key]`) cannot be resolved statically, so the isolate must still refuse code
//! generation by itself. Where the analysis cannot follow a route to the global object
//! or to the Function constructor, it refuses the route (computed access to the global
//! object, the global object passed around as a value, prototype walks).

use std::collections::HashMap;
use std::collections::HashSet;

use deno_ast::swc::ast::*;
use deno_ast::swc::atoms::Atom;
use deno_ast::swc::common::BytePos;
use deno_ast::swc::common::Span;
use deno_ast::swc::common::Spanned;
use deno_ast::swc::ecma_visit::Visit;
use deno_ast::swc::ecma_visit::VisitWith;
use deno_ast::MediaType;
use deno_ast::ModuleSpecifier;
use deno_ast::ParseParams;
use serde::Serialize;
use serde_json::Value;

/// One problem, at the 1-based line and column of the offending node.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
  pub line: usize,
  pub col: usize,
  pub rule: &'static str,
  pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
  /// Sorted by position.
  pub findings: Vec<Finding>,
  /// The literal keys of the `defineTool({...})` argument (name, description, input,
  /// output, capabilities, tests), when every one present is a literal.
  pub spec: Option<Value>,
}

const PARSE: &str = "parse";
const IMPORT: &str = "import";
const DYNAMIC_IMPORT: &str = "dynamic-import";
const EVAL: &str = "eval";
const FUNCTION_CONSTRUCTOR: &str = "function-constructor";
const FORBIDDEN_GLOBAL: &str = "forbidden-global";
const DEFAULT_EXPORT: &str = "default-export";
const SPEC_LITERAL: &str = "spec-literal";
const SPEC: &str = "spec";

/// Names of the global object itself.
const GLOBAL_OBJECTS: [&str; 4] = ["globalThis", "self", "window", "global"];
/// The defineTool keys the host reads without running the module.
const SPEC_KEYS: [&str; 6] = ["name", "description", "input", "output", "capabilities", "tests"];
/// Bounds on the constant folding of property keys: forbidden names are short, and a
/// hostile module must not make the analysis slow.
const MAX_KEY_VALUES: usize = 16;
const MAX_KEY_LEN: usize = 256;
const MAX_FOLD_DEPTH: usize = 32;

/// `file` only names the module in messages; `source` is TypeScript, or JavaScript when
/// `file` ends in `.js`/`.mjs` (as the module loader decides).
pub fn analyze(file: &str, source: &str) -> Analysis {
  // deno_ast wants the BOM gone; offsets are then relative to the stripped text.
  let text = source.strip_prefix('\u{FEFF}').unwrap_or(source);
  let lines = Lines::new(text);
  let javascript = file.ends_with(".js") || file.ends_with(".mjs");
  let (media_type, url) =
    if javascript { (MediaType::JavaScript, "file:///tool.js") } else { (MediaType::TypeScript, "file:///tool.ts") };
  // A fixed specifier: `file` may be any display name, not a URL.
  let specifier = ModuleSpecifier::parse(url).expect("a constant URL");
  let parsed = match deno_ast::parse_module(ParseParams {
    specifier,
    text: text.into(),
    media_type,
    capture_tokens: false,
    scope_analysis: false,
    maybe_syntax: None,
  }) {
    Ok(parsed) => parsed,
    Err(diagnostic) => return Analysis { findings: vec![parse_finding(&lines, &diagnostic)], spec: None },
  };
  // Errors the parser recovered from (e.g. `with` in a module) still fail the module's
  // load: report the first, as for a fatal one, and analyse the tree it built anyway.
  let mut findings: Vec<Finding> =
    parsed.diagnostics().iter().min_by_key(|d| d.range().start).map(|d| parse_finding(&lines, d)).into_iter().collect();
  let program = parsed.program_ref();
  let module = program.unwrap_module();

  let scope = Scope::collect(module);
  let mut checker = Checker { lines: &lines, scope: &scope, findings: Vec::new() };
  module.visit_with(&mut checker);
  findings.append(&mut checker.findings);

  let mut shape = Shape { file, lines: &lines, findings: Vec::new() };
  let spec = shape.check(module);
  findings.append(&mut shape.findings);

  findings.sort_by(|a, b| (a.line, a.col, a.rule, &a.message).cmp(&(b.line, b.col, b.rule, &b.message)));
  // One node reached by two routes (e.g. `x["constructor"]`: a member and a string).
  findings.dedup_by(|a, b| (a.line, a.col, a.rule, &a.message) == (b.line, b.col, b.rule, &b.message));
  Analysis { findings, spec }
}

fn parse_finding(lines: &Lines, diagnostic: &deno_ast::ParseDiagnostic) -> Finding {
  let (line, col) = lines.at(diagnostic.range().start.as_byte_pos());
  Finding { line, col, rule: PARSE, message: format!("the module does not parse: {}", diagnostic.kind().msg()) }
}

/// Byte positions to 1-based line and column (in characters).
struct Lines<'a> {
  text: &'a str,
  starts: Vec<usize>,
}

impl<'a> Lines<'a> {
  fn new(text: &'a str) -> Lines<'a> {
    let mut starts = vec![0];
    starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
    Lines { text, starts }
  }

  fn at(&self, pos: BytePos) -> (usize, usize) {
    // deno_ast starts the source at BytePos(1).
    let offset = (pos.0 as usize).saturating_sub(1).min(self.text.len());
    let line = self.starts.partition_point(|start| *start <= offset) - 1;
    let start = self.starts[line];
    let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
    (line + 1, col + 1)
  }

  fn finding(&self, span: Span, rule: &'static str, message: String) -> Finding {
    let (line, col) = self.at(span.lo);
    Finding { line, col, rule, message }
  }
}

// ---- names ----------------------------------------------------------------------------

/// What an identifier reference (or a property of the global object) of this name
/// reaches, if it is refused: (rule, why and what to do instead).
fn classify_name(name: &str) -> Option<(&'static str, String)> {
  match name {
    "eval" => Some((EVAL, "tools cannot run code from strings; parse data with JSON.parse".into())),
    "Function" | "AsyncFunction" | "GeneratorFunction" | "AsyncGeneratorFunction" => Some((
      FUNCTION_CONSTRUCTOR,
      "tools cannot build functions from strings; write a function or arrow function instead \
       (`x instanceof Function` and `typeof x === \"function\"` are allowed)"
        .into(),
    )),
    "WebAssembly" | "Worker" | "SharedArrayBuffer" | "Atomics" | "Deno" | "__bootstrap" => {
      Some((FORBIDDEN_GLOBAL, "it is not available to tools; use the libos global (libos.fs, libos.mem, ...)".into()))
    }
    _ if name.starts_with("__v8x") => {
      Some((FORBIDDEN_GLOBAL, "engine internals are off limits; use the libos global".into()))
    }
    "require" => {
      Some((IMPORT, "there is no CommonJS; import libos:* modules with `import { ... } from \"libos:...\"`".into()))
    }
    _ => None,
  }
}

/// What reading this property of any object reaches, if it is refused.
fn member_rule(name: &str) -> Option<(&'static str, String)> {
  match name {
    "constructor" => Some((
      FUNCTION_CONSTRUCTOR,
      "`.constructor` reaches the Function constructor from any function; use instanceof or \
       typeof checks instead"
        .into(),
    )),
    // A prototype walk from a function reaches Function.prototype without the word
    // "constructor" ever appearing as a key.
    "__proto__" | "getPrototypeOf" => Some((
      FUNCTION_CONSTRUCTOR,
      "prototype walks can reach the Function constructor; use instanceof or typeof checks instead".into(),
    )),
    _ => None,
  }
}

/// What reading this property of the global object reaches, if it is refused.
fn global_member_rule(name: &str) -> Option<(&'static str, String)> {
  member_rule(name).or_else(|| classify_name(name))
}

// ---- expression helpers ---------------------------------------------------------------

/// Sees through parentheses and TypeScript-only wrappers, which emit nothing.
fn strip(expr: &Expr) -> &Expr {
  match expr {
    Expr::Paren(e) => strip(&e.expr),
    Expr::TsAs(e) => strip(&e.expr),
    Expr::TsSatisfies(e) => strip(&e.expr),
    Expr::TsNonNull(e) => strip(&e.expr),
    Expr::TsTypeAssertion(e) => strip(&e.expr),
    Expr::TsConstAssertion(e) => strip(&e.expr),
    Expr::TsInstantiation(e) => strip(&e.expr),
    _ => expr,
  }
}

/// `a.b` and `a?.b` alike.
fn as_member(expr: &Expr) -> Option<&MemberExpr> {
  match expr {
    Expr::Member(m) => Some(m),
    Expr::OptChain(chain) => match &*chain.base {
      OptChainBase::Member(m) => Some(m),
      _ => None,
    },
    _ => None,
  }
}

fn is_logical(op: BinaryOp) -> bool {
  matches!(op, BinaryOp::LogicalOr | BinaryOp::LogicalAnd | BinaryOp::NullishCoalescing)
}

fn str_value(s: &Str) -> String {
  s.value.to_atom_lossy().to_string()
}

/// A key written as a plain string: `"eval"` or `` `eval` ``.
fn literal_key(expr: &Expr) -> Option<String> {
  match strip(expr) {
    Expr::Lit(Lit::Str(s)) => Some(str_value(s)),
    Expr::Tpl(t) if t.exprs.is_empty() => {
      t.quasis.first().and_then(|q| q.cooked.as_ref()).map(|c| c.to_atom_lossy().to_string())
    }
    _ => None,
  }
}

fn prop_name(key: &PropName) -> Option<String> {
  match key {
    PropName::Ident(n) => Some(n.sym.to_string()),
    PropName::Str(s) => Some(str_value(s)),
    _ => None,
  }
}

// ---- scope: aliases of the global object and constant strings ------------------------

/// What the module binds, by name and ignoring nesting (conservative: a name bound to
/// the global object anywhere is the global object everywhere).
#[derive(Default)]
struct Scope {
  /// Names bound to the global object (`const g = globalThis`).
  aliases: HashSet<Atom>,
  /// Names bound to constant strings, with every value they are given.
  consts: HashMap<Atom, Vec<String>>,
}

impl Scope {
  fn collect(module: &Module) -> Scope {
    let mut collector = Collector { scope: Scope::default(), changed: true };
    // To a fixed point, so `const a = globalThis; const b = a;` binds both in any order;
    // bounded, since every round only adds.
    for _ in 0..8 {
      if !collector.changed {
        break;
      }
      collector.changed = false;
      module.visit_with(&mut collector);
    }
    collector.scope
  }

  fn is_global_name(&self, name: &Atom) -> bool {
    GLOBAL_OBJECTS.contains(&name.as_str()) || self.aliases.contains(name)
  }

  /// Whether `expr` may evaluate to the global object.
  fn is_global(&self, expr: &Expr) -> bool {
    match strip(expr) {
      Expr::Ident(id) => self.is_global_name(&id.sym),
      Expr::Seq(s) => s.exprs.last().is_some_and(|last| self.is_global(last)),
      Expr::Cond(c) => self.is_global(&c.cons) || self.is_global(&c.alt),
      Expr::Bin(b) if is_logical(b.op) => self.is_global(&b.left) || self.is_global(&b.right),
      Expr::Assign(a) => self.is_global(&a.right),
      e => as_member(e).is_some_and(|m| {
        // `globalThis.self`, `window["globalThis"]`: the global object again.
        self.is_global(&m.obj)
          && self.member_names(&m.prop).is_some_and(|names| names.iter().any(|n| GLOBAL_OBJECTS.contains(&n.as_str())))
      }),
    }
  }

  fn member_names(&self, prop: &MemberProp) -> Option<Vec<String>> {
    match prop {
      MemberProp::Ident(n) => Some(vec![n.sym.to_string()]),
      MemberProp::Computed(c) => self.key_strings(&c.expr, 0),
      MemberProp::PrivateName(_) => None,
    }
  }

  /// Whether `expr` is syntactically a string, so `+` on it concatenates.
  fn is_stringish(&self, expr: &Expr) -> bool {
    match strip(expr) {
      Expr::Lit(Lit::Str(_)) | Expr::Tpl(_) | Expr::Array(_) => true,
      Expr::Ident(id) => self.consts.contains_key(&id.sym),
      Expr::Bin(b) if b.op == BinaryOp::Add => self.is_stringish(&b.left) || self.is_stringish(&b.right),
      Expr::Cond(c) => self.is_stringish(&c.cons) || self.is_stringish(&c.alt),
      Expr::Seq(s) => s.exprs.last().is_some_and(|last| self.is_stringish(last)),
      _ => false,
    }
  }

  /// The strings `expr` may evaluate to as a property key, when it is built from
  /// constants (`"constru" + "ctor"`, `` `${a}${b}` ``, `["constructor"]`, a const).
  fn key_strings(&self, expr: &Expr, depth: usize) -> Option<Vec<String>> {
    if depth > MAX_FOLD_DEPTH {
      return None;
    }
    let values = match strip(expr) {
      Expr::Lit(Lit::Str(s)) => vec![str_value(s)],
      Expr::Lit(Lit::Num(n)) if n.value.fract() == 0.0 && n.value.abs() < 1e15 => vec![(n.value as i64).to_string()],
      Expr::Lit(Lit::Bool(b)) => vec![b.value.to_string()],
      Expr::Lit(Lit::Null(_)) => vec!["null".to_string()],
      Expr::Ident(id) => self.consts.get(&id.sym)?.clone(),
      Expr::Tpl(t) => {
        let mut values = vec![String::new()];
        for (i, quasi) in t.quasis.iter().enumerate() {
          let cooked = quasi.cooked.as_ref()?.to_atom_lossy().to_string();
          values = values.into_iter().map(|v| v + cooked.as_str()).collect();
          if let Some(e) = t.exprs.get(i) {
            values = product(&values, &self.key_strings(e, depth + 1)?)?;
          }
        }
        values
      }
      Expr::Bin(b) if b.op == BinaryOp::Add && (self.is_stringish(&b.left) || self.is_stringish(&b.right)) => {
        product(&self.key_strings(&b.left, depth + 1)?, &self.key_strings(&b.right, depth + 1)?)?
      }
      // An array key converts to its elements joined by commas.
      Expr::Array(a) => match a.elems.as_slice() {
        [] => vec![String::new()],
        [Some(ExprOrSpread { spread: None, expr })] => self.key_strings(expr, depth + 1)?,
        _ => return None,
      },
      Expr::Cond(c) => {
        let mut values = self.key_strings(&c.cons, depth + 1)?;
        values.extend(self.key_strings(&c.alt, depth + 1)?);
        values
      }
      Expr::Seq(s) => self.key_strings(s.exprs.last()?, depth + 1)?,
      _ => return None,
    };
    (values.len() <= MAX_KEY_VALUES && values.iter().all(|v| v.len() <= MAX_KEY_LEN)).then_some(values)
  }
}

fn product(left: &[String], right: &[String]) -> Option<Vec<String>> {
  if left.len() * right.len() > MAX_KEY_VALUES {
    return None;
  }
  Some(left.iter().flat_map(|l| right.iter().map(move |r| format!("{l}{r}"))).collect())
}

/// One round of binding collection for `Scope::collect`.
struct Collector {
  scope: Scope,
  changed: bool,
}

impl Collector {
  fn bind(&mut self, name: &Atom, value: &Expr) {
    if !self.scope.aliases.contains(name) && self.scope.is_global(value) {
      self.scope.aliases.insert(name.clone());
      self.changed = true;
    }
    if self.scope.is_stringish(value) {
      if let Some(values) = self.scope.key_strings(value, 0) {
        let known = self.scope.consts.entry(name.clone()).or_default();
        for value in values {
          if known.len() < MAX_KEY_VALUES && !known.contains(&value) {
            known.push(value);
            self.changed = true;
          }
        }
      }
    }
  }
}

impl Visit for Collector {
  fn visit_var_declarator(&mut self, d: &VarDeclarator) {
    if let (Pat::Ident(binding), Some(init)) = (&d.name, &d.init) {
      self.bind(&binding.id.sym, init);
    }
    d.visit_children_with(self);
  }

  fn visit_assign_expr(&mut self, a: &AssignExpr) {
    if let AssignTarget::Simple(SimpleAssignTarget::Ident(binding)) = &a.left {
      self.bind(&binding.id.sym, &a.right);
    }
    a.visit_children_with(self);
  }

  fn visit_ts_type(&mut self, _: &TsType) {}
}

// ---- the checker ----------------------------------------------------------------------

struct Checker<'a> {
  lines: &'a Lines<'a>,
  scope: &'a Scope,
  findings: Vec<Finding>,
}

impl Checker<'_> {
  fn report(&mut self, span: Span, rule: &'static str, message: String) {
    self.findings.push(self.lines.finding(span, rule, message));
  }

  fn check_specifier(&mut self, src: &Str, what: &str) {
    let specifier = str_value(src);
    if !specifier.starts_with("libos:") {
      self.report(
        src.span,
        IMPORT,
        format!("{what} \"{specifier}\" is not allowed: tools may import only libos:* modules (e.g. \"libos:tool\")"),
      );
    }
  }

  fn check_ident_ref(&mut self, id: &Ident) {
    if self.scope.is_global_name(&id.sym) {
      self.report(
        id.span,
        EVAL,
        format!(
          "the global object `{}` used as a value is not allowed (it reaches eval); use its properties by \
           name, e.g. `globalThis.libos`",
          id.sym
        ),
      );
    } else if let Some((rule, why)) = classify_name(&id.sym) {
      self.report(id.span, rule, format!("`{}` is not allowed: {why}", id.sym));
    }
  }

  /// A property read on the global object: only plain names, and not the dangerous ones.
  fn check_global_member(&mut self, prop: &MemberProp) {
    match prop {
      MemberProp::Ident(n) => self.check_global_key(n.span, &n.sym),
      MemberProp::Computed(c) => match literal_key(&c.expr) {
        Some(name) => self.check_global_key(strip(&c.expr).span(), &name),
        None => self.report(
          strip(&c.expr).span(),
          EVAL,
          "computed access to the global object is not allowed (its key could spell eval); name the \
           property directly, e.g. `globalThis.libos`"
            .into(),
        ),
      },
      MemberProp::PrivateName(_) => {}
    }
  }

  fn check_global_key(&mut self, span: Span, name: &str) {
    if let Some((rule, why)) = global_member_rule(name) {
      self.report(span, rule, format!("the global property `{name}` is not allowed: {why}"));
    }
  }

  /// A property read on any object, by name or by a key built from constants.
  fn check_key(&mut self, span: Span, names: Option<Vec<String>>) {
    for name in names.unwrap_or_default() {
      if let Some((rule, why)) = member_rule(&name) {
        self.report(span, rule, format!("the property `{name}` is not allowed: {why}"));
        return;
      }
    }
  }

  fn check_member(&mut self, prop: &MemberProp) {
    match prop {
      MemberProp::Ident(n) => self.check_key(n.span, Some(vec![n.sym.to_string()])),
      MemberProp::Computed(c) => self.check_key(strip(&c.expr).span(), self.scope.key_strings(&c.expr, 0)),
      MemberProp::PrivateName(_) => {}
    }
  }

  fn check_prop_name(&mut self, key: &PropName) {
    match key {
      PropName::Computed(c) => self.check_key(strip(&c.expr).span(), self.scope.key_strings(&c.expr, 0)),
      key => self.check_key(key.span(), prop_name(key).map(|n| vec![n])),
    }
  }

  /// `const { a, b: c } = globalThis`: each key is a property read on the global object.
  fn check_global_pattern(&mut self, pattern: &ObjectPat) {
    for prop in &pattern.props {
      match prop {
        ObjectPatProp::KeyValue(kv) => match &kv.key {
          PropName::Computed(c) => self.report(
            c.span,
            EVAL,
            "a computed key destructured from the global object is not allowed (it could spell eval); \
             name the property directly"
              .into(),
          ),
          key => {
            if let Some(name) = prop_name(key) {
              self.check_global_key(key.span(), &name);
            }
          }
        },
        ObjectPatProp::Assign(a) => self.check_global_key(a.key.id.span, &a.key.id.sym),
        ObjectPatProp::Rest(r) => self.report(
          r.span,
          EVAL,
          "the rest of the global object is not allowed (it includes eval); destructure named properties".into(),
        ),
      }
    }
  }

  /// Visits an expression in a position where the global object itself is allowed: the
  /// object of a property read, or the value of an alias.
  fn visit_global_position(&mut self, expr: &Expr) {
    match strip(expr) {
      Expr::Ident(id) if self.scope.is_global_name(&id.sym) => {}
      Expr::Seq(s) => {
        if let Some((last, rest)) = s.exprs.split_last() {
          rest.iter().for_each(|e| e.visit_with(self));
          self.visit_global_position(last);
        }
      }
      Expr::Cond(c) => {
        c.test.visit_with(self);
        self.visit_global_position(&c.cons);
        self.visit_global_position(&c.alt);
      }
      Expr::Bin(b) if is_logical(b.op) => {
        self.visit_global_position(&b.left);
        self.visit_global_position(&b.right);
      }
      Expr::Assign(a) => self.visit_assign_expr(a),
      other => other.visit_with(self),
    }
  }

  /// Any call: `Reflect.*(globalThis, ...)` is refused as a whole, at the call.
  fn check_call(&mut self, span: Span, callee: &Expr, args: &[ExprOrSpread]) {
    let reflect = as_member(strip(callee)).and_then(|m| match (strip(&m.obj), &m.prop) {
      (Expr::Ident(obj), MemberProp::Ident(method)) if &*obj.sym == "Reflect" => Some(method.sym.to_string()),
      (Expr::Ident(obj), MemberProp::Computed(_)) if &*obj.sym == "Reflect" => Some("[...]".to_string()),
      _ => None,
    });
    match (reflect, args.split_first()) {
      (Some(method), Some((first, rest))) if first.spread.is_none() && self.scope.is_global(&first.expr) => {
        self.report(
          span,
          EVAL,
          format!(
            "`Reflect.{method}` on the global object is not allowed (it reaches eval); use the property by name, \
             e.g. `globalThis.libos`"
          ),
        );
        callee.visit_with(self);
        self.visit_global_position(&first.expr);
        rest.iter().for_each(|a| a.visit_with(self));
      }
      _ => {
        callee.visit_with(self);
        args.iter().for_each(|a| a.visit_with(self));
      }
    }
  }
}

impl Visit for Checker<'_> {
  fn visit_import_decl(&mut self, d: &ImportDecl) {
    self.check_specifier(&d.src, "import");
  }

  fn visit_named_export(&mut self, e: &NamedExport) {
    if let Some(src) = &e.src {
      self.check_specifier(src, "export from");
    }
  }

  fn visit_export_all(&mut self, e: &ExportAll) {
    self.check_specifier(&e.src, "export * from");
  }

  fn visit_ts_import_equals_decl(&mut self, d: &TsImportEqualsDecl) {
    match &d.module_ref {
      TsModuleRef::TsExternalModuleRef(r) => self.check_specifier(&r.expr, "import = require"),
      // `import x = a.b.c` emits `var x = a.b.c`: check it as that member chain.
      TsModuleRef::TsEntityName(name) => {
        let mut names = Vec::new();
        let mut cur = name;
        while let TsEntityName::TsQualifiedName(q) = cur {
          names.push((q.right.span, q.right.sym.clone()));
          cur = &q.left;
        }
        let TsEntityName::Ident(root) = cur else { return };
        names.reverse();
        match names.first() {
          Some((span, first)) if self.scope.is_global_name(&root.sym) => self.check_global_key(*span, first),
          _ => self.check_ident_ref(root),
        }
        for (span, name) in &names {
          self.check_key(*span, Some(vec![name.to_string()]));
        }
      }
    }
  }

  fn visit_expr(&mut self, expr: &Expr) {
    match expr {
      Expr::Ident(id) => self.check_ident_ref(id),
      Expr::Lit(Lit::Str(_)) | Expr::Tpl(_) => {
        self.check_key(expr.span(), self.scope.key_strings(expr, 0));
        expr.visit_children_with(self);
      }
      Expr::Bin(b) if b.op == BinaryOp::Add => {
        if self.scope.is_stringish(expr) {
          self.check_key(expr.span(), self.scope.key_strings(expr, 0));
        }
        expr.visit_children_with(self);
      }
      // Testing against Function is harmless and common.
      Expr::Bin(b)
        if b.op == BinaryOp::InstanceOf && matches!(strip(&b.right), Expr::Ident(id) if &*id.sym == "Function") =>
      {
        b.left.visit_with(self)
      }
      Expr::Unary(u) if u.op == UnaryOp::TypeOf && self.scope.is_global(&u.arg) => self.visit_global_position(&u.arg),
      _ => expr.visit_children_with(self),
    }
  }

  fn visit_prop(&mut self, prop: &Prop) {
    match prop {
      // `{ eval }` reads the variable.
      Prop::Shorthand(id) => self.check_ident_ref(id),
      _ => prop.visit_children_with(self),
    }
  }

  fn visit_member_expr(&mut self, m: &MemberExpr) {
    if self.scope.is_global(&m.obj) {
      self.check_global_member(&m.prop);
      self.visit_global_position(&m.obj);
    } else {
      m.obj.visit_with(self);
      self.check_member(&m.prop);
    }
    if let MemberProp::Computed(c) = &m.prop {
      c.expr.visit_with(self);
    }
  }

  fn visit_super_prop_expr(&mut self, s: &SuperPropExpr) {
    match &s.prop {
      SuperProp::Ident(n) => self.check_key(n.span, Some(vec![n.sym.to_string()])),
      SuperProp::Computed(c) => {
        self.check_key(strip(&c.expr).span(), self.scope.key_strings(&c.expr, 0));
        c.expr.visit_with(self);
      }
    }
  }

  fn visit_call_expr(&mut self, c: &CallExpr) {
    match &c.callee {
      Callee::Import(_) => {
        self.report(
          c.span,
          DYNAMIC_IMPORT,
          "dynamic `import(...)` is not allowed: import libos:* modules statically at the top of the module".into(),
        );
        c.args.iter().for_each(|a| a.visit_with(self));
      }
      Callee::Expr(callee) => self.check_call(c.span, callee, &c.args),
      Callee::Super(_) => c.args.iter().for_each(|a| a.visit_with(self)),
    }
  }

  fn visit_opt_call(&mut self, c: &OptCall) {
    self.check_call(c.span, &c.callee, &c.args);
  }

  fn visit_var_declarator(&mut self, d: &VarDeclarator) {
    match (&d.name, &d.init) {
      // An alias of the global object: `Scope` tracks it, its uses are checked.
      (Pat::Ident(_), Some(init)) if self.scope.is_global(init) => self.visit_global_position(init),
      (Pat::Object(pattern), Some(init)) if self.scope.is_global(init) => {
        self.check_global_pattern(pattern);
        pattern.visit_with(self);
        self.visit_global_position(init);
      }
      _ => d.visit_children_with(self),
    }
  }

  fn visit_assign_expr(&mut self, a: &AssignExpr) {
    if self.scope.is_global(&a.right) {
      match &a.left {
        AssignTarget::Simple(SimpleAssignTarget::Ident(_)) => return self.visit_global_position(&a.right),
        AssignTarget::Pat(AssignTargetPat::Object(pattern)) => {
          self.check_global_pattern(pattern);
          pattern.visit_with(self);
          return self.visit_global_position(&a.right);
        }
        _ => {}
      }
    }
    a.visit_children_with(self);
  }

  fn visit_object_pat(&mut self, pattern: &ObjectPat) {
    // Destructuring reads properties: `const { constructor: F } = fn`.
    for prop in &pattern.props {
      match prop {
        ObjectPatProp::KeyValue(kv) => self.check_prop_name(&kv.key),
        ObjectPatProp::Assign(a) => self.check_key(a.key.id.span, Some(vec![a.key.id.sym.to_string()])),
        ObjectPatProp::Rest(_) => {}
      }
    }
    pattern.visit_children_with(self);
  }

  fn visit_with_stmt(&mut self, w: &WithStmt) {
    self.report(
      w.span,
      FORBIDDEN_GLOBAL,
      "`with` statements are not allowed (they hide which names are read); refer to properties explicitly".into(),
    );
    w.visit_children_with(self);
  }

  // Types are erased when the module is transpiled: nothing in them runs.
  fn visit_ts_type(&mut self, _: &TsType) {}
  fn visit_ts_interface_decl(&mut self, _: &TsInterfaceDecl) {}
  fn visit_ts_type_alias_decl(&mut self, _: &TsTypeAliasDecl) {}
  fn visit_ts_expr_with_type_args(&mut self, _: &TsExprWithTypeArgs) {}
}

// ---- the tool's shape and its literal spec --------------------------------------------

struct Shape<'a> {
  file: &'a str,
  lines: &'a Lines<'a>,
  findings: Vec<Finding>,
}

/// A default export of the module.
enum DefaultExport<'m> {
  Expr(Span, &'m Expr),
  Other(Span, &'static str),
}

impl DefaultExport<'_> {
  fn span(&self) -> Span {
    match self {
      DefaultExport::Expr(span, _) | DefaultExport::Other(span, _) => *span,
    }
  }
}

const EXPECTED_SHAPE: &str = "a tool module must `export default defineTool({...})` with defineTool imported \
                              from \"libos:tool\"";

impl Shape<'_> {
  fn report(&mut self, span: Span, rule: &'static str, message: String) {
    self.findings.push(self.lines.finding(span, rule, message));
  }

  /// Checks for exactly one `export default defineTool({...})` and returns its literal spec.
  fn check(&mut self, module: &Module) -> Option<Value> {
    let mut define_tool: HashSet<Atom> = HashSet::new();
    let mut namespaces: HashSet<Atom> = HashSet::new();
    let mut defaults = Vec::new();
    for item in &module.body {
      let ModuleItem::ModuleDecl(decl) = item else { continue };
      match decl {
        ModuleDecl::Import(import) if !import.type_only && str_value(&import.src) == "libos:tool" => {
          for specifier in &import.specifiers {
            match specifier {
              ImportSpecifier::Named(named) if !named.is_type_only => {
                let imported = match &named.imported {
                  Some(ModuleExportName::Ident(id)) => id.sym.to_string(),
                  Some(ModuleExportName::Str(s)) => str_value(s),
                  None => named.local.sym.to_string(),
                };
                if imported == "defineTool" {
                  define_tool.insert(named.local.sym.clone());
                }
              }
              ImportSpecifier::Namespace(ns) => {
                namespaces.insert(ns.local.sym.clone());
              }
              _ => {}
            }
          }
        }
        ModuleDecl::ExportDefaultExpr(e) => defaults.push(DefaultExport::Expr(e.span, &e.expr)),
        ModuleDecl::ExportDefaultDecl(d) => {
          let what = match &d.decl {
            DefaultDecl::Class(_) => "a class",
            DefaultDecl::Fn(_) => "a function declaration",
            DefaultDecl::TsInterfaceDecl(_) => "an interface",
          };
          defaults.push(DefaultExport::Other(d.span, what));
        }
        ModuleDecl::ExportNamed(named) => {
          for specifier in &named.specifiers {
            let exported = match specifier {
              ExportSpecifier::Named(s) => s.exported.as_ref().unwrap_or(&s.orig),
              ExportSpecifier::Namespace(s) => &s.name,
              ExportSpecifier::Default(_) => continue,
            };
            let name = match exported {
              ModuleExportName::Ident(id) => id.sym.to_string(),
              ModuleExportName::Str(s) => str_value(s),
            };
            if name == "default" {
              defaults
                .push(DefaultExport::Other(specifier.span(), "a re-exported binding (`export { x as default }`)"));
            }
          }
        }
        ModuleDecl::TsExportAssignment(e) => defaults.push(DefaultExport::Other(e.span, "`export =`")),
        _ => {}
      }
    }

    let Some((first, extra)) = defaults.split_first() else {
      let message = format!("{} has no default export: {EXPECTED_SHAPE}", self.file);
      self.findings.push(Finding { line: 1, col: 1, rule: DEFAULT_EXPORT, message });
      return None;
    };
    for other in extra {
      self.report(
        other.span(),
        DEFAULT_EXPORT,
        "a second default export is not allowed: a tool module has exactly one, `export default defineTool({...})`"
          .into(),
      );
    }
    let (span, expr) = match first {
      DefaultExport::Other(span, what) => {
        self.report(*span, DEFAULT_EXPORT, format!("the default export is {what}: {EXPECTED_SHAPE}"));
        return None;
      }
      DefaultExport::Expr(span, expr) => (*span, strip(expr)),
    };
    let Expr::Call(CallExpr { callee: Callee::Expr(callee), args, .. }) = expr else {
      self.report(
        expr.span(),
        DEFAULT_EXPORT,
        format!("the default export is not a call of defineTool: {EXPECTED_SHAPE}"),
      );
      return None;
    };
    match strip(callee) {
      Expr::Ident(id) if define_tool.contains(&id.sym) => {}
      Expr::Ident(id) if &*id.sym == "defineTool" => self.report(
        id.span,
        DEFAULT_EXPORT,
        "defineTool is not imported from \"libos:tool\": add `import { defineTool } from \"libos:tool\"`".into(),
      ),
      callee => {
        let via_namespace = as_member(callee).is_some_and(|m| {
          matches!((strip(&m.obj), &m.prop), (Expr::Ident(ns), MemberProp::Ident(p))
            if namespaces.contains(&ns.sym) && &*p.sym == "defineTool")
        });
        if !via_namespace {
          self.report(
            callee.span(),
            DEFAULT_EXPORT,
            format!("the default export calls something other than defineTool: {EXPECTED_SHAPE}"),
          );
          return None;
        }
      }
    }
    let object = match args.as_slice() {
      [ExprOrSpread { spread: None, expr }] => match strip(expr) {
        Expr::Object(object) => object,
        other => {
          self.report(
            other.span(),
            DEFAULT_EXPORT,
            "defineTool's argument must be an object literal `{ name: ..., ... }`".into(),
          );
          return None;
        }
      },
      _ => {
        self.report(
          span,
          DEFAULT_EXPORT,
          "defineTool takes exactly one argument, an object literal `{ name: ..., ... }`".into(),
        );
        return None;
      }
    };
    self.spec(object)
  }

  /// Reads the spec keys of the defineTool object; `None` unless all present are literal.
  fn spec(&mut self, object: &ObjectLit) -> Option<Value> {
    let mut spec = serde_json::Map::new();
    let mut values: HashMap<&'static str, Span> = HashMap::new();
    let mut present: HashSet<&'static str> = HashSet::new();
    let mut literal = true;
    // Whether every key is known (no spread, no computed key): only then can a key be
    // called missing.
    let mut closed = true;
    let mut run = None;
    for prop in &object.props {
      let prop = match prop {
        PropOrSpread::Spread(s) => {
          self.report(
            s.dot3_token,
            SPEC_LITERAL,
            "a spread in the defineTool object is not allowed: write name, description, input, output, \
             capabilities and tests inline"
              .into(),
          );
          closed = false;
          literal = false;
          continue;
        }
        PropOrSpread::Prop(prop) => prop,
      };
      let (key, value) = match &**prop {
        Prop::KeyValue(kv) => match &kv.key {
          PropName::Computed(c) => {
            self.report(
              c.span,
              SPEC_LITERAL,
              "a computed key in the defineTool object is not allowed: write the key as a name".into(),
            );
            closed = false;
            literal = false;
            continue;
          }
          key => (prop_name(key).unwrap_or_default(), Ok(&*kv.value)),
        },
        Prop::Shorthand(id) => (id.sym.to_string(), Err("a shorthand property refers to a variable")),
        Prop::Method(m) => (prop_name(&m.key).unwrap_or_default(), Err("a method is not a literal")),
        Prop::Getter(g) => (prop_name(&g.key).unwrap_or_default(), Err("a getter is not a literal")),
        Prop::Setter(s) => (prop_name(&s.key).unwrap_or_default(), Err("a setter is not a literal")),
        Prop::Assign(_) => continue,
      };
      if key == "run" {
        run = Some((prop.span(), value.ok()));
        continue;
      }
      let Some(spec_key) = SPEC_KEYS.iter().copied().find(|k| *k == key) else { continue };
      present.insert(spec_key);
      match value {
        Ok(value) => match json_literal(value) {
          Ok(json) => {
            values.insert(spec_key, value.span());
            spec.insert(key, json);
          }
          Err((span, why)) => {
            self.report(span, SPEC_LITERAL, format!("`{key}` must be a JSON literal: {why}; write the value inline"));
            literal = false;
          }
        },
        Err(why) => {
          self.report(
            prop.span(),
            SPEC_LITERAL,
            format!("`{key}` must be a JSON literal: {why}; write the value inline"),
          );
          literal = false;
        }
      }
    }
    self.check_spec(object.span, &spec, &values, &present, closed);
    match run {
      None if closed => self.report(object.span, SPEC, "`run` is missing: add `run: async (args) => { ... }`".into()),
      Some((span, Some(value)))
        if matches!(strip(value), Expr::Lit(_) | Expr::Object(_) | Expr::Array(_) | Expr::Tpl(_)) =>
      {
        self.report(span, SPEC, "`run` must be a function, e.g. `run: async (args) => { ... }`".into())
      }
      _ => {}
    }
    literal.then_some(Value::Object(spec))
  }

  /// The fields the host relies on, for the keys that are literal.
  fn check_spec(
    &mut self,
    object: Span,
    spec: &serde_json::Map<String, Value>,
    at: &HashMap<&'static str, Span>,
    present: &HashSet<&'static str>,
    closed: bool,
  ) {
    let missing = |key: &str| closed && !present.contains(key);
    // A key present but not literal has been reported already; only literal ones are checked.
    let mut check = |key: &'static str, ok: fn(&Value) -> bool, what: &str| match spec.get(key) {
      Some(value) if !ok(value) => {
        let message = format!("`{key}` must be {what}");
        self.findings.push(self.lines.finding(at[key], SPEC, message));
      }
      _ => {}
    };
    check(
      "name",
      |v| v.as_str().is_some_and(valid_tool_name),
      "a string matching /^[a-z][a-z0-9_]{0,63}$/, e.g. \"read_file\"",
    );
    check(
      "description",
      |v| v.as_str().is_some_and(|s| !s.trim().is_empty()),
      "a non-empty string saying what the tool does",
    );
    check("input", Value::is_object, "a JSON Schema object, e.g. { type: \"object\", properties: { ... } }");
    check("output", Value::is_object, "a JSON Schema object, e.g. { type: \"object\" }");
    check(
      "capabilities",
      |v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
      "an array of capability strings, e.g. [\"fs.read:**\"]",
    );
    check("tests", |v| v.as_array().is_some_and(|a| a.iter().all(Value::is_object)), "an array of test objects");
    let absent: Vec<&str> = [
      ("name", "name: \"read_file\""),
      ("description", "description: \"Reads a file.\""),
      ("input", "input: { type: \"object\", properties: { ... } }"),
    ]
    .into_iter()
    .filter(|(key, _)| missing(key))
    .map(|(_, example)| example)
    .collect();
    if !absent.is_empty() {
      let message = format!("the defineTool object lacks required keys: add `{}`", absent.join("`, `"));
      self.report(object, SPEC, message);
    }
  }
}

fn valid_tool_name(name: &str) -> bool {
  let bytes = name.as_bytes();
  matches!(bytes.first(), Some(b'a'..=b'z'))
    && bytes.len() <= 64
    && bytes[1..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The JSON value of a JSON-like literal, or the offending node and why.
fn json_literal(expr: &Expr) -> Result<Value, (Span, String)> {
  let expr = match expr {
    // `as const` and friends are erased; the value is what is written.
    Expr::Paren(_) | Expr::TsAs(_) | Expr::TsSatisfies(_) | Expr::TsConstAssertion(_) => strip(expr),
    _ => expr,
  };
  let refuse = |why: String| Err((expr.span(), why));
  match expr {
    Expr::Lit(Lit::Str(s)) => match s.value.as_atom() {
      Some(atom) => Ok(Value::String(atom.to_string())),
      None => refuse("the string contains a lone surrogate".into()),
    },
    Expr::Lit(Lit::Num(n)) => json_number(n.value).map_or_else(|| refuse("the number is not finite".into()), Ok),
    Expr::Lit(Lit::Bool(b)) => Ok(Value::Bool(b.value)),
    Expr::Lit(Lit::Null(_)) => Ok(Value::Null),
    Expr::Lit(Lit::Regex(_)) => refuse("a regular expression is not JSON (write the pattern as a string)".into()),
    Expr::Lit(_) => refuse("this literal is not JSON".into()),
    Expr::Tpl(t) if t.exprs.is_empty() => {
      match t.quasis.first().and_then(|q| q.cooked.as_ref()).and_then(|c| c.as_atom()) {
        Some(atom) => Ok(Value::String(atom.to_string())),
        None => refuse("the template has an invalid escape".into()),
      }
    }
    Expr::Tpl(_) => refuse("a template with `${...}` is computed".into()),
    Expr::Unary(u) if u.op == UnaryOp::Minus => match &*u.arg {
      Expr::Lit(Lit::Num(n)) => json_number(-n.value).map_or_else(|| refuse("the number is not finite".into()), Ok),
      _ => refuse("only a number may follow `-`".into()),
    },
    Expr::Array(array) => {
      let mut items = Vec::with_capacity(array.elems.len());
      for elem in &array.elems {
        match elem {
          None => return refuse("an array hole is not JSON (write null)".into()),
          Some(ExprOrSpread { spread: Some(dots), .. }) => return Err((*dots, "a spread is computed".into())),
          Some(ExprOrSpread { expr, .. }) => items.push(json_literal(expr)?),
        }
      }
      Ok(Value::Array(items))
    }
    Expr::Object(object) => {
      let mut map = serde_json::Map::new();
      for prop in &object.props {
        let prop = match prop {
          PropOrSpread::Spread(s) => return Err((s.dot3_token, "a spread is computed".into())),
          PropOrSpread::Prop(prop) => prop,
        };
        match &**prop {
          Prop::KeyValue(kv) => {
            let Some(key) = prop_name(&kv.key).filter(|_| matches!(kv.key, PropName::Ident(_) | PropName::Str(_)))
            else {
              return Err((kv.key.span(), "keys must be names or strings".into()));
            };
            // `__proto__: {...}` sets the prototype instead of a key: the object seen at
            // run time would differ from the one read here.
            if key == "__proto__" {
              return Err((kv.key.span(), "a `__proto__` key sets the prototype".into()));
            }
            map.insert(key, json_literal(&kv.value)?);
          }
          Prop::Shorthand(id) => return Err((id.span, format!("the shorthand `{}` refers to a variable", id.sym))),
          other => return Err((other.span(), "methods, getters and setters are not JSON".into())),
        }
      }
      Ok(Value::Object(map))
    }
    Expr::Ident(id) if &*id.sym == "undefined" => refuse("undefined is not JSON (omit the key or write null)".into()),
    Expr::Ident(id) => refuse(format!("the variable `{}` is not a literal", id.sym)),
    _ => refuse("an expression is computed, not a literal".into()),
  }
}

fn json_number(value: f64) -> Option<Value> {
  if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
    return Some(Value::from(value as i64));
  }
  serde_json::Number::from_f64(value).map(Value::Number)
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  const HEADER: &str = "import { defineTool } from \"libos:tool\";\n";
  const TOOL: &str = "export default defineTool({ name: \"t\", description: \"d\", input: { type: \"object\" }, \
                      capabilities: [], run: async () => 1 });\n";

  /// `body` between a valid import and a valid default export, so only its findings show.
  fn check(body: &str) -> Vec<Finding> {
    analyze("t.ts", &format!("{HEADER}{body}\n{TOOL}")).findings
  }

  fn rules(findings: &[Finding]) -> Vec<(usize, usize, &'static str)> {
    findings.iter().map(|f| (f.line, f.col, f.rule)).collect()
  }

  /// `body` (one line, line 2 of the module) yields a finding of `rule` at column `col`.
  #[track_caller]
  fn assert_finds(body: &str, rule: &str, col: usize) {
    let findings = check(body);
    assert!(
      findings.iter().any(|f| f.rule == rule && f.line == 2 && f.col == col),
      "{body:?}: expected {rule} at 2:{col}, got {findings:#?}"
    );
  }

  #[track_caller]
  fn assert_clean(body: &str) {
    let findings = check(body);
    assert!(findings.is_empty(), "{body:?}: expected no findings, got {findings:#?}");
  }

  #[test]
  fn parse_error_is_one_finding_at_the_parser_position() {
    let analysis = analyze("t.ts", "const a = 1;\nconst = 2;\n");
    assert_eq!(rules(&analysis.findings), vec![(2, 7, PARSE)]);
    assert!(analysis.findings[0].message.contains("does not parse"), "{:?}", analysis.findings);
    assert!(analysis.spec.is_none());
  }

  #[test]
  fn imports_other_than_libos_are_refused() {
    assert_finds("import fs from \"node:fs\";", IMPORT, 16);
    assert_finds("import { x } from \"https://example.com/x.ts\";", IMPORT, 19);
    assert_finds("import x from \"npm:x\";", IMPORT, 15);
    assert_finds("import \"./x.ts\";", IMPORT, 8);
    assert_finds("import type { T } from \"../types.ts\";", IMPORT, 24);
    assert_finds("import _ from \"lodash\";", IMPORT, 15);
    assert_finds("export { x } from \"./x.ts\";", IMPORT, 19);
    assert_finds("export * from \"node:os\";", IMPORT, 15);
    assert_finds("import fs = require(\"fs\");", IMPORT, 21);
    assert_finds("const fs = require(\"fs\");", IMPORT, 12);
    assert_finds("const r = require;", IMPORT, 11);
    assert_clean("import { sha256Hex } from \"libos:tool\";\nimport * as t from \"libos:tools/read_file\";");
  }

  #[test]
  fn dynamic_import_in_any_form() {
    assert_finds("const m = await import(\"libos:tool\");", DYNAMIC_IMPORT, 17);
    assert_finds("const m = import(\"node:\" + \"fs\");", DYNAMIC_IMPORT, 11);
    assert_finds("async function f(s: string) { return await import(s as any); }", DYNAMIC_IMPORT, 44);
  }

  #[test]
  fn eval_and_the_global_object() {
    assert_finds("eval(\"1\");", EVAL, 1);
    assert_finds("const e = eval; e(\"1\");", EVAL, 11);
    assert_finds("globalThis.eval(\"1\");", EVAL, 12);
    assert_finds("window[\"eval\"](\"1\");", EVAL, 8);
    assert_finds("self[\"eval\"](\"1\");", EVAL, 6);
    assert_finds("globalThis[`eval`](\"1\");", EVAL, 12);
    assert_finds("globalThis[\"ev\" + \"al\"](\"1\");", EVAL, 12);
    assert_finds("global[k];", EVAL, 8);
    assert_finds("globalThis?.[\"eval\"](\"1\");", EVAL, 14);
    assert_finds("globalThis?.eval?.(\"1\");", EVAL, 13);
    assert_finds("(globalThis as any)[\"ev\" + \"al\"](\"1\");", EVAL, 21);
    assert_finds("globalThis![\"eval\"](\"1\");", EVAL, 13);
    assert_finds("(0, globalThis)[\"eval\"](\"1\");", EVAL, 17);
    assert_finds("globalThis.self.window[\"ev\" + \"al\"](\"1\");", EVAL, 24);
    assert_finds("const { eval: e } = globalThis;", EVAL, 9);
    assert_finds("const { ...all } = globalThis;", EVAL, 9);
    assert_finds("Reflect.get(globalThis, \"eval\")(\"1\");", EVAL, 1);
    assert_finds("Reflect.apply(Reflect.get(self, \"ev\" + \"al\"), null, [\"1\"]);", EVAL, 15);
    assert_finds("Reflect.getOwnPropertyDescriptor(window, \"eval\");", EVAL, 1);
    assert_finds("Object.values(globalThis);", EVAL, 15);
    assert_finds("const o = { g: globalThis };", EVAL, 16);
    assert_finds("const f = () => globalThis;", EVAL, 17);
    assert_finds("const o = { globalThis };", EVAL, 13);
  }

  #[test]
  fn aliases_of_the_global_object() {
    assert_finds("const g = globalThis; g[\"ev\" + \"al\"](\"1\");", EVAL, 25);
    assert_finds("const g = globalThis, h = g as any; h.eval(\"1\");", EVAL, 39);
    assert_finds("let g; g = self; g[k];", EVAL, 20);
    // Order does not matter: the alias is found before its use is checked.
    let findings = check("function f() { return h[\"ev\" + \"al\"]; }\nconst h = window;");
    assert!(findings.iter().any(|f| (f.line, f.col, f.rule) == (2, 25, EVAL)), "{findings:#?}");
    assert_finds("const g = (x || globalThis); g[k];", EVAL, 32);
    // An alias passed around escapes like the global object itself.
    assert_finds("const g = globalThis; use(g);", EVAL, 27);
  }

  #[test]
  fn function_constructor_routes() {
    assert_finds("Function(\"return 1\")();", FUNCTION_CONSTRUCTOR, 1);
    assert_finds("new Function(\"return 1\");", FUNCTION_CONSTRUCTOR, 5);
    assert_finds("Function.prototype.constructor(\"return 1\");", FUNCTION_CONSTRUCTOR, 20);
    assert_finds("(async () => {}).constructor(\"return 1\");", FUNCTION_CONSTRUCTOR, 18);
    assert_finds("x[\"constructor\"](\"return 1\");", FUNCTION_CONSTRUCTOR, 3);
    assert_finds("x[`constructor`];", FUNCTION_CONSTRUCTOR, 3);
    assert_finds("x[\"constru\" + \"ctor\"];", FUNCTION_CONSTRUCTOR, 3);
    assert_finds("x[[\"constructor\"]];", FUNCTION_CONSTRUCTOR, 3);
    assert_finds("const k = \"constru\", j = \"ctor\"; x[k + j];", FUNCTION_CONSTRUCTOR, 36);
    assert_finds("x?.constructor;", FUNCTION_CONSTRUCTOR, 4);
    assert_finds("const { constructor: F } = () => 1;", FUNCTION_CONSTRUCTOR, 9);
    assert_finds("Reflect.get(() => 1, \"constructor\");", FUNCTION_CONSTRUCTOR, 22);
    assert_finds("Object.getPrototypeOf(async function () {});", FUNCTION_CONSTRUCTOR, 8);
    assert_finds("(function* () {}).__proto__;", FUNCTION_CONSTRUCTOR, 19);
    assert_finds("const A = AsyncFunction;", FUNCTION_CONSTRUCTOR, 11);
    assert_finds("GeneratorFunction;", FUNCTION_CONSTRUCTOR, 1);
    assert_finds("globalThis.Function(\"x\");", FUNCTION_CONSTRUCTOR, 12);
    assert_finds("Reflect.construct(Function, [\"return 1\"]);", FUNCTION_CONSTRUCTOR, 19);
    assert_finds("class A extends B { m() { return super.constructor; } }", FUNCTION_CONSTRUCTOR, 40);
    assert_clean("const ok = (x: unknown) => x instanceof Function || typeof x === \"function\";");
    assert_clean("class A { constructor(readonly n: number) {} }");
  }

  #[test]
  fn forbidden_globals_and_with() {
    assert_finds("const m = new WebAssembly.Module(bytes);", FORBIDDEN_GLOBAL, 15);
    assert_finds("new Worker(\"x.js\");", FORBIDDEN_GLOBAL, 5);
    assert_finds("const b = new SharedArrayBuffer(8);", FORBIDDEN_GLOBAL, 15);
    assert_finds("Atomics.wait(a, 0, 0);", FORBIDDEN_GLOBAL, 1);
    assert_finds("Deno.core.ops;", FORBIDDEN_GLOBAL, 1);
    assert_finds("globalThis.Deno;", FORBIDDEN_GLOBAL, 12);
    assert_finds("globalThis[\"__bootstrap\"];", FORBIDDEN_GLOBAL, 12);
    assert_finds("__v8xHelper();", FORBIDDEN_GLOBAL, 1);
    assert_finds("const { Deno: d } = self;", FORBIDDEN_GLOBAL, 9);
    // `with` is an error the parser recovers from in a module: one parse finding, and
    // the statement itself is refused too.
    let findings = check("with (Math) { max(1, 2); }");
    assert_eq!(rules(&findings), vec![(2, 1, FORBIDDEN_GLOBAL), (2, 1, PARSE)]);
    // Type positions are erased: naming a forbidden global there runs nothing.
    assert_clean("let m: WebAssembly.Module | undefined; type D = typeof Deno;");
  }

  #[test]
  fn default_export_shape() {
    let missing = analyze("tools/x.ts", HEADER);
    assert_eq!(rules(&missing.findings), vec![(1, 1, DEFAULT_EXPORT)]);
    assert!(missing.findings[0].message.contains("tools/x.ts"));

    let not_imported = analyze("t.ts", TOOL);
    assert_eq!(rules(&not_imported.findings), vec![(1, 16, DEFAULT_EXPORT)]);

    let function = analyze("t.ts", &format!("{HEADER}export default function run() {{}}\n"));
    assert_eq!(rules(&function.findings), vec![(2, 1, DEFAULT_EXPORT)]);
    assert!(function.spec.is_none());

    let variable = analyze("t.ts", &format!("{HEADER}const spec = {{}};\nexport default defineTool(spec);\n"));
    assert_eq!(rules(&variable.findings), vec![(3, 27, DEFAULT_EXPORT)]);

    let other_call = analyze("t.ts", &format!("{HEADER}export default makeTool({{}});\n"));
    assert_eq!(rules(&other_call.findings), vec![(2, 16, DEFAULT_EXPORT)]);

    let two = analyze("t.ts", &format!("{HEADER}{TOOL}const y = 1;\nexport {{ y as default }};\n"));
    assert_eq!(rules(&two.findings), vec![(4, 10, DEFAULT_EXPORT)]);

    // Renamed and namespace imports of defineTool are the same function.
    let renamed = analyze(
      "t.ts",
      &format!("import {{ defineTool as dt }} from \"libos:tool\";\n{}", TOOL.replace("defineTool(", "dt(")),
    );
    assert!(renamed.findings.is_empty(), "{:#?}", renamed.findings);
    let namespace = analyze(
      "t.ts",
      &format!("import * as lt from \"libos:tool\";\n{}", TOOL.replace("defineTool(", "lt.defineTool(")),
    );
    assert!(namespace.findings.is_empty(), "{:#?}", namespace.findings);
  }

  fn tool(fields: &str) -> Analysis {
    analyze("t.ts", &format!("{HEADER}export default defineTool({{\n{fields}\n}});\n"))
  }

  #[test]
  fn spec_keys_must_be_literal() {
    let base = "description: \"d\", input: { type: \"object\" }, run: async () => 1,";
    // (the fields after `base`, the offending text)
    let cases = [
      ("name: NAME,", "NAME"),
      ("capabilities: [CAP],", "CAP"),
      ("tests: [{ args: { ...x } }],", "..."),
      ("output: { [k]: 1 },", "[k]"),
      ("output: { type: `${t}` },", "`"),
      ("output: makeSchema(),", "makeSchema"),
      ("output: { type },", "type }"),
      ("output: { __proto__: { type: \"object\" } },", "__proto__"),
      ("output: { a: undefined },", "undefined"),
      ("output: { a: [1, , 2] },", "[1"),
      ("...extra,", "..."),
      ("[\"output\"]: {},", "["),
      ("get output() { return {}; },", "get"),
    ];
    for (extra, marker) in cases {
      let fields =
        if extra.starts_with("name") { format!("{base} {extra}") } else { format!("name: \"t\", {base} {extra}") };
      let col = fields.find(marker).unwrap() + 1;
      let analysis = tool(&fields);
      assert!(
        analysis.findings.iter().any(|f| (f.line, f.col, f.rule) == (3, col, SPEC_LITERAL)),
        "{fields}: expected spec-literal at 3:{col}, got {:#?}",
        analysis.findings
      );
      assert!(analysis.spec.is_none(), "{fields}: {:?}", analysis.spec);
      // A key written but not literal is not also missing.
      assert!(analysis.findings.iter().all(|f| f.rule != SPEC), "{fields}: {:#?}", analysis.findings);
    }
  }

  #[test]
  fn spec_fields_are_checked() {
    let analysis =
      tool("name: \"Read-File\", description: \"\", input: [], capabilities: [\"fs.read:**\", 1], run: 5,");
    assert_eq!(
      rules(&analysis.findings),
      vec![(3, 7, SPEC), (3, 33, SPEC), (3, 44, SPEC), (3, 62, SPEC), (3, 81, SPEC)],
      "{:#?}",
      analysis.findings
    );
    // Literal but invalid: the spec is still returned, for the caller to show.
    assert_eq!(analysis.spec.unwrap()["name"], "Read-File");

    let missing = tool("run: async () => 1,");
    assert_eq!(rules(&missing.findings), vec![(2, 27, SPEC)]);
    let message = &missing.findings[0].message;
    for key in ["name: ", "description: ", "input: "] {
      assert!(message.contains(key), "{message}");
    }
    let no_run = tool("name: \"t\", description: \"d\", input: {},");
    assert_eq!(rules(&no_run.findings), vec![(2, 27, SPEC)]);
    assert!(no_run.findings[0].message.contains("`run` is missing"), "{:?}", no_run.findings);

    let long = tool(&format!("name: \"{}\", description: \"d\", input: {{}}, run() {{ return 1; }},", "a".repeat(65)));
    assert_eq!(rules(&long.findings), vec![(3, 7, SPEC)]);
    let longest =
      tool(&format!("name: \"{}\", description: \"d\", input: {{}}, run() {{ return 1; }},", "a".repeat(64)));
    assert!(longest.findings.is_empty(), "{:#?}", longest.findings);
  }

  #[test]
  fn spec_with_nested_json_schema() {
    let analysis = tool(
      r##"name: "search_notes",
  description: `Searches notes.`,
  input: {
    type: "object",
    properties: {
      query: { type: "string", minLength: 1 },
      limit: { type: "integer", minimum: 1, maximum: 100, default: 10 },
      offset: { type: "number", minimum: -1.5 },
      tags: { type: "array", items: { type: "string", enum: ["a", "b"] }, uniqueItems: true },
      "x-meta": { anyOf: [{ type: "null" }, { $ref: "#/$defs/meta" }] },
    },
    required: ["query"],
    additionalProperties: false,
    $defs: { meta: { type: "object", properties: {} } },
  } as const,
  output: { type: "object", properties: { hits: { type: "array" } } } satisfies object,
  capabilities: ["fs.read:notes/**", "mem.read:*"],
  run: async ({ query }: { query: string }) => ({ hits: [query] }),
  tests: [
    { name: "finds", args: { query: "x" }, mocks: [], expect: { hits: ["x"] }, expectCalls: [] },
    { name: "fails", args: { query: "y" }, expectError: "NotFound" },
  ],"##,
    );
    assert!(analysis.findings.is_empty(), "{:#?}", analysis.findings);
    assert_eq!(
      analysis.spec.unwrap(),
      json!({
        "name": "search_notes",
        "description": "Searches notes.",
        "input": {
          "type": "object",
          "properties": {
            "query": { "type": "string", "minLength": 1 },
            "limit": { "type": "integer", "minimum": 1, "maximum": 100, "default": 10 },
            "offset": { "type": "number", "minimum": -1.5 },
            "tags": { "type": "array", "items": { "type": "string", "enum": ["a", "b"] }, "uniqueItems": true },
            "x-meta": { "anyOf": [{ "type": "null" }, { "$ref": "#/$defs/meta" }] },
          },
          "required": ["query"],
          "additionalProperties": false,
          "$defs": { "meta": { "type": "object", "properties": {} } },
        },
        "output": { "type": "object", "properties": { "hits": { "type": "array" } } },
        "capabilities": ["fs.read:notes/**", "mem.read:*"],
        "tests": [
          { "name": "finds", "args": { "query": "x" }, "mocks": [], "expect": { "hits": ["x"] }, "expectCalls": [] },
          { "name": "fails", "args": { "query": "y" }, "expectError": "NotFound" },
        ],
      })
    );
  }

  #[test]
  fn a_realistic_tool_is_clean() {
    let source = r#"import { defineTool, truncate } from "libos:tool";

interface Args { path: string; maxBytes?: number }
type Entry = { path: string; size: number };

const DEFAULT_MAX = 64 * 1024;
const NOTE_RE = /^notes\/[\w-]+\.md$/;

class Summary {
  private lines: string[] = [];
  constructor(readonly title: string) {}
  add(line: string): this {
    this.lines.push(line);
    return this;
  }
  render(): string {
    return [`# ${this.title}`, ...this.lines].join("\n");
  }
}

function countWords(text: string): number {
  return text.split(/\s+/).filter((w) => w.length > 0).length;
}

export default defineTool({
  name: "summarize_note",
  description: "Summarises a note and remembers its word count.",
  input: {
    type: "object",
    properties: { path: { type: "string" }, maxBytes: { type: "integer", minimum: 1 } },
    required: ["path"],
    additionalProperties: false,
  },
  output: { type: "object" },
  capabilities: ["fs.read:notes/**", "mem.write:summaries/*"],
  run: async (args: Args) => {
    if (!NOTE_RE.test(args.path)) throw new TypeError(`not a note: ${args.path}`);
    const text: string = await libos.fs.readText(args.path);
    const meta = JSON.parse((await libos.mem.get("meta")) ?? "{}") as Record<string, unknown>;
    const cut = truncate(text, args.maxBytes ?? DEFAULT_MAX);
    const summary = new Summary(args.path).add(`${countWords(cut.text)} words`);
    for (const [key, value] of Object.entries(meta)) {
      if (typeof value === "string") summary.add(`${key}: ${value}`);
    }
    await libos.mem.put(`summaries/${args.path}`, summary.render());
    const entries: Entry[] = (await libos.fs.list("notes")).map((e: Entry) => ({ ...e }));
    const seen = meta["count"] ?? 0;
    return { words: countWords(cut.text), truncated: cut.truncated, entries: entries.length, seen: seen! };
  },
  tests: [{ name: "reads", args: { path: "notes/a.md" }, expect: { words: 2 } }],
});
"#;
    let analysis = analyze("tools/summarize_note.ts", source);
    assert!(analysis.findings.is_empty(), "{:#?}", analysis.findings);
    let spec = analysis.spec.expect("a literal spec");
    assert_eq!(spec["name"], "summarize_note");
    assert_eq!(spec["capabilities"], json!(["fs.read:notes/**", "mem.write:summaries/*"]));
    assert_eq!(spec["input"]["required"], json!(["path"]));
    assert_eq!(spec["tests"][0]["expect"], json!({ "words": 2 }));
    assert!(spec.get("run").is_none());
  }

  #[test]
  fn javascript_modules_parse_as_javascript() {
    let analysis = analyze("t.js", &format!("{HEADER}{TOOL}"));
    assert!(analysis.findings.is_empty(), "{:#?}", analysis.findings);
    let typed = analyze("t.js", &format!("{HEADER}const x: number = 1;\n{TOOL}"));
    assert_eq!(typed.findings.first().map(|f| f.rule), Some(PARSE));
  }

  #[test]
  fn findings_are_sorted_by_position() {
    let findings = check("eval(\"1\"); import(\"x\");\nnew Function(\"\");\nimport fs from \"node:fs\";");
    let positions: Vec<(usize, usize)> = findings.iter().map(|f| (f.line, f.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    assert_eq!(
      rules(&findings),
      vec![(2, 1, EVAL), (2, 12, DYNAMIC_IMPORT), (3, 5, FUNCTION_CONSTRUCTOR), (4, 16, IMPORT)]
    );
  }
}
