/* (d2) Linked against a vendor runtime library (vendordep.c) that the test removes
 * afterwards: dlopen fails with "cannot open shared object file". */
#include "common.h"

extern CK_RV hsmux_faulty_vendordep(void);

static CK_RV faulty_initialize(CK_VOID_PTR args) {
  (void)args;
  return hsmux_faulty_vendordep();
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST **pp) { return get_list(pp); }
