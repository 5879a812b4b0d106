//! Proptest strategies for the JSON a platform sends: any value, and the unknown fields a
//! platform may add one day. Property tests of parsers wrap the shapes they generate with
//! [`with_fields`] to check that what a parser does not take is ignored, never an error.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// A JSON value of any kind (null, bool, integer, short string, arrays and objects of those),
/// nested a little.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Up to three fields no parser knows (named `x_` and a few letters), with any values.
pub fn unknown_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x_[a-z]{1,8}", any_json(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

/// `value` with the `extra` fields added where it has none of that name (a non-object is
/// returned unchanged).
pub fn with_fields(mut value: Value, extra: Map<String, Value>) -> Value {
    if let Value::Object(object) = &mut value {
        for (k, v) in extra {
            object.entry(k).or_insert(v);
        }
    }
    value
}
