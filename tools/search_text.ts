// search_text: grep over the workspace, built only from fs.stat/list/readText, so every
// directory and file it opens is checked by the kernel like any other read.
import { defineTool } from "libos:tool";

// Larger files are skipped unread: they are rarely source text and would eat the budget.
const MAX_FILE_BYTES = 1 << 20;
const MAX_LINE_CHARS = 200;

type Entry = { name: string; kind: string; size: number };

// A file-name glob: `*` any run of characters, `?` one character, all else literal.
function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\*?]/g, (c) => (c === "*" ? ".*" : c === "?" ? "." : `\\${c}`));
  return new RegExp(`^${body}$`);
}

function lineMatcher(pattern: string, regex: boolean, ignoreCase: boolean): (line: string) => boolean {
  if (regex) {
    let re: RegExp;
    try {
      re = new RegExp(pattern, ignoreCase ? "i" : "");
    } catch (e) {
      throw new libos.errors.InvalidArgument(`search_text: invalid regex ${JSON.stringify(pattern)}: ${(e as Error).message}`);
    }
    return (line) => re.test(line);
  }
  if (ignoreCase) {
    const needle = pattern.toLowerCase();
    return (line) => line.toLowerCase().includes(needle);
  }
  return (line) => line.includes(pattern);
}

// Below the starting path, an unreadable entry is skipped (and counted), not fatal: one
// denied or binary file should not hide every other hit.
function skippable(e: unknown): boolean {
  return e instanceof libos.errors.PermissionDenied || e instanceof libos.errors.InvalidArgument ||
    e instanceof libos.errors.NotFound;
}

export default defineTool({
  name: "search_text",
  description:
    "Searches workspace text files for lines containing `pattern` (a literal string, or a JavaScript regular expression when `regex` is true) and returns hits as \"path:line:text\" strings (line numbers from 1, long lines cut to 200 characters). `path` is a file or a directory searched recursively (default: the whole workspace \".\"). Hidden entries (names starting with \".\") are skipped unless `hidden` is true; `include` keeps only files whose name matches a glob such as \"*.ts\". Files over 1 MiB, non-UTF-8 files and entries this agent may not read are skipped and counted in `skipped`. At most `maxResults` hits (default 100) and `maxFiles` files (default 1000) are examined; `truncated` is true if the search stopped early. Fails with NotFound or PermissionDenied only for `path` itself, and InvalidArgument for a bad regex.",
  input: {
    type: "object",
    properties: {
      pattern: { type: "string", minLength: 1, maxLength: 1000, description: "Text (or regex) to look for in each line." },
      path: { type: "string", minLength: 1, maxLength: 4096, default: ".", description: "File or directory to search." },
      regex: { type: "boolean", default: false, description: "Treat `pattern` as a JavaScript regular expression." },
      ignoreCase: { type: "boolean", default: false, description: "Match regardless of letter case." },
      include: { type: "string", minLength: 1, maxLength: 200, description: "Only files whose name matches this glob (* and ?), e.g. \"*.md\"." },
      hidden: { type: "boolean", default: false, description: "Also search entries whose names start with \".\"." },
      maxResults: { type: "integer", minimum: 1, maximum: 1000, default: 100, description: "Most hits to return." },
      maxFiles: { type: "integer", minimum: 1, maximum: 10000, default: 1000, description: "Most files to read." },
    },
    required: ["pattern"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      matches: { type: "array", items: { type: "string" } },
      filesSearched: { type: "integer" },
      skipped: { type: "integer" },
      truncated: { type: "boolean" },
    },
    required: ["matches", "filesSearched", "skipped", "truncated"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:**"],
  run: async ({
    pattern,
    path = ".",
    regex = false,
    ignoreCase = false,
    include,
    hidden = false,
    maxResults = 100,
    maxFiles = 1000,
  }: {
    pattern: string;
    path?: string;
    regex?: boolean;
    ignoreCase?: boolean;
    include?: string;
    hidden?: boolean;
    maxResults?: number;
    maxFiles?: number;
  }) => {
    const matches = lineMatcher(pattern, regex, ignoreCase);
    const wanted = include === undefined ? null : globToRegExp(include);
    const hits: string[] = [];
    let filesSearched = 0;
    let skipped = 0;
    let truncated = false;

    const searchFile = async (file: string) => {
      if (filesSearched >= maxFiles) {
        truncated = true;
        return;
      }
      const text = await libos.fs.readText(file);
      filesSearched++;
      const lines = text.split("\n");
      for (let i = 0; i < lines.length && !truncated; i++) {
        const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
        if (!matches(line)) continue;
        if (hits.length >= maxResults) {
          truncated = true;
        } else {
          hits.push(`${file}:${i + 1}:${line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}...` : line}`);
        }
      }
    };

    const walk = async (dir: string, entries: Entry[]) => {
      for (const entry of entries) {
        if (truncated) return;
        if (!hidden && entry.name.startsWith(".")) continue;
        const child = dir === "." ? entry.name : `${dir}/${entry.name}`;
        try {
          if (entry.kind === "dir") {
            await walk(child, await libos.fs.list(child));
          } else if (entry.kind === "file" && (wanted === null || wanted.test(entry.name))) {
            if (entry.size > MAX_FILE_BYTES) skipped++;
            else await searchFile(child);
          }
          // Symlinks are not followed: a link cycle must not make the walk endless.
        } catch (e) {
          if (!skippable(e)) throw e;
          skipped++;
        }
      }
    };

    // The starting path's own errors are the caller's answer, so they propagate.
    const root = await libos.fs.stat(path);
    if (root.kind === "dir") {
      await walk(path, await libos.fs.list(path));
    } else if (root.size > MAX_FILE_BYTES) {
      skipped++;
    } else {
      await searchFile(path);
    }
    return { matches: hits, filesSearched, skipped, truncated };
  },
  tests: [
    {
      name: "finds a literal in a directory tree",
      args: { pattern: "TODO" },
      mocks: [
        { call: "fs.stat", args: { path: "." }, reply: { ok: { kind: "dir", size: 0, modifiedMs: null, readonly: false } } },
        {
          call: "fs.list",
          args: { path: "." },
          reply: {
            ok: [
              { name: ".git", kind: "dir", size: 0 },
              { name: "a.txt", kind: "file", size: 30 },
              { name: "src", kind: "dir", size: 0 },
            ],
          },
        },
        { call: "fs.readText", args: { path: "a.txt" }, reply: { ok: "first\nTODO: write tests\r\nlast\n" } },
        { call: "fs.list", args: { path: "src" }, reply: { ok: [{ name: "lib.ts", kind: "file", size: 40 }] } },
        { call: "fs.readText", args: { path: "src/lib.ts" }, reply: { ok: "// TODO one\nconst x = 1;\n// TODO two" } },
      ],
      expect: {
        matches: ["a.txt:2:TODO: write tests", "src/lib.ts:1:// TODO one", "src/lib.ts:3:// TODO two"],
        filesSearched: 2,
        skipped: 0,
        truncated: false,
      },
      expectCalls: [
        { call: "fs.stat", args: { path: "." } },
        { call: "fs.list", args: { path: "." } },
        { call: "fs.readText", args: { path: "a.txt" } },
        { call: "fs.list", args: { path: "src" } },
        { call: "fs.readText", args: { path: "src/lib.ts" } },
      ],
    },
    {
      name: "matches a case-insensitive regex in one file",
      args: { pattern: "^fn \\w+\\(", regex: true, ignoreCase: true, path: "src/main.rs" },
      mocks: [
        { call: "fs.stat", reply: { ok: { kind: "file", size: 50, modifiedMs: null, readonly: false } } },
        { call: "fs.readText", args: { path: "src/main.rs" }, reply: { ok: "FN main() {\n  helper();\n}\nfn helper() {}\n" } },
      ],
      expect: { matches: ["src/main.rs:1:FN main() {", "src/main.rs:4:fn helper() {}"], filesSearched: 1, skipped: 0, truncated: false },
    },
    {
      name: "include keeps only matching file names",
      args: { pattern: "x", path: "docs", include: "*.md" },
      mocks: [
        { call: "fs.stat", reply: { ok: { kind: "dir", size: 0, modifiedMs: null, readonly: false } } },
        {
          call: "fs.list",
          args: { path: "docs" },
          reply: { ok: [{ name: "a.md", kind: "file", size: 2 }, { name: "b.txt", kind: "file", size: 2 }] },
        },
        { call: "fs.readText", args: { path: "docs/a.md" }, reply: { ok: "x\n" } },
      ],
      expect: { matches: ["docs/a.md:1:x"], filesSearched: 1, skipped: 0, truncated: false },
    },
    {
      name: "stops at maxResults and says so",
      args: { pattern: "a", path: "log.txt", maxResults: 2 },
      mocks: [
        { call: "fs.stat", reply: { ok: { kind: "file", size: 8, modifiedMs: null, readonly: false } } },
        { call: "fs.readText", reply: { ok: "a1\na2\na3\na4" } },
      ],
      expect: { matches: ["log.txt:1:a1", "log.txt:2:a2"], filesSearched: 1, skipped: 0, truncated: true },
    },
    {
      name: "stops at maxFiles and says so",
      args: { pattern: "z", maxFiles: 1 },
      mocks: [
        { call: "fs.stat", reply: { ok: { kind: "dir", size: 0, modifiedMs: null, readonly: false } } },
        {
          call: "fs.list",
          reply: { ok: [{ name: "a.txt", kind: "file", size: 2 }, { name: "b.txt", kind: "file", size: 2 }] },
        },
        { call: "fs.readText", args: { path: "a.txt" }, reply: { ok: "z\n" } },
      ],
      expect: { matches: ["a.txt:1:z"], filesSearched: 1, skipped: 0, truncated: true },
    },
    {
      name: "skips denied, binary and oversized entries below the start",
      args: { pattern: "k" },
      mocks: [
        { call: "fs.stat", reply: { ok: { kind: "dir", size: 0, modifiedMs: null, readonly: false } } },
        {
          call: "fs.list",
          args: { path: "." },
          reply: {
            ok: [
              { name: "big.log", kind: "file", size: 2000000 },
              { name: "img.png", kind: "file", size: 10 },
              { name: "ok.txt", kind: "file", size: 3 },
              { name: "secrets", kind: "dir", size: 0 },
            ],
          },
        },
        { call: "fs.readText", args: { path: "img.png" }, reply: { err: { class: "InvalidArgument", message: "not UTF-8" } } },
        { call: "fs.readText", args: { path: "ok.txt" }, reply: { ok: "ok\n" } },
        { call: "fs.list", args: { path: "secrets" }, reply: { err: { class: "PermissionDenied", message: "it needs fs.read:secrets" } } },
      ],
      expect: { matches: ["ok.txt:1:ok"], filesSearched: 1, skipped: 3, truncated: false },
    },
    {
      name: "a missing start path is NotFound",
      args: { pattern: "x", path: "nowhere" },
      mocks: [{ call: "fs.stat", reply: { err: { class: "NotFound", message: "fs.stat \"nowhere\": not found" } } }],
      expectError: "NotFound",
    },
    {
      name: "a denied start path is PermissionDenied",
      args: { pattern: "x", path: "secrets" },
      mocks: [
        { call: "fs.stat", reply: { ok: { kind: "dir", size: 0, modifiedMs: null, readonly: false } } },
        { call: "fs.list", reply: { err: { class: "PermissionDenied", message: "it needs fs.read:secrets" } } },
      ],
      expectError: "PermissionDenied",
    },
    {
      name: "a bad regex is InvalidArgument",
      args: { pattern: "(", regex: true },
      expectError: "InvalidArgument",
      expectCalls: [],
    },
  ],
});
