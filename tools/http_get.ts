// http_get: one GET request; the body is cut to a byte budget before the model sees it.
import { defineTool, truncate } from "libos:tool";

export default defineTool({
  name: "http_get",
  description:
    "Fetches a URL with an HTTP GET request and returns the status code, content type, final URL (after redirects) and the response body as text. The body is cut at `maxBytes` (default 65536) with `truncated: true`; `bytes` is the size of the body received. Non-2xx statuses are returned, not thrown. Fails with PermissionDenied if this agent may not connect to the host, Timeout if the server does not answer within `timeoutMs`, OperationFailed on a network error.",
  input: {
    type: "object",
    properties: {
      url: { type: "string", minLength: 8, maxLength: 8192, pattern: "^https?://", description: "An http:// or https:// URL." },
      headers: {
        type: "object",
        additionalProperties: { type: "string", maxLength: 8192 },
        maxProperties: 32,
        description: "Request headers, e.g. {\"Accept\": \"application/json\"}.",
      },
      timeoutMs: { type: "integer", minimum: 1, maximum: 300000, description: "Give up after this many milliseconds." },
      maxBytes: { type: "integer", minimum: 1, maximum: 1048576, default: 65536, description: "Most bytes of body to return." },
    },
    required: ["url"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      url: { type: "string" },
      status: { type: "integer" },
      contentType: { type: ["string", "null"] },
      text: { type: "string" },
      bytes: { type: "integer" },
      truncated: { type: "boolean" },
      redirects: { type: "array", items: { type: "string" } },
    },
    required: ["url", "status", "contentType", "text", "bytes", "truncated", "redirects"],
    additionalProperties: false,
  },
  capabilities: ["net:*"],
  run: async (
    { url, headers, timeoutMs, maxBytes = 65536 }: {
      url: string;
      headers?: Record<string, string>;
      timeoutMs?: number;
      maxBytes?: number;
    },
  ) => {
    const response = await libos.net.fetch(url, { method: "GET", headers, timeoutMs });
    const contentType = response.headers.find(([name]) => name.toLowerCase() === "content-type");
    const body = truncate(response.text, maxBytes);
    return {
      url: response.url,
      status: response.status,
      contentType: contentType ? contentType[1] : null,
      text: body.text,
      bytes: body.bytes,
      // The kernel cuts bodies over its own limit; that cut counts too.
      truncated: body.truncated || response.truncated,
      redirects: response.redirects,
    };
  },
  tests: [
    {
      name: "gets a page",
      args: { url: "https://example.com/data.json", headers: { Accept: "application/json" } },
      mocks: [
        {
          call: "net.fetch",
          args: { url: "https://example.com/data.json", method: "GET", headers: { Accept: "application/json" } },
          reply: {
            ok: {
              status: 200,
              headers: [["Content-Type", "application/json"], ["Content-Length", "8"]],
              text: "{\"a\": 1}",
              truncated: false,
              url: "https://example.com/data.json",
              redirects: [],
            },
          },
        },
      ],
      expect: {
        url: "https://example.com/data.json",
        status: 200,
        contentType: "application/json",
        text: "{\"a\": 1}",
        bytes: 8,
        truncated: false,
        redirects: [],
      },
      expectCalls: [
        { call: "net.fetch", args: { url: "https://example.com/data.json", method: "GET", headers: { Accept: "application/json" } } },
      ],
    },
    {
      name: "returns an error status and the final URL after redirects",
      args: { url: "http://example.com/old" },
      mocks: [
        {
          call: "net.fetch",
          reply: {
            ok: {
              status: 404,
              headers: [],
              text: "gone",
              truncated: false,
              url: "https://example.com/new",
              redirects: ["https://example.com/new"],
            },
          },
        },
      ],
      expect: {
        url: "https://example.com/new",
        status: 404,
        contentType: null,
        text: "gone",
        bytes: 4,
        truncated: false,
        redirects: ["https://example.com/new"],
      },
    },
    {
      name: "cuts a long body at maxBytes",
      args: { url: "https://example.com/big", maxBytes: 3, timeoutMs: 1000 },
      mocks: [
        {
          call: "net.fetch",
          args: { url: "https://example.com/big", method: "GET", timeoutMs: 1000 },
          reply: {
            ok: {
              status: 200,
              headers: [["content-type", "text/plain"]],
              text: "abcdef",
              truncated: false,
              url: "https://example.com/big",
              redirects: [],
            },
          },
        },
      ],
      expect: {
        url: "https://example.com/big",
        status: 200,
        contentType: "text/plain",
        text: "abc",
        bytes: 6,
        truncated: true,
        redirects: [],
      },
    },
    {
      name: "a denied host is PermissionDenied",
      args: { url: "https://internal.corp/" },
      mocks: [{ call: "net.fetch", reply: { err: { class: "PermissionDenied", message: "it needs net:internal.corp:443" } } }],
      expectError: "PermissionDenied",
    },
    {
      name: "a slow server is Timeout",
      args: { url: "https://slow.example.com/", timeoutMs: 10 },
      mocks: [{ call: "net.fetch", reply: { err: { class: "Timeout", message: "net.fetch: timed out after 10ms" } } }],
      expectError: "Timeout",
    },
  ],
});
