/* A minimal PKCS#11 consumer for module_faults.sh: loads MODULE, times C_Initialize and
 * prints what a consumer sees of every slot.
 *   slots_client MODULE
 * Output lines:
 *   init rv=0x0 ms=N
 *   all: ID...            (C_GetSlotList(FALSE))
 *   present: ID...        (C_GetSlotList(TRUE))
 *   slot ID flags=0x.. token_rv=0x.. desc=<slot description> label=<token label>
 *   finalize rv=0x0
 * Exit status 0 when every call it made answered as PKCS#11 allows (it does not judge the
 * slots; the script does). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "pkcs11_min.h"

typedef struct {
  CK_BYTE slotDescription[64];
  CK_BYTE manufacturerID[32];
  CK_ULONG flags;
  CK_VERSION hardwareVersion, firmwareVersion;
} CK_SLOT_INFO;

static void trimmed(char *out, const CK_BYTE *field, size_t n) {
  while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == 0)) n--;
  memcpy(out, field, n);
  out[n] = 0;
}

static long ms_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODULE\n", argv[0]);
    return 2;
  }
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  CK_RV (*gfl)(CK_FUNCTION_LIST **) = (CK_RV (*)(CK_FUNCTION_LIST **))dlsym(h, "C_GetFunctionList");
  CK_FUNCTION_LIST *f = NULL;
  if (!gfl || gfl(&f) != CKR_OK || !f) {
    fprintf(stderr, "C_GetFunctionList failed\n");
    return 1;
  }
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CK_RV rv = f->C_Initialize(NULL);
  printf("init rv=0x%lx ms=%ld\n", rv, ms_since(&t0));
  if (rv != CKR_OK) return 1;

  int bad = 0;
  CK_SLOT_ID all[64], present[64];
  CK_ULONG nall = 64, npresent = 64;
  if (f->C_GetSlotList(0, all, &nall) != CKR_OK || f->C_GetSlotList(1, present, &npresent) != CKR_OK) {
    fprintf(stderr, "C_GetSlotList failed\n");
    return 1;
  }
  printf("all:");
  for (CK_ULONG i = 0; i < nall; i++) printf(" %lu", all[i]);
  printf("\npresent:");
  for (CK_ULONG i = 0; i < npresent; i++) printf(" %lu", present[i]);
  printf("\n");

  for (CK_ULONG i = 0; i < nall; i++) {
    CK_SLOT_INFO si;
    memset(&si, 0, sizeof si);
    char desc[65] = "", label[33] = "";
    CK_RV srv = f->C_GetSlotInfo(all[i], &si);
    if (srv != CKR_OK) bad = 1;
    trimmed(desc, si.slotDescription, 64);
    /* CK_TOKEN_INFO is 208 bytes on LP64; the label comes first. */
    union { CK_BYTE b[512]; CK_ULONG align; } ti;
    memset(&ti, 0, sizeof ti);
    CK_RV trv = f->C_GetTokenInfo(all[i], ti.b);
    if (trv == CKR_OK) trimmed(label, ti.b, 32);
    printf("slot %lu flags=0x%lx slot_rv=0x%lx token_rv=0x%lx desc=%s label=%s\n", all[i], si.flags,
           srv, trv, desc, label);
  }
  rv = f->C_Finalize(NULL);
  printf("finalize rv=0x%lx\n", rv);
  return bad || rv != CKR_OK;
}
