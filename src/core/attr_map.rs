//! [`Attrs`], the attributes of one object: a vector sorted by type rather than a tree,
//! with `CK_BBOOL` flags as bits and `CK_ULONG`s inline.
//!
//! Why not a `BTreeMap<CK_ATTRIBUTE_TYPE, Vec<u8>>` (what it was): an object holds 20-35
//! attributes, most of them one-byte flags. The tree gave each object five or six nodes and
//! one allocation per value, about 3 KB for a secret key; an operation that makes an object
//! per call (`C_EncapsulateKey`, `C_DecapsulateKey`, `C_DeriveKey`) spent a quarter of its
//! time there (perf: cloning the class defaults, the allocations, and the page faults of a
//! heap growing by 3 KB per key kept: 0.75 faults per `C_EncapsulateKey`). Here a secret
//! key's attributes are one allocation of about 320 bytes plus its `CKA_VALUE` and
//! `CKA_UNIQUE_ID` (0.13 faults per call).

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

/// The `CK_BBOOL` attributes held as bits rather than entries, sorted by type: a key has
/// fifteen or more of them, and an entry each was a third of a kept secret key's memory.
const FLAGS: [CK_ATTRIBUTE_TYPE; 28] = [
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_TRUSTED,
    CKA_SENSITIVE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_DERIVE,
    CKA_EXTRACTABLE,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_OTP_USER_FRIENDLY_MODE,
    CKA_RESET_ON_INIT,
    CKA_HAS_RESET,
    CKA_COLOR,
    CKA_ENCAPSULATE,
    CKA_DECAPSULATE,
];

/// One past the largest type in [`FLAGS`] (sorted, so its last).
const FLAG_TYPES_END: usize = FLAGS[FLAGS.len() - 1] as usize + 1;

/// For each attribute type below [`FLAG_TYPES_END`], its index in [`FLAGS`] plus one (0: not
/// a flag). One load instead of a binary search on every flag read or set: a template and
/// the defaults it fills set twenty flags per new object (perf: a twentieth of
/// `C_EncapsulateKey`'s own time went to that search).
static FLAG_INDEX: [u8; FLAG_TYPES_END] = {
    let mut t = [0u8; FLAG_TYPES_END];
    let mut i = 0;
    while i < FLAGS.len() {
        t[FLAGS[i] as usize] = i as u8 + 1;
        i += 1;
    }
    t
};

/// The bit of a flag attribute in [`Attrs`]'s masks.
fn flag_bit(ty: CK_ATTRIBUTE_TYPE) -> Option<u32> {
    match FLAG_INDEX.get(usize::try_from(ty).ok()?) {
        Some(&i) if i != 0 => Some(1 << (i - 1)),
        _ => None,
    }
}

const FALSE: &[u8] = &[0];
const TRUE: &[u8] = &[1];

/// The attributes of one object, in the order of their types (the order a tree gave: the
/// store's file format and `C_GetAttributeValue` see no change). A flag of [`FLAGS`] whose
/// value is `CK_FALSE` or `CK_TRUE` is two bits; any other value is an entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    entries: Vec<(CK_ATTRIBUTE_TYPE, Value)>,
    /// The flags present as bits, and which of them are `CK_TRUE`.
    flags: u32,
    on: u32,
}

impl Attrs {
    /// No attributes (for a `static`).
    pub const EMPTY: Attrs = Attrs {
        entries: Vec::new(),
        flags: 0,
        on: 0,
    };

    pub fn new() -> Attrs {
        Attrs::default()
    }

    /// Room for `n` attributes that are not flags (flags take no room).
    pub fn with_capacity(n: usize) -> Attrs {
        Attrs {
            entries: Vec::with_capacity(n),
            flags: 0,
            on: 0,
        }
    }

    fn find(&self, ty: CK_ATTRIBUTE_TYPE) -> std::result::Result<usize, usize> {
        self.entries.binary_search_by_key(&ty, |(t, _)| *t)
    }

    fn flag(&self, bit: u32) -> Option<&'static [u8]> {
        (self.flags & bit != 0).then_some(if self.on & bit != 0 { TRUE } else { FALSE })
    }

    pub fn get(&self, ty: &CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        if let Some(v) = flag_bit(*ty).and_then(|b| self.flag(b)) {
            return Some(v);
        }
        self.find(*ty).ok().map(|i| self.entries[i].1.as_slice())
    }

    pub fn contains_key(&self, ty: &CK_ATTRIBUTE_TYPE) -> bool {
        self.get(ty).is_some()
    }

    /// Sets `ty` to `v`; the value it replaces, if any.
    pub fn insert(&mut self, ty: CK_ATTRIBUTE_TYPE, v: Vec<u8>) -> Option<Value> {
        self.insert_value(ty, Value::new(ty, v))
    }

    /// Sets `ty` to a copy of `v` (a flag or a `CK_ULONG` without allocating).
    pub fn insert_slice(&mut self, ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Option<Value> {
        self.insert_value(ty, Value::from_slice(ty, v))
    }

    /// `CK_TRUE`/`CK_FALSE` of a flag of [`FLAGS`] held as bits; `None` for any other
    /// attribute, or a flag that is absent or holds another value (read those with
    /// [`Self::get`]).
    pub fn flag_bool(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<bool> {
        let bit = flag_bit(ty)?;
        (self.flags & bit != 0).then_some(self.on & bit != 0)
    }

    /// Sets the flag `ty` of [`FLAGS`] to `v` in place (a new object's defaults set a dozen
    /// of them: no `Value` made and dropped, no search of the entries unless the flag is
    /// absent). False, with nothing changed, when `ty` is not one of [`FLAGS`].
    pub fn set_flag_bool(&mut self, ty: CK_ATTRIBUTE_TYPE, v: bool) -> bool {
        let Some(bit) = flag_bit(ty) else {
            return false;
        };
        if self.flags & bit == 0 {
            // Absent as a bit: it may be held as an entry with a value other than 0 or 1.
            if let Ok(i) = self.find(ty) {
                self.entries.remove(i);
            }
            self.flags |= bit;
        }
        self.on = if v { self.on | bit } else { self.on & !bit };
        true
    }

    /// Sets `ty` to `v` (a value taken from another object's attributes).
    pub fn insert_value(&mut self, ty: CK_ATTRIBUTE_TYPE, v: Value) -> Option<Value> {
        let bit = flag_bit(ty);
        if let (Some(bit), [b @ (0 | 1)]) = (bit, v.as_slice()) {
            let on = *b == 1;
            let old = self.remove(&ty);
            self.flags |= bit;
            self.on = if on { self.on | bit } else { self.on & !bit };
            return old;
        }
        let old_flag = bit.and_then(|b| self.take_flag(b));
        match self.find(ty) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            Err(i) => {
                self.entries.insert(i, (ty, v));
                old_flag
            }
        }
    }

    fn take_flag(&mut self, bit: u32) -> Option<Value> {
        let v = self.flag(bit)?;
        self.flags &= !bit;
        self.on &= !bit;
        Some(Value::word(v))
    }

    pub fn remove(&mut self, ty: &CK_ATTRIBUTE_TYPE) -> Option<Value> {
        if let Some(v) = flag_bit(*ty).and_then(|b| self.take_flag(b)) {
            return Some(v);
        }
        self.find(*ty).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.flags.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy with room for `n` more attributes, so that filling a new object from its
    /// class's defaults does not grow it.
    pub fn clone_with_room(&self, n: usize) -> Attrs {
        let mut entries = Vec::with_capacity(self.entries.len() + n);
        entries.extend(self.entries.iter().cloned());
        Attrs {
            entries,
            flags: self.flags,
            on: self.on,
        }
    }

    /// Gives back the room no attribute uses (an object kept in a store).
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit()
    }

    /// The attributes in the order of their types.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            entries: self.entries.iter().peekable(),
            flags: self.flags,
            on: self.on,
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &CK_ATTRIBUTE_TYPE> {
        self.iter().map(|(t, _)| t)
    }

    /// Overwrites every value held on the heap (where secrets are) with zeros and empties it.
    pub fn zeroize(&mut self) {
        use zeroize::Zeroize;
        for (_, v) in &mut self.entries {
            if let Value::Bytes(b) = v {
                b.zeroize();
            }
        }
    }
}

/// [`Attrs::iter`]: the entries and the flag bits merged by type.
pub struct Iter<'a> {
    entries: std::iter::Peekable<std::slice::Iter<'a, (CK_ATTRIBUTE_TYPE, Value)>>,
    /// The flags not yet given.
    flags: u32,
    on: u32,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a CK_ATTRIBUTE_TYPE, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let flag = (self.flags != 0).then(|| self.flags.trailing_zeros() as usize);
        match (flag, self.entries.peek()) {
            (Some(i), next) if next.is_none_or(|(t, _)| FLAGS[i] < *t) => {
                let bit = 1 << i;
                self.flags &= !bit;
                Some((&FLAGS[i], if self.on & bit != 0 { TRUE } else { FALSE }))
            }
            _ => self.entries.next().map(|(t, v)| (t, v.as_slice())),
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
    /// The entries moved out (a secret's bytes are not copied), the flags as words.
    fn into_iter(mut self) -> Self::IntoIter {
        let mut all = std::mem::take(&mut self.entries);
        for (i, ty) in FLAGS.iter().enumerate() {
            if let Some(v) = self.flag(1 << i) {
                all.push((*ty, Value::word(v)));
            }
        }
        all.sort_by_key(|(t, _)| *t);
        all.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a CK_ATTRIBUTE_TYPE, &'a [u8]);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_set_in_place_replace_any_entry() {
        let mut a = Attrs::new();
        a.insert(CKA_SENSITIVE, vec![2]);
        assert_eq!(a.flag_bool(CKA_SENSITIVE), None);
        assert!(a.set_flag_bool(CKA_SENSITIVE, true));
        assert_eq!(a.get(&CKA_SENSITIVE), Some(&[1u8][..]));
        assert_eq!(a.keys().filter(|t| **t == CKA_SENSITIVE).count(), 1);
        assert!(a.set_flag_bool(CKA_SENSITIVE, false));
        assert_eq!(a.flag_bool(CKA_SENSITIVE), Some(false));
        assert!(!a.set_flag_bool(CKA_LABEL, true));
        assert_eq!(a.get(&CKA_LABEL), None);
        assert_eq!(a.flag_bool(CKA_TOKEN), None);
    }

    #[test]
    fn flag_bits_follow_the_flag_list() {
        for (i, ty) in FLAGS.iter().enumerate() {
            assert_eq!(flag_bit(*ty), Some(1 << i), "0x{ty:x}");
        }
        for ty in [
            CKA_CLASS,
            CKA_VALUE,
            CKA_LABEL,
            CKA_DECAPSULATE + 1,
            CKA_VENDOR_DEFINED,
            u64::MAX,
        ] {
            assert_eq!(flag_bit(ty), None, "0x{ty:x}");
        }
    }

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
        a.insert(CKA_VALUE_LEN, 8usize.to_ne_bytes().to_vec());
        // A flag is a bit, a CK_ULONG a word; a secret (CKA_VALUE) stays on the heap
        // whatever its length.
        assert_eq!(a.flags.count_ones(), 1);
        let entry = |ty| &a.entries[a.find(ty).unwrap()].1;
        assert!(matches!(entry(CKA_VALUE_LEN), Value::Word { .. }));
        assert!(matches!(entry(CKA_VALUE), Value::Bytes(_)));
        a.zeroize();
        assert_eq!(a.get(&CKA_VALUE), Some(&[][..]));
        assert_eq!(a.get(&CKA_SENSITIVE), Some(&[1u8][..]));
        assert_eq!(a.get(&CKA_LABEL), Some(&[][..]));
    }

    #[test]
    fn flags_sorted_and_bool() {
        use super::super::attr::{shape, Shape};
        assert!(FLAGS.windows(2).all(|w| w[0] < w[1]));
        assert!(FLAGS.iter().all(|t| shape(*t) == Some(Shape::Bool)));
        assert!(FLAGS.len() <= 32);
    }

    #[test]
    fn flags_and_entries_merge_in_type_order() {
        let mut a = Attrs::new();
        a.insert(CKA_DECAPSULATE, vec![1]);
        a.insert(CKA_LABEL, b"x".to_vec());
        a.insert(CKA_TOKEN, vec![0]);
        a.insert(CKA_CLASS, CKO_SECRET_KEY.to_ne_bytes().to_vec());
        // A CK_BBOOL other than 0 or 1 is kept as given, in an entry.
        a.insert(CKA_SIGN, vec![2]);
        let want = [CKA_CLASS, CKA_TOKEN, CKA_LABEL, CKA_SIGN, CKA_DECAPSULATE];
        let mut sorted = want;
        sorted.sort();
        assert_eq!(a.keys().copied().collect::<Vec<_>>(), sorted);
        assert_eq!(a.len(), 5);
        assert_eq!(a.get(&CKA_SIGN), Some(&[2u8][..]));
        assert_eq!(a.get(&CKA_TOKEN), Some(&[0u8][..]));
        // Flag to entry and back, the old value given back each time.
        assert!(matches!(a.insert(CKA_TOKEN, vec![7]), Some(v) if *v == [0]));
        assert!(matches!(a.insert(CKA_SIGN, vec![1]), Some(v) if *v == [2]));
        assert!(matches!(a.insert(CKA_TOKEN, vec![1]), Some(v) if *v == [7]));
        assert_eq!(a.get(&CKA_TOKEN), Some(&[1u8][..]));
        assert_eq!(a.get(&CKA_SIGN), Some(&[1u8][..]));
        assert_eq!(a.entries.len(), 2);
        let owned: Vec<_> = a
            .clone()
            .into_iter()
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        let borrowed: Vec<_> = a.iter().map(|(t, v)| (*t, v.to_vec())).collect();
        assert_eq!(owned, borrowed);
        assert!(matches!(a.remove(&CKA_DECAPSULATE), Some(v) if *v == [1]));
        assert!(!a.contains_key(&CKA_DECAPSULATE));
        assert_eq!(a.len(), 4);
    }
}
