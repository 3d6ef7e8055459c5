/* The "vendor runtime" nodep.c links against; deleted before the test runs. */
#include "pkcs11_min.h"

EXPORT CK_RV hsmux_faulty_vendordep(void) { return CKR_OK; }
