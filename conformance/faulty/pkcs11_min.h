/* The few PKCS#11 2.40 declarations the faulty test libraries need, so that they build
 * without the system's pkcs11 headers. Only the layout matters: a version, then the 68
 * function pointers in the order of the 2.40 CK_FUNCTION_LIST. */
#ifndef HSMUX_PKCS11_MIN_H
#define HSMUX_PKCS11_MIN_H

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef CK_ULONG CK_SLOT_ID;
typedef unsigned char CK_BYTE;
typedef void *CK_VOID_PTR;

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_ARGUMENTS_BAD 0x7UL

typedef struct { CK_BYTE major, minor; } CK_VERSION;

typedef CK_RV (*CK_FN)(void); /* any entry: the libraries fill only a few */

typedef struct CK_FUNCTION_LIST {
  CK_VERSION version;
  CK_RV (*C_Initialize)(CK_VOID_PTR);
  CK_RV (*C_Finalize)(CK_VOID_PTR);
  CK_RV (*C_GetInfo)(CK_VOID_PTR);
  CK_RV (*C_GetFunctionList)(struct CK_FUNCTION_LIST **);
  CK_RV (*C_GetSlotList)(CK_BYTE, CK_SLOT_ID *, CK_ULONG *);
  CK_RV (*C_GetSlotInfo)(CK_SLOT_ID, CK_VOID_PTR);
  CK_RV (*C_GetTokenInfo)(CK_SLOT_ID, CK_VOID_PTR);
  CK_FN C_GetMechanismList, C_GetMechanismInfo,
      C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession,
      C_CloseAllSessions, C_GetSessionInfo, C_GetOperationState, C_SetOperationState,
      C_Login, C_Logout, C_CreateObject, C_CopyObject, C_DestroyObject,
      C_GetObjectSize, C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit,
      C_FindObjects, C_FindObjectsFinal, C_EncryptInit, C_Encrypt, C_EncryptUpdate,
      C_EncryptFinal, C_DecryptInit, C_Decrypt, C_DecryptUpdate, C_DecryptFinal,
      C_DigestInit, C_Digest, C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit,
      C_Sign, C_SignUpdate, C_SignFinal, C_SignRecoverInit, C_SignRecover,
      C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal, C_VerifyRecoverInit,
      C_VerifyRecover, C_DigestEncryptUpdate, C_DecryptDigestUpdate,
      C_SignEncryptUpdate, C_DecryptVerifyUpdate, C_GenerateKey, C_GenerateKeyPair,
      C_WrapKey, C_UnwrapKey, C_DeriveKey, C_SeedRandom, C_GenerateRandom,
      C_GetFunctionStatus, C_CancelFunction, C_WaitForSlotEvent;
} CK_FUNCTION_LIST;

/* 7 typed entries + 61 generic ones = 68 */
_Static_assert(sizeof(CK_FUNCTION_LIST) == sizeof(void *) * 69, "68 entries after the version");

#define EXPORT __attribute__((visibility("default")))

#endif
