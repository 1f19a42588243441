//! PLCAPI's filters for `Get*` calls, applied to rows (XML-RPC structs).
//!
//! A filter is nothing (every row), a single id or name, a list of ids and names, or a struct whose keys are
//! field names, optionally prefixed: `~` negates, `<` `>` `[` `]` compare (`[` is ≤, `]` is ≥). A value that is
//! a list matches any of its members; a string with `*` is a wildcard. The special keys `-SORT` (a field or a
//! list of fields, `-field` for descending), `-LIMIT` and `-OFFSET` order and page the answer.
//!
//! A filter is compiled into a [`Query`] before the state is looked at: checked against the method's fields
//! and bounded ([`MAX_VALUES`] values, [`MAX_PATTERNS`] wildcards, [`MAX_TEXT`] bytes a string; fault 102
//! naming the limit), with its ids, names and lists turned into hash sets, so that evaluating it costs about
//! one lookup per row and field rather than rows × values. Methods build only the fields a query needs
//! ([`Query::wants`]) and evaluate it after releasing the state lock.

use super::fault::{Fault, PlcResult};
use dxr::Value;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

pub type Row = BTreeMap<String, Value>;

/// At most this many values in one call's filter and return fields together (ids, names, list members,
/// sort fields).
pub const MAX_VALUES: usize = 1000;
/// At most this many wildcard patterns (strings with `*`) in one filter.
pub const MAX_PATTERNS: usize = 100;
/// At most this many bytes in one string of a filter (a field name or a value).
pub const MAX_TEXT: usize = 1000;

/// A hashable form of the scalar values filters compare for equality (numbers of any width compare equal
/// when their values do; strings and booleans as themselves).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Str(String),
    Bool(bool),
}

fn key_of(v: &Value) -> Option<Key> {
    match v {
        Value::Integer(i) => Some(Key::Int(i64::from(*i))),
        Value::Long(i) => Some(Key::Int(*i)),
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(Key::Int(*d as i64)),
        Value::String(s) => Some(Key::Str(s.clone())),
        Value::Boolean(b) => Some(Key::Bool(*b)),
        _ => None,
    }
}

/// The members of a list value: looked up in a set, except wildcards and values without a key (matched one
/// by one, as before).
#[derive(Debug, Clone, Default)]
struct AnyOf {
    set: HashSet<Key>,
    patterns: Vec<String>,
    others: Vec<Value>,
}

impl AnyOf {
    fn matches(&self, have: &Value) -> bool {
        if let Value::Array(items) = have {
            // An array field (`slice_ids`) matches when it contains any wanted value.
            return items.iter().any(|h| self.matches_scalar(h));
        }
        self.matches_scalar(have)
    }

    fn matches_scalar(&self, have: &Value) -> bool {
        key_of(have).is_some_and(|k| self.set.contains(&k))
            || matches!(have, Value::String(s) if self.patterns.iter().any(|p| wildcard(p, s)))
            || self.others.iter().any(|w| test(Some(have), Op::Eq, w))
    }
}

#[derive(Debug, Clone)]
enum Want {
    One(Value),
    Any(AnyOf),
}

#[derive(Debug, Clone)]
struct Test {
    negate: bool,
    op: Op,
    field: String,
    want: Want,
}

/// A compiled filter with its return fields.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The bare forms (an id, a name, a list of them): ids match `id_field`, names `name_field`.
    ids: Option<(HashSet<i32>, HashSet<String>)>,
    id_field: String,
    name_field: String,
    tests: Vec<Test>,
    sort: Vec<(String, bool)>,
    limit: Option<usize>,
    offset: usize,
    /// `None`: every field.
    returned: Option<Vec<String>>,
    /// The fields evaluation and projection need.
    wanted: Option<HashSet<String>>,
}

/// Counts values against the limits while a filter is compiled.
#[derive(Default)]
struct Budget {
    values: usize,
    patterns: usize,
}

/// At most [`MAX_TEXT`] bytes.
fn short(text: &str) -> PlcResult<()> {
    if text.len() > MAX_TEXT {
        return Err(Fault::invalid(format!(
            "a filter's strings may be at most {MAX_TEXT} bytes long, not {}",
            text.len()
        )));
    }
    Ok(())
}

impl Budget {
    fn value(&mut self) -> PlcResult<()> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(Fault::invalid(format!(
                "a filter and its return fields may hold at most {MAX_VALUES} values (ids, names, list members)"
            )));
        }
        Ok(())
    }

    /// A string that may be a wildcard pattern.
    fn text(&mut self, text: &str) -> PlcResult<()> {
        short(text)?;
        if text.contains('*') {
            self.patterns += 1;
            if self.patterns > MAX_PATTERNS {
                return Err(Fault::invalid(format!(
                    "a filter may hold at most {MAX_PATTERNS} wildcard patterns"
                )));
            }
        }
        Ok(())
    }

    fn scalar(&mut self, v: &Value) -> PlcResult<()> {
        self.value()?;
        if let Value::String(s) = v {
            self.text(s)?;
        }
        Ok(())
    }
}

impl Query {
    /// Compiles `filter` and `return_fields` for rows with `fields`; `id_field` and `name_field` say what
    /// bare ids and names match. Unknown fields and oversized filters are faults (102).
    pub fn compile(
        filter: Option<&Value>,
        return_fields: Option<&Value>,
        fields: &[&str],
        id_field: &str,
        name_field: &str,
    ) -> PlcResult<Self> {
        let mut budget = Budget::default();
        let mut query =
            Query { id_field: id_field.to_owned(), name_field: name_field.to_owned(), ..Query::default() };
        let known = |field: &str, what: &str| {
            if fields.contains(&field) {
                Ok(())
            } else {
                Err(Fault::invalid(format!("invalid {what}: {field}")))
            }
        };
        match filter {
            None | Some(Value::Nil) => {}
            Some(one @ (Value::Integer(_) | Value::String(_))) => {
                query.ids = Some(bare_ids(std::slice::from_ref(one), &mut budget)?);
            }
            Some(Value::Array(ids)) => query.ids = Some(bare_ids(ids, &mut budget)?),
            Some(Value::Struct(spec)) => {
                for (key, value) in spec {
                    budget.value()?;
                    budget.text(key)?;
                    match key.as_str() {
                        "-SORT" => {
                            query.sort = sort_fields(value, &mut budget)?;
                            for (field, _) in &query.sort {
                                known(field, "sort field")?;
                            }
                        }
                        "-LIMIT" => query.limit = Some(count(value, "-LIMIT")?),
                        "-OFFSET" => query.offset = count(value, "-OFFSET")?,
                        _ => {
                            let (negate, rest) =
                                key.strip_prefix('~').map_or((false, key.as_str()), |r| (true, r));
                            let (op, field) = match rest.chars().next() {
                                Some('<') => (Op::Lt, &rest[1..]),
                                Some('>') => (Op::Gt, &rest[1..]),
                                Some('[') => (Op::Le, &rest[1..]),
                                Some(']') => (Op::Ge, &rest[1..]),
                                _ => (Op::Eq, rest),
                            };
                            known(field, "filter field")?;
                            let want = match value {
                                Value::Struct(_) => {
                                    return Err(Fault::invalid(format!(
                                        "{key} takes a value or a list of values, not a struct"
                                    )));
                                }
                                Value::Array(items) if op == Op::Eq => Want::Any(any_of(items, &mut budget)?),
                                Value::Array(_) => {
                                    return Err(Fault::invalid(format!(
                                        "{key} takes a single value, not a list"
                                    )));
                                }
                                v => {
                                    budget.scalar(v)?;
                                    Want::One(v.clone())
                                }
                            };
                            query.tests.push(Test { negate, op, field: field.to_owned(), want });
                        }
                    }
                }
            }
            Some(other) => {
                return Err(Fault::invalid(format!(
                    "a filter is a struct, a list, an id or a name, not {}",
                    kind(other)
                )));
            }
        }
        query.returned = match return_fields {
            None | Some(Value::Nil) => None,
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for v in items {
                    budget.value()?;
                    let Value::String(name) = v else {
                        return Err(Fault::invalid("return_fields holds field names"));
                    };
                    known(name, "return field")?;
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                Some(names)
            }
            Some(_) => return Err(Fault::invalid("return_fields is a list of field names")),
        };
        query.wanted = query.returned.as_ref().map(|names| {
            let mut wanted: HashSet<String> = names.iter().cloned().collect();
            wanted.extend(query.tests.iter().map(|t| t.field.clone()));
            wanted.extend(query.sort.iter().map(|(f, _)| f.clone()));
            if query.ids.is_some() {
                wanted.insert(query.id_field.clone());
                wanted.insert(query.name_field.clone());
            }
            wanted
        });
        Ok(query)
    }

    /// Whether rows need `field` (to be tested, sorted or returned): building the others can be skipped.
    pub fn wants(&self, field: &str) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(field))
    }

    /// The bare ids and names asked for, if the filter is of that form: a method may look them up in an
    /// index instead of building every row.
    pub fn ids(&self) -> Option<(&HashSet<i32>, &HashSet<String>)> {
        self.ids.as_ref().map(|(ids, names)| (ids, names))
    }

    fn matches(&self, row: &Row) -> bool {
        if let Some((ids, names)) = &self.ids {
            let id = matches!(row.get(&self.id_field), Some(Value::Integer(i)) if ids.contains(i));
            let name = matches!(row.get(&self.name_field), Some(Value::String(s)) if names.contains(s));
            if !(id || name) {
                return false;
            }
        }
        self.tests.iter().all(|t| {
            let have = row.get(&t.field);
            let hit = match &t.want {
                Want::One(want) => test(have, t.op, want),
                Want::Any(any) => any.matches(have.unwrap_or(&Value::Nil)),
            };
            hit != t.negate
        })
    }

    /// Filters, sorts, pages and projects `rows`.
    pub fn run(&self, mut rows: Vec<Row>) -> Vec<Row> {
        rows.retain(|row| self.matches(row));
        if !self.sort.is_empty() {
            rows.sort_by(|a, b| {
                self.sort
                    .iter()
                    .map(|(f, desc)| {
                        let o = compare(a.get(f), b.get(f));
                        if *desc { o.reverse() } else { o }
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
        }
        let rows = rows.into_iter().skip(self.offset).take(self.limit.unwrap_or(usize::MAX));
        match &self.returned {
            None => rows.collect(),
            Some(names) => rows.map(|r| r.into_iter().filter(|(k, _)| names.contains(k)).collect()).collect(),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) | Value::Long(_) => "an int",
        Value::Boolean(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Double(_) => "a double",
        Value::DateTime(_) => "a dateTime",
        Value::Base64(_) => "base64",
        Value::Struct(_) => "a struct",
        Value::Array(_) => "a list",
        Value::Nil => "nil",
        _ => "an unsupported value",
    }
}

fn bare_ids(items: &[Value], budget: &mut Budget) -> PlcResult<(HashSet<i32>, HashSet<String>)> {
    let (mut ids, mut names) = (HashSet::new(), HashSet::new());
    for item in items {
        budget.value()?;
        match item {
            Value::Integer(id) => {
                ids.insert(*id);
            }
            Value::String(name) => {
                // A bare name is matched exactly, never as a pattern.
                short(name)?;
                names.insert(name.clone());
            }
            _ => return Err(Fault::invalid("a filter list holds ids (int) and names (string) only")),
        }
    }
    Ok((ids, names))
}

fn any_of(items: &[Value], budget: &mut Budget) -> PlcResult<AnyOf> {
    let mut any = AnyOf::default();
    for item in items {
        budget.scalar(item)?;
        match item {
            Value::Array(_) | Value::Struct(_) => {
                return Err(Fault::invalid("a filter's list holds single values, not lists or structs"));
            }
            Value::String(p) if p.contains('*') => any.patterns.push(p.clone()),
            v => match key_of(v) {
                Some(k) => {
                    any.set.insert(k);
                }
                None => any.others.push(v.clone()),
            },
        }
    }
    Ok(any)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

fn sort_fields(value: &Value, budget: &mut Budget) -> PlcResult<Vec<(String, bool)>> {
    let names = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => budget.value().map(|()| s.clone()),
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

/// Whether `have` passes `op` against a single `want` (lists are compiled into [`AnyOf`]).
fn test(have: Option<&Value>, op: Op, want: &Value) -> bool {
    let have = have.unwrap_or(&Value::Nil);
    match (op, want) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["node_id", "hostname", "site_id", "slice_ids"];

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

    fn apply(filter: Option<&Value>) -> PlcResult<Vec<Row>> {
        Ok(Query::compile(filter, None, FIELDS, "node_id", "hostname")?.run(rows()))
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
        assert_eq!(ids(&apply(None).unwrap()), [1, 2, 3, 4]);
        assert_eq!(ids(&apply(Some(&Value::Integer(3))).unwrap()), [3]);
        let list = Value::Array(vec![Value::Integer(1), s("pl2.wiwi.hu-berlin.de")]);
        assert_eq!(ids(&apply(Some(&list)).unwrap()), [1, 4]);
    }

    #[test]
    fn struct_forms() {
        let f = |p: &[(&str, Value)]| ids(&apply(Some(&spec(p))).unwrap());
        assert_eq!(f(&[("site_id", Value::Integer(20))]), [3, 4]);
        assert_eq!(f(&[("hostname", s("*princeton*"))]), [1, 2]);
        assert_eq!(f(&[("hostname", s("pl*.de"))]), [3, 4]);
        assert_eq!(f(&[("~hostname", s("*princeton*"))]), [3, 4]);
        assert_eq!(f(&[("node_id", Value::Array(vec![Value::Integer(2), Value::Integer(4)]))]), [2, 4]);
        assert_eq!(f(&[("node_id", Value::Array(vec![Value::Long(2), Value::Double(4.0)]))]), [2, 4]);
        assert_eq!(
            f(&[("hostname", Value::Array(vec![s("*.de"), s("planetlab2.cs.princeton.edu")]))]),
            [2, 3, 4]
        );
        assert_eq!(f(&[("~node_id", Value::Array(vec![Value::Integer(2), Value::Integer(4)]))]), [1, 3]);
        assert_eq!(f(&[("slice_ids", Value::Array(vec![Value::Integer(8), Value::Integer(9)]))]), [3]);
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
            spec(&[(">node_id", Value::Array(vec![Value::Integer(1)]))]),
            spec(&[("node_id", spec(&[("x", Value::Integer(1))]))]),
            spec(&[("node_id", Value::Array(vec![Value::Array(vec![])]))]),
            Value::Double(1.5),
            Value::Array(vec![Value::Double(1.0)]),
        ] {
            let err = apply(Some(&bad)).unwrap_err();
            assert_eq!(err.code, super::super::fault::Code::InvalidArgument, "{bad:?}");
        }
        // Unknown fields are faults even when no row would be returned.
        let err = Query::compile(Some(&spec(&[("colour", s("red"))])), None, FIELDS, "node_id", "hostname");
        assert!(err.unwrap_err().message.contains("colour"));
    }

    /// Filters are bounded before anything is evaluated, and the fault names the limit.
    #[test]
    fn oversized_filters_are_refused_naming_the_limit() {
        let compile = |filter: Value| Query::compile(Some(&filter), None, FIELDS, "node_id", "hostname");
        let many = |n: usize| Value::Array((0..n as i32).map(Value::Integer).collect());
        assert!(compile(many(MAX_VALUES)).is_ok());
        let err = compile(many(MAX_VALUES + 1)).unwrap_err();
        assert!(err.message.contains(&MAX_VALUES.to_string()), "{}", err.message);
        let err = compile(spec(&[("hostname", many(MAX_VALUES + 1))])).unwrap_err();
        assert!(err.message.contains(&MAX_VALUES.to_string()), "{}", err.message);
        let patterns = Value::Array((0..=MAX_PATTERNS).map(|i| s(&format!("*{i}*"))).collect());
        let err = compile(spec(&[("hostname", patterns)])).unwrap_err();
        assert!(err.message.contains(&MAX_PATTERNS.to_string()), "{}", err.message);
        let err = compile(spec(&[("hostname", s(&"x".repeat(MAX_TEXT + 1)))])).unwrap_err();
        assert!(err.message.contains(&MAX_TEXT.to_string()), "{}", err.message);
        let fields = Value::Array((0..=MAX_VALUES).map(|_| s("hostname")).collect());
        let err = Query::compile(None, Some(&fields), FIELDS, "node_id", "hostname").unwrap_err();
        assert!(err.message.contains(&MAX_VALUES.to_string()), "{}", err.message);
    }

    #[test]
    fn return_fields_and_what_rows_need() {
        let fields = Value::Array(vec![s("hostname")]);
        let query = Query::compile(None, Some(&fields), FIELDS, "node_id", "hostname").unwrap();
        let out = query.run(rows());
        assert_eq!(out[0].len(), 1);
        assert!(query.wants("hostname") && !query.wants("site_id"));
        let filter = spec(&[("site_id", Value::Integer(20)), ("-SORT", s("-node_id"))]);
        let query = Query::compile(Some(&filter), Some(&fields), FIELDS, "node_id", "hostname").unwrap();
        assert!(query.wants("site_id") && query.wants("node_id") && !query.wants("slice_ids"));
        assert_eq!(
            query.run(rows()),
            vec![row(4, "pl2.wiwi.hu-berlin.de", 0, &[]), row(3, "pl1.wiwi.hu-berlin.de", 0, &[])]
                .into_iter()
                .map(|r| r.into_iter().filter(|(k, _)| k == "hostname").collect::<Row>())
                .collect::<Vec<_>>()
        );
        let all = Query::compile(None, None, FIELDS, "node_id", "hostname").unwrap();
        assert!(all.wants("slice_ids"));
        assert!(
            Query::compile(None, Some(&Value::Array(vec![s("nope")])), FIELDS, "node_id", "hostname")
                .is_err()
        );
    }
}
