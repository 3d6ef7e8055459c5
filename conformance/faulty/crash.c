/* (a) C_Initialize dies of SIGSEGV (a write through a NULL pointer, then raise in case
 * the write was optimized away or trapped differently). */
#include <signal.h>
#include "common.h"

static CK_RV faulty_initialize(CK_VOID_PTR args) {
  (void)args;
  *(volatile int *)0 = 1;
  raise(SIGSEGV);
  return CKR_OK;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST **pp) { return get_list(pp); }
