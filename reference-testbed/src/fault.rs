//! PLCAPI's fault codes, and the error type every method returns.

use dxr::Fault as XmlRpcFault;

/// The fault codes PLCAPI used (`PLC/Faults.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidMethod = 100,
    InvalidArgumentCount = 101,
    InvalidArgument = 102,
    AuthenticationFailure = 103,
    DbError = 106,
    PermissionDenied = 108,
    NotImplemented = 109,
    ApiError = 111,
}

/// A fault answer: code and message, as PLCAPI sent them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {code:?}: {message}")]
pub struct Fault {
    pub code: Code,
    pub message: String,
}

pub type PlcResult<T> = Result<T, Fault>;

impl Fault {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    pub fn into_xmlrpc(self) -> XmlRpcFault {
        XmlRpcFault::new(self.code as i32, self.message)
    }
}
