// file_to_object: a bridge tool. The file's content goes from the workspace straight into
// Object Memory without passing through the model; the result carries only its size and
// digest. The read and the write are checked by the kernel separately (fs.read and mem.write).
import { defineTool, sha256Hex, truncate } from "libos:tool";

export default defineTool({
  name: "file_to_object",
  description:
    "Copies a UTF-8 workspace file into Object Memory under `key`, without the content passing through the conversation: the result gives only its size in bytes and sha256. With `format` \"text\" (default) the value is the file's text; with \"json\" the file is parsed and the value is the JSON it holds (InvalidArgument if it is not valid JSON). `ns` is the namespace (default: this agent's own); `type` names the object's type (default: the format). Fails with NotFound if there is no such file, PermissionDenied if this agent may not read the file or write the namespace, LimitExceeded if the value is over 1 MiB of JSON.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative file to copy." },
      key: { type: "string", minLength: 1, maxLength: 512, description: "The Object Memory key to store it under." },
      ns: { type: "string", minLength: 1, maxLength: 200, description: "Namespace, e.g. \"shared/docs\"; default: this agent's own." },
      format: { enum: ["text", "json"], default: "text", description: "Store the text as is, or the JSON value it holds." },
      type: { type: "string", minLength: 1, maxLength: 128, description: "The object's type name; default: the format." },
    },
    required: ["path", "key"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      path: { type: "string" },
      key: { type: "string" },
      ns: { type: ["string", "null"] },
      type: { type: "string" },
      version: { type: "integer" },
      bytes: { type: "integer" },
      sha256: { type: "string" },
    },
    required: ["path", "key", "ns", "type", "version", "bytes", "sha256"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:**", "mem.write:**"],
  run: async (
    { path, key, ns, format = "text", type = format }: {
      path: string;
      key: string;
      ns?: string;
      format?: "text" | "json";
      type?: string;
    },
  ) => {
    const text = await libos.fs.readText(path);
    let value: unknown = text;
    if (format === "json") {
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new libos.errors.InvalidArgument(`file_to_object: ${path} is not valid JSON: ${(e as Error).message}`);
      }
    }
    const { version } = await libos.mem.put(key, value, { type, ns });
    // truncate(text, 0).bytes is the full UTF-8 size; the text itself is not returned.
    return { path, key, ns: ns ?? null, type, version, bytes: truncate(text, 0).bytes, sha256: sha256Hex(text) };
  },
  tests: [
    {
      name: "copies a text file into the own namespace",
      args: { path: "reports/q3.md", key: "report" },
      mocks: [
        { call: "fs.readText", args: { path: "reports/q3.md" }, reply: { ok: "# Report\n\nAll good.\n" } },
        {
          call: "mem.put",
          args: { key: "report", value: "# Report\n\nAll good.\n", type: "text" },
          reply: { ok: { version: 1 } },
        },
      ],
      expect: {
        path: "reports/q3.md",
        key: "report",
        ns: null,
        type: "text",
        version: 1,
        bytes: 20,
        sha256: "79faf57dad52e9200a2f575f2ad149e1ed4adfe244c31aa188943ebd74477045",
      },
      expectCalls: [
        { call: "fs.readText", args: { path: "reports/q3.md" } },
        { call: "mem.put", args: { key: "report", value: "# Report\n\nAll good.\n", type: "text" } },
      ],
    },
    {
      name: "stores a JSON file's value in a shared namespace",
      args: { path: "data/items.json", key: "items", ns: "shared/data", format: "json", type: "items/v1" },
      mocks: [
        { call: "fs.readText", reply: { ok: "{\"items\": [1, 2]}\n" } },
        {
          call: "mem.put",
          args: { key: "items", value: { items: [1, 2] }, type: "items/v1", ns: "shared/data" },
          reply: { ok: { version: 4 } },
        },
      ],
      expect: {
        path: "data/items.json",
        key: "items",
        ns: "shared/data",
        type: "items/v1",
        version: 4,
        bytes: 18,
        sha256: "fa345838fee9ebc0e917c52dbd0b8665a406ddf60c263e9767f0c99175c6c2ee",
      },
    },
    {
      name: "a file that is not JSON is InvalidArgument and stores nothing",
      args: { path: "notes.txt", key: "notes", format: "json" },
      mocks: [{ call: "fs.readText", reply: { ok: "not json" } }],
      expectError: "InvalidArgument",
      expectCalls: [{ call: "fs.readText", args: { path: "notes.txt" } }],
    },
    {
      name: "a missing file is NotFound",
      args: { path: "missing.md", key: "k" },
      mocks: [{ call: "fs.readText", reply: { err: { class: "NotFound", message: "fs.readText \"missing.md\": not found" } } }],
      expectError: "NotFound",
      expectCalls: [{ call: "fs.readText", args: { path: "missing.md" } }],
    },
    {
      name: "a denied read is PermissionDenied and stores nothing",
      args: { path: "secrets/key.txt", key: "k" },
      mocks: [{ call: "fs.readText", reply: { err: { class: "PermissionDenied", message: "it needs fs.read:secrets/key.txt" } } }],
      expectError: "PermissionDenied",
      expectCalls: [{ call: "fs.readText", args: { path: "secrets/key.txt" } }],
    },
    {
      name: "a denied namespace is PermissionDenied",
      args: { path: "a.txt", key: "k", ns: "shared/locked" },
      mocks: [
        { call: "fs.readText", reply: { ok: "x" } },
        { call: "mem.put", reply: { err: { class: "PermissionDenied", message: "it needs mem.write:shared/locked" } } },
      ],
      expectError: "PermissionDenied",
    },
  ],
});
