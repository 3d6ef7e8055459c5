/* (e) C_Initialize returns CKR_GENERAL_ERROR (a client that cannot reach its HSM). */
#include "common.h"

static CK_RV faulty_initialize(CK_VOID_PTR args) {
  (void)args;
  return CKR_GENERAL_ERROR;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST **pp) { return get_list(pp); }
