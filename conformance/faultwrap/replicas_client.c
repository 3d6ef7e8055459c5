/* Two copies of libfaultwrap.so in one process, as two replicas of an hsmux slot would be:
 * each its own instance (own ctl file, own counters), both in front of one SoftHSM, each
 * on its own token chosen by label. Used by smoke.sh.
 *   replicas_client TARGET LIB_A CTL_A LABEL_A LIB_B CTL_B LABEL_B PIN
 * Prints "ok DESC" / "not ok DESC: DETAIL" lines; exit status 1 when one failed. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "fw_list.h"

#define CKR_DEVICE_ERROR 0x30UL
#define CKR_DEVICE_REMOVED 0x32UL
#define CKR_PIN_INCORRECT 0xA0UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKM_SHA256 0x250UL

typedef struct {
  void *fns[4];
  CK_ULONG flags;
  void *pReserved;
} init_args;

typedef struct {
  const char *name, *ctl, *label;
  void *dl;
  const struct fw_list *f;
  CK_ULONG (*counter)(int);
  char config[4200];
  CK_SLOT_ID slot;
  CK_ULONG session;
} replica;

static int failures;

static void check(int cond, const char *desc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(int cond, const char *desc, const char *fmt, ...) {
  if (cond) {
    printf("ok %s\n", desc);
  } else {
    failures++;
    printf("not ok %s: ", desc);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
  }
  fflush(stdout);
}

static void set_mode(const replica *r, const char *mode) {
  int fd = open(r->ctl, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, mode, strlen(mode)) < 0 || write(fd, "\n", 1) < 0) {
    perror(r->ctl);
    exit(1);
  }
  close(fd);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static const CK_BYTE abc_sha256[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

/* SHA-256 of "abc" in r's session: the first failing rv, or CKR_GENERAL_ERROR for a wrong
 * digest. */
static CK_RV digest_abc(const replica *r) {
  struct { CK_ULONG type; void *param; CK_ULONG len; } mech = {CKM_SHA256, NULL, 0};
  CK_RV rv = r->f->C_DigestInit(r->session, &mech);
  if (rv != CKR_OK) return rv;
  CK_BYTE out[32];
  CK_ULONG n = sizeof out;
  rv = r->f->C_Digest(r->session, (CK_BYTE *)"abc", 3, out, &n);
  if (rv != CKR_OK) return rv;
  return n == 32 && memcmp(out, abc_sha256, 32) == 0 ? CKR_OK : CKR_GENERAL_ERROR;
}

static CK_RV random32(const replica *r) {
  CK_BYTE buf[32];
  return r->f->C_GenerateRandom(r->session, buf, sizeof buf);
}

static int find_slot(const replica *r, CK_SLOT_ID *out, CK_SLOT_ID *all, CK_ULONG *nall) {
  if (r->f->C_GetSlotList(1, all, nall) != CKR_OK) return 0;
  for (CK_ULONG i = 0; i < *nall; i++) {
    union { CK_BYTE b[512]; CK_ULONG align; } ti; /* CK_TOKEN_INFO: the label comes first */
    if (r->f->C_GetTokenInfo(all[i], &ti) != CKR_OK) continue;
    size_t n = strlen(r->label);
    if (memcmp(ti.b, r->label, n) == 0 && (n == 32 || ti.b[n] == ' ')) {
      *out = all[i];
      return 1;
    }
  }
  return 0;
}

/* A call made on its own thread, to see it block. */
typedef struct {
  const replica *r;
  atomic_int done;
  CK_RV rv;
  pthread_t th;
} pending;

static void *pending_main(void *arg) {
  pending *p = arg;
  p->rv = random32(p->r);
  atomic_store(&p->done, 1);
  return NULL;
}

static void pending_start(pending *p, const replica *r) {
  p->r = r;
  atomic_store(&p->done, 0);
  p->rv = ~0UL;
  if (pthread_create(&p->th, NULL, pending_main, p) != 0) {
    perror("pthread_create");
    exit(1);
  }
}

/* Waits up to ms for p to finish; 1 when it did. */
static int pending_wait(pending *p, long ms) {
  long until = now_ms() + ms;
  while (!atomic_load(&p->done) && now_ms() < until) sleep_ms(5);
  if (!atomic_load(&p->done)) return 0;
  pthread_join(p->th, NULL);
  return 1;
}

/* Load: threads digest on both replicas while A's mode changes. */
typedef struct {
  const replica *a, *b;
  atomic_int stop;
  atomic_int rounds, bad_a, bad_b, ok_a, err_a;
} load;

static void *load_main(void *arg) {
  load *l = arg;
  while (!atomic_load(&l->stop)) {
    atomic_fetch_add(&l->rounds, 1);
    CK_BYTE buf[16];
    CK_RV ra = l->a->f->C_GenerateRandom(l->a->session, buf, sizeof buf);
    if (ra == CKR_OK) atomic_fetch_add(&l->ok_a, 1);
    else if (ra == CKR_DEVICE_ERROR) atomic_fetch_add(&l->err_a, 1);
    else atomic_fetch_add(&l->bad_a, 1);
    if (l->b->f->C_GenerateRandom(l->b->session, buf, sizeof buf) != CKR_OK)
      atomic_fetch_add(&l->bad_b, 1);
  }
  return NULL;
}

static CK_ULONG read_logins(const char *ctl) {
  char path[4200];
  snprintf(path, sizeof path, "%s.logins", ctl);
  FILE *fp = fopen(path, "r");
  unsigned long n = 0;
  if (!fp) return 0;
  if (fscanf(fp, "%lu", &n) != 1) n = 0;
  fclose(fp);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: %s TARGET LIB_A CTL_A LABEL_A LIB_B CTL_B LABEL_B PIN\n", argv[0]);
    return 2;
  }
  const char *target = argv[1], *pin = argv[8];
  replica rs[2] = {{.name = "A", .ctl = argv[3], .label = argv[4]},
                   {.name = "B", .ctl = argv[6], .label = argv[7]}};
  replica *a = &rs[0], *b = &rs[1];
  const char *libs[2] = {argv[2], argv[5]};
  unsetenv("FAULTWRAP_ARGS"); /* the configuration must come through pReserved */

  for (int i = 0; i < 2; i++) {
    replica *r = &rs[i];
    set_mode(r, "ok");
    r->dl = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
    if (!r->dl) {
      printf("not ok dlopen %s: %s\n", libs[i], dlerror());
      return 1;
    }
    CK_RV (*gfl)(CK_FUNCTION_LIST **);
    *(void **)&gfl = dlsym(r->dl, "C_GetFunctionList");
    *(void **)&r->counter = dlsym(r->dl, "faultwrap_counter");
    CK_FUNCTION_LIST *list = NULL;
    if (!gfl || !r->counter || gfl(&list) != CKR_OK || !list) {
      printf("not ok %s: C_GetFunctionList / faultwrap_counter\n", libs[i]);
      return 1;
    }
    r->f = (const struct fw_list *)(const void *)list;
    snprintf(r->config, sizeof r->config, "target=%s ctl=%s", target, r->ctl);
  }
  check(a->dl != b->dl && a->f != b->f, "two library copies are two instances", "same handle or table");

  for (int i = 0; i < 2; i++) {
    replica *r = &rs[i];
    init_args args = {{NULL, NULL, NULL, NULL}, 2 /* CKF_OS_LOCKING_OK */, r->config};
    CK_RV rv = r->f->C_Initialize(&args);
    check(rv == CKR_OK, r == a ? "C_Initialize A (pReserved config)" : "C_Initialize B (SoftHSM already initialized by A)",
          "rv=0x%lx", rv);
    if (rv != CKR_OK) return 1;
  }
  CK_SLOT_ID all[2][64];
  CK_ULONG nall[2] = {64, 64};
  for (int i = 0; i < 2; i++) {
    replica *r = &rs[i];
    if (!find_slot(r, &r->slot, all[i], &nall[i])) {
      printf("not ok replica %s: no token labelled %s\n", r->name, r->label);
      return 1;
    }
  }
  check(nall[0] == nall[1] && memcmp(all[0], all[1], nall[0] * sizeof(CK_SLOT_ID)) == 0 &&
            a->slot != b->slot,
        "both copies list SoftHSM's slot ids unchanged; A and B on different tokens",
        "n=%lu/%lu slots %lu/%lu", nall[0], nall[1], a->slot, b->slot);

  for (int i = 0; i < 2; i++) {
    replica *r = &rs[i];
    CK_RV rv = r->f->C_OpenSession(r->slot, 0x6, NULL, NULL, &r->session);
    if (rv == CKR_OK) rv = r->f->C_Login(r->session, 1, (CK_BYTE *)pin, strlen(pin));
    if (rv == CKR_OK) rv = digest_abc(r);
    if (rv == CKR_OK) rv = random32(r);
    char desc[96];
    snprintf(desc, sizeof desc, "replica %s: session, login, SHA-256, random (mode ok)", r->name);
    check(rv == CKR_OK, desc, "rv=0x%lx", rv);
    if (rv != CKR_OK) return 1;
  }

  /* error */
  set_mode(a, "error");
  CK_RV ra = random32(a), rb = random32(b);
  union { CK_BYTE b[256]; CK_ULONG align; } info;
  CK_RV gi = a->f->C_GetInfo(&info);
  check(ra == CKR_DEVICE_ERROR && rb == CKR_OK && gi == CKR_OK,
        "A error: A answers CKR_DEVICE_ERROR (C_GetInfo still forwarded), B unaffected",
        "A rv=0x%lx B rv=0x%lx GetInfo rv=0x%lx", ra, rb, gi);

  /* gone */
  set_mode(a, "gone");
  CK_SLOT_ID tmp[64];
  CK_ULONG ntrue = 64, nfalse = 64;
  CK_RV lt = a->f->C_GetSlotList(1, tmp, &ntrue), lf = a->f->C_GetSlotList(0, tmp, &nfalse);
  CK_RV tk = a->f->C_GetTokenInfo(a->slot, &info);
  ra = random32(a);
  rb = digest_abc(b);
  check(lt == CKR_OK && ntrue == 0 && lf == CKR_DEVICE_REMOVED && tk == CKR_DEVICE_REMOVED &&
            ra == CKR_DEVICE_REMOVED && rb == CKR_OK,
        "A gone: no slot with a token, else CKR_DEVICE_REMOVED; B unaffected",
        "list(TRUE) rv=0x%lx n=%lu list(FALSE) rv=0x%lx token rv=0x%lx random rv=0x%lx B rv=0x%lx",
        lt, ntrue, lf, tk, ra, rb);

  /* hang, then ok: the blocked call goes through to SoftHSM */
  set_mode(a, "hang");
  pending p;
  pending_start(&p, a);
  long t0 = now_ms();
  int b_bad = 0;
  for (int i = 0; i < 100; i++)
    if (digest_abc(b) != CKR_OK) b_bad++;
  while (now_ms() - t0 < 300) sleep_ms(10);
  int blocked = !atomic_load(&p.done);
  set_mode(a, "ok");
  int finished = pending_wait(&p, 1000);
  check(blocked && finished && p.rv == CKR_OK && b_bad == 0,
        "A hang: a call blocks (B serves 100 digests meanwhile), finishes with CKR_OK once A is ok",
        "blocked=%d finished=%d rv=0x%lx B failures=%d", blocked, finished, p.rv, b_bad);

  /* hang, then error: the blocked call takes the new mode */
  set_mode(a, "hang");
  pending_start(&p, a);
  sleep_ms(200);
  blocked = !atomic_load(&p.done);
  set_mode(a, "error");
  finished = pending_wait(&p, 1000);
  check(blocked && finished && p.rv == CKR_DEVICE_ERROR,
        "A hang then error: the blocked call returns CKR_DEVICE_ERROR",
        "blocked=%d finished=%d rv=0x%lx", blocked, finished, p.rv);
  set_mode(a, "ok");

  /* load: 4 threads on both replicas while A flips between ok and error */
  CK_ULONG b_failed0 = b->counter(2), a_calls0 = a->counter(0), b_calls0 = b->counter(0);
  load l = {.a = a, .b = b};
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, load_main, &l);
  for (int i = 0; i < 6; i++) {
    sleep_ms(50);
    set_mode(a, i % 2 ? "ok" : "error");
  }
  sleep_ms(50);
  atomic_store(&l.stop, 1);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  set_mode(a, "ok");
  CK_ULONG a_calls = a->counter(0) - a_calls0, b_calls = b->counter(0) - b_calls0;
  check(atomic_load(&l.bad_a) == 0 && atomic_load(&l.bad_b) == 0 && atomic_load(&l.ok_a) > 0 &&
            atomic_load(&l.err_a) > 0 && b->counter(2) == b_failed0 &&
            a_calls == (CK_ULONG)atomic_load(&l.rounds) && b_calls == a_calls,
        "4 threads on both replicas while A flips ok/error 6 times: A only CKR_OK or "
        "CKR_DEVICE_ERROR, B always CKR_OK, per-copy counters",
        "A ok=%d err=%d other=%d, B failures=%d, rounds=%d calls A=%lu B=%lu",
        atomic_load(&l.ok_a), atomic_load(&l.err_a), atomic_load(&l.bad_a),
        atomic_load(&l.bad_b), atomic_load(&l.rounds), a_calls, b_calls);
  printf("# load: %d rounds, A ok=%d error=%d\n", atomic_load(&l.rounds), atomic_load(&l.ok_a),
         atomic_load(&l.err_a));

  /* pin */
  set_mode(a, "pin");
  CK_RV lo = a->f->C_Logout(a->session);
  CK_RV li = a->f->C_Login(a->session, 1, (CK_BYTE *)pin, strlen(pin));
  CK_ULONG seen = read_logins(a->ctl);
  CK_RV lb = b->f->C_Logout(b->session);
  if (lb == CKR_OK) lb = b->f->C_Login(b->session, 1, (CK_BYTE *)pin, strlen(pin));
  set_mode(a, "ok");
  CK_RV li2 = a->f->C_Login(a->session, 1, (CK_BYTE *)pin, strlen(pin));
  check(lo == CKR_OK && li == CKR_PIN_INCORRECT && seen == 1 && a->counter(4) == 1 && lb == CKR_OK &&
            li2 == CKR_OK,
        "A pin: C_Login CKR_PIN_INCORRECT, <ctl>.logins = 1; B logs in; A logs in once ok",
        "logout 0x%lx login 0x%lx logins file %lu counter %lu B 0x%lx A again 0x%lx", lo, li,
        seen, a->counter(4), lb, li2);

  /* finalize: B did not initialize SoftHSM, so its C_Finalize leaves it to A */
  CK_RV fb = b->f->C_Finalize(NULL);
  CK_RV after_b = digest_abc(a);
  CK_RV b_after = random32(b);
  CK_RV fa = a->f->C_Finalize(NULL);
  CK_RV a_after = random32(a);
  check(fb == CKR_OK && after_b == CKR_OK && b_after == CKR_CRYPTOKI_NOT_INITIALIZED && fa == CKR_OK &&
            a_after == CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_Finalize B leaves SoftHSM to A (A's session still works); then A finalizes",
        "fin B 0x%lx A digest 0x%lx B call 0x%lx fin A 0x%lx A call 0x%lx", fb, after_b, b_after,
        fa, a_after);

  /* re-initialize A */
  init_args args = {{NULL, NULL, NULL, NULL}, 2, a->config};
  CK_RV ri = a->f->C_Initialize(&args);
  CK_SLOT_ID s2;
  CK_SLOT_ID all2[64];
  CK_ULONG n2 = 64;
  int found = ri == CKR_OK && find_slot(a, &s2, all2, &n2) && s2 == a->slot;
  CK_RV rf = a->f->C_Finalize(NULL);
  check(found && rf == CKR_OK, "A initializes again after C_Finalize, same slot id",
        "init 0x%lx found=%d finalize 0x%lx", ri, found, rf);

  return failures ? 1 : 0;
}
