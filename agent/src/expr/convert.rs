//! Conversions between JSON, CEL [`Value`]s and the interpreter's values
//! (`dyn Val`), and the text form of a value in templates and error messages.

use std::fmt::Write as _;
use std::sync::Arc;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;

use super::Value;

/// Converts JSON to a CEL value: integers stay `Int` (`UInt` only beyond
/// `i64::MAX`), other numbers are `Float`, objects are maps with string keys,
/// arrays are lists.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(json_to_value).collect())),
        J::Object(map) => Value::Map(cel::objects::Map {
            map: Arc::new(
                map.iter()
                    .map(|(k, v)| (cel::objects::Key::from(k.as_str()), json_to_value(v)))
                    .collect(),
            ),
        }),
    }
}

/// A map value with string keys, e.g. response headers:
/// `map_value(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))`.
pub fn map_value<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Value
where
    K: AsRef<str>,
    V: Into<Value>,
{
    Value::Map(cel::objects::Map {
        map: Arc::new(
            entries
                .into_iter()
                .map(|(k, v)| (cel::objects::Key::from(k.as_ref()), v.into()))
                .collect(),
        ),
    })
}

/// Converts a CEL value to JSON: map keys become strings, bytes base64,
/// timestamps RFC 3339, durations nanoseconds, NaN, infinities and functions
/// `null`.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => float_to_json(*f),
        Value::String(s) => J::String(s.as_str().to_owned()),
        Value::List(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Map(map) => J::Object(
            map.map
                .iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
        other => other.json().unwrap_or(J::Null),
    }
}

/// Appends `v` as text: strings raw, numbers and booleans plainly, `null`,
/// lists and maps as JSON.
pub(super) fn write_plain(out: &mut String, v: &dyn Val) {
    if let Some(s) = v.downcast_ref::<CelString>() {
        out.push_str(s.inner());
    } else if let Some(i) = v.downcast_ref::<CelInt>() {
        let _ = write!(out, "{}", i.inner());
    } else if let Some(u) = v.downcast_ref::<CelUInt>() {
        let _ = write!(out, "{}", u.inner());
    } else if let Some(d) = v.downcast_ref::<CelDouble>() {
        let _ = write!(out, "{}", d.inner());
    } else if let Some(b) = v.downcast_ref::<CelBool>() {
        let _ = write!(out, "{}", b.inner());
    } else {
        out.push_str(&val_to_json(v).to_string());
    }
}

/// The interpreter's value as JSON, without going through [`Value`] for the
/// common kinds.
pub(super) fn val_to_json(v: &dyn Val) -> serde_json::Value {
    use serde_json::Value as J;
    if let Some(s) = v.downcast_ref::<CelString>() {
        J::String(s.inner().to_owned())
    } else if let Some(i) = v.downcast_ref::<CelInt>() {
        J::from(*i.inner())
    } else if let Some(u) = v.downcast_ref::<CelUInt>() {
        J::from(*u.inner())
    } else if let Some(d) = v.downcast_ref::<CelDouble>() {
        float_to_json(*d.inner())
    } else if let Some(b) = v.downcast_ref::<CelBool>() {
        J::Bool(*b.inner())
    } else if v.downcast_ref::<CelNull>().is_some() {
        J::Null
    } else if let Some(list) = v.downcast_ref::<CelList>() {
        J::Array(
            list.inner()
                .iter()
                .map(|i| val_to_json(i.as_ref()))
                .collect(),
        )
    } else if let Some(map) = v.downcast_ref::<CelMap>() {
        J::Object(
            map.inner()
                .iter()
                .map(|(k, v)| (map_key_text(k), val_to_json(v.as_ref())))
                .collect(),
        )
    } else {
        Value::try_from(v)
            .map(|v| value_to_json(&v))
            .unwrap_or(J::Null)
    }
}

fn map_key_text(k: &CelMapKey<'_>) -> String {
    match k {
        CelMapKey::String(s) => s.inner().to_owned(),
        CelMapKey::Int(i) => i.inner().to_string(),
        CelMapKey::UInt(u) => u.inner().to_string(),
        CelMapKey::Bool(b) => b.inner().to_string(),
    }
}

/// JSON has no NaN or infinities: they become `null`.
fn float_to_json(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// A value's CEL type and, for scalars, the value itself, for error messages.
pub(super) fn describe(v: &dyn Val) -> String {
    let ty = v.get_type().name();
    if v.downcast_ref::<CelList>().is_some() || v.downcast_ref::<CelMap>().is_some() {
        return ty.to_owned();
    }
    let mut text = String::new();
    write_plain(&mut text, v);
    if v.downcast_ref::<CelString>().is_some() {
        format!("{ty} {text:?}")
    } else {
        format!("{ty} {text}")
    }
}
