//! The `net.fetch` primitive. The capability is checked twice. Before anything is
//! looked up, it is checked on the host and port the URL names, so a definite denial
//! happens first. Then it is checked on every address actually connected to, redirects
//! included. A loopback, private or link-local address also needs a capability that
//! names the address itself, so `localhost` or a DNS name pointing at 127.0.0.1 does not
//! reach internal services on the strength of a grant for the name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::audit::Verdict;
use super::capability::Kind;
use super::capability::Request;
use super::error::SyscallError;
use super::Kernel;
use crate::provider::net::Connect;
use crate::provider::net::FetchRequest;
use crate::provider::net::NetError;

/// Largest response body a fetch keeps; more is cut and flagged `truncated`.
const MAX_BODY_BYTES: usize = 10 << 20;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: u32 = 10;

/// Arguments of `net.fetch`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchArgs {
  pub url: String,
  #[serde(default)]
  pub method: Option<String>,
  #[serde(default)]
  pub headers: BTreeMap<String, String>,
  #[serde(default)]
  pub body: Option<String>,
  #[serde(default)]
  pub timeout_ms: Option<u64>,
}

impl FetchArgs {
  /// The `host:port` the URL names, in the form `net:` capabilities match.
  pub fn target(&self) -> Result<String, SyscallError> {
    let invalid = |why: String| SyscallError::InvalidArgument(format!("net.fetch \"{}\": {why}", self.url));
    let url = url::Url::parse(&self.url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
      return Err(invalid(format!("only http and https URLs can be fetched, not {}:", url.scheme())));
    }
    let host = url.host_str().ok_or_else(|| invalid("the URL has no host".into()))?.to_ascii_lowercase();
    let port = url.port_or_known_default().ok_or_else(|| invalid("the URL has no port".into()))?;
    Ok(format!("{host}:{port}"))
  }
}

impl Kernel {
  pub(super) async fn fetch(&self, caller: &super::dispatch::Trace, args: FetchArgs) -> Result<Value, SyscallError> {
    let request = FetchRequest {
      url: args.url.clone(),
      method: args.method.clone().unwrap_or_else(|| "GET".to_string()),
      headers: args.headers.into_iter().collect(),
      body: args.body.map(String::into_bytes),
      timeout: args.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT),
      max_body_bytes: MAX_BODY_BYTES,
      max_redirects: MAX_REDIRECTS,
    };
    // The guard's own denial explains a refusal better than the provider's summary.
    let refusal: RefCell<Option<SyscallError>> = RefCell::new(None);
    let guard = |connect: &Connect| {
      self.check_connect(caller, connect).map_err(|denial| {
        let reason = denial.to_string();
        *refusal.borrow_mut() = Some(denial);
        reason
      })
    };
    match self.0.net.fetch(request, &guard).await {
      Ok(response) => Ok(json!({
        "status": response.status,
        "headers": response.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "text": String::from_utf8_lossy(&response.body),
        "truncated": response.truncated,
        "url": response.final_url,
        "redirects": response.redirects,
      })),
      Err(NetError::Refused { .. }) if refusal.borrow().is_some() => Err(refusal.take().expect("checked")),
      Err(error) => Err(net_error(error)),
    }
  }

  /// Decides one connection: the name and port, and for an internal address the
  /// address itself. Each decision is audited as `net.connect`.
  fn check_connect(&self, caller: &super::dispatch::Trace, connect: &Connect) -> Result<(), SyscallError> {
    let pid = caller.pid.as_str();
    let mut needed = vec![Request::new(Kind::Net, connect.host_resource())];
    if connect.is_internal() {
      needed.push(Request::new(Kind::Net, connect.addr_resource()));
    }
    let trace = super::dispatch::Trace {
      tool: caller.tool.clone(),
      ..self.trace_of(pid, "net.connect", super::audit::digest(connect.addr_resource().as_bytes()))
    };
    for request in needed {
      let decision = super::dispatch::tool_bound(&trace, "net.connect", &request)
        .and_then(|()| self.decide(pid, "net.connect", &request, &super::audit::digest(connect.addr_resource().as_bytes())))
        .and_then(|judgement| match judgement {
          super::dispatch::Judgement::Allowed(by) => Ok(by),
          // A connection mid-fetch cannot wait for a human: the URL's own host was
          // asked about before; an address or redirect behind it must be allowed outright.
          super::dispatch::Judgement::Ask(rule) => Err(SyscallError::PermissionDenied {
            syscall: "net.connect".into(),
            capability: request.suggestion().map(|c| c.to_string()).unwrap_or_default(),
            reason: format!("rule \"{rule}\" asks, and a connection cannot wait for a human"),
            message: format!(
              "net.fetch: connecting to {} needs a human's approval (rule \"{rule}\"); allow it with --allow {}",
              request.resource,
              request.suggestion().map(|c| c.to_string()).unwrap_or_default()
            ),
          }),
        });
      let (verdict, decided_by, outcome) = match &decision {
        Ok(by) => (Verdict::Allow, Some(by.clone()), format!("connecting to {}", connect.addr_resource())),
        Err(denial) => (Verdict::Deny, None, format!("error PermissionDenied: {denial}")),
      };
      self.audit_call(&trace, Some(&request), verdict, decided_by, outcome)?;
      decision?;
    }
    Ok(())
  }
}

fn net_error(error: NetError) -> SyscallError {
  let message = format!("net.fetch: {error}");
  match error {
    NetError::InvalidUrl { .. } | NetError::InvalidRequest { .. } | NetError::InvalidRedirect { .. } => {
      SyscallError::InvalidArgument(message)
    }
    NetError::Refused { reason, .. } => SyscallError::PermissionDenied {
      syscall: "net.fetch".into(),
      capability: String::new(),
      reason,
      message,
    },
    NetError::Timeout { .. } => SyscallError::Timeout(message),
    _ => SyscallError::OperationFailed(message),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn args(url: &str) -> FetchArgs {
    FetchArgs { url: url.into(), method: None, headers: BTreeMap::new(), body: None, timeout_ms: None }
  }

  #[test]
  fn the_target_is_the_named_host_and_port() {
    assert_eq!(args("https://Example.COM/x").target().unwrap(), "example.com:443");
    assert_eq!(args("http://127.0.0.1:8080/").target().unwrap(), "127.0.0.1:8080");
    assert_eq!(args("http://[::1]:9/").target().unwrap(), "[::1]:9");
    for bad in ["ftp://example.com/", "not a url", "file:///etc/passwd", "data:,x"] {
      assert!(matches!(args(bad).target(), Err(SyscallError::InvalidArgument(_))), "{bad}");
    }
  }
}
