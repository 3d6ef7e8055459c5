//! Object management (PKCS#11 §5.7).

use super::attr::{fill, template, types};
use super::ck_fn;
use crate::core::api::object as api;
use crate::core::error::err;
use crate::core::instance;
use cryptoki_sys::*;

ck_fn!(C_CreateObject(h: CK_SESSION_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    instance::get()?;
    if ph.is_null() || p_template.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let t = template(p_template, count)?;
    *ph = api::create_object(h, &t)?;
    Ok(())
});

ck_fn!(C_CopyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    instance::get()?;
    if ph.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let t = template(p_template, count)?;
    *ph = api::copy_object(h, obj, &t)?;
    Ok(())
});

ck_fn!(C_DestroyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) {
    api::destroy_object(h, obj)
});

ck_fn!(C_GetObjectSize(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_size: *mut CK_ULONG) {
    instance::get()?;
    if p_size.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_size = api::object_size(h, obj)?;
    Ok(())
});

ck_fn!(C_GetAttributeValue(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) {
    instance::get()?;
    if p_template.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let wanted = types(p_template, count)?;
    let values = api::get_attributes(h, obj, &wanted)?;
    fill(p_template, count, &values)
});

ck_fn!(C_SetAttributeValue(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) {
    instance::get()?;
    if p_template.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let t = template(p_template, count)?;
    api::set_attributes(h, obj, &t)
});

ck_fn!(C_FindObjectsInit(h: CK_SESSION_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) {
    instance::get()?;
    let t = template(p_template, count)?;
    api::find_init(h, &t)
});

ck_fn!(C_FindObjects(h: CK_SESSION_HANDLE, ph: *mut CK_OBJECT_HANDLE, max: CK_ULONG, p_count: *mut CK_ULONG) {
    instance::get()?;
    if p_count.is_null() || (ph.is_null() && max > 0) {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let found = api::find(h, max as usize)?;
    if !found.is_empty() {
        std::ptr::copy_nonoverlapping(found.as_ptr(), ph, found.len());
    }
    *p_count = found.len() as CK_ULONG;
    Ok(())
});

ck_fn!(C_FindObjectsFinal(h: CK_SESSION_HANDLE) {
    api::find_final(h)
});
