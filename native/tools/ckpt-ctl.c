/* ckpt-ctl: drives the CUDA driver's process-checkpoint API on another process, one action per call,
 * and prints one JSON line with the outcome and its duration. It is the baseline's tool (what NVIDIA's
 * cuda-checkpoint does) and the test harness's way to lock/checkpoint a process on cudasim.
 *   ckpt-ctl [--timeout-ms N] [--gpu-map OLD=NEW[,OLD=NEW...]]
 *            state|lock|checkpoint|restore|unlock|restore-tid|suspend|resume PID
 * suspend = lock + checkpoint, resume = restore + unlock. Exit 0 on success, 1 on a driver error,
 * 2 on bad usage.
 * --gpu-map (restore/resume only) restores onto other GPUs: CUcheckpointRestoreArgs.gpuPairs, one pair
 * per OLD=NEW. Each side is a device ordinal as THIS process sees it (its CUDA_VISIBLE_DEVICES applies)
 * or a GPU UUID, "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (dashes and the GPU- prefix optional; a
 * shorter prefix must match exactly one of this process's GPUs). Driver 580 wants every GPU the target
 * sees mapped, else CUDA_ERROR_INVALID_VALUE. */
#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <cuda.h>

typedef CUresult (*lock_fn)(int, CUcheckpointLockArgs *);
typedef CUresult (*ckpt_fn)(int, CUcheckpointCheckpointArgs *);
typedef CUresult (*restore_fn)(int, CUcheckpointRestoreArgs *);
typedef CUresult (*unlock_fn)(int, CUcheckpointUnlockArgs *);
typedef CUresult (*state_fn)(int, CUprocessState *);
typedef CUresult (*tid_fn)(int, int *);
typedef CUresult (*errname_fn)(CUresult, const char **);
typedef CUresult (*init_fn)(unsigned);
typedef CUresult (*count_fn)(int *);
typedef CUresult (*get_fn)(CUdevice *, int);
typedef CUresult (*uuid_fn)(CUuuid *, CUdevice);

static struct {
  lock_fn lock; ckpt_fn checkpoint; restore_fn restore; unlock_fn unlock; state_fn state; tid_fn tid;
  errname_fn errname; init_fn init; count_fn count; get_fn get; uuid_fn uuid;
} drv;

#define MAX_PAIRS 64
static CUcheckpointGpuPair g_pairs[MAX_PAIRS];
static unsigned g_npairs;

static void uuid_text(const CUuuid *u, char *out, size_t len) {
  const unsigned char *b = (const unsigned char *)u->bytes;
  snprintf(out, len, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* One side of OLD=NEW: an ordinal of this process, a full UUID, or a UUID prefix unique among this
 * process's GPUs. 0 on success; prints why not and returns -1. */
static int resolve_gpu(const char *spec, CUuuid *out) {
  char hex[64];
  size_t n = 0;
  const char *p = spec;
  if (!strncasecmp(p, "GPU-", 4)) p += 4;
  else if (*p && strspn(p, "0123456789") == strlen(p)) {
    CUdevice dev;
    if (!drv.get || !drv.uuid || drv.get(&dev, atoi(p)) != CUDA_SUCCESS || drv.uuid(out, dev) != CUDA_SUCCESS) {
      fprintf(stderr, "ckpt-ctl: --gpu-map: this process has no device %s\n", spec);
      return -1;
    }
    return 0;
  }
  for (; *p; p++) {
    if (*p == '-') continue;
    if (!isxdigit((unsigned char)*p) || n + 1 >= sizeof hex) {
      fprintf(stderr, "ckpt-ctl: --gpu-map: %s is neither a device ordinal nor a GPU UUID\n", spec);
      return -1;
    }
    hex[n++] = (char)tolower((unsigned char)*p);
  }
  hex[n] = 0;
  if (n == 32) {
    for (int i = 0; i < 16; i++) {
      char byte[3] = {hex[2 * i], hex[2 * i + 1], 0};
      out->bytes[i] = (char)strtoul(byte, NULL, 16);
    }
    return 0;
  }
  int count = 0, found = 0;
  if (n == 0 || !drv.count || !drv.get || !drv.uuid || drv.count(&count) != CUDA_SUCCESS) count = 0;
  for (int i = 0; i < count; i++) {
    CUdevice dev;
    CUuuid u;
    char text[64], plain[40];
    size_t k = 0;
    if (drv.get(&dev, i) != CUDA_SUCCESS || drv.uuid(&u, dev) != CUDA_SUCCESS) continue;
    uuid_text(&u, text, sizeof text);
    for (const char *t = text + 4; *t; t++)
      if (*t != '-') plain[k++] = *t;
    plain[k] = 0;
    if (strncmp(plain, hex, n) == 0) {
      *out = u;
      found++;
    }
  }
  if (found != 1) {
    fprintf(stderr, "ckpt-ctl: --gpu-map: %s matches %s of this process's GPUs\n", spec, found ? "several" : "none");
    return -1;
  }
  return 0;
}

static int parse_gpu_map(const char *arg) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", arg);
  for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(item, '=');
    if (!eq || g_npairs >= MAX_PAIRS) {
      fprintf(stderr, "ckpt-ctl: --gpu-map: expected OLD=NEW, got %s\n", item);
      return -1;
    }
    *eq = 0;
    if (resolve_gpu(item, &g_pairs[g_npairs].oldUuid) || resolve_gpu(eq + 1, &g_pairs[g_npairs].newUuid)) return -1;
    g_npairs++;
  }
  if (!g_npairs) {
    fprintf(stderr, "ckpt-ctl: --gpu-map: empty map\n");
    return -1;
  }
  return 0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *state_name(CUprocessState s) {
  switch (s) {
    case CU_PROCESS_STATE_RUNNING: return "running";
    case CU_PROCESS_STATE_LOCKED: return "locked";
    case CU_PROCESS_STATE_CHECKPOINTED: return "checkpointed";
    case CU_PROCESS_STATE_FAILED: return "failed";
  }
  return "unknown";
}

static int report(const char *action, int pid, CUresult rc, double ms, const char *extra) {
  const char *name = "?";
  if (drv.errname) drv.errname(rc, &name);
  printf("{\"action\":\"%s\",\"pid\":%d,\"ok\":%s,\"result\":%d,\"error\":\"%s\",\"ms\":%.3f%s}\n", action, pid,
         rc == CUDA_SUCCESS ? "true" : "false", (int)rc, rc == CUDA_SUCCESS ? "" : name, ms, extra ? extra : "");
  return rc == CUDA_SUCCESS ? 0 : 1;
}

static CUresult do_action(const char *action, int pid, unsigned timeout_ms, char *extra, size_t extra_len) {
  if (!strcmp(action, "lock")) {
    CUcheckpointLockArgs a; memset(&a, 0, sizeof a); a.timeoutMs = timeout_ms;
    return drv.lock(pid, &a);
  }
  if (!strcmp(action, "checkpoint")) { CUcheckpointCheckpointArgs a; memset(&a, 0, sizeof a); return drv.checkpoint(pid, &a); }
  if (!strcmp(action, "restore")) {
    CUcheckpointRestoreArgs a;
    memset(&a, 0, sizeof a);
    if (g_npairs) {
      a.gpuPairs = g_pairs;
      a.gpuPairsCount = g_npairs;
      size_t off = (size_t)snprintf(extra, extra_len, ",\"gpu_pairs\":[");
      for (unsigned i = 0; i < g_npairs && off < extra_len; i++) {
        char o[64], n[64];
        uuid_text(&g_pairs[i].oldUuid, o, sizeof o);
        uuid_text(&g_pairs[i].newUuid, n, sizeof n);
        off += (size_t)snprintf(extra + off, extra_len - off, "%s{\"old\":\"%s\",\"new\":\"%s\"}", i ? "," : "", o, n);
      }
      if (off < extra_len) snprintf(extra + off, extra_len - off, "]");
    }
    return drv.restore(pid, &a);
  }
  if (!strcmp(action, "unlock")) { CUcheckpointUnlockArgs a; memset(&a, 0, sizeof a); return drv.unlock(pid, &a); }
  if (!strcmp(action, "state")) {
    CUprocessState s = CU_PROCESS_STATE_FAILED;
    CUresult rc = drv.state(pid, &s);
    if (rc == CUDA_SUCCESS) snprintf(extra, extra_len, ",\"state\":\"%s\"", state_name(s));
    return rc;
  }
  if (!strcmp(action, "restore-tid")) {
    int tid = 0;
    CUresult rc = drv.tid(pid, &tid);
    if (rc == CUDA_SUCCESS) snprintf(extra, extra_len, ",\"tid\":%d", tid);
    return rc;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

static int usage(void) {
  fprintf(stderr, "usage: ckpt-ctl [--timeout-ms N] [--gpu-map OLD=NEW[,OLD=NEW...]] "
                  "state|lock|checkpoint|restore|unlock|restore-tid|suspend|resume PID\n"
                  "  --gpu-map (restore, resume): OLD/NEW are device ordinals of this process or GPU UUIDs\n");
  return 2;
}

int main(int argc, char **argv) {
  unsigned timeout_ms = 0;
  const char *gpu_map = NULL;
  int i = 1;
  for (;;) {
    if (i + 1 < argc && !strcmp(argv[i], "--timeout-ms")) { timeout_ms = (unsigned)strtoul(argv[i + 1], NULL, 10); i += 2; }
    else if (i + 1 < argc && !strcmp(argv[i], "--gpu-map")) { gpu_map = argv[i + 1]; i += 2; }
    else break;
  }
  if (argc - i != 2) return usage();
  const char *action = argv[i];
  if (gpu_map && strcmp(action, "restore") && strcmp(action, "resume")) return usage();
  char *end = NULL;
  long pid = strtol(argv[i + 1], &end, 10);
  if (!end || *end || pid <= 0) return usage();
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "ckpt-ctl: cannot load libcuda.so.1: %s\n", dlerror()); return 1; }
  drv.lock = (lock_fn)dlsym(lib, "cuCheckpointProcessLock");
  drv.checkpoint = (ckpt_fn)dlsym(lib, "cuCheckpointProcessCheckpoint");
  drv.restore = (restore_fn)dlsym(lib, "cuCheckpointProcessRestore");
  drv.unlock = (unlock_fn)dlsym(lib, "cuCheckpointProcessUnlock");
  drv.state = (state_fn)dlsym(lib, "cuCheckpointProcessGetState");
  drv.tid = (tid_fn)dlsym(lib, "cuCheckpointProcessGetRestoreThreadId");
  drv.errname = (errname_fn)dlsym(lib, "cuGetErrorName");
  drv.init = (init_fn)dlsym(lib, "cuInit");
  drv.count = (count_fn)dlsym(lib, "cuDeviceGetCount");
  drv.get = (get_fn)dlsym(lib, "cuDeviceGet");
  drv.uuid = (uuid_fn)dlsym(lib, "cuDeviceGetUuid_v2");
  if (!drv.uuid) drv.uuid = (uuid_fn)dlsym(lib, "cuDeviceGetUuid");
  if (!drv.lock || !drv.checkpoint || !drv.restore || !drv.unlock || !drv.state || !drv.tid) {
    fprintf(stderr, "ckpt-ctl: this libcuda.so.1 has no process checkpoint API (driver >= 570 needed)\n");
    return 1;
  }
  if (drv.init) drv.init(0);
  if (gpu_map && parse_gpu_map(gpu_map)) return 2;
  /* The compound actions keep the two driver calls back to back, as a suspend/resume would. */
  const char *steps[2] = {action, NULL};
  if (!strcmp(action, "suspend")) { steps[0] = "lock"; steps[1] = "checkpoint"; }
  if (!strcmp(action, "resume")) { steps[0] = "restore"; steps[1] = "unlock"; }
  int status = 0;
  for (int s = 0; s < 2 && steps[s] && status == 0; s++) {
    char extra[8192] = "";
    double t0 = now_ms();
    CUresult rc = do_action(steps[s], (int)pid, timeout_ms, extra, sizeof extra);
    status = report(steps[s], (int)pid, rc, now_ms() - t0, extra);
  }
  return status;
}
