// read_file: one UTF-8 text file, cut to a byte budget so a huge file cannot flood the model.
import { defineTool, truncate } from "libos:tool";

export default defineTool({
  name: "read_file",
  description:
    "Reads a UTF-8 text file from the workspace and returns its text. `path` is relative to the workspace (e.g. \"src/main.rs\"). Text beyond `maxBytes` (default 65536) is cut and `truncated` is true; `bytes` is always the file's full size. Fails with NotFound if there is no such file, PermissionDenied if this agent may not read it, InvalidArgument if it is not UTF-8 text.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative path of the file." },
      maxBytes: {
        type: "integer",
        minimum: 1,
        maximum: 1048576,
        default: 65536,
        description: "Most bytes of text to return.",
      },
    },
    required: ["path"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      path: { type: "string" },
      text: { type: "string" },
      bytes: { type: "integer" },
      truncated: { type: "boolean" },
    },
    required: ["path", "text", "bytes", "truncated"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:**"],
  run: async ({ path, maxBytes = 65536 }: { path: string; maxBytes?: number }) => {
    const cut = truncate(await libos.fs.readText(path), maxBytes);
    return { path, text: cut.text, bytes: cut.bytes, truncated: cut.truncated };
  },
  tests: [
    {
      name: "reads a file",
      args: { path: "notes/a.txt" },
      mocks: [{ call: "fs.readText", args: { path: "notes/a.txt" }, reply: { ok: "hello\nworld\n" } }],
      expect: { path: "notes/a.txt", text: "hello\nworld\n", bytes: 12, truncated: false },
      expectCalls: [{ call: "fs.readText", args: { path: "notes/a.txt" } }],
    },
    {
      name: "cuts a long file at maxBytes on a character boundary",
      args: { path: "big.txt", maxBytes: 4 },
      mocks: [{ call: "fs.readText", reply: { ok: "abcé and more" } }],
      expect: { path: "big.txt", text: "abc", bytes: 14, truncated: true },
    },
    {
      name: "a missing file is NotFound",
      args: { path: "nope.txt" },
      mocks: [{ call: "fs.readText", reply: { err: { class: "NotFound", message: "fs.readText \"nope.txt\": no such file" } } }],
      expectError: "NotFound",
    },
    {
      name: "a denied read is PermissionDenied",
      args: { path: "secrets/key.txt" },
      mocks: [
        { call: "fs.readText", reply: { err: { class: "PermissionDenied", message: "it needs fs.read:secrets/key.txt" } } },
      ],
      expectError: "PermissionDenied",
    },
    {
      name: "a binary file is InvalidArgument",
      args: { path: "logo.png" },
      mocks: [{ call: "fs.readText", reply: { err: { class: "InvalidArgument", message: "not UTF-8" } } }],
      expectError: "InvalidArgument",
    },
  ],
});
