//! The one place where a testbed failure is classified. Every caller (discovery now; slices, slivers and
//! leases later) decides what to do from the [`Class`] alone:
//!
//! - **retryable**: the call may succeed if made again (HTTP 5xx, a connection error, a timeout, PLCAPI fault
//!   106 "database error"). The client retries these itself, with backoff, until the call's deadline; the
//!   error reaches the caller only once the deadline is spent.
//! - **continuable**: one node's part failed (the node does not answer, its `Create` failed): the caller goes
//!   on with the other nodes and records this one as failed.
//! - **fatal**: retrying cannot help (authentication 103, permission 108, invalid argument 102, an answer the
//!   client cannot read): stop and show it to an operator.
//!
//! The error says which class it is, which call it was, and what the testbed said.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Retryable,
    Continuable,
    Fatal,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Retryable => "retryable",
            Class::Continuable => "continuable",
            Class::Fatal => "fatal",
        }
    }
}

/// What went wrong, as the wire showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A PLCAPI (or node manager) fault: its code and string.
    Fault(i32, String),
    /// An HTTP status other than 200, with the start of the body.
    Http(u16, String),
    /// The connection failed (refused, reset, DNS).
    Connection(String),
    /// No answer within the request timeout.
    Timeout,
    /// An answer that is not what PLCAPI sends.
    Malformed(String),
}

/// PLCAPI's fault codes that the classification names.
pub mod fault {
    pub const INVALID_ARGUMENT: i32 = 102;
    pub const AUTHENTICATION: i32 = 103;
    pub const DB_ERROR: i32 = 106;
    pub const PERMISSION: i32 = 108;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestbedError {
    pub class: Class,
    /// The call, e.g. `GetNodes` or `NodeManager.Create@planetlab1.cs.example.edu`.
    pub call: String,
    pub cause: Cause,
    /// Attempts made (more than one when retryable failures were retried).
    pub attempts: u32,
}

pub type TestbedResult<T> = Result<T, TestbedError>;

impl TestbedError {
    /// The error of `call` failing with `cause`, classified. `per_node` says the call is one node's part of
    /// a larger operation (a node manager call): its node-level failures are continuable, not fatal.
    pub fn new(call: impl Into<String>, cause: Cause, per_node: bool) -> Self {
        let class = classify(&cause, per_node);
        Self { class, call: call.into(), cause, attempts: 1 }
    }

    pub fn malformed(call: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(call, Cause::Malformed(what.into()), false)
    }

    pub fn is_retryable(&self) -> bool {
        self.class == Class::Retryable
    }

    /// The fault code, if the testbed answered with a fault.
    pub fn fault_code(&self) -> Option<i32> {
        match self.cause {
            Cause::Fault(code, _) => Some(code),
            _ => None,
        }
    }
}

/// The classification (see the module documentation).
pub fn classify(cause: &Cause, per_node: bool) -> Class {
    match cause {
        Cause::Timeout | Cause::Connection(_) => Class::Retryable,
        Cause::Http(status, _) if *status >= 500 && !(per_node && *status == 502) => Class::Retryable,
        // A node manager behind the testbed's gateway that does not answer (502), or a 404 for a node that
        // is not there: that node's part fails, the others go on.
        Cause::Http(_, _) if per_node => Class::Continuable,
        Cause::Http(_, _) => Class::Fatal,
        Cause::Fault(fault::DB_ERROR, _) => Class::Retryable,
        Cause::Fault(fault::AUTHENTICATION | fault::PERMISSION, _) => Class::Fatal,
        // A node manager's own failure (its `Create` failed, the sliver is not there): continuable.
        Cause::Fault(_, _) if per_node => Class::Continuable,
        Cause::Fault(_, _) => Class::Fatal,
        Cause::Malformed(_) => Class::Fatal,
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Fault(code, text) => write!(f, "fault {code}: {text}"),
            Cause::Http(status, body) if body.is_empty() => write!(f, "HTTP {status}"),
            Cause::Http(status, body) => write!(f, "HTTP {status}: {body}"),
            Cause::Connection(why) => write!(f, "connection failed: {why}"),
            Cause::Timeout => f.write_str("no answer in time"),
            Cause::Malformed(what) => write!(f, "unreadable answer: {what}"),
        }
    }
}

impl fmt::Display for TestbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "testbed call {} failed ({}", self.call, self.class.as_str())?;
        if self.attempts > 1 {
            write!(f, ", after {} attempts", self.attempts)?;
        }
        write!(f, "): {}", self.cause)
    }
}

impl std::error::Error for TestbedError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let c = |cause, per_node| classify(&cause, per_node);
        assert_eq!(c(Cause::Timeout, false), Class::Retryable);
        assert_eq!(c(Cause::Connection("refused".into()), false), Class::Retryable);
        assert_eq!(c(Cause::Http(503, String::new()), false), Class::Retryable);
        assert_eq!(c(Cause::Http(502, String::new()), true), Class::Continuable);
        assert_eq!(c(Cause::Http(404, String::new()), false), Class::Fatal);
        assert_eq!(c(Cause::Fault(106, String::new()), false), Class::Retryable);
        assert_eq!(c(Cause::Fault(103, String::new()), false), Class::Fatal);
        assert_eq!(c(Cause::Fault(108, String::new()), true), Class::Fatal);
        assert_eq!(c(Cause::Fault(102, String::new()), false), Class::Fatal);
        assert_eq!(c(Cause::Fault(102, String::new()), true), Class::Continuable);
        assert_eq!(c(Cause::Malformed(String::new()), true), Class::Fatal);
    }

    #[test]
    fn message_names_class_call_and_cause() {
        let mut e = TestbedError::new("GetNodes", Cause::Fault(106, "Database error".into()), false);
        e.attempts = 3;
        assert_eq!(
            e.to_string(),
            "testbed call GetNodes failed (retryable, after 3 attempts): fault 106: Database error"
        );
    }
}
