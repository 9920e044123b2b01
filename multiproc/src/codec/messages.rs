//! Keeps the messages of custom serde errors across postcard.
//!
//! postcard's error is a fixed enum: `Error::custom("why")` becomes
//! `SerdeSerCustom` or `SerdeDeCustom`, and "why" is lost. Yet the user's
//! `Serialize` or `Deserialize` (or serde's derived code: "invalid value:
//! integer `7`, expected variant index 0 <= i < 3") is the one that knows
//! what went wrong.
//!
//! So every value goes through postcard wrapped in a pass-through adapter
//! whose error type ([`Msg`]) keeps its message: the user's code sees a
//! [`Ser`] or [`De`] and builds a `Msg`. Where that error must cross one of
//! postcard's own calls (which returns postcard's error), the message is
//! left in a slot beside the adapter (a `Cell` of this call, no global
//! state) and picked up by the adapter on the other side, which is the next
//! frame up the same error's path: postcard never swallows an error, so the
//! slot holds at most the message of the error in flight. Errors of
//! postcard's own (the input ended, a bad varint) keep postcard's text.
//!
//! The adapter changes nothing else: every call is forwarded as it came,
//! so the bytes are exactly postcard's (the tests compare them with plain
//! postcard's), and it costs one pointer per nesting level.

use std::{cell::Cell, fmt};

use serde::{
    de::{self, DeserializeSeed, Visitor},
    ser::{self, Serialize},
};

/// The message of the error in flight across one of postcard's calls.
pub(super) type Slot = Cell<Option<String>>;

/// An error with its message: the adapter's error type. Boxed, so that
/// every `Result` the adapter passes around stays one word wider than its
/// value (a `String` inline made decoding nested structs twice as slow).
#[derive(Debug)]
#[allow(clippy::box_collection)] // one word wide, as said above: deliberate
pub(super) struct Msg(pub(super) Box<String>);

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Msg {}

impl ser::Error for Msg {
    fn custom<T: fmt::Display>(msg: T) -> Msg {
        Msg(Box::new(msg.to_string()))
    }
}

impl de::Error for Msg {
    fn custom<T: fmt::Display>(msg: T) -> Msg {
        Msg(Box::new(msg.to_string()))
    }
}

/// An error that postcard returned: the message left in the slot by the
/// adapter below it if there is one (the error is that one, carried up by
/// postcard), else postcard's own.
#[inline]
fn lift<E: fmt::Display>(slot: &Slot, e: E) -> Msg {
    match slot.take() {
        Some(m) => Msg(Box::new(m)),
        None => Msg(Box::new(e.to_string())),
    }
}

/// Hands `m` to postcard as its error, leaving the message in the slot.
#[inline]
fn lower<E: de::Error>(slot: &Slot, m: Msg) -> E {
    let e = E::custom(&m.0);
    slot.set(Some(*m.0));
    e
}

/// The same for a serializer's error.
#[inline]
fn lower_ser<E: ser::Error>(slot: &Slot, m: Msg) -> E {
    let e = E::custom(&m.0);
    slot.set(Some(*m.0));
    e
}

// ---------------------------------------------------------------------
// Serializing

/// A serializer forwarding to `inner`, whose error keeps its message.
pub(super) struct Ser<'a, S> {
    pub(super) inner: S,
    pub(super) slot: &'a Slot,
}

/// A value serialised through [`Ser`] by a serializer of postcard's.
struct Wrap<'a, T: ?Sized> {
    value: &'a T,
    slot: &'a Slot,
}

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value
            .serialize(Ser {
                inner: s,
                slot: self.slot,
            })
            .map_err(|m| lower_ser(self.slot, m))
    }
}

/// One of the serializer's compound states, forwarding to `inner`.
pub(super) struct Compound<'a, C> {
    inner: C,
    slot: &'a Slot,
}

macro_rules! forward_ser {
    ($($method:ident($t:ty);)*) => {
        $(
            #[inline]
            fn $method(self, v: $t) -> Result<S::Ok, Msg> {
                let slot = self.slot;
                self.inner.$method(v).map_err(|e| lift(slot, e))
            }
        )*
    };
}

impl<'a, S: ser::Serializer> ser::Serializer for Ser<'a, S> {
    type Ok = S::Ok;
    type Error = Msg;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    forward_ser! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_unit_struct(&'static str);
    }

    #[inline]
    fn serialize_none(self) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner.serialize_none().map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_some(&Wrap { value, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_unit(self) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner.serialize_unit().map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_unit_variant(self, name: &'static str, index: u32, variant: &'static str) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_unit_variant(name, index, variant)
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_newtype_struct(name, &Wrap { value, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_newtype_variant(name, index, variant, &Wrap { value, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_seq(len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_tuple(len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_tuple_struct(name, len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_tuple_variant(name, index, variant, len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_map(len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_struct(name, len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Msg> {
        let slot = self.slot;
        self.inner
            .serialize_struct_variant(name, index, variant, len)
            .map(|inner| Compound { inner, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, Msg> {
        let slot = self.slot;
        self.inner.collect_str(value).map_err(|e| lift(slot, e))
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Implements a compound trait whose element calls are `$method(value)`.
macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = Msg;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Msg> {
                let slot = self.slot;
                self.inner
                    .$method(&Wrap { value, slot })
                    .map_err(|e| lift(slot, e))
            }

            #[inline]
            fn end(self) -> Result<C::Ok, Msg> {
                let slot = self.slot;
                self.inner.end().map_err(|e| lift(slot, e))
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

/// Implements a compound trait whose element calls are named fields.
macro_rules! compound_fields {
    ($trait:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = Msg;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Msg> {
                let slot = self.slot;
                self.inner
                    .serialize_field(key, &Wrap { value, slot })
                    .map_err(|e| lift(slot, e))
            }

            #[inline]
            fn skip_field(&mut self, key: &'static str) -> Result<(), Msg> {
                let slot = self.slot;
                self.inner.skip_field(key).map_err(|e| lift(slot, e))
            }

            #[inline]
            fn end(self) -> Result<C::Ok, Msg> {
                let slot = self.slot;
                self.inner.end().map_err(|e| lift(slot, e))
            }
        }
    };
}

compound_fields!(SerializeStruct);
compound_fields!(SerializeStructVariant);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = Msg;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Msg> {
        let slot = self.slot;
        self.inner
            .serialize_key(&Wrap { value: key, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Msg> {
        let slot = self.slot;
        self.inner
            .serialize_value(&Wrap { value, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(&mut self, key: &K, value: &V) -> Result<(), Msg> {
        let slot = self.slot;
        self.inner
            .serialize_entry(&Wrap { value: key, slot }, &Wrap { value, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn end(self) -> Result<C::Ok, Msg> {
        let slot = self.slot;
        self.inner.end().map_err(|e| lift(slot, e))
    }
}

// ---------------------------------------------------------------------
// Deserializing

/// A deserializer forwarding to `inner`, whose error keeps its message.
pub(super) struct De<'a, D> {
    pub(super) inner: D,
    pub(super) slot: &'a Slot,
}

/// The caller's visitor, called by postcard.
struct Vis<'a, V> {
    inner: V,
    slot: &'a Slot,
}

/// The caller's seed (an element, a key, a value, a variant), called by
/// postcard.
struct Seed<'a, T> {
    inner: T,
    slot: &'a Slot,
}

/// One of postcard's accessors (a sequence's, a map's, an enum's, a
/// variant's), called by the caller's visitor.
struct Access<'a, A> {
    inner: A,
    slot: &'a Slot,
}

macro_rules! forward_de {
    ($($method:ident($($arg:ident: $t:ty),*);)*) => {
        $(
            #[inline]
            fn $method<V: Visitor<'de>>(self, $($arg: $t,)* visitor: V) -> Result<V::Value, Msg> {
                let slot = self.slot;
                self.inner
                    .$method($($arg,)* Vis { inner: visitor, slot })
                    .map_err(|e| lift(slot, e))
            }
        )*
    };
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for De<'_, D> {
    type Error = Msg;

    forward_de! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($t:ty);)*) => {
        $(
            #[inline]
            fn $method<E: de::Error>(self, v: $t) -> Result<V::Value, E> {
                let slot = self.slot;
                self.inner.$method::<Msg>(v).map_err(|m| lower(slot, m))
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        let slot = self.slot;
        self.inner.visit_none::<Msg>().map_err(|m| lower(slot, m))
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        let slot = self.slot;
        self.inner.visit_unit::<Msg>().map_err(|m| lower(slot, m))
    }

    #[inline]
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let slot = self.slot;
        self.inner.visit_some(De { inner: d, slot }).map_err(|m| lower(slot, m))
    }

    #[inline]
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let slot = self.slot;
        self.inner
            .visit_newtype_struct(De { inner: d, slot })
            .map_err(|m| lower(slot, m))
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        let slot = self.slot;
        self.inner
            .visit_seq(Access { inner: a, slot })
            .map_err(|m| lower(slot, m))
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        let slot = self.slot;
        self.inner
            .visit_map(Access { inner: a, slot })
            .map_err(|m| lower(slot, m))
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        let slot = self.slot;
        self.inner
            .visit_enum(Access { inner: a, slot })
            .map_err(|m| lower(slot, m))
    }
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T::Value;

    #[inline]
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        let slot = self.slot;
        self.inner
            .deserialize(De { inner: d, slot })
            .map_err(|m| lower(slot, m))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = Msg;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Msg> {
        let slot = self.slot;
        self.inner
            .next_element_seed(Seed { inner: seed, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = Msg;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Msg> {
        let slot = self.slot;
        self.inner
            .next_key_seed(Seed { inner: seed, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Msg> {
        let slot = self.slot;
        self.inner
            .next_value_seed(Seed { inner: seed, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'a, A> {
    type Error = Msg;
    type Variant = Access<'a, A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), Msg> {
        let slot = self.slot;
        self.inner
            .variant_seed(Seed { inner: seed, slot })
            .map(|(v, inner)| (v, Access { inner, slot }))
            .map_err(|e| lift(slot, e))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = Msg;

    #[inline]
    fn unit_variant(self) -> Result<(), Msg> {
        let slot = self.slot;
        self.inner.unit_variant().map_err(|e| lift(slot, e))
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Msg> {
        let slot = self.slot;
        self.inner
            .newtype_variant_seed(Seed { inner: seed, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Msg> {
        let slot = self.slot;
        self.inner
            .tuple_variant(len, Vis { inner: visitor, slot })
            .map_err(|e| lift(slot, e))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Msg> {
        let slot = self.slot;
        self.inner
            .struct_variant(fields, Vis { inner: visitor, slot })
            .map_err(|e| lift(slot, e))
    }
}
