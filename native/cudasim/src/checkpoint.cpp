// cuCheckpointProcess*: controller side (any process) and target side (the helper thread). See
// checkpoint.h for the channel. States and moves, as documented for the real driver:
//   RUNNING -Lock-> LOCKED -Checkpoint-> CHECKPOINTED -Restore-> LOCKED -Unlock-> RUNNING
// any other move is CUDA_ERROR_ILLEGAL_STATE; a Lock that times out leaves the process RUNNING.
#include "checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint-memory.h"
#include "gate.h"
#include "internal.h"
#include "log.h"
#include "options.h"
#include "stream.h"

namespace phos::cudasim::checkpoint {
namespace {

constexpr char kHelperName[] = "cudasim-ctl";  // also how controllers find the helper

// Wire values of the request (si_value bits 0-7). Never renumber: a controller and a target may
// come from different builds.
enum class Cmd : uint8_t { get_state = 1, lock = 2, checkpoint = 3, restore = 4, unlock = 5 };

int ctl_signal() { return SIGRTMAX - 3; }

uint64_t encode(Cmd cmd, uint32_t nonce, uint32_t timeout_ms) {
  return static_cast<uint64_t>(cmd) | (uint64_t{nonce & 0xffffff} << 8) | (uint64_t{timeout_ms} << 32);
}

std::string reply_name(uint32_t nonce) {
  char buf[64];
  snprintf(buf, sizeof buf, "/cudasim-ctl.%06x", nonce & 0xffffff);
  return options().ctl_dir + buf;
}

// ---------------------------------------------------------------------------------------------
// Target side
std::atomic<int> g_state{CU_PROCESS_STATE_RUNNING};

CUresult do_lock(uint32_t timeout_ms) {
  if (g_state.load() != CU_PROCESS_STATE_RUNNING) return CUDA_ERROR_ILLEGAL_STATE;
  gate::Deadline deadline;
  if (timeout_ms) deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (!gate::close(deadline)) return CUDA_ERROR_TIMEOUT;
  if (!wait_all_streams_idle(deadline)) {  // submitted work, stream callbacks included, must finish
    gate::open();
    return CUDA_ERROR_TIMEOUT;
  }
  g_state.store(CU_PROCESS_STATE_LOCKED);
  return CUDA_SUCCESS;
}

CUresult do_checkpoint() {
  if (g_state.load() != CU_PROCESS_STATE_LOCKED) return CUDA_ERROR_ILLEGAL_STATE;
  CUresult r = save_device_memory();
  if (r == CUDA_SUCCESS) g_state.store(CU_PROCESS_STATE_CHECKPOINTED);
  return r;
}

// GPU pairs arrive in <ctl_dir>/cudasim-ctl.NONCE.req: `count` records of old UUID, new UUID (16
// bytes each), written by the controller before it signals. A bad map leaves the process CHECKPOINTED.
CUresult read_pairs(uint32_t nonce, uint32_t count, std::vector<CUuuid> *olds, std::vector<CUuuid> *news) {
  std::string path = reply_name(nonce) + ".req";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  unlink(path.c_str());
  if (fd < 0) {
    CUSIM_ERROR("restore: GPU pairs file %s: %s", path.c_str(), strerror(errno));
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::vector<CUuuid> buf(2 * size_t{count} + 1);
  ssize_t want = static_cast<ssize_t>(2 * sizeof(CUuuid) * count), got = 0;
  for (ssize_t n; got <= want; got += n) {
    n = read(fd, reinterpret_cast<char *>(buf.data()) + got, sizeof(CUuuid) * buf.size() - got);
    if (n < 0 && errno == EINTR) n = 0;
    else if (n <= 0) break;
  }
  close(fd);
  if (got != want) return CUDA_ERROR_INVALID_VALUE;
  for (uint32_t i = 0; i < count; i++) {
    olds->push_back(buf[2 * i]);
    news->push_back(buf[2 * i + 1]);
  }
  return CUDA_SUCCESS;
}

CUresult do_restore(uint32_t nonce, uint32_t pairs) {
  std::vector<CUuuid> olds, news;
  CUresult pr = pairs ? read_pairs(nonce, pairs, &olds, &news) : CUDA_SUCCESS;
  if (g_state.load() != CU_PROCESS_STATE_CHECKPOINTED) return CUDA_ERROR_ILLEGAL_STATE;
  if (pr != CUDA_SUCCESS) return pr;
  if (pairs) {
    if (CUresult r = remap_devices(olds.data(), news.data(), pairs)) return r;
  }
  CUresult r = restore_device_memory();
  g_state.store(r == CUDA_SUCCESS ? CU_PROCESS_STATE_LOCKED : CU_PROCESS_STATE_FAILED);
  return r;
}

CUresult do_unlock() {
  if (g_state.load() != CU_PROCESS_STATE_LOCKED) return CUDA_ERROR_ILLEGAL_STATE;
  g_state.store(CU_PROCESS_STATE_RUNNING);
  gate::open();
  return CUDA_SUCCESS;
}

// `arg`: the lock timeout (ms) for lock, the GPU pair count for restore.
CUresult dispatch(Cmd cmd, uint32_t arg, uint32_t nonce) {
  switch (cmd) {
    case Cmd::get_state: return CUDA_SUCCESS;
    case Cmd::lock: return do_lock(arg);
    case Cmd::checkpoint: return do_checkpoint();
    case Cmd::restore: return do_restore(nonce, arg);
    case Cmd::unlock: return do_unlock();
  }
  return CUDA_ERROR_INVALID_VALUE;
}

void write_reply(uint32_t nonce, CUresult result) {
  std::string path = reply_name(nonce), tmp = path + ".tmp";
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d %d\n", static_cast<int>(result), g_state.load());
  int fd = open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, buf, n) != n) {
    CUSIM_ERROR("cannot write checkpoint reply %s: %s", tmp.c_str(), strerror(errno));
    if (fd >= 0) close(fd);
    return;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0)
    CUSIM_ERROR("cannot publish checkpoint reply %s: %s", path.c_str(), strerror(errno));
}

void helper_loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, ctl_signal());
  for (;;) {
    siginfo_t si;
    if (sigwaitinfo(&set, &si) < 0) continue;  // EINTR, e.g. after a CRIU restore
    if (si.si_code != SI_QUEUE) continue;
    auto v = reinterpret_cast<uint64_t>(si.si_value.sival_ptr);
    auto cmd = static_cast<Cmd>(v & 0xff);
    uint32_t nonce = static_cast<uint32_t>(v >> 8) & 0xffffff;
    CUresult r = dispatch(cmd, static_cast<uint32_t>(v >> 32), nonce);
    CUSIM_INFO("checkpoint request %d from pid %d: %d, state %d", static_cast<int>(cmd),
               static_cast<int>(si.si_pid), static_cast<int>(r), g_state.load());
    write_reply(nonce, r);
  }
}

// ---------------------------------------------------------------------------------------------
// Controller side

// The target's helper tid, as this process sees it; -1 if pid is not a cudasim process.
int find_helper(int pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR *d = opendir(dir.c_str());
  if (!d) return -1;
  int tid = -1;
  while (dirent *e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char comm[32] = {0};
    std::string path = dir + "/" + e->d_name + "/comm";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, comm, sizeof comm - 1);
    close(fd);
    if (n > 0 && strncmp(comm, kHelperName, sizeof kHelperName - 1) == 0 && comm[sizeof kHelperName - 1] == '\n') {
      tid = atoi(e->d_name);
      break;
    }
  }
  closedir(d);
  return tid;
}

bool send(int pid, int tid, uint64_t value) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = ctl_signal();
  si.si_code = SI_QUEUE;
  si.si_pid = getpid();
  si.si_uid = getuid();
  si.si_value.sival_ptr = reinterpret_cast<void *>(value);
  return syscall(SYS_rt_tgsigqueueinfo, pid, tid, ctl_signal(), &si) == 0;
}

// Reads "result state" from the reply; false while it is not there yet.
bool read_reply(const std::string &path, CUresult *result, int *state) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[64] = {0};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  unlink(path.c_str());
  int r = -1, s = -1;
  if (n <= 0 || sscanf(buf, "%d %d", &r, &s) != 2) {
    *result = CUDA_ERROR_UNKNOWN;
    return true;
  }
  *result = static_cast<CUresult>(r);
  *state = s;
  return true;
}

std::string target_path(int pid, uint32_t nonce) {
  // Through the target's root, so a target in its own mount namespace (phos run) is reached.
  std::string via_root = "/proc/" + std::to_string(pid) + "/root" + reply_name(nonce);
  return access(("/proc/" + std::to_string(pid) + "/root/").c_str(), X_OK) == 0 ? via_root
                                                                               : reply_name(nonce);
}

uint32_t make_nonce() {
  uint32_t n = 0;
  if (getrandom(&n, sizeof n, GRND_NONBLOCK) != sizeof n)
    n = static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^ getpid();
  return n & 0xffffff;
}

// Sends one request and waits for its reply. Waits as long as the target lives, except a Lock with
// a timeout, which gives up a while after it (a stopped target never answers).
CUresult request(int pid, Cmd cmd, uint32_t timeout_ms, int *state_out,
                 const CUcheckpointGpuPair *pairs = nullptr) {
  if (pid <= 0) return CUDA_ERROR_INVALID_VALUE;
  int tid = find_helper(pid);
  if (tid < 0) return CUDA_ERROR_INVALID_VALUE;  // no such process, or no initialised cudasim in it
  uint32_t nonce = make_nonce();
  std::string path = target_path(pid, nonce);
  unlink(path.c_str());
  if (pairs) {  // restore: timeout_ms carries the pair count
    std::string req = path + ".req";
    int fd = open(req.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    size_t n = sizeof(CUcheckpointGpuPair) * timeout_ms;
    static_assert(sizeof(CUcheckpointGpuPair) == 2 * sizeof(CUuuid));
    bool ok = fd >= 0 && write(fd, pairs, n) == static_cast<ssize_t>(n);
    if (fd >= 0) close(fd);
    if (!ok) {
      CUSIM_ERROR("cannot pass GPU pairs to pid %d through %s: %s", pid, req.c_str(), strerror(errno));
      unlink(req.c_str());
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  if (!send(pid, tid, encode(cmd, nonce, timeout_ms))) return CUDA_ERROR_INVALID_VALUE;
  auto start = std::chrono::steady_clock::now();
  auto give_up = start + std::chrono::milliseconds(timeout_ms) + std::chrono::seconds(10);
  auto nap = std::chrono::microseconds(50);
  for (;;) {
    CUresult r;
    int state = -1;
    if (read_reply(path, &r, &state)) {
      if (state_out) *state_out = state;
      return r;
    }
    if (kill(pid, 0) != 0 && errno == ESRCH) return CUDA_ERROR_INVALID_VALUE;  // target died
    if (cmd == Cmd::lock && timeout_ms && std::chrono::steady_clock::now() > give_up)
      return CUDA_ERROR_TIMEOUT;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(2000));
  }
}

}  // namespace

void start_helper() {
  // Block the control signal before creating the thread so it inherits the mask: a signal that
  // arrived before the helper blocked it itself would kill the process (default action).
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, ctl_signal());
  pthread_sigmask(SIG_BLOCK, &set, &old);
  std::thread helper(helper_loop);
  // Named here, before cuInit returns: controllers find the helper by name, and a name the thread set
  // itself could still be missing when the app already tells someone it is ready (seen in CI).
  pthread_setname_np(helper.native_handle(), kHelperName);
  helper.detach();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace phos::cudasim::checkpoint

using namespace phos::cudasim::checkpoint;

CUresult cuCheckpointProcessGetState(int pid, CUprocessState *state) {
  if (!state) return CUDA_ERROR_INVALID_VALUE;
  int s = -1;
  CUresult r = request(pid, Cmd::get_state, 0, &s);
  if (r == CUDA_SUCCESS) *state = static_cast<CUprocessState>(s);
  return r;
}

CUresult cuCheckpointProcessLock(int pid, CUcheckpointLockArgs *args) {
  return request(pid, Cmd::lock, args ? args->timeoutMs : 0, nullptr);
}

CUresult cuCheckpointProcessCheckpoint(int pid, CUcheckpointCheckpointArgs *) {
  return request(pid, Cmd::checkpoint, 0, nullptr);
}

// GPU pairs (CUDA 13.0 args): old UUID -> new UUID for every device the target sees, else
// CUDA_ERROR_INVALID_VALUE (as driver 580); the target's ordinals then name the new sim GPUs.
CUresult cuCheckpointProcessRestore(int pid, CUcheckpointRestoreArgs *args) {
  unsigned count = args ? args->gpuPairsCount : 0;
  if (count && !args->gpuPairs) return CUDA_ERROR_INVALID_VALUE;
  if (count > 1024) return CUDA_ERROR_INVALID_VALUE;
  return request(pid, Cmd::restore, count, nullptr, count ? args->gpuPairs : nullptr);
}

CUresult cuCheckpointProcessUnlock(int pid, CUcheckpointUnlockArgs *) {
  return request(pid, Cmd::unlock, 0, nullptr);
}

CUresult cuCheckpointProcessGetRestoreThreadId(int pid, int *tid) {
  if (!tid || pid <= 0) return CUDA_ERROR_INVALID_VALUE;
  int t = find_helper(pid);
  if (t < 0) return CUDA_ERROR_INVALID_VALUE;
  *tid = t;
  return CUDA_SUCCESS;
}
