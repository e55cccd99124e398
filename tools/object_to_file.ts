// object_to_file: the other bridge tool. An Object Memory value goes straight to a workspace
// file without passing through the model; the result carries only its size and digest. The
// read and the write are checked by the kernel separately (mem.read and fs.write).
import { defineTool, sha256Hex, truncate } from "libos:tool";

export default defineTool({
  name: "object_to_file",
  description:
    "Writes the value of the Object Memory object `key` to a workspace file, without the content passing through the conversation: the result gives only its size in bytes and sha256. A string value is written as is; any other value as pretty-printed JSON followed by a newline. The file is replaced atomically, or appended to when `append` is true; its directory must exist. `ns` is the namespace (default: this agent's own). Fails with NotFound if there is no such object (or no such directory), PermissionDenied if this agent may not read the namespace or write the file.",
  input: {
    type: "object",
    properties: {
      key: { type: "string", minLength: 1, maxLength: 512, description: "The Object Memory key to copy." },
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative file to write." },
      ns: { type: "string", minLength: 1, maxLength: 200, description: "Namespace, e.g. \"shared/docs\"; default: this agent's own." },
      append: { type: "boolean", default: false, description: "Add to the end of the file instead of replacing it." },
    },
    required: ["key", "path"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      key: { type: "string" },
      ns: { type: ["string", "null"] },
      version: { type: "integer" },
      path: { type: "string" },
      format: { enum: ["text", "json"] },
      bytes: { type: "integer" },
      sha256: { type: "string" },
      appended: { type: "boolean" },
    },
    required: ["key", "ns", "version", "path", "format", "bytes", "sha256", "appended"],
    additionalProperties: false,
  },
  capabilities: ["mem.read:**", "fs.write:**"],
  run: async (
    { key, path, ns, append = false }: { key: string; path: string; ns?: string; append?: boolean },
  ) => {
    const object = await libos.mem.get(key, ns === undefined ? undefined : { ns });
    if (object === null) {
      throw new libos.errors.NotFound(`object_to_file: no object ${JSON.stringify(key)} in ${ns ?? "this agent's namespace"}`);
    }
    const isText = typeof object.value === "string";
    const text = isText ? (object.value as string) : `${JSON.stringify(object.value, null, 2)}\n`;
    await libos.fs.writeText(path, text, append ? { append: true } : undefined);
    return {
      key,
      ns: ns ?? null,
      version: object.version,
      path,
      format: isText ? "text" : "json",
      // truncate(text, 0).bytes is the full UTF-8 size; the text itself is not returned.
      bytes: truncate(text, 0).bytes,
      sha256: sha256Hex(text),
      appended: append,
    };
  },
  tests: [
    {
      name: "writes a text value as is",
      args: { key: "report", path: "out/report.md" },
      mocks: [
        {
          call: "mem.get",
          args: { key: "report" },
          reply: {
            ok: {
              ns: "proc/p1",
              key: "report",
              type: "text",
              value: "# Report\n\nAll good.\n",
              version: 2,
              creator: "p1",
              createdMs: 1,
              updatedMs: 2,
            },
          },
        },
        { call: "fs.writeText", args: { path: "out/report.md", text: "# Report\n\nAll good.\n" }, reply: { ok: null } },
      ],
      expect: {
        key: "report",
        ns: null,
        version: 2,
        path: "out/report.md",
        format: "text",
        bytes: 20,
        sha256: "79faf57dad52e9200a2f575f2ad149e1ed4adfe244c31aa188943ebd74477045",
        appended: false,
      },
      expectCalls: [
        { call: "mem.get", args: { key: "report" } },
        { call: "fs.writeText", args: { path: "out/report.md", text: "# Report\n\nAll good.\n" } },
      ],
    },
    {
      name: "writes any other value as pretty JSON, appending when asked",
      args: { key: "summary", ns: "shared/team", path: "out/summary.json", append: true },
      mocks: [
        {
          call: "mem.get",
          args: { key: "summary", ns: "shared/team" },
          reply: {
            ok: {
              ns: "shared/team",
              key: "summary",
              type: "json",
              value: { title: "Q3", done: true },
              version: 7,
              creator: "p2",
              createdMs: 1,
              updatedMs: 3,
            },
          },
        },
        {
          call: "fs.writeText",
          args: { path: "out/summary.json", text: "{\n  \"title\": \"Q3\",\n  \"done\": true\n}\n", append: true },
          reply: { ok: null },
        },
      ],
      expect: {
        key: "summary",
        ns: "shared/team",
        version: 7,
        path: "out/summary.json",
        format: "json",
        bytes: 36,
        sha256: "6cab2016815fc29c50258bb5df165bfe1ffc3ab2045c7890fa6ddea4b0c2d5a6",
        appended: true,
      },
    },
    {
      name: "a missing object is NotFound and writes nothing",
      args: { key: "nothing", path: "out/x.txt" },
      mocks: [{ call: "mem.get", reply: { ok: null } }],
      expectError: "NotFound",
      expectCalls: [{ call: "mem.get", args: { key: "nothing" } }],
    },
    {
      name: "a denied namespace is PermissionDenied and writes nothing",
      args: { key: "k", ns: "shared/secret", path: "out/x.txt" },
      mocks: [{ call: "mem.get", reply: { err: { class: "PermissionDenied", message: "it needs mem.read:shared/secret" } } }],
      expectError: "PermissionDenied",
      expectCalls: [{ call: "mem.get", args: { key: "k", ns: "shared/secret" } }],
    },
    {
      name: "a denied file is PermissionDenied",
      args: { key: "k", path: "etc/x.txt" },
      mocks: [
        {
          call: "mem.get",
          reply: {
            ok: { ns: "proc/p1", key: "k", type: "text", value: "v", version: 1, creator: "p1", createdMs: 1, updatedMs: 1 },
          },
        },
        { call: "fs.writeText", reply: { err: { class: "PermissionDenied", message: "it needs fs.write:etc/x.txt" } } },
      ],
      expectError: "PermissionDenied",
    },
  ],
});
