//! Reading one Kubernetes object field by field, so that every field is either
//! consumed by the mapping or named as left out.
//!
//! A [`Fields`] owns one YAML mapping (as JSON values) and its path in the object.
//! Each `take_*` removes a field and checks its type; what is still there at the end
//! ([`Fields::rest`]) is what the mapping did not use.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A field of an object with the wrong type or value: the path and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One mapping of an object, with its path (`spec.trafficPolicy`, `spec.endpoints[0]`).
#[derive(Debug, Clone)]
pub struct Fields {
    path: String,
    map: Map<String, Value>,
}

/// The path of `key` under `parent`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// What a YAML value is, for messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Fields {
    /// `value` at `path`, which must be a mapping (null counts as an empty one, as
    /// `spec:` with nothing under it does in YAML).
    pub fn new(path: impl Into<String>, value: Value) -> Result<Self, FieldError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Self { path, map }),
            Value::Null => Ok(Self {
                path,
                map: Map::new(),
            }),
            other => Err(FieldError::new(
                &path,
                format!("{path} must be a mapping, got {}", kind_of(&other)),
            )),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Removes `key`; a null value counts as absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    /// Removes `key` and returns its value, of any type (null counts as absent).
    pub fn value(&mut self, key: &str) -> Option<Value> {
        self.take(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// Drops `key` without mapping it: for fields that carry no meaning for gslb at
    /// all (and are therefore not worth naming).
    pub fn discard(&mut self, key: &str) {
        self.map.remove(key);
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(FieldError::new(
                self.field(key),
                format!(
                    "{} must be a string, got {}",
                    self.field(key),
                    kind_of(&other)
                ),
            )),
        }
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(FieldError::new(
                self.field(key),
                format!("{} must be true or false, got {other}", self.field(key)),
            )),
        }
    }

    /// A non-negative integer that fits in `u32`.
    pub fn uint(&mut self, key: &str) -> Result<Option<u32>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => as_uint(&self.field(key), &v).map(Some),
        }
    }

    /// A nested mapping.
    pub fn mapping(&mut self, key: &str) -> Result<Option<Fields>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => Fields::new(self.field(key), v).map(Some),
        }
    }

    /// A list, each item with its path (`key[i]`).
    pub fn list(&mut self, key: &str) -> Result<Vec<(String, Value)>, FieldError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("{}[{i}]", self.field(key)), v))
                .collect()),
            Some(other) => Err(FieldError::new(
                self.field(key),
                format!(
                    "{} must be a list, got {}",
                    self.field(key),
                    kind_of(&other)
                ),
            )),
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, key: &str) -> Result<Vec<String>, FieldError> {
        self.list(key)?
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) => Ok(s),
                other => Err(FieldError::new(
                    &path,
                    format!("{path} must be a string, got {}", kind_of(&other)),
                )),
            })
            .collect()
    }

    /// A mapping of strings to strings (labels).
    pub fn string_map(&mut self, key: &str) -> Result<BTreeMap<String, String>, FieldError> {
        let Some(m) = self.mapping(key)? else {
            return Ok(BTreeMap::new());
        };
        let path = m.path.clone();
        m.map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                // Kubernetes label values are strings; YAML reads `v: 1` as a number.
                Value::Number(n) => Ok((k, n.to_string())),
                Value::Bool(b) => Ok((k, b.to_string())),
                other => Err(FieldError::new(
                    join(&path, &k),
                    format!(
                        "{} must be a string, got {}",
                        join(&path, &k),
                        kind_of(&other)
                    ),
                )),
            })
            .collect()
    }

    /// A mapping of strings to non-negative integers (`distribute.to`).
    pub fn uint_map(&mut self, key: &str) -> Result<BTreeMap<String, u32>, FieldError> {
        let Some(m) = self.mapping(key)? else {
            return Ok(BTreeMap::new());
        };
        let path = m.path.clone();
        m.map
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), as_uint(&join(&path, &k), &v)?)))
            .collect()
    }

    /// The paths of every field still here (nothing took them), sorted.
    pub fn rest(self) -> Vec<String> {
        let mut out: Vec<String> = self.map.keys().map(|k| join(&self.path, k)).collect();
        out.sort();
        out
    }
}

fn as_uint(field: &str, v: &Value) -> Result<u32, FieldError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            FieldError::new(
                field,
                format!("{field} must be a non-negative integer, got {v}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn takes_and_reports_the_rest() {
        let mut f = Fields::new(
            "spec",
            json!({"a": "x", "b": 3, "c": {"d": true}, "e": [1], "z": null, "y": 1}),
        )
        .unwrap();
        assert_eq!(f.string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(f.uint("b").unwrap(), Some(3));
        let mut c = f.mapping("c").unwrap().unwrap();
        assert_eq!(c.path(), "spec.c");
        assert_eq!(c.boolean("d").unwrap(), Some(true));
        assert!(c.rest().is_empty());
        assert_eq!(f.string("z").unwrap(), None, "null is absent");
        assert_eq!(f.rest(), ["spec.e", "spec.y"]);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut f =
            Fields::new("spec", json!({"a": 1, "b": -1, "c": "x", "l": {"k": [1]}})).unwrap();
        assert_eq!(f.string("a").unwrap_err().field, "spec.a");
        assert_eq!(f.uint("b").unwrap_err().field, "spec.b");
        assert_eq!(f.list("c").unwrap_err().field, "spec.c");
        assert_eq!(f.string_map("l").unwrap_err().field, "spec.l.k");
        assert_eq!(Fields::new("spec", json!([1])).unwrap_err().field, "spec");
        let mut f = Fields::new("", json!({"s": ["a", 2]})).unwrap();
        assert_eq!(f.strings("s").unwrap_err().field, "s[1]");
    }
}
