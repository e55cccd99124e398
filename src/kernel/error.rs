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
  #[error("{0}")]
  LimitExceeded(String),
  #[error("{0}")]
  Timeout(String),
  #[error("{0}")]
  OperationFailed(String),
}

impl SyscallError {
  pub fn class(&self) -> ErrorClass {
    match self {
      SyscallError::PermissionDenied { .. } => ErrorClass::PermissionDenied,
      SyscallError::InvalidArgument(_) => ErrorClass::InvalidArgument,
      SyscallError::NotFound(_) => ErrorClass::NotFound,
      SyscallError::AlreadyExists(_) => ErrorClass::AlreadyExists,
      SyscallError::LimitExceeded(_) => ErrorClass::LimitExceeded,
      SyscallError::Timeout(_) => ErrorClass::Timeout,
      SyscallError::OperationFailed(_) => ErrorClass::OperationFailed,
    }
  }

  pub fn into_fault(self) -> Fault {
    let fault = Fault::new(self.class(), self.to_string());
    match self {
      SyscallError::PermissionDenied { syscall, capability, reason, .. } => {
        fault.with("syscall", syscall).with("capability", capability).with("reason", reason)
      }
      _ => fault,
    }
  }
}
