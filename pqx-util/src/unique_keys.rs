//! JSON objects whose keys must be unique. serde keeps the last of two equal keys silently; in a
//! `mailing_to` entry or a header list that would send a command somewhere else than it says.
//! Use with `#[serde(deserialize_with = "pqx_util::unique_keys::map")]`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// A map of strings to `V` that refuses a key given twice.
pub fn map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    deserializer.deserialize_map(UniqueMap(PhantomData))
}

/// A list of such maps.
pub fn vec_of_maps<'de, D, V>(deserializer: D) -> Result<Vec<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Maps<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Maps<V> {
        type Value = Vec<BTreeMap<String, V>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut maps = Vec::new();
            while let Some(Unique(map)) = seq.next_element::<Unique<V>>()? {
                maps.push(map);
            }
            Ok(maps)
        }
    }
    deserializer.deserialize_seq(Maps(PhantomData))
}

/// One map with unique keys, as an element of a list.
struct Unique<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Unique<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        map(deserializer).map(Unique)
    }
}

struct UniqueMap<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value()?;
            if map.contains_key(&key) {
                return Err(A::Error::custom(format!("key {key:?} is given twice")));
            }
            map.insert(key, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "vec_of_maps")]
        entries: Vec<BTreeMap<String, String>>,
        #[serde(default, deserialize_with = "map")]
        headers: BTreeMap<String, String>,
    }

    #[test]
    fn a_key_given_twice_is_refused_anywhere() {
        let ok: Sample =
            serde_json::from_str(r#"{"entries":[{"a":"1","b":"2"},{"a":"3"}]}"#).unwrap();
        assert_eq!(ok.entries[1]["a"], "3");
        assert!(ok.headers.is_empty());
        for json in [
            r#"{"entries":[{"a":"1","a":"2"}]}"#,
            r#"{"entries":[{"b":"0"},{"a":"1","b":"x","a":"1"}]}"#,
            r#"{"entries":[],"headers":{"X-T":"1","X-T":"2"}}"#,
        ] {
            let err = serde_json::from_str::<Sample>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains("is given twice"), "{json}: {err}");
        }
    }
}
