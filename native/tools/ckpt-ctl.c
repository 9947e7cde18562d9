/* ckpt-ctl: drives the CUDA driver's process-checkpoint API on another process, one action per call,
 * and prints one JSON line with the outcome and its duration. It is the baseline's tool (what NVIDIA's
 * cuda-checkpoint does) and the test harness's way to lock/checkpoint a process on cudasim.
 *   ckpt-ctl [--timeout-ms N] state|lock|checkpoint|restore|unlock|restore-tid|suspend|resume PID
 * suspend = lock + checkpoint, resume = restore + unlock. Exit 0 on success, 1 on a driver error,
 * 2 on bad usage. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static struct {
  lock_fn lock; ckpt_fn checkpoint; restore_fn restore; unlock_fn unlock; state_fn state; tid_fn tid;
  errname_fn errname; init_fn init;
} drv;

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
  if (!strcmp(action, "restore")) { CUcheckpointRestoreArgs a; memset(&a, 0, sizeof a); return drv.restore(pid, &a); }
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
  fprintf(stderr, "usage: ckpt-ctl [--timeout-ms N] state|lock|checkpoint|restore|unlock|restore-tid|suspend|resume PID\n");
  return 2;
}

int main(int argc, char **argv) {
  unsigned timeout_ms = 0;
  int i = 1;
  if (i + 1 < argc && !strcmp(argv[i], "--timeout-ms")) { timeout_ms = (unsigned)strtoul(argv[i + 1], NULL, 10); i += 2; }
  if (argc - i != 2) return usage();
  const char *action = argv[i];
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
  if (!drv.lock || !drv.checkpoint || !drv.restore || !drv.unlock || !drv.state || !drv.tid) {
    fprintf(stderr, "ckpt-ctl: this libcuda.so.1 has no process checkpoint API (driver >= 570 needed)\n");
    return 1;
  }
  if (drv.init) drv.init(0);
  /* The compound actions keep the two driver calls back to back, as a suspend/resume would. */
  const char *steps[2] = {action, NULL};
  if (!strcmp(action, "suspend")) { steps[0] = "lock"; steps[1] = "checkpoint"; }
  if (!strcmp(action, "resume")) { steps[0] = "restore"; steps[1] = "unlock"; }
  int status = 0;
  for (int s = 0; s < 2 && steps[s] && status == 0; s++) {
    char extra[128] = "";
    double t0 = now_ms();
    CUresult rc = do_action(steps[s], (int)pid, timeout_ms, extra, sizeof extra);
    status = report(steps[s], (int)pid, rc, now_ms() - t0, extra);
  }
  return status;
}
