//! Request bodies read as the OpenAPI document describes them, which plain serde does
//! not quite do, in two ways:
//!
//! - JSON Schema calls `3.0` an integer, so an integer field takes an integral float
//!   (`{"retries": 3.0}`), within the field's range; `3.5` is still refused.
//! - A derived struct also reads from an array of its fields in order (`{"k": [1, 2]}`
//!   for a `KeyLimit`); the document says object, so arrays are refused there.
//!
//! Both are done by [`Strict`], a deserializer adapter that wraps every nested value as
//! it goes, so one call at the parse site covers every field of every body. Values typed
//! as any JSON (`input`, `params`) are read untouched: `1.0` stays `1.0`.

use super::error::ApiError;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};
use std::fmt;

/// Reads a request body into `T`; a body that is not JSON of `T`'s shape is
/// `400 invalid_json`, with the path of the offending field when there is one.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    strict(bytes).map_err(|e| ApiError::InvalidJson(explain::<T>(bytes, &e)))
}

/// Reads `bytes` into `T` as [`parse`] does, keeping serde's error (the CLI's offline
/// `apex validate` tells syntax errors apart).
pub fn strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    T::deserialize(Strict(&mut de)).and_then(|v| de.end().map(|()| v))
}

/// The message of `e`, an error reading `bytes` as `T`, with the field's path.
pub fn explain<T: DeserializeOwned>(bytes: &[u8], e: &serde_json::Error) -> String {
    // Read again to say where: tracking the path costs an allocation per key, which a
    // 100,000-task DAG should not pay when it is valid.
    locate::<T>(bytes).unwrap_or_else(|| e.to_string())
}

/// Reads a JSON value (a stored or assembled body) into `T`, as [`parse`] does.
pub fn from_value<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, serde_json::Error> {
    T::deserialize(Strict(v))
}

/// The error of reading `bytes`, prefixed with the field's path (`tasks[2].retries: …`).
fn locate<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let e = serde_path_to_error::deserialize::<_, T>(Strict(&mut de)).err()?;
    let path = e.path().to_string();
    Some(if path == "." {
        e.into_inner().to_string()
    } else {
        format!("{path}: {}", e.into_inner())
    })
}

/// A deserializer that reads structs from objects only and integers from integral
/// floats too, for itself and everything nested in it.
pub struct Strict<D>(pub D);

/// A visitor that wraps what it is handed in [`Strict`]; with `int`, it also turns an
/// integral float into the integer it is.
struct StrictVisitor<V> {
    inner: V,
    int: bool,
}

fn wrap<V>(inner: V) -> StrictVisitor<V> {
    StrictVisitor { inner, int: false }
}

macro_rules! forward {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$method(wrap(v))
        }
    )*};
}

macro_rules! integer {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$method(StrictVisitor { inner: v, int: true })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );
    integer!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, wrap(v))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, wrap(v))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, wrap(v))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, wrap(v))
    }

    /// An object, never an array of the fields.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(wrap(v))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, wrap(v))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! pass {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, x: $ty) -> Result<Self::Value, E> {
            self.inner.$method(x)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    pass!(
        visit_bool: bool,
        visit_i64: i64,
        visit_i128: i128,
        visit_u64: u64,
        visit_u128: u128,
        visit_char: char,
        visit_str: &str,
        visit_borrowed_str: &'de str,
        visit_string: String,
        visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8],
        visit_byte_buf: Vec<u8>
    );

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        // 2^63 and 2^64 are exact in f64; below them the cast is exact for integral x.
        if self.int && x.fract() == 0.0 {
            if (0.0..18_446_744_073_709_551_616.0).contains(&x) {
                return self.inner.visit_u64(x as u64);
            }
            if (-9_223_372_036_854_775_808.0..0.0).contains(&x) {
                return self.inner.visit_i64(x as i64);
            }
        }
        self.inner.visit_f64(x)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Strict(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Strict(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Strict(data))
    }
}

/// A seed whose value is read through [`Strict`].
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(StrictSeed(seed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Strict<A> {
    type Error = A::Error;
    type Variant = Strict<A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(StrictSeed(seed))?;
        Ok((value, Strict(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, wrap(v))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, A::Error> {
        // Struct variants are objects too; no request body has one today.
        self.0.struct_variant(_fields, wrap(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{KeyLimit, RunSpec};
    use serde_json::{json, Value};

    fn read<T: DeserializeOwned>(v: Value) -> Result<T, String> {
        parse::<T>(v.to_string().as_bytes()).map_err(|e| match e {
            ApiError::InvalidJson(m) => m,
            other => panic!("not invalid_json: {other:?}"),
        })
    }

    #[test]
    fn an_integral_float_is_the_integer_and_a_fraction_is_refused() {
        let spec: RunSpec = read(json!({"tasks": [
            {"id": "a", "handler": "echo", "retries": 3.0, "priority": -2.0, "input": {"n": 1.0}}
        ], "ttl_s": 24086.0}))
        .unwrap();
        assert_eq!(spec.tasks[0].retries, 3);
        assert_eq!(spec.tasks[0].priority, -2);
        assert_eq!(spec.ttl_s, Some(24086));
        // Any-JSON input is kept as sent.
        assert_eq!(spec.tasks[0].input.to_string(), r#"{"n":1.0}"#);
        let e = read::<RunSpec>(json!({"tasks": [{"id": "a", "handler": "echo", "retries": 2.5}]}))
            .unwrap_err();
        assert!(
            e.starts_with("tasks[0].retries: invalid type: floating point"),
            "{e}"
        );
        let e =
            read::<RunSpec>(json!({"tasks": [{"id": "a", "handler": "echo", "retries": -1.0}]}))
                .unwrap_err();
        assert!(e.starts_with("tasks[0].retries: invalid value"), "{e}");
        let e =
            read::<RunSpec>(json!({"tasks": [{"id": "a", "handler": "echo", "retries": 1e20}]}))
                .unwrap_err();
        assert!(e.starts_with("tasks[0].retries:"), "{e}");
    }

    #[test]
    fn an_array_is_no_object_at_any_depth() {
        let e = read::<RunSpec>(json!({"tasks": [{"id": "a", "handler": "echo"}],
                                       "concurrency_limits": {"k": [null, null]}}))
        .unwrap_err();
        assert!(
            e.starts_with("concurrency_limits.k: invalid type: sequence, expected struct KeyLimit"),
            "{e}"
        );
        assert!(read::<RunSpec>(json!([[], "x"])).is_err());
        let e = read::<RunSpec>(json!({"tasks": [["a", "echo"]]})).unwrap_err();
        assert!(e.starts_with("tasks[0]: invalid type: sequence"), "{e}");
        let ok: KeyLimit = read(json!({"max_concurrency": 2.0})).unwrap();
        assert_eq!(ok.max_concurrency, Some(2));
    }

    #[test]
    fn trailing_text_and_unknown_fields_are_still_refused() {
        assert!(parse::<KeyLimit>(br#"{"rpm": 1} x"#).is_err());
        let e = read::<KeyLimit>(json!({"rpn": 1})).unwrap_err();
        assert!(e.contains("unknown field `rpn`"), "{e}");
    }
}
