/* (c) A shared library with PKCS#11-looking functions but no C_GetFunctionList symbol
 * (the wrong file named in the config). */
#include "pkcs11_min.h"

EXPORT CK_RV C_Initialize(CK_VOID_PTR args) { (void)args; return CKR_OK; }
EXPORT CK_RV C_Finalize(CK_VOID_PTR args) { (void)args; return CKR_OK; }
