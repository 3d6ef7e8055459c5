/* faultwrap: a test-only PKCS#11 2.40 module that forwards all 68 functions of
 * CK_FUNCTION_LIST to a real PKCS#11 library (SoftHSMv2 by default) and fails on demand,
 * so that tests can kill, hang and revive one replica of an hsmux slot under load.
 *
 * Configuration (C_Initialize): CK_C_INITIALIZE_ARGS.pReserved is a NUL-terminated string
 *   target=/usr/lib/softhsm/libsofthsm2.so ctl=/path/to/ctlfile
 * (space-separated key=value, values without spaces, both keys optional: target defaults
 * to /usr/lib/softhsm/libsofthsm2.so, no ctl means always "ok"). A third optional key,
 * max_sessions=N, caps the sessions open through this copy: C_OpenSession answers
 * CKR_SESSION_COUNT without calling the target while N are open (as an HSM partition
 * does when its session limit is reached). A fourth, shared=1, says that other copies in
 * the process use the same target: this copy's C_Finalize then never finalizes the target
 * (it closes its own sessions there instead), so that hsmux re-initialising one replica
 * (C_Finalize + C_Initialize) does not pull the target from under the others. With pInitArgs or its
 * pReserved NULL the same string is read from the environment variable FAULTWRAP_ARGS.
 * The target is dlopened RTLD_NOW|RTLD_LOCAL and initialized with CKF_OS_LOCKING_OK and
 * pReserved NULL; CKR_CRYPTOKI_ALREADY_INITIALIZED from it is accepted (several copies of
 * this library may share one SoftHSM), and then this copy's C_Finalize does not finalize
 * the target: only the copy whose C_Initialize got CKR_OK from the target forwards it.
 *
 * The ctl file is read on every call (opened once, pread of its first 16 bytes; opened
 * again on a later call while it does not exist). Rewrite it in place (`echo hang > ctl`):
 * a file replaced by rename or deleted after it was opened is not seen. Its first word:
 *   ok (or empty, missing, unreadable): forward.
 *   error: return CKR_DEVICE_ERROR without calling the target.
 *   hang:  block (10 ms sleeps, re-reading the file) until the mode changes, then act on
 *          the new mode; a call blocked when this copy is finalized returns
 *          CKR_CRYPTOKI_NOT_INITIALIZED.
 *   gone:  return CKR_DEVICE_REMOVED, except C_GetSlotList(tokenPresent=TRUE), which
 *          returns CKR_OK and 0 slots.
 *   pin:   C_Login returns CKR_PIN_INCORRECT without calling the target and writes the
 *          number of such attempts so far in this process to "<ctl>.logins" (decimal and a
 *          newline, replaced atomically); everything else forwards.
 *   removed: "sticky gone", a library stuck in a bad state: once a call has seen it, every
 *          call (C_GetSlotList too) returns CKR_DEVICE_REMOVED, whatever the ctl file says
 *          later, until this copy is C_Finalize'd and C_Initialize'd again; after that it
 *          forwards while the ctl file still holds that same "removed" (same mtime), and
 *          acts on the file again once it is rewritten.
 *   slow [MS]: every call sleeps MS milliseconds (default 50, at most 10000), then
 *          forwards (`echo "slow 200" > ctl`).
 *   stale: calls that take a session handle answer CKR_SESSION_HANDLE_INVALID for the
 *          sessions this copy opened before the mode was set (a vendor that lost its
 *          sessions); sessions opened since work. It needs the target's session handles
 *          to grow (SoftHSM's do). The old sessions work again once the mode changes.
 * Any other word counts as ok, with a line on stderr when it is first seen.
 * C_GetFunctionList, C_Initialize, C_Finalize and C_GetInfo ignore the mode.
 *
 * The sessions opened through this copy are tracked: C_Finalize closes those still open
 * at the target when it does not finalize the target itself (a re-initialised library
 * has no sessions left, and the target then drops their login too).
 *
 * Slot ids, handles and all data pass through unchanged. Thread-safe: the state is the
 * target's table, the ctl fd and atomics (plus the paths, written only by C_Initialize).
 * Besides C_GetFunctionList the library exports faultwrap_counter(which), the atomic
 * counters of this copy: 0 calls (every entry point but C_GetFunctionList), 1 forwarded
 * to the target, 2 failed here (injected errors, pin-mode logins), 3 calls that blocked
 * in hang mode, 4 pin-mode logins, 5 mode changes seen. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "fw_list.h"

#define CKR_FUNCTION_NOT_SUPPORTED 0x54UL
#define CKR_DEVICE_ERROR 0x30UL
#define CKR_DEVICE_REMOVED 0x32UL
#define CKR_PIN_INCORRECT 0xA0UL
#define CKR_HOST_MEMORY 0x2UL
#define CKR_SESSION_COUNT 0xB1UL
#define CKR_SESSION_HANDLE_INVALID 0xB3UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define CKF_OS_LOCKING_OK 0x2UL

#define FW_DEFAULT_TARGET "/usr/lib/softhsm/libsofthsm2.so"

typedef struct {
  CK_RV (*CreateMutex)(void **);
  CK_RV (*DestroyMutex)(void *);
  CK_RV (*LockMutex)(void *);
  CK_RV (*UnlockMutex)(void *);
  CK_ULONG flags;
  void *pReserved;
} fw_init_args;

enum { M_OK, M_ERROR, M_HANG, M_GONE, M_PIN, M_REMOVED, M_SLOW, M_STALE, M_UNKNOWN };
enum { ST_UNINIT, ST_BUSY, ST_READY };
enum { N_CALLS, N_FORWARDED, N_FAILED, N_HUNG, N_LOGINS, N_MODE_CHANGES, N_COUNTERS };

static _Atomic int g_state = ST_UNINIT;
static _Atomic(const struct fw_list *) g_target;
static _Atomic int g_ctl_fd = -1;
static _Atomic int g_last_mode = M_OK;
static atomic_int g_owns_target; /* this copy's C_Initialize got CKR_OK from the target */
static atomic_ulong g_count[N_COUNTERS];
/* Written only by C_Initialize (state ST_BUSY), read afterwards. */
static char g_target_path[PATH_MAX];
static char g_ctl_path[PATH_MAX];
static char g_logins_path[PATH_MAX + 8];

static void count(int which) { atomic_fetch_add_explicit(&g_count[which], 1, memory_order_relaxed); }

__attribute__((visibility("default"))) CK_ULONG faultwrap_counter(int which) {
  if (which < 0 || which >= N_COUNTERS) return 0;
  return atomic_load(&g_count[which]);
}

/* ---- slow and stale ----------------------------------------------------------------- */

#define FW_SLOW_DEFAULT_MS 50L
#define FW_SLOW_MAX_MS 10000L
static atomic_long g_slow_ms = FW_SLOW_DEFAULT_MS; /* the sleep of slow mode */
static atomic_ulong g_max_opened;                  /* newest session C_OpenSession made */
static atomic_ulong g_stale_upto;                  /* stale mode: sessions up to this one */

/* "slow" is followed by an optional number of milliseconds (rest of the file's 16 bytes). */
static void parse_slow(const char *rest, const char *end) {
  long ms = 0;
  while (rest < end && isspace((unsigned char)*rest)) rest++;
  int digits = 0;
  for (; rest < end && isdigit((unsigned char)*rest) && ms <= FW_SLOW_MAX_MS; rest++, digits++)
    ms = ms * 10 + (*rest - '0');
  atomic_store(&g_slow_ms, !digits ? FW_SLOW_DEFAULT_MS : ms > FW_SLOW_MAX_MS ? FW_SLOW_MAX_MS : ms);
}

/* Entering stale mode: every session opened so far is stale. */
static void enter_stale(void) { atomic_store(&g_stale_upto, atomic_load(&g_max_opened)); }

static int is_stale(CK_ULONG h) {
  return atomic_load(&g_last_mode) == M_STALE && h != 0 && h <= atomic_load(&g_stale_upto);
}

static void note_opened(CK_ULONG h) {
  CK_ULONG seen = atomic_load(&g_max_opened);
  while (h > seen && !atomic_compare_exchange_weak(&g_max_opened, &seen, h)) {}
}

/* ---- the ctl file ------------------------------------------------------------------- */

/* The first word of the file (its start and length in *word, *wlen) as a mode. */
static int parse_mode(const char *b, ssize_t n, const char **word, size_t *wlen) {
  ssize_t i = 0, j;
  while (i < n && isspace((unsigned char)b[i])) i++;
  for (j = i; j < n && !isspace((unsigned char)b[j]) && b[j]; j++) {}
  size_t len = (size_t)(j - i);
  const char *w = b + i;
  *word = w;
  *wlen = len;
#define IS(word) (len == sizeof word - 1 && memcmp(w, word, len) == 0)
  if (len == 0 || IS("ok")) return M_OK;
  if (IS("error")) return M_ERROR;
  if (IS("hang")) return M_HANG;
  if (IS("gone")) return M_GONE;
  if (IS("pin")) return M_PIN;
  if (IS("removed")) return M_REMOVED;
  if (IS("stale")) return M_STALE;
  if (IS("slow")) {
    parse_slow(w + len, b + n);
    return M_SLOW;
  }
#undef IS
  return M_UNKNOWN;
}

static int note_mode(int m, const char *word, size_t wlen) {
  int prev = atomic_exchange(&g_last_mode, m);
  if (prev != m) {
    count(N_MODE_CHANGES);
    if (m == M_STALE) enter_stale();
    if (m == M_UNKNOWN)
      fprintf(stderr, "faultwrap: %s: unknown mode \"%.*s\", acting as ok\n", g_ctl_path,
              (int)wlen, word);
  }
  return m == M_UNKNOWN ? M_OK : m;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int ctl_mode(void) {
  int fd = atomic_load(&g_ctl_fd);
  if (fd < 0) {
    if (!g_ctl_path[0]) return M_OK;
    fd = open(g_ctl_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return note_mode(M_OK, "", 0);
    int none = -1;
    if (!atomic_compare_exchange_strong(&g_ctl_fd, &none, fd)) {
      close(fd); /* another thread opened it first */
      fd = none;
    }
  }
  char buf[16];
  for (int tries = 0;; tries++) {
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) n = 0;
    /* `echo MODE > ctl` truncates before it writes: an empty file right after a mode
     * other than ok is read again before it counts as ok. */
    if (n == 0 && tries < 3 && atomic_load(&g_last_mode) != M_OK) {
      sleep_ms(1);
      continue;
    }
    const char *word;
    size_t wlen;
    int m = parse_mode(buf, n, &word, &wlen);
    return note_mode(m, word, wlen);
  }
}

static void write_logins(CK_ULONG n) {
  if (!g_ctl_path[0]) return;
  char tmp[sizeof g_logins_path + 48];
  snprintf(tmp, sizeof tmp, "%s.%ld.%lu", g_logins_path, (long)getpid(), n);
  /* Concurrent attempts: whoever wrote a value older than the counter writes again, so the
   * file ends with the last count. */
  for (;;) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[32];
    int len = snprintf(line, sizeof line, "%lu\n", n);
    ssize_t w = write(fd, line, (size_t)len);
    close(fd);
    if (w != len || rename(tmp, g_logins_path) != 0) {
      unlink(tmp);
      return;
    }
    CK_ULONG now = atomic_load(&g_count[N_LOGINS]);
    if (now == n) return;
    n = now;
  }
}

/* ---- mode removed (sticky) ----------------------------------------------------------- */

static atomic_int g_removed;           /* a call saw "removed": every call fails until re-init */
static struct timespec g_removed_excused; /* the ctl's mtime when re-initialised under "removed" */

static int ctl_mtime(struct timespec *t) {
  struct stat st;
  if (!g_ctl_path[0] || stat(g_ctl_path, &st) != 0) return -1;
  *t = st.st_mtim;
  return 0;
}

/* The mode to act on given the one the ctl file says. */
static int removed_filter(int m) {
  if (atomic_load(&g_removed)) return M_REMOVED;
  if (m != M_REMOVED) return m;
  struct timespec now;
  if ((g_removed_excused.tv_sec | g_removed_excused.tv_nsec) && ctl_mtime(&now) == 0 &&
      now.tv_sec == g_removed_excused.tv_sec && now.tv_nsec == g_removed_excused.tv_nsec)
    return M_OK; /* the file this copy was re-initialised under: forward */
  atomic_store(&g_removed, 1);
  return M_REMOVED;
}

/* C_Initialize: the copy starts afresh; when it is initialized again (not the first time),
 * a ctl still saying "removed" is excused. */
static void removed_reset(int mode_now) {
  static int initialized_before; /* written only by C_Initialize */
  atomic_store(&g_removed, 0);
  g_removed_excused.tv_sec = g_removed_excused.tv_nsec = 0;
  int again = initialized_before;
  initialized_before = 1;
  if (again && mode_now == M_REMOVED && ctl_mtime(&g_removed_excused) != 0)
    g_removed_excused.tv_sec = g_removed_excused.tv_nsec = 0;
}

/* ---- sessions opened through this copy (max_sessions, closed at C_Finalize) ---------- */

static pthread_mutex_t g_sess_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fw_session { CK_ULONG h, slot; } *g_sess;
static size_t g_nsess, g_sess_room;
static CK_ULONG g_max_sessions; /* 0: no cap; written only by C_Initialize */
static int g_shared;            /* shared=1: never finalize the target; set by C_Initialize */

/* Under g_sess_lock. */
static int sess_add(CK_ULONG h, CK_ULONG slot) {
  if (g_nsess == g_sess_room) {
    size_t room = g_sess_room ? g_sess_room * 2 : 64;
    struct fw_session *p = realloc(g_sess, room * sizeof *p);
    if (!p) return -1;
    g_sess = p;
    g_sess_room = room;
  }
  g_sess[g_nsess].h = h;
  g_sess[g_nsess].slot = slot;
  g_nsess++;
  return 0;
}

/* Under g_sess_lock: forgets session h (all = 0), or every session of slot (all = 1). */
static void sess_remove(CK_ULONG key, int all) {
  size_t k = 0;
  for (size_t i = 0; i < g_nsess; i++)
    if (all ? g_sess[i].slot != key : g_sess[i].h != key) g_sess[k++] = g_sess[i];
  g_nsess = k;
}

/* ---- entering a call ---------------------------------------------------------------- */

/* Functions that ignore the mode: the target's table, or NULL with *rv set. */
static const struct fw_list *fw_ready(CK_RV *rv) {
  count(N_CALLS);
  if (atomic_load(&g_state) != ST_READY) {
    *rv = CKR_CRYPTOKI_NOT_INITIALIZED;
    return NULL;
  }
  return atomic_load(&g_target);
}

/* Everything else: the mode to act on (a hang waited out), or -1 with *rv set. */
static int fw_begin(const struct fw_list **t, CK_RV *rv) {
  if (!(*t = fw_ready(rv))) return -1;
  if (atomic_load(&g_removed)) return M_REMOVED;
  int m = removed_filter(ctl_mode());
  if (m == M_HANG) {
    count(N_HUNG);
    do {
      sleep_ms(10);
      if (atomic_load(&g_state) != ST_READY) {
        *rv = CKR_CRYPTOKI_NOT_INITIALIZED;
        return -1;
      }
    } while ((m = removed_filter(ctl_mode())) == M_HANG);
    *t = atomic_load(&g_target);
  }
  if (m == M_SLOW) sleep_ms(atomic_load(&g_slow_ms));
  return m;
}

/* The error a mode injects for an ordinary function (CKR_OK: forward). */
static CK_RV fw_fault(int m) {
  CK_RV rv = m == M_ERROR                  ? CKR_DEVICE_ERROR
             : m == M_GONE || m == M_REMOVED ? CKR_DEVICE_REMOVED
                                             : CKR_OK;
  count(rv == CKR_OK ? N_FORWARDED : N_FAILED);
  return rv;
}

/* ---- the functions ------------------------------------------------------------------ */

#define FW_DECLARE_S(name, params) static CK_RV fw_##name params;
#define FW_DECLARE_G(name, params, args) static CK_RV fw_##name params;
FW_FUNCTIONS(FW_DECLARE_S, FW_DECLARE_G)

/* Stale mode: the generated functions whose first parameter is `h` take a session. */
#define FW_FIRST(a, ...) a
#define FW_STALE(args) (strncmp(#args, "(h", 2) == 0 && is_stale((CK_ULONG)(FW_FIRST args)))

#define FW_DEFINE_S(name, params)
#define FW_DEFINE_G(name, params, args)              \
  static CK_RV fw_##name params {                     \
    const struct fw_list *t;                          \
    CK_RV rv;                                         \
    int m = fw_begin(&t, &rv);                        \
    if (m < 0) return rv;                             \
    if ((rv = fw_fault(m)) != CKR_OK) return rv;      \
    if (FW_STALE(args)) return CKR_SESSION_HANDLE_INVALID; \
    if (!t->name) return CKR_FUNCTION_NOT_SUPPORTED;  \
    return t->name args;                              \
  }
FW_FUNCTIONS(FW_DEFINE_S, FW_DEFINE_G)

#define FW_ENTRY_S(name, params) .name = fw_##name,
#define FW_ENTRY_G(name, params, args) .name = fw_##name,
static const struct fw_list fw_table = {
    .version = {2, 40},
    FW_FUNCTIONS(FW_ENTRY_S, FW_ENTRY_G)};

static CK_RV fw_C_GetFunctionList(CK_FUNCTION_LIST **pp) {
  if (!pp) return CKR_ARGUMENTS_BAD;
  *pp = (CK_FUNCTION_LIST *)(void *)&fw_table;
  return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST **pp) {
  return fw_C_GetFunctionList(pp);
}

/* Parses "key=value key=value" into the paths; 0, or -1 after a line on stderr. */
static int parse_config(const char *s) {
  snprintf(g_target_path, sizeof g_target_path, "%s", FW_DEFAULT_TARGET);
  char ctl[PATH_MAX] = "";
  g_max_sessions = 0;
  g_shared = 0;
  while (s && *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    if (!*s) break;
    size_t len = strcspn(s, " \t\n");
    const char *eq = memchr(s, '=', len);
    char *dst = NULL;
    if (eq && eq - s == 6 && memcmp(s, "target", 6) == 0) dst = g_target_path;
    else if (eq && eq - s == 3 && memcmp(s, "ctl", 3) == 0) dst = ctl;
    else if (len == 8 && memcmp(s, "shared=1", 8) == 0) {
      g_shared = 1;
      s += len;
      continue;
    } else if (eq && eq - s == 12 && memcmp(s, "max_sessions", 12) == 0) {
      char *end;
      unsigned long n = strtoul(eq + 1, &end, 10);
      if (end != s + len || n == 0) {
        fprintf(stderr, "faultwrap: bad max_sessions in \"%.*s\" (want a number above 0)\n",
                (int)len, s);
        return -1;
      }
      g_max_sessions = n;
      s += len;
      continue;
    }
    size_t vlen = eq ? len - (size_t)(eq + 1 - s) : 0;
    if (!dst || vlen == 0 || vlen >= PATH_MAX) {
      fprintf(stderr,
              "faultwrap: bad configuration item \"%.*s\" (want target=PATH ctl=PATH "
              "max_sessions=N shared=1)\n",
              (int)len, s);
      return -1;
    }
    memcpy(dst, eq + 1, vlen);
    dst[vlen] = 0;
    s += len;
  }
  if (strcmp(ctl, g_ctl_path) != 0) {
    /* A new ctl file: forget the old fd (not closed: a call still blocked in hang mode
     * from before may be reading it). */
    atomic_store(&g_ctl_fd, -1);
    snprintf(g_ctl_path, sizeof g_ctl_path, "%s", ctl);
    snprintf(g_logins_path, sizeof g_logins_path, "%s.logins", ctl);
  }
  atomic_store(&g_last_mode, M_OK);
  return 0;
}

static CK_RV fw_init_target(const char *config) {
  if (parse_config(config) != 0) return CKR_ARGUMENTS_BAD;
  /* Not dlclosed later either: other copies or blocked calls may still use it. */
  void *h = dlopen(g_target_path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "faultwrap: dlopen %s: %s\n", g_target_path, dlerror());
    return CKR_GENERAL_ERROR;
  }
  CK_RV (*gfl)(CK_FUNCTION_LIST **);
  *(void **)&gfl = dlsym(h, "C_GetFunctionList");
  CK_FUNCTION_LIST *list = NULL;
  if (!gfl || gfl(&list) != CKR_OK || !list) {
    fprintf(stderr, "faultwrap: %s: no usable C_GetFunctionList\n", g_target_path);
    return CKR_GENERAL_ERROR;
  }
  const struct fw_list *t = (const struct fw_list *)(const void *)list;
  if (t->version.major < 2 || !t->C_Initialize || !t->C_Finalize) {
    fprintf(stderr, "faultwrap: %s: unusable function list (version %u.%u)\n", g_target_path,
            t->version.major, t->version.minor);
    return CKR_GENERAL_ERROR;
  }
  fw_init_args args = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
  CK_RV rv = t->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    fprintf(stderr, "faultwrap: %s: C_Initialize: 0x%lx\n", g_target_path, rv);
    return rv;
  }
  atomic_store(&g_owns_target, rv == CKR_OK);
  atomic_store(&g_target, t);
  return CKR_OK;
}

static CK_RV fw_C_Initialize(CK_VOID_PTR pInitArgs) {
  count(N_CALLS);
  const fw_init_args *a = pInitArgs;
  const char *config = NULL;
  if (a) {
    int given = !!a->CreateMutex + !!a->DestroyMutex + !!a->LockMutex + !!a->UnlockMutex;
    if (given != 0 && given != 4) return CKR_ARGUMENTS_BAD;
    config = a->pReserved;
  }
  if (!config) config = getenv("FAULTWRAP_ARGS");
  int expect = ST_UNINIT;
  if (!atomic_compare_exchange_strong(&g_state, &expect, ST_BUSY))
    return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  CK_RV rv = fw_init_target(config);
  if (rv == CKR_OK) removed_reset(ctl_mode());
  atomic_store(&g_state, rv == CKR_OK ? ST_READY : ST_UNINIT);
  return rv;
}

static CK_RV fw_C_Finalize(CK_VOID_PTR pReserved) {
  count(N_CALLS);
  if (pReserved) return CKR_ARGUMENTS_BAD;
  int expect = ST_READY;
  if (!atomic_compare_exchange_strong(&g_state, &expect, ST_BUSY))
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv = CKR_OK;
  const struct fw_list *t = atomic_load(&g_target);
  pthread_mutex_lock(&g_sess_lock);
  if (atomic_exchange(&g_owns_target, 0) && !g_shared) {
    count(N_FORWARDED);
    rv = t->C_Finalize(NULL);
  } else if (t->C_CloseSession) {
    /* The target lives on for other copies: this copy's sessions end here. */
    for (size_t i = 0; i < g_nsess; i++) t->C_CloseSession(g_sess[i].h);
  }
  g_nsess = 0;
  pthread_mutex_unlock(&g_sess_lock);
  atomic_store(&g_state, ST_UNINIT);
  return rv;
}

static CK_RV fw_C_GetInfo(CK_VOID_PTR pInfo) {
  CK_RV rv;
  const struct fw_list *t = fw_ready(&rv);
  if (!t) return rv;
  count(N_FORWARDED);
  return t->C_GetInfo ? t->C_GetInfo(pInfo) : CKR_FUNCTION_NOT_SUPPORTED;
}

static CK_RV fw_C_GetSlotList(CK_BYTE tokenPresent, CK_SLOT_ID *pSlotList, CK_ULONG *pulCount) {
  const struct fw_list *t;
  CK_RV rv;
  int m = fw_begin(&t, &rv);
  if (m < 0) return rv;
  if (m == M_GONE && tokenPresent) {
    count(N_FAILED);
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    *pulCount = 0;
    return CKR_OK;
  }
  if ((rv = fw_fault(m)) != CKR_OK) return rv;
  if (!t->C_GetSlotList) return CKR_FUNCTION_NOT_SUPPORTED;
  return t->C_GetSlotList(tokenPresent, pSlotList, pulCount);
}

static CK_RV fw_C_Login(CK_ULONG hSession, CK_ULONG userType, CK_BYTE *pPin, CK_ULONG ulPinLen) {
  const struct fw_list *t;
  CK_RV rv;
  int m = fw_begin(&t, &rv);
  if (m < 0) return rv;
  if (m == M_PIN) {
    count(N_FAILED);
    write_logins(atomic_fetch_add(&g_count[N_LOGINS], 1) + 1);
    return CKR_PIN_INCORRECT;
  }
  if ((rv = fw_fault(m)) != CKR_OK) return rv;
  if (is_stale(hSession)) return CKR_SESSION_HANDLE_INVALID;
  if (!t->C_Login) return CKR_FUNCTION_NOT_SUPPORTED;
  return t->C_Login(hSession, userType, pPin, ulPinLen);
}

/* Stale mode needs to know which sessions are older than the mode. */
static CK_RV fw_C_OpenSession(CK_SLOT_ID s, CK_ULONG flags, void *app, fw_notify notify,
                              CK_ULONG *ph) {
  const struct fw_list *t;
  CK_RV rv;
  int m = fw_begin(&t, &rv);
  if (m < 0) return rv;
  if ((rv = fw_fault(m)) != CKR_OK) return rv;
  if (!t->C_OpenSession) return CKR_FUNCTION_NOT_SUPPORTED;
  /* Held across the target's call, so that the cap is exact under concurrent opens. */
  pthread_mutex_lock(&g_sess_lock);
  if (g_max_sessions && g_nsess >= g_max_sessions) {
    pthread_mutex_unlock(&g_sess_lock);
    count(N_FAILED);
    return CKR_SESSION_COUNT;
  }
  rv = t->C_OpenSession(s, flags, app, notify, ph);
  if (rv == CKR_OK && ph && sess_add(*ph, s) != 0) {
    t->C_CloseSession(*ph);
    rv = CKR_HOST_MEMORY;
  }
  if (rv == CKR_OK && ph) note_opened(*ph);
  pthread_mutex_unlock(&g_sess_lock);
  return rv;
}

static CK_RV fw_C_CloseSession(CK_ULONG h) {
  const struct fw_list *t;
  CK_RV rv;
  int m = fw_begin(&t, &rv);
  if (m < 0) return rv;
  if ((rv = fw_fault(m)) != CKR_OK) return rv;
  if (!t->C_CloseSession) return CKR_FUNCTION_NOT_SUPPORTED;
  pthread_mutex_lock(&g_sess_lock);
  rv = t->C_CloseSession(h);
  if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID) sess_remove(h, 0);
  pthread_mutex_unlock(&g_sess_lock);
  return rv;
}

static CK_RV fw_C_CloseAllSessions(CK_SLOT_ID s) {
  const struct fw_list *t;
  CK_RV rv;
  int m = fw_begin(&t, &rv);
  if (m < 0) return rv;
  if ((rv = fw_fault(m)) != CKR_OK) return rv;
  if (!t->C_CloseAllSessions) return CKR_FUNCTION_NOT_SUPPORTED;
  pthread_mutex_lock(&g_sess_lock);
  rv = t->C_CloseAllSessions(s);
  if (rv == CKR_OK) sess_remove(s, 1);
  pthread_mutex_unlock(&g_sess_lock);
  return rv;
}
