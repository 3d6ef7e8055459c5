/* (d1) References a function no library defines: built with undefined symbols allowed,
 * so dlopen(RTLD_NOW) fails with "undefined symbol". */
#include "common.h"

extern CK_RV hsmux_faulty_vendor_runtime_init(void); /* defined nowhere */

static CK_RV faulty_initialize(CK_VOID_PTR args) {
  (void)args;
  return hsmux_faulty_vendor_runtime_init();
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST **pp) { return get_list(pp); }
