// write_file: creates, replaces or appends to a UTF-8 text file. The result echoes size and
// digest, not the text, so the model's context does not receive it a second time.
import { defineTool, sha256Hex, truncate } from "libos:tool";

export default defineTool({
  name: "write_file",
  description:
    "Writes UTF-8 text to a workspace file, replacing it atomically (or appending when `append` is true); the file is created if missing, but its directory must exist (see make_dir). Returns the path, the number of bytes written and their sha256. Fails with PermissionDenied if this agent may not write there, NotFound if the directory does not exist.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative path of the file." },
      text: { type: "string", maxLength: 1048576, description: "The full text to write." },
      append: { type: "boolean", default: false, description: "Add to the end of the file instead of replacing it." },
    },
    required: ["path", "text"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      path: { type: "string" },
      bytes: { type: "integer" },
      sha256: { type: "string" },
      appended: { type: "boolean" },
    },
    required: ["path", "bytes", "sha256", "appended"],
    additionalProperties: false,
  },
  capabilities: ["fs.write:**"],
  run: async ({ path, text, append = false }: { path: string; text: string; append?: boolean }) => {
    await libos.fs.writeText(path, text, append ? { append: true } : undefined);
    // truncate(text, 0).bytes is the full UTF-8 size.
    return { path, bytes: truncate(text, 0).bytes, sha256: sha256Hex(text), appended: append };
  },
  tests: [
    {
      name: "writes a file",
      args: { path: "out/hello.txt", text: "hello\n" },
      mocks: [{ call: "fs.writeText", args: { path: "out/hello.txt", text: "hello\n" }, reply: { ok: null } }],
      expect: {
        path: "out/hello.txt",
        bytes: 6,
        sha256: "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        appended: false,
      },
      expectCalls: [{ call: "fs.writeText", args: { path: "out/hello.txt", text: "hello\n" } }],
    },
    {
      name: "appends when asked",
      args: { path: "log.txt", text: "more\n", append: true },
      mocks: [{ call: "fs.writeText", args: { path: "log.txt", append: true }, reply: { ok: null } }],
      expect: {
        path: "log.txt",
        bytes: 5,
        sha256: "2396099c6c084fa4b9beac9f0d52cf3be9cf8d47040ef127883d532b5790cd74",
        appended: true,
      },
      expectCalls: [{ call: "fs.writeText", args: { path: "log.txt", text: "more\n", append: true } }],
    },
    {
      name: "a denied write is PermissionDenied",
      args: { path: "etc/passwd", text: "x" },
      mocks: [{ call: "fs.writeText", reply: { err: { class: "PermissionDenied", message: "it needs fs.write:etc/passwd" } } }],
      expectError: "PermissionDenied",
    },
    {
      name: "a missing directory is NotFound",
      args: { path: "no/such/dir/a.txt", text: "x" },
      mocks: [{ call: "fs.writeText", reply: { err: { class: "NotFound", message: "no such directory" } } }],
      expectError: "NotFound",
    },
  ],
});
