//! Reading PLCAPI's XML-RPC answers into the client's records. A field of the wrong type is a malformed
//! answer (fatal: the client and the testbed disagree about the API), named by call and field.

use super::{SiteRecord, SliceRecord, TestbedError, TestbedResult};
use chrono::{DateTime, Utc};
use dxr::Value;
use std::collections::BTreeMap;

pub type Struct = BTreeMap<String, Value>;

/// Reads the fields of one answer's structs, naming the call in its errors.
pub struct Reader<'a> {
    pub call: &'a str,
}

impl Reader<'_> {
    pub fn bad(&self, what: impl Into<String>) -> TestbedError {
        TestbedError::malformed(self.call, what)
    }

    pub fn structs(&self, value: Value) -> TestbedResult<Vec<Struct>> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Struct(s) => Ok(s),
                    other => Err(self.bad(format!("expected a list of structs, found {}", kind(&other)))),
                })
                .collect(),
            other => Err(self.bad(format!("expected a list, found {}", kind(&other)))),
        }
    }

    pub fn int(&self, s: &Struct, field: &str) -> TestbedResult<i32> {
        self.opt_int(s, field)?.ok_or_else(|| self.bad(format!("{field} is missing")))
    }

    pub fn opt_int(&self, s: &Struct, field: &str) -> TestbedResult<Option<i32>> {
        match s.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i)),
            Some(Value::Long(i)) => {
                i32::try_from(*i).map(Some).map_err(|_| self.bad(format!("{field} is out of range")))
            }
            Some(other) => Err(self.bad(format!("{field} should be an int, is {}", kind(other)))),
        }
    }

    /// A time in Unix seconds (`int`, `i8` or `double`).
    pub fn opt_time(&self, s: &Struct, field: &str) -> TestbedResult<Option<i64>> {
        match s.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(i64::from(*i))),
            Some(Value::Long(i)) => Ok(Some(*i)),
            Some(Value::Double(d)) if d.is_finite() => Ok(Some(d.floor() as i64)),
            Some(other) => Err(self.bad(format!("{field} should be a time, is {}", kind(other)))),
        }
    }

    pub fn time(&self, s: &Struct, field: &str) -> TestbedResult<DateTime<Utc>> {
        let secs = self.opt_time(s, field)?.ok_or_else(|| self.bad(format!("{field} is missing")))?;
        DateTime::from_timestamp(secs, 0).ok_or_else(|| self.bad(format!("{field} is out of range")))
    }

    pub fn text(&self, s: &Struct, field: &str) -> TestbedResult<String> {
        self.opt_text(s, field)?.ok_or_else(|| self.bad(format!("{field} is missing")))
    }

    pub fn opt_text(&self, s: &Struct, field: &str) -> TestbedResult<Option<String>> {
        match s.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::String(t)) => Ok(Some(t.clone())),
            Some(other) => Err(self.bad(format!("{field} should be a string, is {}", kind(other)))),
        }
    }

    pub fn opt_bool(&self, s: &Struct, field: &str) -> TestbedResult<Option<bool>> {
        match s.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(Value::Integer(i)) => Ok(Some(*i != 0)),
            Some(other) => Err(self.bad(format!("{field} should be a boolean, is {}", kind(other)))),
        }
    }

    pub fn opt_float(&self, s: &Struct, field: &str) -> TestbedResult<Option<f64>> {
        match s.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Double(d)) => Ok(Some(*d)),
            Some(Value::Integer(i)) => Ok(Some(f64::from(*i))),
            Some(other) => Err(self.bad(format!("{field} should be a number, is {}", kind(other)))),
        }
    }

    pub fn ints(&self, s: &Struct, field: &str) -> TestbedResult<Vec<i32>> {
        match s.get(field) {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Integer(i) => Ok(*i),
                    other => Err(self.bad(format!("{field} should hold ints, holds {}", kind(other)))),
                })
                .collect(),
            Some(other) => Err(self.bad(format!("{field} should be a list, is {}", kind(other)))),
        }
    }

    pub fn site(&self, s: &Struct) -> TestbedResult<SiteRecord> {
        Ok(SiteRecord {
            site_id: self.int(s, "site_id")?,
            login_base: self.text(s, "login_base")?,
            name: self.opt_text(s, "name")?.unwrap_or_default(),
            enabled: self.opt_bool(s, "enabled")?.unwrap_or(true),
            max_slices: self.opt_int(s, "max_slices")?,
            latitude: self.opt_float(s, "latitude")?,
            longitude: self.opt_float(s, "longitude")?,
        })
    }

    pub fn slice(&self, s: &Struct) -> TestbedResult<SliceRecord> {
        Ok(SliceRecord {
            slice_id: self.int(s, "slice_id")?,
            name: self.text(s, "name")?,
            expires: self.time(s, "expires")?,
            node_ids: self.ints(s, "node_ids")?,
            person_ids: self.ints(s, "person_ids")?,
            creator_person_id: self.opt_int(s, "creator_person_id")?,
        })
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "an int",
        Value::Long(_) => "an i8",
        Value::Boolean(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Double(_) => "a double",
        Value::DateTime(_) => "a dateTime",
        Value::Base64(_) => "base64",
        Value::Struct(_) => "a struct",
        Value::Array(_) => "a list",
        Value::Nil => "nil",
        _ => "an unknown type",
    }
}

pub fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

pub fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Array(items.into_iter().map(|s| string(s.as_str())).collect())
}

pub fn structure(pairs: &[(&str, Value)]) -> Value {
    Value::Struct(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}
