/* The body shared by the faulty libraries: a function list whose C_Initialize is the
 * library's own `faulty_initialize`; C_Finalize and C_GetSlotList answer as an empty,
 * well-behaved module would. */
#include "pkcs11_min.h"

static CK_RV faulty_initialize(CK_VOID_PTR args);

static CK_RV fin(CK_VOID_PTR p) { return p ? CKR_ARGUMENTS_BAD : CKR_OK; }

static CK_RV slot_list(CK_BYTE present, CK_SLOT_ID *list, CK_ULONG *n) {
  (void)present; (void)list;
  if (!n) return CKR_ARGUMENTS_BAD;
  *n = 0;
  return CKR_OK;
}

static CK_RV get_list(CK_FUNCTION_LIST **pp);

static CK_FUNCTION_LIST table = {
  .version = {2, 40},
  .C_Initialize = faulty_initialize,
  .C_Finalize = fin,
  .C_GetFunctionList = get_list,
  .C_GetSlotList = slot_list,
};

static CK_RV get_list(CK_FUNCTION_LIST **pp) {
  if (!pp) return CKR_ARGUMENTS_BAD;
  *pp = &table;
  return CKR_OK;
}
