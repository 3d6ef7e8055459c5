//! [`Attrs`], the attributes of one object: a vector sorted by type rather than a tree,
//! with flags and `CK_ULONG`s held inline.
//!
//! Why not a `BTreeMap<CK_ATTRIBUTE_TYPE, Vec<u8>>` (what it was): an object holds 20-35
//! attributes, most of them one-byte flags. The tree gave each object five or six nodes and
//! one allocation per value, about 3 KB for a secret key; an operation that makes an object
//! per call (`C_EncapsulateKey`, `C_DecapsulateKey`, `C_DeriveKey`) spent a quarter of its
//! time there (perf: cloning the class defaults, the allocations, and the page faults of a
//! heap growing by 3 KB per key kept). Here a secret key is one allocation of ~1.2 KB plus
//! its variable-length values.

use cryptoki_sys::*;
use std::fmt;

/// One attribute's bytes, exactly as a consumer reads them.
///
/// A flag or a `CK_ULONG` (the fixed shapes of [`super::attr::shape`], never secret) is held
/// inline; anything else, secrets included, on the heap, so that moving an entry (an insert
/// shifting the vector, the vector growing) moves a pointer and never leaves a copy of a
/// secret behind.
#[derive(Clone)]
pub enum Value {
    Word { len: u8, bytes: [u8; 8] },
    Bytes(Vec<u8>),
}

impl Value {
    /// Whether a value of `ty` this long is held inline.
    fn inline(ty: CK_ATTRIBUTE_TYPE, len: usize) -> bool {
        use super::attr::{shape, Shape};
        len <= 8 && matches!(shape(ty), Some(Shape::Bool | Shape::Ulong))
    }

    fn word(v: &[u8]) -> Value {
        let mut bytes = [0u8; 8];
        bytes[..v.len()].copy_from_slice(v);
        Value::Word {
            len: v.len() as u8,
            bytes,
        }
    }

    fn new(ty: CK_ATTRIBUTE_TYPE, v: Vec<u8>) -> Value {
        if Value::inline(ty, v.len()) {
            Value::word(&v)
        } else {
            Value::Bytes(v)
        }
    }

    fn from_slice(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Value {
        if Value::inline(ty, v.len()) {
            Value::word(v)
        } else {
            Value::Bytes(v.to_vec())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Value::Word { len, bytes } => &bytes[..*len as usize],
            Value::Bytes(v) => v,
        }
    }
}

impl std::ops::Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Value {}

impl From<Value> for Vec<u8> {
    fn from(v: Value) -> Vec<u8> {
        match v {
            Value::Word { .. } => v.as_slice().to_vec(),
            Value::Bytes(b) => b,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// The attributes of one object, sorted by type (the order a tree gave: the store's file
/// format and `C_GetAttributeValue` see no change).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attrs(Vec<(CK_ATTRIBUTE_TYPE, Value)>);

impl Attrs {
    pub fn new() -> Attrs {
        Attrs(Vec::new())
    }

    fn find(&self, ty: CK_ATTRIBUTE_TYPE) -> std::result::Result<usize, usize> {
        self.0.binary_search_by_key(&ty, |(t, _)| *t)
    }

    pub fn get(&self, ty: &CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.find(*ty).ok().map(|i| self.0[i].1.as_slice())
    }

    pub fn contains_key(&self, ty: &CK_ATTRIBUTE_TYPE) -> bool {
        self.find(*ty).is_ok()
    }

    /// Sets `ty` to `v`; the value it replaces, if any.
    pub fn insert(&mut self, ty: CK_ATTRIBUTE_TYPE, v: Vec<u8>) -> Option<Value> {
        self.insert_value(ty, Value::new(ty, v))
    }

    /// Sets `ty` to a copy of `v` (a flag or a `CK_ULONG` without allocating).
    pub fn insert_slice(&mut self, ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Option<Value> {
        self.insert_value(ty, Value::from_slice(ty, v))
    }

    /// Sets `ty` to `v` (a value taken from another object's attributes).
    pub fn insert_value(&mut self, ty: CK_ATTRIBUTE_TYPE, v: Value) -> Option<Value> {
        match self.find(ty) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (ty, v));
                None
            }
        }
    }

    pub fn remove(&mut self, ty: &CK_ATTRIBUTE_TYPE) -> Option<Value> {
        self.find(*ty).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy with room for `n` more attributes, so that filling a new object from its
    /// class's defaults does not grow it.
    pub fn clone_with_room(&self, n: usize) -> Attrs {
        let mut v = Vec::with_capacity(self.0.len() + n);
        v.extend(self.0.iter().cloned());
        Attrs(v)
    }

    /// Gives back the room no attribute uses (an object kept in a store).
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&CK_ATTRIBUTE_TYPE, &[u8])> {
        self.0.iter().map(|(t, v)| (t, v.as_slice()))
    }

    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|(_, v)| v.as_slice())
    }

    pub fn keys(&self) -> impl Iterator<Item = &CK_ATTRIBUTE_TYPE> {
        self.0.iter().map(|(t, _)| t)
    }

    /// Overwrites every value held on the heap (where secrets are) with zeros and empties it.
    pub fn zeroize(&mut self) {
        use zeroize::Zeroize;
        for (_, v) in &mut self.0 {
            if let Value::Bytes(b) = v {
                b.zeroize();
            }
        }
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Extend<(CK_ATTRIBUTE_TYPE, Vec<u8>)> for Attrs {
    fn extend<I: IntoIterator<Item = (CK_ATTRIBUTE_TYPE, Vec<u8>)>>(&mut self, it: I) {
        for (t, v) in it {
            self.insert(t, v);
        }
    }
}

impl Extend<(CK_ATTRIBUTE_TYPE, Value)> for Attrs {
    fn extend<I: IntoIterator<Item = (CK_ATTRIBUTE_TYPE, Value)>>(&mut self, it: I) {
        for (t, v) in it {
            self.insert_value(t, v);
        }
    }
}

impl FromIterator<(CK_ATTRIBUTE_TYPE, Vec<u8>)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (CK_ATTRIBUTE_TYPE, Vec<u8>)>>(it: I) -> Attrs {
        let mut a = Attrs::new();
        a.extend(it);
        a
    }
}

impl IntoIterator for Attrs {
    type Item = (CK_ATTRIBUTE_TYPE, Value);
    type IntoIter = std::vec::IntoIter<(CK_ATTRIBUTE_TYPE, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a CK_ATTRIBUTE_TYPE, &'a [u8]);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (CK_ATTRIBUTE_TYPE, Value)>,
        fn(&'a (CK_ATTRIBUTE_TYPE, Value)) -> (&'a CK_ATTRIBUTE_TYPE, &'a [u8]),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(t, v)| (t, v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_replaced_removed() {
        let mut a = Attrs::new();
        a.insert(CKA_VALUE, vec![7; 32]);
        a.insert(CKA_CLASS, CKO_SECRET_KEY.to_ne_bytes().to_vec());
        a.insert(CKA_TOKEN, vec![1]);
        assert_eq!(
            a.keys().copied().collect::<Vec<_>>(),
            vec![CKA_CLASS, CKA_TOKEN, CKA_VALUE]
        );
        assert!(matches!(a.insert(CKA_TOKEN, vec![0]), Some(v) if *v == [1]));
        assert_eq!(a.get(&CKA_TOKEN), Some(&[0u8][..]));
        assert_eq!(a.get(&CKA_VALUE), Some(&[7u8; 32][..]));
        assert!(a.remove(&CKA_CLASS).is_some());
        assert_eq!(a.get(&CKA_CLASS), None);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn only_fixed_shapes_inline() {
        let mut a = Attrs::new();
        a.insert(CKA_SENSITIVE, vec![1]);
        a.insert(CKA_VALUE, vec![9; 8]);
        a.insert(CKA_LABEL, Vec::new());
        // A flag is a word; a secret (CKA_VALUE) stays on the heap whatever its length.
        assert!(matches!(
            a.0[a.find(CKA_SENSITIVE).unwrap()].1,
            Value::Word { .. }
        ));
        assert!(matches!(a.0[a.find(CKA_VALUE).unwrap()].1, Value::Bytes(_)));
        a.zeroize();
        assert_eq!(a.get(&CKA_VALUE), Some(&[][..]));
        assert_eq!(a.get(&CKA_SENSITIVE), Some(&[1u8][..]));
        assert_eq!(a.get(&CKA_LABEL), Some(&[][..]));
    }
}
