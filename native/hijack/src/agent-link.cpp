// Agent link transport: connect lazily at the first driver call, send hello (+ staging memfd) and the
// physical allocations that already exist, then a receiver thread answers `req` frames. Every failure
// closes the link with one log line; the app carries on exactly as without an agent. Sends from app
// threads are bounded by SO_SNDTIMEO, so a stuck agent cannot hang the program.
#include "agent-link.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "driver-copy.h"
#include "driver.h"
#include "frames.h"
#include "freeze.h"
#include "hash-round.h"
#include "launch-track.h"
#include "log.h"
#include "options.h"
#include "vmm.h"

namespace phos::hijack {
namespace {

// kReconnecting: frozen; the link thread retries the socket until the agent answers again.
enum State { kIdle = 0, kConnecting = 1, kUp = 2, kOff = 3, kReconnecting = 4 };
std::atomic<int> g_state{kIdle};
std::atomic<int> g_fd{-1};
std::mutex g_send_mu;
int g_staging_fd = -1;
constexpr size_t kMaxFrame = 1 << 20;
constexpr int kMaxFds = 16;  // the agent socket's limit per packet

void link_down(const char* why, int err) {
  if (g_state.load() == kReconnecting) return;  // a freeze closed it on purpose
  int expected = kUp;
  if (!g_state.compare_exchange_strong(expected, kOff) && expected != kConnecting) return;
  g_state.store(kOff);
  if (freeze_needs_agent())  // frozen or filling: the link thread reconnects
    PHOS_LOG(info, "agent link closed: %s%s%s; reconnecting", why, err ? ": " : "", err ? strerror(err) : "");
  else
    PHOS_LOG(error, "agent link closed: %s%s%s; continuing without the agent", why, err ? ": " : "",
             err ? strerror(err) : "");
  int fd = g_fd.load();
  if (fd >= 0) shutdown(fd, SHUT_RDWR);  // wakes the receiver, which closes the fd
}

// Sends one packet (and optionally one fd). Returns false and takes the link down on failure.
bool send_frame(const msgpack::Writer& w, int pass_fd) {
  const auto& b = w.bytes();
  msghdr m{};
  iovec io{const_cast<uint8_t*>(b.data()), b.size()};
  m.msg_iov = &io;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    memset(cbuf, 0, sizeof cbuf);
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  std::unique_lock<std::mutex> lk(g_send_mu);
  int fd = g_fd.load();  // under the lock: the receiver closes it under the same lock
  if (fd < 0) return false;
  ssize_t r;
  do r = sendmsg(fd, &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r != static_cast<ssize_t>(b.size())) {
    lk.unlock();
    link_down("send failed", r < 0 ? errno : EMSGSIZE);
    return false;
  }
  return true;
}

void send_alloc(uint64_t id, uint64_t va, uint64_t size, CUmemGenericAllocationHandle h, const char* kind, int dev) {
  int fd = -1;
  CUresult r = PHOS_REAL(cuMemExportToShareableHandle, &fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
  if (r != CUDA_SUCCESS || fd < 0) {
    PHOS_LOG_CAPPED(5, warn, "cannot export allocation %llu as a POSIX fd (CUresult %d): the keeper will not hold it",
                    (unsigned long long)id, (int)r);
    return;
  }
  msgpack::Writer w;
  bool app = strcmp(kind, "slab") != 0;
  frame_begin(w, PHOS_FRAME_ALLOC, (app ? 4 : 3) + (dev > 0 ? 1 : 0));
  w.kv(PHOS_F_ALLOC_ID, id);
  w.kv(PHOS_F_ALLOC_VA, va);
  w.kv(PHOS_F_ALLOC_SIZE, size);
  if (app) w.kv(PHOS_F_ALLOC_KIND, kind);  // an app cuMemCreate handle, not mapped by libphos (va 0)
  if (dev > 0) w.kv(PHOS_F_ALLOC_DEVICE, static_cast<uint64_t>(dev));  // absent = device 0
  send_frame(w, fd);
  close(fd);
}

// ---------------------------------------------------------------------------------------------------
// Ops

void rep_error(uint64_t id, const char* code, const std::string& message) {
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_REP, 3);
  w.kv(PHOS_F_REP_ID, id);
  w.kvb(PHOS_F_REP_OK, false);
  w.str(PHOS_F_REP_ERR);
  w.map(2);
  w.kv("code", code);
  w.kv("message", message);
  send_frame(w, -1);
}

// Makes the region's context current on the agent thread (driver calls need one).
void use_region_context() {
  RegionInfo reg;
  if (!vmm_region(&reg)) return;
  CUcontext cur = nullptr;
  if (PHOS_REAL(cuCtxGetCurrent, &cur) == CUDA_SUCCESS && cur != reg.ctx) PHOS_REAL(cuCtxSetCurrent, reg.ctx);
}

void op_status(uint64_t id) {
  use_region_context();
  Accounting a;
  int r = vmm_accounting(&a);
  if (r && a.region_ok) PHOS_LOG(debug, "status: cuMemGetInfo failed (CUresult %d)", r);
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_REP, 17);
  w.kv(PHOS_F_REP_ID, id);
  w.kvb(PHOS_F_REP_OK, true);
  w.kv("allocations", a.allocations);
  w.kv("bytes", a.alloc_bytes);
  w.kv("chunks", chunks_present());
  w.kv("untrackedBytes", a.passthrough_bytes);
  w.kvb("armed", g_track_armed.load(std::memory_order_relaxed));
  // Beyond the schema (validators ignore unknown fields): the accounting a freeze decides on.
  w.kv("dirtyEstimate", spec_estimate());
  w.kv("slabs", a.slabs);
  w.kv("slabBytes", a.slab_bytes);
  w.kv("appHandles", a.app_handles);
  w.kv("appHandleBytes", a.app_handle_bytes);
  w.kv("internalBytes", a.internal_bytes);
  w.kv("driverUsedBytes", a.driver_used_bytes);
  w.kv("baselineUsedBytes", a.baseline_used_bytes);
  w.kvi("unexplainedBytes", a.unexplained_bytes);
  w.kvb("regionOk", a.region_ok);
  send_frame(w, -1);
}

void op_hash_round(uint64_t id) {
  double t0 = now_ms();
  HashRoundResult hr;
  if (!hash_round(&hr)) {
    rep_error(id, PHOS_ERR_DRIVER_FAILED, std::string(hr.what ? hr.what : "hash round") + ": CUresult " +
                                              std::to_string(static_cast<int>(hr.err)));
    return;
  }
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_REP, 6);
  w.kv(PHOS_F_REP_ID, id);
  w.kvb(PHOS_F_REP_OK, true);
  w.str("changed");
  w.array(static_cast<uint32_t>(hr.changed.size()));
  for (uint32_t c : hr.changed) w.uint(c);
  w.kv("chunks", hr.hashed);
  w.str("ms");
  w.f64(now_ms() - t0);
  w.kv("pointerChunks", hr.pointer_chunks);
  send_frame(w, -1);
}

void handle(const msgpack::Value& f, std::vector<int>& fds) {
  std::string_view t = f.get(PHOS_KEY_TYPE)->s;
  struct CloseLeft {  // fds no op took
    std::vector<int>& v;
    ~CloseLeft() {
      for (int fd : v) close(fd);
      v.clear();
    }
  } close_left{fds};
  if (t == PHOS_FRAME_WELCOME) {
    std::string node(f.get(PHOS_F_WELCOME_NODE)->s);
    PHOS_LOG(info, "agent welcome from node '%s'", node.c_str());
    return;
  }
  if (t != PHOS_FRAME_REQ) {
    PHOS_LOG_CAPPED(5, warn, "agent sent an unexpected '%.*s' frame; ignored", (int)t.size(), t.data());
    return;
  }
  uint64_t id = 0;
  f.get(PHOS_F_REQ_ID)->as_u64(&id);
  std::string_view op = f.get(PHOS_F_REQ_OP)->s;
  PHOS_LOG(debug, "req %llu op %.*s", (unsigned long long)id, (int)op.size(), op.data());
  if (op == PHOS_OP_STATUS) op_status(id);
  else if (op == PHOS_OP_HASH_ROUND) {
    if (freeze_frozen()) rep_error(id, PHOS_ERR_ILLEGAL_STATE, "frozen: device memory is not mapped; thaw first");
    else op_hash_round(id);
  } else if (op == PHOS_OP_SNAPSHOT || op == PHOS_OP_FREEZE || op == PHOS_OP_THAW || op == PHOS_OP_GATE ||
             op == PHOS_OP_ROLLBACK) {
    std::vector<uint64_t> ids, pending, chunks;
    auto list = [&f](const char* k, std::vector<uint64_t>* out) {
      const msgpack::Value* v = f.get(k);
      if (!v || v->type != msgpack::Type::array) return;
      for (auto& it : v->items) {
        uint64_t x;
        if (it.as_u64(&x)) out->push_back(x);
      }
    };
    list(PHOS_F_REQ_ALLOCIDS, &ids);
    list(PHOS_F_REQ_PENDING, &pending);
    list(PHOS_F_REQ_CHUNKS, &chunks);
    freeze_op(op, id, ids, pending, chunks, fds);  // takes the fds
  } else rep_error(id, PHOS_ERR_ILLEGAL_STATE, "op '" + std::string(op) + "' is not implemented by this libphos");
}

// Receives until the link goes down. Returns when the socket closed.
void receive_loop(int fd) {
  std::vector<uint8_t> buf(kMaxFrame);
  for (;;) {
    msghdr m{};
    iovec io{buf.data(), buf.size()};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (g_state.load() == kUp) link_down(n == 0 ? "agent closed the socket" : "receive failed", n == 0 ? 0 : errno);
      return;
    }
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; ++i) {
        int rfd;
        memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.push_back(rfd);
      }
    }
    if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      for (int x : fds) close(x);
      PHOS_LOG_CAPPED(5, warn, "agent frame larger than %zu bytes or with more than %d fds dropped", kMaxFrame, kMaxFds);
      continue;
    }
    msgpack::Value f;
    const char* why = nullptr;
    if (const char* code = frame_decode(buf.data(), static_cast<size_t>(n), &f, &why)) {
      for (int x : fds) close(x);
      PHOS_LOG_CAPPED(5, warn, "bad frame from the agent (%s: %s); ignored", code, why ? why : "");
      uint64_t id;
      const msgpack::Value* t = f.get(PHOS_KEY_TYPE);
      const msgpack::Value* idv = f.get(PHOS_F_REQ_ID);
      if (t && t->is_str() && t->s == PHOS_FRAME_REQ && idv && idv->as_u64(&id))
        rep_error(id, code, why ? why : "bad frame");
      continue;
    }
    handle(f, fds);
  }
}

bool connect_and_hello(const Options& o, bool resume);

// Frozen: retry the agent's socket every 2 ms, backing off to 50 ms, until hello {resume: true} went out.
// Plain nanosleep and connect: a CRIU-restored process resumes this loop as it was (EINTR included).
void reconnect_loop() {
  const Options& o = options();
  long wait_ns = 2 * 1000 * 1000;
  PHOS_LOG(info, "frozen: reconnecting to %s", o.agent_sock);
  for (;;) {
    if (connect_and_hello(o, true)) {
      int c = kConnecting;
      if (g_state.compare_exchange_strong(c, kUp)) {
        PHOS_LOG(info, "agent link up again at %s (resume)", o.agent_sock);
        return;
      }
    }
    int fd = g_fd.exchange(-1);
    if (fd >= 0) close(fd);
    g_state.store(kReconnecting);
    driver_copy_wait(wait_ns);  // serves the agent's shed request meanwhile
    wait_ns = std::min<long>(wait_ns * 3 / 2, 50 * 1000 * 1000);
  }
}

void* receiver(void*) {
  // Libphos's own thread: never captures, never disturbs an app capture.
  for (;;) {
    receive_loop(g_fd.load());
    {
      std::lock_guard<std::mutex> lk(g_send_mu);
      int fd = g_fd.exchange(-1);
      if (fd >= 0) close(fd);
    }
    if (!freeze_needs_agent()) break;
    g_state.store(kReconnecting);
    reconnect_loop();
  }
  return nullptr;
}

void on_fork_child() {
  // The child has no receiver thread and shares the parent's socket: it must not talk to the agent.
  int fd = g_fd.exchange(-1);
  if (fd >= 0) close(fd);
  g_state.store(kOff);
}

bool connect_and_hello(const Options& o, bool resume) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  socklen_t alen = sizeof a;
  size_t n = strnlen(o.agent_sock, sizeof a.sun_path - 1);
  if (o.agent_sock[0] == '@') {
    // "@name": a Linux abstract socket, resolved in this process's network namespace (a process restored
    // on another simulated host reaches that host's agent under the same name). NUL, then the name.
    memcpy(a.sun_path + 1, o.agent_sock + 1, n - 1);
    alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  } else {
    memcpy(a.sun_path, o.agent_sock, n);
  }
  int cr;
  do cr = connect(fd, reinterpret_cast<sockaddr*>(&a), alen);
  while (cr != 0 && errno == EINTR);
  if (cr != 0) {
    if (!resume) PHOS_LOG(info, "no agent at %s (%s): running without one", o.agent_sock, strerror(errno));
    close(fd);
    return false;
  }
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int sz = static_cast<int>(kMaxFrame);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  g_fd.store(fd);
  if (o.staging_bytes && g_staging_fd < 0) {
    g_staging_fd = memfd_create("phos-staging", MFD_CLOEXEC);
    if (g_staging_fd >= 0 && ftruncate(g_staging_fd, static_cast<off_t>(o.staging_bytes)) != 0) {
      close(g_staging_fd);
      g_staging_fd = -1;
    }
  }
  CUdevice dev = 0;
  RegionInfo reg;
  if (vmm_region(&reg)) dev = reg.dev;
  std::vector<std::string> gpus = agent_gpu_uuids();
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_HELLO, (resume ? 7 : 6) + (gpus.empty() ? 0 : 1));
  w.kv(PHOS_F_HELLO_PID, static_cast<uint64_t>(getpid()));
  w.kv(PHOS_F_HELLO_JOB, o.job);
  w.kv(PHOS_F_HELLO_VABASE, o.va_base);
  w.kv(PHOS_F_HELLO_VASIZE, o.va_size);
  w.kv(PHOS_F_HELLO_DEVICE, static_cast<uint64_t>(dev < 0 ? 0 : dev));
  w.kv(PHOS_F_HELLO_STAGINGBYTES, g_staging_fd >= 0 ? o.staging_bytes : 0);
  if (resume) w.kvb(PHOS_F_HELLO_RESUME, true);
  if (!gpus.empty()) {
    w.str(PHOS_F_HELLO_GPUS);
    w.array(static_cast<uint32_t>(gpus.size()));
    for (const std::string& u : gpus) w.str(u);
  }
  g_state.store(kConnecting);
  if (!send_frame(w, g_staging_fd)) return false;
  return true;
}

}  // namespace

void agent_start() {
  if (g_state.load(std::memory_order_acquire) != kIdle) return;
  int expected = kIdle;
  if (!g_state.compare_exchange_strong(expected, kConnecting)) return;
  const Options& o = options();
  if (o.disabled || !o.agent_sock[0] || !connect_and_hello(o, false)) {
    int fd = g_fd.exchange(-1);
    if (fd >= 0) close(fd);
    g_state.store(kOff);
    return;
  }
  pthread_atfork(nullptr, nullptr, on_fork_child);
  {
    // Replay what exists, then go up, both under the VMM lock: a slab created concurrently is either
    // replayed here or announced by its creator after kUp, never both and never neither.
    std::lock_guard<std::mutex> lk(vmm_lock());
    vmm_for_each_physical([](uint64_t id, uint64_t va, uint64_t size, CUmemGenericAllocationHandle h, const char* kind, int dev) {
      send_alloc(id, va, size, h, kind, dev);
    });
    int c = kConnecting;
    if (!g_state.compare_exchange_strong(c, kUp)) {  // a send failed during replay
      int fd = g_fd.exchange(-1);
      if (fd >= 0) close(fd);
      return;
    }
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // app signal handlers never run on our thread
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int r = pthread_create(&th, &attr, receiver, nullptr);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (r != 0) {
    link_down("cannot start the receiver thread", r);
    int fd = g_fd.exchange(-1);
    if (fd >= 0) close(fd);
    return;
  }
  PHOS_LOG(info, "agent link up at %s", o.agent_sock);
}

bool agent_connected() { return g_state.load(std::memory_order_acquire) == kUp; }

void agent_alloc_added(uint64_t id, uint64_t va, uint64_t size, CUmemGenericAllocationHandle h, const char* kind, int dev) {
  if (g_state.load(std::memory_order_acquire) != kUp) return;
  send_alloc(id, va, size, h, kind, dev);
}

void agent_alloc_removed(uint64_t id) {
  if (g_state.load(std::memory_order_acquire) != kUp) return;
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_FREE, 1);
  w.kv(PHOS_F_FREE_ID, id);
  send_frame(w, -1);
}

void agent_send_event(const char* kind, const std::vector<uint32_t>& chunks) {
  if (g_state.load(std::memory_order_acquire) != kUp) return;
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_EVENT, 2);
  w.kv(PHOS_F_EVENT_KIND, kind);
  w.str(PHOS_F_EVENT_CHUNKS);
  w.array(static_cast<uint32_t>(chunks.size()));
  for (uint32_t c : chunks) w.uint(c);
  send_frame(w, -1);
}

bool agent_send(const msgpack::Writer& w, int fd) { return send_frame(w, fd); }

void agent_rep_error(uint64_t id, const char* code, const std::string& message) { rep_error(id, code, message); }

void agent_close_for_freeze() {
  g_state.store(kReconnecting);
  int fd = g_fd.load();
  if (fd >= 0) shutdown(fd, SHUT_RDWR);  // the receive loop ends; the link thread starts reconnecting
}

std::vector<std::string> agent_gpu_uuids() {
  std::vector<std::string> out;
  int n = 0;
  if (PHOS_REAL(cuDeviceGetCount, &n) != CUDA_SUCCESS) return out;
  for (int i = 0; i < n && i < 64; ++i) {
    CUdevice d = 0;
    CUuuid u{};
    if (PHOS_REAL(cuDeviceGet, &d, i) != CUDA_SUCCESS || PHOS_REAL(cuDeviceGetUuid_v2, &u, d) != CUDA_SUCCESS) return {};
    const auto* b = reinterpret_cast<const unsigned char*>(u.bytes);
    char buf[48];
    snprintf(buf, sizeof buf, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    out.push_back(buf);
  }
  return out;
}

}  // namespace phos::hijack
