//! `libos.net.fetch` against real loopback servers: the check is on the address actually
//! connected to, and redirects are checked again.

use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::common::Sandbox;

/// A loopback HTTP/1.1 server that answers every request with `response(port)` and
/// counts the connections it accepted. It lives until the test process ends.
struct Server {
  port: u16,
  connections: Arc<AtomicUsize>,
}

impl Server {
  fn start(response: impl Fn(u16) -> String + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
      for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        counter.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(response(port).as_bytes());
      }
    });
    Server { port, connections }
  }

  fn ok(body: &'static str) -> Server {
    Server::start(move |_| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Test: yes\r\nConnection: close\r\n\r\n{body}", body.len()))
  }

  fn redirect_to(target: String) -> Server {
    Server::start(move |_| format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
  }

  fn connections(&self) -> usize {
    self.connections.load(Ordering::SeqCst)
  }
}

fn fetch_script(url: &str) -> String {
  format!(
    r#"
    try {{
      const r = await libos.net.fetch({url:?});
      console.log(JSON.stringify({{ status: r.status, text: r.text, redirects: r.redirects }}));
    }} catch (e) {{ console.log(e.name + ": " + e.message + " | capability=" + e.capability); }}"#
  )
}

#[test]
fn a_granted_fetch_returns_status_headers_and_text() {
  let server = Server::ok("hello over loopback");
  let sandbox = Sandbox::new();
  let cap = format!("net:127.0.0.1:{}", server.port);
  let run = sandbox.run(
    "f.ts",
    &format!(
      r#"
      const r = await libos.net.fetch("http://127.0.0.1:{}/x", {{ method: "POST", body: "ping", headers: {{ "x-req": "1" }} }});
      console.log(r.status, r.text, JSON.stringify(r.headers.find(([k]) => k === "x-test")));"#,
      server.port
    ),
    &["--allow", &cap],
  );
  run.expect_code(0).stdout_has(r#"200 hello over loopback ["x-test","yes"]"#);
  let audit = sandbox.audit();
  assert!(audit.iter().any(|r| r["syscall"] == "net.connect" && r["decision"] == "allow"));
  assert!(audit.iter().any(|r| r["syscall"] == "net.fetch" && r["outcome"] == "ok"));
}

#[test]
fn no_capability_is_denied_before_any_connection() {
  let server = Server::ok("secret");
  let sandbox = Sandbox::new();
  let run = sandbox.run("f.ts", &fetch_script(&format!("http://127.0.0.1:{}/", server.port)), &[]);
  run.expect_code(0).stdout_has("PermissionDenied").stdout_has(&format!("--allow net:127.0.0.1:{}", server.port));
  assert_eq!(server.connections(), 0);
}

#[test]
fn a_name_resolving_to_loopback_needs_a_capability_for_the_address() {
  let server = Server::ok("internal");
  let sandbox = Sandbox::new();
  let url = format!("http://localhost:{}/", server.port);
  let name_only = format!("net:localhost:{}", server.port);
  let run = sandbox.run("f.ts", &fetch_script(&url), &["--allow", &name_only]);
  run
    .expect_code(0)
    .stdout_has("PermissionDenied")
    .stdout_has(&format!("capability=net:127.0.0.1:{}", server.port));
  assert_eq!(server.connections(), 0, "nothing was sent");
  let address = format!("net:127.0.0.1:{}", server.port);
  let run = sandbox.run("f.ts", &fetch_script(&url), &["--allow", &name_only, "--allow", &address]);
  run.expect_code(0).stdout_has(r#""text":"internal""#);
}

#[test]
fn a_redirect_to_a_denied_host_is_refused_and_never_contacted() {
  let denied = Server::ok("should never be seen");
  let entry = Server::redirect_to(format!("http://127.0.0.1:{}/next", denied.port));
  let sandbox = Sandbox::new();
  let cap = format!("net:127.0.0.1:{}", entry.port);
  let run = sandbox.run("f.ts", &fetch_script(&format!("http://127.0.0.1:{}/", entry.port)), &["--allow", &cap]);
  run.expect_code(0).stdout_has("PermissionDenied").stdout_has(&format!("capability=net:127.0.0.1:{}", denied.port));
  assert!(!run.stdout.contains("should never be seen"));
  assert_eq!(denied.connections(), 0);
  assert_eq!(entry.connections(), 1);
  let both = format!("net:127.0.0.1:{}", denied.port);
  let run = sandbox.run("f.ts", &fetch_script(&format!("http://127.0.0.1:{}/", entry.port)), &["--allow", &cap, "--allow", &both]);
  run.expect_code(0).stdout_has("should never be seen").stdout_has("/next");
}

#[test]
fn bad_urls_are_invalid_arguments() {
  let sandbox = Sandbox::new();
  for url in ["ftp://127.0.0.1/", "not a url", "http://user:pw@127.0.0.1/"] {
    let run = sandbox.run("f.ts", &fetch_script(url), &["--allow", "net"]);
    run.expect_code(0);
    assert!(run.stdout.starts_with("InvalidArgument"), "{url}: {}", run.stdout);
  }
}
