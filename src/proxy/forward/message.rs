//! The 3.0 message functions a vendor with the 3.0 interface runs itself (`../message.rs`
//! decides; it runs them itself for a 2.40 vendor). The message parameter is staged as a
//! structure (`stage::Param`): see the module header of `stage.rs` for the buffers
//! inside it. Encryption and decryption, signing and verifying, each pair share a C
//! signature, so one macro arm writes both.

use super::super::params::VendorMech;
use super::super::session::PassSession;
use super::super::stage::{In, Out, Owned, Param};
use cryptoki_sys::*;

/// The message functions of one C signature (`$name => $f` each): the consumer's message
/// parameter (`$p`, `$pn`) and further arguments `$a: $t`, what is staged (`$s = $stage`,
/// in this order), the vendor call's arguments (`vh` the session, `pp` the staged
/// parameter) and what goes back after it (`rv` its code).
macro_rules! message {
    ([$( $name:ident => $f:ident ),*] $shape:tt) => {
        $( message!(@one $name $f $shape); )*
    };
    (@one $name:ident $f:ident {
     args ($p:ident, $pn:ident $(, $a:ident : $t:ty)*)
     stage ($($s:ident = $stage:expr),*)
     call |$vh:ident, $pp:ident| $call:tt;
     back |$rv:ident| $back:expr;
    }) => {
        pub unsafe fn $name(&self, $p: CK_VOID_PTR, $pn: CK_ULONG $(, $a: $t)*) -> CK_RV {
            let f = vf3!(self.slot, $f);
            let param = try_rv!(Param::new($p as *const u8, $pn));
            $( let $s = try_rv!($stage); )*
            self.forward_out(
                stringify!($f),
                (param, ($($s,)*)),
                move |$vh, (param, ($($s,)*))| {
                    let $pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr()) as CK_VOID_PTR;
                    unsafe { f $call }
                },
                |$rv, (param, ($($s,)*))| {
                    if let Some(x) = param {
                        x.back($p as *mut u8);
                    }
                    $( let _ = &$s; )*
                    $back
                },
            )
        }
    };
}

impl PassSession {
    plain! { vf3:
        vendor_message_encrypt_final => C_MessageEncryptFinal();
        vendor_message_decrypt_final => C_MessageDecryptFinal();
        message_sign_final => C_MessageSignFinal();
        message_verify_final => C_MessageVerifyFinal();
    }

    init_with_key! { vf3:
        vendor_message_encrypt_init => C_MessageEncryptInit;
        vendor_message_decrypt_init => C_MessageDecryptInit;
        message_sign_init => C_MessageSignInit;
        message_verify_init => C_MessageVerifyInit;
    }

    message! {
        [vendor_encrypt_message => C_EncryptMessage, vendor_decrypt_message => C_DecryptMessage]
        {
            args (p, pn, a: *mut CK_BYTE, an: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG)
            stage (aad = In::new(a, an), i = In::new(d, n), out = Out::new(o, on))
            call |vh, pp| (vh, pp, pn, aad.ptr(), aad.len(), i.ptr(), i.len(), out.ptr(), out.len_ptr());
            back |rv| out.back(rv, o, on);
        }
    }

    message! {
        [encrypt_message_begin => C_EncryptMessageBegin, decrypt_message_begin => C_DecryptMessageBegin]
        {
            args (p, pn, a: *mut CK_BYTE, an: CK_ULONG)
            stage (aad = In::new(a, an))
            call |vh, pp| (vh, pp, pn, aad.ptr(), aad.len());
            back |_rv| ();
        }
    }

    message! {
        [encrypt_message_next => C_EncryptMessageNext, decrypt_message_next => C_DecryptMessageNext]
        {
            args (p, pn, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG, fl: CK_FLAGS)
            stage (i = In::new(d, n), out = Out::new(o, on))
            call |vh, pp| (vh, pp, pn, i.ptr(), i.len(), out.ptr(), out.len_ptr(), fl);
            back |rv| out.back(rv, o, on);
        }
    }

    message! {
        [sign_message_begin => C_SignMessageBegin, verify_message_begin => C_VerifyMessageBegin]
        {
            args (p, pn)
            stage ()
            call |vh, pp| (vh, pp, pn);
            back |_rv| ();
        }
    }

    message! {
        [sign_message => C_SignMessage, sign_message_next => C_SignMessageNext]
        {
            args (p, pn, d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: *mut CK_ULONG)
            stage (i = In::new(d, n), out = Out::new(s, sn))
            call |vh, pp| (vh, pp, pn, i.ptr(), i.len(), out.ptr(), out.len_ptr());
            back |rv| out.back(rv, s, sn);
        }
    }

    message! {
        [verify_message => C_VerifyMessage, verify_message_next => C_VerifyMessageNext]
        {
            args (p, pn, d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: CK_ULONG)
            stage (i = In::new(d, n), sig = In::new(s, sn))
            call |vh, pp| (vh, pp, pn, i.ptr(), i.len(), sig.ptr(), sig.len());
            back |_rv| ();
        }
    }
}
