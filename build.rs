//! Build script: link libhsmux.so with `-z nodelete`.
//!
//! Consumers (the cryptoki crate, Java, p11-kit) dlclose() a PKCS#11 module after
//! C_Finalize, while their threads live on. aws-lc and Rust's std register thread-local
//! destructors that would then run in unmapped code and crash the consumer at thread exit.
//! With `nodelete` the module stays mapped after dlclose (a later dlopen gets the same
//! copy, and C_Initialize works again on it).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
