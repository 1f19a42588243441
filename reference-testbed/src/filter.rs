//! PLCAPI's filters for `Get*` calls, applied to rows (XML-RPC structs).
//!
//! A filter is nothing (every row), a single id or name, a list of ids and names, or a struct whose keys are
//! field names, optionally prefixed: `~` negates, `<` `>` `[` `]` compare (`[` is ≤, `]` is ≥). A value that is
//! a list matches any of its members; a string with `*` is a wildcard. The special keys `-SORT` (a field or a
//! list of fields, `-field` for descending), `-LIMIT` and `-OFFSET` order and page the answer.

use super::fault::{Fault, PlcResult};
use dxr::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

pub type Row = BTreeMap<String, Value>;

/// Applies `filter` to `rows`; `id_field` and `name_field` say what bare ids and names match.
pub fn apply(
    rows: Vec<Row>,
    filter: Option<&Value>,
    id_field: &str,
    name_field: &str,
) -> PlcResult<Vec<Row>> {
    match filter {
        None | Some(Value::Nil) => Ok(rows),
        Some(Value::Integer(_) | Value::String(_)) => {
            let one = filter.cloned().into_iter().collect::<Vec<_>>();
            Ok(rows.into_iter().filter(|r| matches_any_id(r, &one, id_field, name_field)).collect())
        }
        Some(Value::Array(ids)) => {
            for id in ids {
                if !matches!(id, Value::Integer(_) | Value::String(_)) {
                    return Err(Fault::invalid("a filter list holds ids (int) and names (string) only"));
                }
            }
            Ok(rows.into_iter().filter(|r| matches_any_id(r, ids, id_field, name_field)).collect())
        }
        Some(Value::Struct(spec)) => by_struct(rows, spec),
        Some(other) => {
            Err(Fault::invalid(format!("a filter is a struct, a list, an id or a name, not {other:?}")))
        }
    }
}

fn matches_any_id(row: &Row, ids: &[Value], id_field: &str, name_field: &str) -> bool {
    ids.iter().any(|id| match id {
        Value::Integer(_) => row.get(id_field) == Some(id),
        Value::String(_) => row.get(name_field) == Some(id),
        _ => false,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

fn by_struct(mut rows: Vec<Row>, spec: &BTreeMap<String, Value>) -> PlcResult<Vec<Row>> {
    let known: Vec<String> = rows.first().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    let (mut sort, mut limit, mut offset) = (Vec::new(), None, 0usize);
    let mut tests = Vec::new();
    for (key, value) in spec {
        match key.as_str() {
            "-SORT" => sort = sort_fields(value)?,
            "-LIMIT" => limit = Some(count(value, "-LIMIT")?),
            "-OFFSET" => offset = count(value, "-OFFSET")?,
            _ => {
                let (negate, rest) = key.strip_prefix('~').map_or((false, key.as_str()), |r| (true, r));
                let (op, field) = match rest.chars().next() {
                    Some('<') => (Op::Lt, &rest[1..]),
                    Some('>') => (Op::Gt, &rest[1..]),
                    Some('[') => (Op::Le, &rest[1..]),
                    Some(']') => (Op::Ge, &rest[1..]),
                    _ => (Op::Eq, rest),
                };
                if !known.is_empty() && !known.iter().any(|k| k == field) {
                    return Err(Fault::invalid(format!("invalid filter field: {field}")));
                }
                tests.push((negate, op, field.to_owned(), value.clone()));
            }
        }
    }
    rows.retain(|row| {
        tests.iter().all(|(negate, op, field, want)| test(row.get(field), *op, want) != *negate)
    });
    for (field, _) in &sort {
        if !known.is_empty() && !known.iter().any(|k| k == field) {
            return Err(Fault::invalid(format!("invalid sort field: {field}")));
        }
    }
    if !sort.is_empty() {
        rows.sort_by(|a, b| {
            sort.iter()
                .map(|(f, desc)| {
                    let o = compare(a.get(f), b.get(f));
                    if *desc { o.reverse() } else { o }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
    }
    let rows = rows.into_iter().skip(offset);
    Ok(match limit {
        Some(n) => rows.take(n).collect(),
        None => rows.collect(),
    })
}

fn sort_fields(value: &Value) -> PlcResult<Vec<(String, bool)>> {
    let names = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Fault::invalid("-SORT takes field names")),
            })
            .collect::<PlcResult<_>>()?,
        _ => return Err(Fault::invalid("-SORT takes a field name or a list of them")),
    };
    Ok(names
        .into_iter()
        .map(|n| n.strip_prefix('-').map_or((n.clone(), false), |f| (f.to_owned(), true)))
        .collect())
}

fn count(value: &Value, what: &str) -> PlcResult<usize> {
    match value {
        Value::Integer(n) if *n >= 0 => Ok(*n as usize),
        Value::Long(n) if *n >= 0 => Ok(usize::try_from(*n).unwrap_or(usize::MAX)),
        _ => Err(Fault::invalid(format!("{what} takes a non-negative int"))),
    }
}

fn test(have: Option<&Value>, op: Op, want: &Value) -> bool {
    let have = have.unwrap_or(&Value::Nil);
    match (op, want) {
        (Op::Eq, Value::Array(options)) => options.iter().any(|w| test(Some(have), Op::Eq, w)),
        (Op::Eq, Value::String(pattern)) if pattern.contains('*') => match have {
            Value::String(s) => wildcard(pattern, s),
            _ => false,
        },
        (Op::Eq, _) => loosely_equal(have, want),
        (op, _) => {
            let o = compare(Some(have), Some(want));
            matches!(have, Value::Integer(_) | Value::Long(_) | Value::Double(_) | Value::String(_))
                && match op {
                    Op::Lt => o == Ordering::Less,
                    Op::Gt => o == Ordering::Greater,
                    Op::Le => o != Ordering::Greater,
                    Op::Ge => o != Ordering::Less,
                    Op::Eq => unreachable!("handled above"),
                }
        }
    }
}

/// Equality that lets numbers of any width match (an `int` filter value matches an `i8` time, a double
/// matches an int) and an array field contain the wanted value (`slice_ids`).
fn loosely_equal(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Array(items), w) if !matches!(w, Value::Array(_)) => {
            items.iter().any(|h| loosely_equal(h, w))
        }
        (
            Value::Integer(_) | Value::Long(_) | Value::Double(_),
            Value::Integer(_) | Value::Long(_) | Value::Double(_),
        ) => number(have) == number(want),
        (a, b) => a == b,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(f64::from(*i)),
        Value::Long(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x), Some(y)) => match (number(x), number(y)) {
            (Some(p), Some(q)) => p.total_cmp(&q),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `*` matches any run of characters, everything else itself (PLCAPI turned `*` into SQL's `%`).
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Keeps only `return_fields` of each row (all when none are given); unknown names are an error.
pub fn project(rows: Vec<Row>, fields: Option<&Value>) -> PlcResult<Vec<Row>> {
    let names: Vec<String> = match fields {
        None | Some(Value::Nil) => return Ok(rows),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Fault::invalid("return_fields holds field names")),
            })
            .collect::<PlcResult<_>>()?,
        Some(_) => return Err(Fault::invalid("return_fields is a list of field names")),
    };
    if let Some(first) = rows.first()
        && let Some(bad) = names.iter().find(|n| !first.contains_key(*n))
    {
        return Err(Fault::invalid(format!("invalid return field: {bad}")));
    }
    Ok(rows.into_iter().map(|r| r.into_iter().filter(|(k, _)| names.contains(k)).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32, host: &str, site: i32, slices: &[i32]) -> Row {
        let mut r = Row::new();
        r.insert("node_id".into(), Value::Integer(id));
        r.insert("hostname".into(), Value::String(host.into()));
        r.insert("site_id".into(), Value::Integer(site));
        r.insert("slice_ids".into(), Value::Array(slices.iter().map(|s| Value::Integer(*s)).collect()));
        r
    }

    fn rows() -> Vec<Row> {
        vec![
            row(1, "planetlab1.cs.princeton.edu", 10, &[7]),
            row(2, "planetlab2.cs.princeton.edu", 10, &[]),
            row(3, "pl1.wiwi.hu-berlin.de", 20, &[7, 8]),
            row(4, "pl2.wiwi.hu-berlin.de", 20, &[]),
        ]
    }

    fn ids(rows: &[Row]) -> Vec<i32> {
        rows.iter().map(|r| if let Some(Value::Integer(i)) = r.get("node_id") { *i } else { -1 }).collect()
    }

    fn spec(pairs: &[(&str, Value)]) -> Value {
        Value::Struct(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    #[test]
    fn ids_names_and_lists() {
        assert_eq!(ids(&apply(rows(), None, "node_id", "hostname").unwrap()), [1, 2, 3, 4]);
        assert_eq!(ids(&apply(rows(), Some(&Value::Integer(3)), "node_id", "hostname").unwrap()), [3]);
        let list = Value::Array(vec![Value::Integer(1), s("pl2.wiwi.hu-berlin.de")]);
        assert_eq!(ids(&apply(rows(), Some(&list), "node_id", "hostname").unwrap()), [1, 4]);
    }

    #[test]
    fn struct_forms() {
        let f = |p: &[(&str, Value)]| ids(&apply(rows(), Some(&spec(p)), "node_id", "hostname").unwrap());
        assert_eq!(f(&[("site_id", Value::Integer(20))]), [3, 4]);
        assert_eq!(f(&[("hostname", s("*princeton*"))]), [1, 2]);
        assert_eq!(f(&[("hostname", s("pl*.de"))]), [3, 4]);
        assert_eq!(f(&[("~hostname", s("*princeton*"))]), [3, 4]);
        assert_eq!(f(&[("node_id", Value::Array(vec![Value::Integer(2), Value::Integer(4)]))]), [2, 4]);
        assert_eq!(f(&[(">node_id", Value::Integer(2))]), [3, 4]);
        assert_eq!(f(&[("<node_id", Value::Integer(2))]), [1]);
        assert_eq!(f(&[("[node_id", Value::Integer(2))]), [1, 2]);
        assert_eq!(f(&[("]node_id", Value::Integer(3))]), [3, 4]);
        assert_eq!(f(&[("slice_ids", Value::Integer(7))]), [1, 3]);
        assert_eq!(f(&[("-SORT", s("-node_id"))]), [4, 3, 2, 1]);
        assert_eq!(f(&[("-SORT", Value::Array(vec![s("-site_id"), s("node_id")]))]), [3, 4, 1, 2]);
        assert_eq!(
            f(&[("-SORT", s("node_id")), ("-LIMIT", Value::Integer(2)), ("-OFFSET", Value::Integer(1))]),
            [2, 3]
        );
    }

    #[test]
    fn bad_filters_are_faults() {
        for bad in [
            spec(&[("nosuchfield", Value::Integer(1))]),
            spec(&[("-LIMIT", s("ten"))]),
            spec(&[("-SORT", s("nosuch"))]),
            Value::Double(1.5),
            Value::Array(vec![Value::Double(1.0)]),
        ] {
            let err = apply(rows(), Some(&bad), "node_id", "hostname").unwrap_err();
            assert_eq!(err.code, super::super::fault::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn return_fields() {
        let out = project(rows(), Some(&Value::Array(vec![s("hostname")]))).unwrap();
        assert_eq!(out[0].len(), 1);
        assert!(project(rows(), Some(&Value::Array(vec![s("nope")]))).is_err());
    }
}
