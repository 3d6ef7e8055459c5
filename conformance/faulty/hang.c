/* (b) C_Initialize never returns (a vendor client waiting forever for its HSM). */
#include <unistd.h>
#include "common.h"

static CK_RV faulty_initialize(CK_VOID_PTR args) {
  (void)args;
  for (;;) sleep(1);
  return CKR_OK;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST **pp) { return get_list(pp); }
