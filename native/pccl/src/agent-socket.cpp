// Agent socket server (see agent-socket.h). Threads: JS calls agentSend/agentClose directly (sendmsg
// and shutdown are safe beside the poll thread); only the poll thread accepts, receives, and drops a
// connection from the table; a connection's fd is closed when its last user lets go, so a send racing
// a close never writes into a reused fd number. Every connection ends with exactly one 'closed' event.
#include "agent-socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "js.h"

namespace phos::pccl {

namespace {

constexpr size_t kMaxPacket = size_t{1} << 20;
constexpr size_t kMaxFds = 16;
constexpr int kSendWaitMs = 1000;

// "@name" is a Linux abstract socket: no file, one name space per network namespace (agents of several
// simulated hosts on one machine each own "@phos-agent"). Anything else is a filesystem path.
bool is_abstract(const std::string& path) { return !path.empty() && path[0] == '@'; }

// Fills a for path; returns the address length bind/connect take.
socklen_t make_addr(const std::string& path, sockaddr_un* a) {
  *a = sockaddr_un{};
  a->sun_family = AF_UNIX;
  if (!is_abstract(path)) {
    std::memcpy(a->sun_path, path.c_str(), path.size());
    return sizeof *a;
  }
  a->sun_path[0] = '\0';  // abstract: the name follows the NUL, its length is in addrlen (no terminator)
  std::memcpy(a->sun_path + 1, path.data() + 1, path.size() - 1);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());  // + NUL - '@'
}

struct Conn {
  int fd = -1;
  uint32_t id = 0;
  std::atomic<bool> closing{false};
  ~Conn() {
    if (fd >= 0) close(fd);
  }
};

enum class EventType { connect, packet, closed };

struct Event {
  EventType type = EventType::packet;
  uint32_t conn = 0;
  int32_t pid = 0;
  uint32_t uid = 0, gid = 0;
  std::vector<uint8_t> bytes;
  std::vector<int> fds;
  std::string reason;
};

void close_fds(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

void call_js(Napi::Env env, Napi::Function cb, std::nullptr_t*, Event* ev) {
  std::unique_ptr<Event> owned(ev);
  if (env == nullptr || cb.IsEmpty()) {  // the server is being torn down: the fds are nobody's now
    close_fds(ev->fds);
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("conn", ev->conn);
  switch (ev->type) {
    case EventType::connect:
      o.Set("type", "connect");
      o.Set("pid", ev->pid);
      o.Set("uid", ev->uid);
      o.Set("gid", ev->gid);
      break;
    case EventType::packet: {
      o.Set("type", "packet");
      o.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, ev->bytes.data(), ev->bytes.size()));
      Napi::Array fds = Napi::Array::New(env, ev->fds.size());
      for (uint32_t i = 0; i < ev->fds.size(); ++i) fds.Set(i, ev->fds[i]);
      o.Set("fds", fds);
      break;
    }
    case EventType::closed:
      o.Set("type", "closed");
      o.Set("closed", true);
      o.Set("reason", ev->reason);
      break;
  }
  try {
    cb.Call({o});
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();  // surfaces as an uncaught exception, like any event handler's
  }
}

using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Event, call_js>;

class Server {
 public:
  Server(std::string path, int listen_fd, int wake_fd, ino_t ino, Tsfn tsfn)
      : path_(std::move(path)), listen_fd_(listen_fd), wake_fd_(wake_fd), ino_(ino), tsfn_(tsfn) {
    thread_ = std::thread([this] { run(); });
  }

  // Stops the thread and ends every connection; pre: called once, on the JS thread.
  void stop(bool emit) {
    stop_.store(true);
    uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof one) < 0) {
      // eventfd write fails only on counter overflow; the stop flag is already set.
    }
    thread_.join();
    std::unordered_map<uint32_t, std::shared_ptr<Conn>> conns;
    {
      std::lock_guard lock(mu_);
      conns.swap(conns_);
    }
    for (auto& [id, c] : conns) {
      shutdown(c->fd, SHUT_RDWR);
      if (emit) this->emit(closed_event(id, "agent socket server closed"));
    }
    close(listen_fd_);
    close(wake_fd_);
    struct stat st {};
    if (!is_abstract(path_) && lstat(path_.c_str(), &st) == 0 && st.st_ino == ino_)
      unlink(path_.c_str());  // ours, not a successor's; an abstract name goes with the listener
    tsfn_.Release();
  }

  std::shared_ptr<Conn> conn(uint32_t id) {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second->closing.load())
      throw Failure(PHOS_ERR_NOT_FOUND, "pccl: agent connection " + std::to_string(id) + " is closed").with("conn", id);
    return it->second;
  }

 private:
  static Event* closed_event(uint32_t id, std::string reason) {
    auto* ev = new Event();
    ev->type = EventType::closed;
    ev->conn = id;
    ev->reason = std::move(reason);
    return ev;
  }

  void emit(Event* ev) {
    if (tsfn_.NonBlockingCall(ev) != napi_ok) {  // queue is unbounded: fails only while closing
      close_fds(ev->fds);
      delete ev;
    }
  }

  void run() {
    std::vector<uint8_t> buf(kMaxPacket + 1);  // one spare byte: a bigger packet shows as MSG_TRUNC
    std::vector<pollfd> pfds;
    std::vector<std::shared_ptr<Conn>> polled;
    while (!stop_.load()) {
      pfds.assign({{wake_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}});
      polled.clear();
      {
        std::lock_guard lock(mu_);
        for (auto& [id, c] : conns_) {
          pfds.push_back({c->fd, POLLIN, 0});
          polled.push_back(c);
        }
      }
      if (poll(pfds.data(), pfds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        break;  // EFAULT/ENOMEM: nothing sensible left; stop() still joins
      }
      if (pfds[0].revents) {
        uint64_t n;
        if (read(wake_fd_, &n, sizeof n) < 0) {
          // EAGAIN: another wake consumed it; the loop re-checks stop_ anyway
        }
      }
      if (stop_.load()) break;
      if (pfds[1].revents & POLLIN) accept_all();
      for (size_t i = 0; i < polled.size(); ++i)
        if (pfds[i + 2].revents) drain(polled[i], buf);
    }
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;  // EAGAIN, or a failed accept (EMFILE...): the next poll retries
      ucred cr{};
      socklen_t len = sizeof cr;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        close(fd);
        continue;
      }
      // A datagram must fit the sender's buffer (EMSGSIZE otherwise), and the default (~208 KiB) is below
      // the protocol's 1 MiB. FORCE needs CAP_NET_ADMIN (the agent runs as root); else capped at wmem_max.
      int sz = 2 * static_cast<int>(kMaxPacket);
      if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
      auto c = std::make_shared<Conn>();
      c->fd = fd;
      c->id = next_id_++;
      {
        std::lock_guard lock(mu_);
        conns_.emplace(c->id, c);
      }
      auto* ev = new Event();
      ev->type = EventType::connect;
      ev->conn = c->id;
      ev->pid = cr.pid;
      ev->uid = cr.uid;
      ev->gid = cr.gid;
      emit(ev);
    }
  }

  void drop(const std::shared_ptr<Conn>& c, std::string reason) {
    {
      std::lock_guard lock(mu_);
      conns_.erase(c->id);
    }
    c->closing.store(true);
    shutdown(c->fd, SHUT_RDWR);
    emit(closed_event(c->id, std::move(reason)));
  }

  // Receives every packet queued on c; ends c on EOF, error or a packet the protocol does not allow.
  void drain(const std::shared_ptr<Conn>& c, std::vector<uint8_t>& buf) {
    alignas(cmsghdr) char ctl[CMSG_SPACE(kMaxFds * sizeof(int))];
    for (;;) {
      iovec iov{buf.data(), buf.size()};
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = ctl;
      m.msg_controllen = sizeof ctl;
      ssize_t n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) return drop(c, std::string("recvmsg: ") + std::strerror(errno));
      std::vector<int> fds;
      for (cmsghdr* h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
          fds.push_back(fd);
        }
      }
      if (n == 0 && fds.empty()) return drop(c, c->closing.load() ? "closed by the agent" : "closed by the peer");
      if ((m.msg_flags & MSG_TRUNC) || static_cast<size_t>(n) > kMaxPacket) {
        close_fds(fds);
        return drop(c, "packet larger than 1 MiB");
      }
      if (m.msg_flags & MSG_CTRUNC) {
        close_fds(fds);
        return drop(c, "more than 16 fds in one packet");
      }
      auto* ev = new Event();
      ev->type = EventType::packet;
      ev->conn = c->id;
      ev->bytes.assign(buf.begin(), buf.begin() + n);
      ev->fds = std::move(fds);
      emit(ev);
    }
  }

  std::string path_;
  int listen_fd_;
  int wake_fd_;
  ino_t ino_;
  Tsfn tsfn_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::unordered_map<uint32_t, std::shared_ptr<Conn>> conns_;
  uint32_t next_id_ = 1;  // poll thread only
};

std::mutex g_mu;  // guards g_server against concurrent listen/close from several JS environments
Server* g_server = nullptr;
napi_env g_env = nullptr;

void cleanup_hook(void*) {
  std::lock_guard lock(g_mu);
  if (!g_server) return;
  g_server->stop(false);  // the environment is going away: no one left to tell
  delete g_server;
  g_server = nullptr;
  g_env = nullptr;
}

// Removes a socket file left by an agent that died; refuses to steal one that still answers.
void clear_stale(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode))
    throw Failure(PHOS_ERR_BAD_ARGS, "agent socket path " + path + " exists and is not a socket").with("path", path);
  int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  socklen_t alen = make_addr(path, &a);
  bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&a), alen) == 0;
  if (probe >= 0) close(probe);
  if (live)
    throw Failure(PHOS_ERR_ILLEGAL_STATE, "another agent is listening on " + path).with("path", path);
  unlink(path.c_str());
}

int listen_at(const std::string& path, ino_t* ino) {
  sockaddr_un a{};
  bool abstract = is_abstract(path);
  if (path.size() < (abstract ? 2u : 1u) || path.size() >= sizeof a.sun_path)
    throw Failure(PHOS_ERR_BAD_ARGS, "agent socket path must be 1.." + std::to_string(sizeof a.sun_path - 1) +
                                         " bytes (an abstract '@name' 1.." + std::to_string(sizeof a.sun_path - 2) +
                                         " after the '@'): " + path)
        .with("path", path);
  if (path.find('\0') != std::string::npos)
    throw Failure(PHOS_ERR_BAD_ARGS, "agent socket path contains a NUL byte").with("path", path);
  if (!abstract) clear_stale(path);  // an abstract name has no file to go stale: it dies with its listener
  socklen_t alen = make_addr(path, &a);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw errno_failure(PHOS_ERR_INTERNAL, errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), alen) != 0 || listen(fd, 128) != 0) {
    int err = errno;
    close(fd);
    if (abstract && err == EADDRINUSE)  // held by a live listener in this network namespace
      throw Failure(PHOS_ERR_ILLEGAL_STATE, "another agent is listening on " + path).with("path", path);
    throw errno_failure(err == EACCES || err == ENOENT ? PHOS_ERR_BAD_ARGS : PHOS_ERR_INTERNAL, err,
                        "cannot listen on agent socket " + path)
        .with("path", path);
  }
  struct stat st {};
  *ino = !abstract && lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  return fd;
}

Server& server() {
  if (!g_server) throw Failure(PHOS_ERR_ILLEGAL_STATE, "pccl: the agent socket server is not running");
  return *g_server;
}

void send_packet(Conn& c, const uint8_t* p, size_t n, const std::vector<int>& fds) {
  alignas(cmsghdr) char ctl[CMSG_SPACE(kMaxFds * sizeof(int))];
  std::memset(ctl, 0, sizeof ctl);
  iovec iov{const_cast<uint8_t*>(p), n};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (!fds.empty()) {
    m.msg_control = ctl;
    m.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(h), fds.data(), fds.size() * sizeof(int));
  }
  std::string who = "agent connection " + std::to_string(c.id);
  for (;;) {
    ssize_t w = sendmsg(c.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w >= 0) return;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // The peer is not reading; wait a little rather than block the JS thread indefinitely.
      pollfd pf{c.fd, POLLOUT, 0};
      int r = poll(&pf, 1, kSendWaitMs);
      if (r == 0)
        throw Failure(PHOS_ERR_TIMEOUT, who + ": peer did not read for " + std::to_string(kSendWaitMs) + " ms")
            .with("conn", c.id);
      continue;
    }
    if (errno == EMSGSIZE)
      throw Failure(PHOS_ERR_BAD_ARGS, who + ": a packet of " + std::to_string(n) +
                                           " bytes exceeds the socket's send buffer (SO_SNDBUFFORCE refused?)")
          .with("conn", c.id);
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
      throw Failure(PHOS_ERR_NOT_FOUND, who + " was closed by the peer").with("conn", c.id);
    throw errno_failure(errno == EBADF ? PHOS_ERR_BAD_ARGS : PHOS_ERR_INTERNAL, errno, "sendmsg on " + who)
        .with("conn", c.id);
  }
}

}  // namespace

Napi::Value agentListen(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::string path = arg_string(info[0], "path");
    Napi::Function cb = arg_function(info[1], "onEvent");
    std::lock_guard lock(g_mu);
    if (g_server) throw Failure(PHOS_ERR_ILLEGAL_STATE, "pccl: the agent socket server is already running");
    ino_t ino = 0;
    int lfd = listen_at(path, &ino);
    int wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0) {
      int err = errno;
      close(lfd);
      if (!is_abstract(path)) unlink(path.c_str());
      throw errno_failure(PHOS_ERR_INTERNAL, err, "eventfd");
    }
    Tsfn tsfn = Tsfn::New(info.Env(), cb, "pccl.agentSocket", 0, 1);
    g_server = new Server(path, lfd, wfd, ino, tsfn);
    g_env = info.Env();
    napi_add_env_cleanup_hook(g_env, cleanup_hook, nullptr);
    return info.Env().Undefined();
  });
}

Napi::Value agentSend(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "conn");
    if (!info[1].IsBuffer()) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: argument bytes must be a Buffer");
    auto bytes = info[1].As<Napi::Buffer<uint8_t>>();
    if (bytes.Length() == 0 || bytes.Length() > kMaxPacket)
      throw Failure(PHOS_ERR_BAD_ARGS, "pccl: a packet is 1 byte to 1 MiB, not " + std::to_string(bytes.Length()));
    std::vector<int> fds;
    Napi::Array a = arg_array(info[2], "fds");
    if (a.Length() > kMaxFds) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: at most 16 fds per packet");
    for (uint32_t i = 0; i < a.Length(); ++i) fds.push_back(arg_fd(a.Get(i), "fds[i]"));
    std::shared_ptr<Conn> c;
    {
      std::lock_guard lock(g_mu);
      c = server().conn(id);
    }
    send_packet(*c, bytes.Data(), bytes.Length(), fds);
    return info.Env().Undefined();
  });
}

Napi::Value agentClose(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "conn");
    std::shared_ptr<Conn> c;
    {
      std::lock_guard lock(g_mu);
      c = server().conn(id);
    }
    c->closing.store(true);
    shutdown(c->fd, SHUT_RDWR);  // the poll thread sees EOF, drops it and emits 'closed'
    return info.Env().Undefined();
  });
}

Napi::Value agentServerClose(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::lock_guard lock(g_mu);
    if (!g_server) return info.Env().Undefined();  // idempotent
    napi_remove_env_cleanup_hook(g_env, cleanup_hook, nullptr);
    g_server->stop(true);
    delete g_server;
    g_server = nullptr;
    g_env = nullptr;
    return info.Env().Undefined();
  });
}

Napi::Value closeFd(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int fd = arg_fd(info[0], "fd");
    if (fd <= 2) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: refusing to close stdio fd " + std::to_string(fd));
    if (close(fd) != 0) throw errno_failure(PHOS_ERR_BAD_ARGS, errno, "close(fd " + std::to_string(fd) + ")");
    return info.Env().Undefined();
  });
}

}  // namespace phos::pccl
