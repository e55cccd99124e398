//! Why a syscall failed, in kernel terms; converted to the ABI's `Fault` at the broker.

use alos_ops::ErrorClass;
use alos_ops::Fault;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyscallError {
  #[error("{message}")]
  PermissionDenied { syscall: String, capability: String, reason: String, message: String },
  #[error("{0}")]
  InvalidArgument(String),
  #[error("{0}")]
  NotFound(String),
  #[error("{0}")]
  AlreadyExists(String),
  /// A compare-and-set (Object Memory's `ifVersion`) that did not match.
  #[error("{0}")]
  Conflict(String),
  #[error("{0}")]
  LimitExceeded(String),
  #[error("{0}")]
  Timeout(String),
  #[error("{0}")]
  OperationFailed(String),
  #[error("{0}")]
  Cancelled(String),
  /// A failure recorded in the journal, served again as it was on replay.
  #[error("{}", .0.message)]
  Recorded(Fault),
}

impl SyscallError {
  pub fn class(&self) -> ErrorClass {
    match self {
      SyscallError::PermissionDenied { .. } => ErrorClass::PermissionDenied,
      SyscallError::InvalidArgument(_) => ErrorClass::InvalidArgument,
      SyscallError::NotFound(_) => ErrorClass::NotFound,
      SyscallError::AlreadyExists(_) => ErrorClass::AlreadyExists,
      SyscallError::Conflict(_) => ErrorClass::Conflict,
      SyscallError::LimitExceeded(_) => ErrorClass::LimitExceeded,
      SyscallError::Timeout(_) => ErrorClass::Timeout,
      SyscallError::OperationFailed(_) => ErrorClass::OperationFailed,
      SyscallError::Cancelled(_) => ErrorClass::Cancelled,
      SyscallError::Recorded(fault) => fault.class,
    }
  }

  pub fn into_fault(self) -> Fault {
    if let SyscallError::Recorded(fault) = self {
      return fault;
    }
    let fault = Fault::new(self.class(), self.to_string());
    match self {
      SyscallError::PermissionDenied { syscall, capability, reason, .. } => {
        fault.with("syscall", syscall).with("capability", capability).with("reason", reason)
      }
      _ => fault,
    }
  }
}
