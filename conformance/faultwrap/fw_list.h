/* The 68 functions of the PKCS#11 2.40 CK_FUNCTION_LIST with their real parameter types,
 * as an X-macro, and a typed mirror of the function list built from it. pkcs11_min.h
 * (conformance/faulty/) gives the base types and the layout; it declares most entries as a
 * generic CK_FN, which cannot be called or filled without function-pointer casts. The
 * typed mirror is checked entry by entry against pkcs11_min.h's CK_FUNCTION_LIST (offsets
 * and size), so both describe the same table.
 *
 * Parameter types are chosen for the ABI only: every handle, slot id, length, flag set,
 * user type and mechanism type is a CK_ULONG, CK_BBOOL is a CK_BYTE, every structure
 * pointer is a void *. A forwarder never looks inside them.
 *
 * FW_FUNCTIONS(S, G): S(name, params) for the entries faultwrap.c writes by hand,
 * G(name, params, args) for the ones it generates (args: the parameter names, to forward). */
#ifndef HSMUX_FAULTWRAP_LIST_H
#define HSMUX_FAULTWRAP_LIST_H

#include <stddef.h>
#include "pkcs11_min.h"

typedef CK_RV (*fw_notify)(CK_ULONG hSession, CK_ULONG event, void *pApplication);

#define FW_FUNCTIONS(S, G)                                                                 \
  S(C_Initialize, (CK_VOID_PTR pInitArgs))                                                 \
  S(C_Finalize, (CK_VOID_PTR pReserved))                                                   \
  S(C_GetInfo, (CK_VOID_PTR pInfo))                                                        \
  S(C_GetFunctionList, (CK_FUNCTION_LIST * *ppList))                                       \
  S(C_GetSlotList, (CK_BYTE tokenPresent, CK_SLOT_ID *pSlotList, CK_ULONG *pulCount))      \
  G(C_GetSlotInfo, (CK_SLOT_ID s, void *info), (s, info))                                  \
  G(C_GetTokenInfo, (CK_SLOT_ID s, void *info), (s, info))                                 \
  G(C_GetMechanismList, (CK_SLOT_ID s, CK_ULONG *list, CK_ULONG *n), (s, list, n))         \
  G(C_GetMechanismInfo, (CK_SLOT_ID s, CK_ULONG type, void *info), (s, type, info))        \
  G(C_InitToken, (CK_SLOT_ID s, CK_BYTE *pin, CK_ULONG pinLen, CK_BYTE *label),            \
    (s, pin, pinLen, label))                                                               \
  G(C_InitPIN, (CK_ULONG h, CK_BYTE *pin, CK_ULONG pinLen), (h, pin, pinLen))              \
  G(C_SetPIN, (CK_ULONG h, CK_BYTE *old, CK_ULONG oldLen, CK_BYTE *nw, CK_ULONG newLen),   \
    (h, old, oldLen, nw, newLen))                                                          \
  S(C_OpenSession,                                                                         \
    (CK_SLOT_ID s, CK_ULONG flags, void *app, fw_notify notify, CK_ULONG *ph))             \
  G(C_CloseSession, (CK_ULONG h), (h))                                                     \
  G(C_CloseAllSessions, (CK_SLOT_ID s), (s))                                               \
  G(C_GetSessionInfo, (CK_ULONG h, void *info), (h, info))                                 \
  G(C_GetOperationState, (CK_ULONG h, CK_BYTE *state, CK_ULONG *len), (h, state, len))     \
  G(C_SetOperationState,                                                                   \
    (CK_ULONG h, CK_BYTE *state, CK_ULONG len, CK_ULONG encKey, CK_ULONG authKey),         \
    (h, state, len, encKey, authKey))                                                      \
  S(C_Login, (CK_ULONG hSession, CK_ULONG userType, CK_BYTE *pPin, CK_ULONG ulPinLen))     \
  G(C_Logout, (CK_ULONG h), (h))                                                           \
  G(C_CreateObject, (CK_ULONG h, void *tmpl, CK_ULONG n, CK_ULONG *obj), (h, tmpl, n, obj)) \
  G(C_CopyObject, (CK_ULONG h, CK_ULONG o, void *tmpl, CK_ULONG n, CK_ULONG *obj),         \
    (h, o, tmpl, n, obj))                                                                  \
  G(C_DestroyObject, (CK_ULONG h, CK_ULONG o), (h, o))                                     \
  G(C_GetObjectSize, (CK_ULONG h, CK_ULONG o, CK_ULONG *size), (h, o, size))               \
  G(C_GetAttributeValue, (CK_ULONG h, CK_ULONG o, void *tmpl, CK_ULONG n), (h, o, tmpl, n)) \
  G(C_SetAttributeValue, (CK_ULONG h, CK_ULONG o, void *tmpl, CK_ULONG n), (h, o, tmpl, n)) \
  G(C_FindObjectsInit, (CK_ULONG h, void *tmpl, CK_ULONG n), (h, tmpl, n))                 \
  G(C_FindObjects, (CK_ULONG h, CK_ULONG *objs, CK_ULONG max, CK_ULONG *n),                \
    (h, objs, max, n))                                                                     \
  G(C_FindObjectsFinal, (CK_ULONG h), (h))                                                 \
  G(C_EncryptInit, (CK_ULONG h, void *mech, CK_ULONG key), (h, mech, key))                 \
  G(C_Encrypt, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),  \
    (h, in, inLen, out, outLen))                                                           \
  G(C_EncryptUpdate,                                                                       \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),             \
    (h, in, inLen, out, outLen))                                                           \
  G(C_EncryptFinal, (CK_ULONG h, CK_BYTE *out, CK_ULONG *outLen), (h, out, outLen))        \
  G(C_DecryptInit, (CK_ULONG h, void *mech, CK_ULONG key), (h, mech, key))                 \
  G(C_Decrypt, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),  \
    (h, in, inLen, out, outLen))                                                           \
  G(C_DecryptUpdate,                                                                       \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),             \
    (h, in, inLen, out, outLen))                                                           \
  G(C_DecryptFinal, (CK_ULONG h, CK_BYTE *out, CK_ULONG *outLen), (h, out, outLen))        \
  G(C_DigestInit, (CK_ULONG h, void *mech), (h, mech))                                     \
  G(C_Digest, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),   \
    (h, in, inLen, out, outLen))                                                           \
  G(C_DigestUpdate, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen), (h, in, inLen))             \
  G(C_DigestKey, (CK_ULONG h, CK_ULONG key), (h, key))                                     \
  G(C_DigestFinal, (CK_ULONG h, CK_BYTE *out, CK_ULONG *outLen), (h, out, outLen))         \
  G(C_SignInit, (CK_ULONG h, void *mech, CK_ULONG key), (h, mech, key))                    \
  G(C_Sign, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *sig, CK_ULONG *sigLen),     \
    (h, in, inLen, sig, sigLen))                                                           \
  G(C_SignUpdate, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen), (h, in, inLen))               \
  G(C_SignFinal, (CK_ULONG h, CK_BYTE *sig, CK_ULONG *sigLen), (h, sig, sigLen))           \
  G(C_SignRecoverInit, (CK_ULONG h, void *mech, CK_ULONG key), (h, mech, key))             \
  G(C_SignRecover,                                                                         \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *sig, CK_ULONG *sigLen),             \
    (h, in, inLen, sig, sigLen))                                                           \
  G(C_VerifyInit, (CK_ULONG h, void *mech, CK_ULONG key), (h, mech, key))                  \
  G(C_Verify, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *sig, CK_ULONG sigLen),    \
    (h, in, inLen, sig, sigLen))                                                           \
  G(C_VerifyUpdate, (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen), (h, in, inLen))             \
  G(C_VerifyFinal, (CK_ULONG h, CK_BYTE *sig, CK_ULONG sigLen), (h, sig, sigLen))          \
  G(C_VerifyRecoverInit, (CK_ULONG h, void *mech, CK_ULONG key), (h, mech, key))           \
  G(C_VerifyRecover,                                                                       \
    (CK_ULONG h, CK_BYTE *sig, CK_ULONG sigLen, CK_BYTE *out, CK_ULONG *outLen),           \
    (h, sig, sigLen, out, outLen))                                                         \
  G(C_DigestEncryptUpdate,                                                                 \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),             \
    (h, in, inLen, out, outLen))                                                           \
  G(C_DecryptDigestUpdate,                                                                 \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),             \
    (h, in, inLen, out, outLen))                                                           \
  G(C_SignEncryptUpdate,                                                                   \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),             \
    (h, in, inLen, out, outLen))                                                           \
  G(C_DecryptVerifyUpdate,                                                                 \
    (CK_ULONG h, CK_BYTE *in, CK_ULONG inLen, CK_BYTE *out, CK_ULONG *outLen),             \
    (h, in, inLen, out, outLen))                                                           \
  G(C_GenerateKey, (CK_ULONG h, void *mech, void *tmpl, CK_ULONG n, CK_ULONG *key),        \
    (h, mech, tmpl, n, key))                                                               \
  G(C_GenerateKeyPair,                                                                     \
    (CK_ULONG h, void *mech, void *pubTmpl, CK_ULONG pubN, void *privTmpl, CK_ULONG privN, \
     CK_ULONG *pub, CK_ULONG *priv),                                                       \
    (h, mech, pubTmpl, pubN, privTmpl, privN, pub, priv))                                  \
  G(C_WrapKey,                                                                             \
    (CK_ULONG h, void *mech, CK_ULONG wrapping, CK_ULONG key, CK_BYTE *out,                \
     CK_ULONG *outLen),                                                                    \
    (h, mech, wrapping, key, out, outLen))                                                 \
  G(C_UnwrapKey,                                                                           \
    (CK_ULONG h, void *mech, CK_ULONG unwrapping, CK_BYTE *in, CK_ULONG inLen, void *tmpl, \
     CK_ULONG n, CK_ULONG *key),                                                           \
    (h, mech, unwrapping, in, inLen, tmpl, n, key))                                        \
  G(C_DeriveKey, (CK_ULONG h, void *mech, CK_ULONG base, void *tmpl, CK_ULONG n, CK_ULONG *key), \
    (h, mech, base, tmpl, n, key))                                                         \
  G(C_SeedRandom, (CK_ULONG h, CK_BYTE *seed, CK_ULONG len), (h, seed, len))               \
  G(C_GenerateRandom, (CK_ULONG h, CK_BYTE *out, CK_ULONG len), (h, out, len))             \
  G(C_GetFunctionStatus, (CK_ULONG h), (h))                                                \
  G(C_CancelFunction, (CK_ULONG h), (h))                                                   \
  G(C_WaitForSlotEvent, (CK_ULONG flags, CK_SLOT_ID *slot, void *reserved),                \
    (flags, slot, reserved))

/* The typed mirror of CK_FUNCTION_LIST. */
#define FW_MEMBER_S(name, params) CK_RV (*name) params;
#define FW_MEMBER_G(name, params, args) CK_RV (*name) params;
struct fw_list {
  CK_VERSION version;
  FW_FUNCTIONS(FW_MEMBER_S, FW_MEMBER_G)
};
#undef FW_MEMBER_S
#undef FW_MEMBER_G

/* Same order and size as pkcs11_min.h's table: every entry at the same offset. */
#define FW_SAME_S(name, params)                                                              \
  _Static_assert(offsetof(struct fw_list, name) == offsetof(CK_FUNCTION_LIST, name), #name);
#define FW_SAME_G(name, params, args) FW_SAME_S(name, params)
FW_FUNCTIONS(FW_SAME_S, FW_SAME_G)
#undef FW_SAME_S
#undef FW_SAME_G
_Static_assert(sizeof(struct fw_list) == sizeof(CK_FUNCTION_LIST), "68 entries");

#endif
