//! A loopback fake of an OpenAI-compatible Chat Completions endpoint, speaking the real
//! wire format: `POST /v1/chat/completions` with a JSON body, answered with
//! `choices[0].message.{content,tool_calls}` and `usage`, or with an error status.
//!
//! Each test scripts it with a queue of [`Response`]s (one per request, in order; an
//! empty queue answers 418) and reads back the [`Recorded`] requests (method, path,
//! headers — `Authorization` included — and body). Point `alos` at it with
//! `OPENAI_BASE_URL=fake.base_url()`. It lives until the test process ends.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;
use serde_json::Value;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Response {
  /// 200 with a chat completion: text, tool calls `(name, arguments text)`, usage.
  Completion { content: Option<String>, tool_calls: Vec<(String, String)>, usage: (u64, u64) },
  /// Any status, extra headers and body.
  Raw { status: u16, headers: Vec<(String, String)>, body: String },
  /// 401 whose body echoes the `Authorization` header it got, as careless proxies do.
  EchoAuthorization,
  /// Reads the request and never answers.
  Hang,
}

impl Response {
  pub fn text(content: &str) -> Response {
    Response::Completion { content: Some(content.to_string()), tool_calls: vec![], usage: (10, 5) }
  }

  pub fn tool_calls(calls: &[(&str, &str)]) -> Response {
    let tool_calls = calls.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect();
    Response::Completion { content: None, tool_calls, usage: (20, 8) }
  }

  /// An OpenAI-style error body with `status`.
  pub fn error(status: u16, message: &str) -> Response {
    let body = json!({ "error": { "message": message, "type": "fake_error", "code": null } }).to_string();
    Response::Raw { status, headers: vec![], body }
  }

  pub fn rate_limited(retry_after_secs: u64) -> Response {
    let body = json!({ "error": { "message": "Rate limit reached", "type": "requests" } }).to_string();
    Response::Raw { status: 429, headers: vec![("Retry-After".into(), retry_after_secs.to_string())], body }
  }

  /// A 200 whose body is not JSON.
  pub fn malformed() -> Response {
    Response::Raw { status: 200, headers: vec![], body: "{\"choices\": [ this is not JSON".into() }
  }
}

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
  pub method: String,
  pub path: String,
  /// Lower-case names.
  pub headers: Vec<(String, String)>,
  pub body: Vec<u8>,
  pub at: Instant,
}

impl Recorded {
  pub fn header(&self, name: &str) -> Option<&str> {
    self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
  }

  /// The body as JSON (panics if it is not).
  pub fn json(&self) -> Value {
    serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("the request body is not JSON: {e}"))
  }
}

#[derive(Default)]
struct State {
  queue: VecDeque<Response>,
  requests: Vec<Recorded>,
  served: u64,
}

pub struct FakeOpenAi {
  port: u16,
  state: Arc<Mutex<State>>,
}

impl FakeOpenAi {
  pub fn start() -> FakeOpenAi {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake OpenAI server");
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
      for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let state = shared.clone();
        // One thread a connection, so a hanging answer holds up no other request.
        std::thread::spawn(move || serve(stream, &state));
      }
    });
    FakeOpenAi { port, state }
  }

  /// Starts with these answers queued.
  pub fn with(responses: impl IntoIterator<Item = Response>) -> FakeOpenAi {
    let fake = FakeOpenAi::start();
    for response in responses {
      fake.push(response);
    }
    fake
  }

  pub fn port(&self) -> u16 {
    self.port
  }

  /// What `OPENAI_BASE_URL` should be.
  pub fn base_url(&self) -> String {
    format!("http://127.0.0.1:{}/v1", self.port)
  }

  pub fn push(&self, response: Response) -> &FakeOpenAi {
    self.state.lock().unwrap().queue.push_back(response);
    self
  }

  pub fn requests(&self) -> Vec<Recorded> {
    self.state.lock().unwrap().requests.clone()
  }

  pub fn count(&self) -> usize {
    self.state.lock().unwrap().requests.len()
  }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
  let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
  let Some(request) = read_request(&mut stream) else { return };
  let (response, n) = {
    let mut state = state.lock().unwrap();
    state.requests.push(request.clone());
    state.served += 1;
    (state.queue.pop_front(), state.served)
  };
  let (status, headers, body) = match response {
    None => (418, vec![], json!({ "error": { "message": "the fake has no response queued" } }).to_string()),
    Some(Response::Hang) => {
      // Hold the connection open, answering nothing, until the client gives up.
      let mut buf = [0u8; 1];
      let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
      let _ = stream.read(&mut buf);
      return;
    }
    Some(Response::EchoAuthorization) => {
      let got = request.header("authorization").unwrap_or("none").to_string();
      (401, vec![], json!({ "error": { "message": format!("Incorrect API key provided: {got}"), "type": "invalid_request_error" } }).to_string())
    }
    Some(Response::Raw { status, headers, body }) => (status, headers, body),
    Some(Response::Completion { content, tool_calls, usage }) => {
      let model = serde_json::from_slice::<Value>(&request.body).ok().and_then(|b| b["model"].as_str().map(str::to_string));
      (200, vec![], completion(n, model.as_deref().unwrap_or("fake"), content, &tool_calls, usage).to_string())
    }
  };
  let mut head = format!(
    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
    reason(status),
    body.len()
  );
  for (name, value) in headers {
    head.push_str(&format!("{name}: {value}\r\n"));
  }
  head.push_str("\r\n");
  let _ = stream.write_all(head.as_bytes());
  let _ = stream.write_all(body.as_bytes());
  let _ = stream.flush();
}

fn completion(n: u64, model: &str, content: Option<String>, tool_calls: &[(String, String)], usage: (u64, u64)) -> Value {
  let mut message = json!({ "role": "assistant", "content": content });
  if !tool_calls.is_empty() {
    message["tool_calls"] = tool_calls
      .iter()
      .enumerate()
      .map(|(i, (name, arguments))| {
        json!({ "id": format!("call_fake_{n}_{}", i + 1), "type": "function", "function": { "name": name, "arguments": arguments } })
      })
      .collect();
  }
  json!({
    "id": format!("chatcmpl-fake-{n}"),
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": model,
    "choices": [{ "index": 0, "message": message, "finish_reason": if tool_calls.is_empty() { "stop" } else { "tool_calls" } }],
    "usage": { "prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1 },
  })
}

fn reason(status: u16) -> &'static str {
  match status {
    200 => "OK",
    400 => "Bad Request",
    401 => "Unauthorized",
    403 => "Forbidden",
    404 => "Not Found",
    418 => "I'm a teapot",
    429 => "Too Many Requests",
    500 => "Internal Server Error",
    502 => "Bad Gateway",
    503 => "Service Unavailable",
    _ => "Status",
  }
}

/// Reads one HTTP/1.1 request with a `Content-Length` body.
fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
  let mut data = Vec::new();
  let mut buf = [0u8; 64 * 1024];
  let head_end = loop {
    if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
      break at;
    }
    let n = stream.read(&mut buf).ok()?;
    if n == 0 {
      return None;
    }
    data.extend_from_slice(&buf[..n]);
  };
  let at = Instant::now();
  let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
  let mut lines = head.split("\r\n");
  let mut first = lines.next()?.split(' ');
  let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
  let headers: Vec<(String, String)> = lines
    .filter_map(|l| l.split_once(':'))
    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
    .collect();
  let length: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
  let mut body = data[head_end + 4..].to_vec();
  while body.len() < length {
    let n = stream.read(&mut buf).ok()?;
    if n == 0 {
      break;
    }
    body.extend_from_slice(&buf[..n]);
  }
  Some(Recorded { method, path, headers, body, at })
}
