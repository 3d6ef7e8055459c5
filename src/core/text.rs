//! PKCS#11's fixed-size text fields (`CK_INFO`, `CK_SLOT_INFO`, `CK_TOKEN_INFO`):
//! blank-padded, not NUL-terminated.

/// A blank-padded fixed-size text field.
pub fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut n = s.len().min(N);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}
