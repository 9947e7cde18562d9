// PCCL transport (see transport.h). Owns the wire format, the sender's stream threads (writer + ack
// reader per stream, a shared work queue, a shared token bucket) and the receiver's threads (acceptor +
// one per connection). Invariants: a chunk counts as delivered only when the receiver acknowledged it
// after its hash matched; a chunk not acknowledged when its stream breaks goes back to the queue; events
// reach JS as small records through a ThreadSafeFunction, never the bytes.
#include "transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chunk-hasher.h"
#include "js.h"
#include "keeper.h"
#include "regions.h"

namespace phos::pccl {

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------------
// Wire format, little-endian (x86-64 and aarch64 only, as libphos). Every message has a fixed size.
// Version 2 (a chunk's hash is a trailer after its bytes, so the sender hashes each piece as it sends it,
// while it is in cache, instead of a hash pass over the whole chunk first); a peer with another version
// is refused at the handshake.

constexpr uint16_t kVersion = 2;
constexpr uint32_t kMagicHello = 0x48434350;  // "PCCH": sender -> receiver, first bytes of a stream
constexpr uint32_t kMagicReply = 0x52434350;  // "PCCR": receiver -> sender, answer to the hello
constexpr uint32_t kMagicFrame = 0x46434350;  // "PCCF": sender -> receiver, chunk or end marker
constexpr uint32_t kMagicAck = 0x41434350;    // "PCCA": receiver -> sender, per chunk and per end

struct Hello {
  uint32_t magic;
  uint16_t version;
  uint16_t stream;   // index of this stream, < streams
  uint16_t streams;  // how many streams the session has
  uint16_t reserved0;
  uint32_t reserved1;
  uint64_t session;
  uint64_t reserved2;
};
static_assert(sizeof(Hello) == 32);

enum : uint16_t { kReplyOk = 0, kReplyBusy = 1, kReplyBadStream = 2, kReplyBadVersion = 3 };
struct Reply {
  uint32_t magic;
  uint16_t version;
  uint16_t status;
  uint64_t reserved;
};
static_assert(sizeof(Reply) == 16);

enum : uint16_t { kFrameChunk = 1, kFrameEnd = 2 };
// kFrameChunk: `length` bytes follow, landing at `offset` of alloc `alloc`, then their 8-byte hash (the
// trailer); `hash` is 0 on the wire. kFrameEnd: no bytes follow; offset = chunks and length = bytes this
// stream delivered in the session.
struct Frame {
  uint32_t magic;
  uint16_t version;
  uint16_t kind;
  uint64_t session;
  uint64_t seq;  // per stream and connection, from 1; the ack names it
  uint32_t alloc;
  uint32_t reserved;
  uint64_t offset;
  uint64_t length;
  uint64_t hash;
};
static_assert(sizeof(Frame) == 56);

// kAckOk: verified and written. kAckCorrupt: hash mismatch, dropped (`value` = the hash received).
// kAckRefused: no destination for the alloc or out of its range (the sender fails the send).
// kAckEnd: the end marker arrived (`value` = chunks the receiver counted on this stream).
enum : uint16_t { kAckOk = 1, kAckCorrupt = 2, kAckRefused = 3, kAckEnd = 4 };
struct Ack {
  uint32_t magic;
  uint16_t kind;
  uint16_t reserved;
  uint64_t seq;
  uint64_t value;
};
static_assert(sizeof(Ack) == 24);

// Largest chunk a receiver takes; a bigger length is a broken frame, not an allocation request.
constexpr uint64_t kMaxChunk = uint64_t{1} << 30;
// Hashing and bandwidth granularity: small enough that a piece is still in cache when it is hashed
// (receiver) and that the token bucket paces smoothly at tens of MB/s.
constexpr size_t kPiece = size_t{256} << 10;
// A chunk that fails its hash this many times in a row is reported as IMAGE_CORRUPT to the sender's caller.
constexpr int kMaxAttempts = 8;

// ---------------------------------------------------------------------------------------------------
// Sockets.

// An fd closed when its last user lets go, so that a shutdown() from another thread never hits a
// reused fd number.
struct Sock {
  int fd = -1;
  explicit Sock(int f) : fd(f) {}
  ~Sock() {
    if (fd >= 0) close(fd);
  }
  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;
  void kill() const { shutdown(fd, SHUT_RDWR); }
};

// Reads exactly n bytes; false on EOF, error or timeout (errno tells which; 0 for EOF).
bool read_full(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n) {
    ssize_t r = recv(fd, p, n, MSG_WAITALL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_full(int fd, const void* buf, size_t n, int flags = 0) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (n) {
    ssize_t w = send(fd, p, n, flags | MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

std::string errno_text(int err) {
  if (err == 0) return "connection closed by the peer";
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "errno " + std::to_string(err)) + " (" + std::strerror(err) + ")";
}

void set_timeouts(int fd, uint32_t ms) {
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void tune(int fd, uint32_t timeout_ms) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // acks and end markers go at once
  // Data sent but never acknowledged by the peer's kernel for this long aborts the connection: a host
  // that vanished without a FIN/RST is noticed by the sender, not waited on forever.
  unsigned int uto = timeout_ms;
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
}

std::string peer_name(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

// ---------------------------------------------------------------------------------------------------
// JS delivery: every message to JS is a closure run on the JS thread.

using JsFn = std::function<void(Napi::Env, Napi::Function)>;

void post(const Napi::ThreadSafeFunction& tsfn, JsFn fn) {
  // The queue is unbounded: this fails only while the function is being released (closing).
  tsfn.NonBlockingCall([fn = std::move(fn)](Napi::Env env, Napi::Function cb) {
    if (env == nullptr) return;
    fn(env, cb);
  });
}

Napi::Object failure_object(Napi::Env env, const Failure& f) { return to_js_error(env, f).Value(); }

struct StreamTotals {
  uint64_t bytes = 0, chunks = 0, resent = 0, reconnects = 0, corrupt = 0;
};

Napi::Array totals_array(Napi::Env env, const std::vector<StreamTotals>& v, bool sender) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (uint32_t i = 0; i < v.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("stream", i);
    o.Set("bytes", static_cast<double>(v[i].bytes));
    o.Set("chunks", static_cast<double>(v[i].chunks));
    if (sender) o.Set("resent", static_cast<double>(v[i].resent));
    else o.Set("corrupt", static_cast<double>(v[i].corrupt));
    o.Set("reconnects", static_cast<double>(v[i].reconnects));
    a.Set(i, o);
  }
  return a;
}

sockaddr_storage resolve(const std::string& host, uint16_t port, bool passive, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? (AI_PASSIVE | AI_NUMERICHOST) : 0;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || !res)
    throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: cannot resolve host '" + host + "': " + gai_strerror(rc))
        .with("host", host);
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return ss;
}

uint64_t random_session() {
  uint64_t s = 0;
  while (s == 0) {
    if (getrandom(&s, sizeof s, 0) != static_cast<ssize_t>(sizeof s)) s = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Token bucket shared by a sender's streams: a virtual clock that advances by n/rate per piece. A piece
// waits until the clock reaches its start; idle time earns no credit, so the average rate over any
// transfer stays at the cap (measured within 1% at 50 MB/s, test/integration/pccl-transport.test.ts).

class Bucket {
 public:
  void set_rate(double bytes_per_sec) {
    std::lock_guard lock(mu_);
    rate_ = bytes_per_sec;
    next_ = Clock::now();
  }
  bool limited() const {
    std::lock_guard lock(mu_);
    return rate_ > 0;
  }
  // Returns when n bytes may go; false when `stop` became true while waiting.
  bool acquire(size_t n, const std::atomic<bool>& stop) {
    Clock::time_point start;
    {
      std::lock_guard lock(mu_);
      if (rate_ <= 0) return true;
      auto now = Clock::now();
      start = std::max(next_, now);
      next_ = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(n) / rate_));
    }
    while (Clock::now() < start) {
      if (stop.load()) return false;
      std::this_thread::sleep_until(std::min(start, Clock::now() + std::chrono::milliseconds(20)));
    }
    return true;
  }

 private:
  mutable std::mutex mu_;
  double rate_ = 0;
  Clock::time_point next_{};
};

// ---------------------------------------------------------------------------------------------------
// Chunk hashing for one stream, on a helper thread where there are cores for it. The socket thread then
// only moves bytes: it hands each piece over as it sends it (or once it has received it) and a second
// core hashes the same bytes, mostly from the shared cache, while the next piece is on the wire; the
// socket thread waits for the sum only before the trailer. Without a helper each piece is hashed in line,
// as before. The hash is a sum of per-word mixes keyed by position (piece_sum), so where and in which
// order the pieces are hashed changes no bit of it.

// Whether streams get a helper. A stream keeps its socket thread and its helper busy at each end, and a
// test or the bench puts both ends on one host: 4 busy threads per stream. With fewer cores than that the
// helpers only add hand-offs to the same CPU time, so the socket threads hash in line.
// PHOS_PCCL_HASH_THREADS=1 or 0 forces either way (tests run both paths on small machines).
bool hash_helpers(uint32_t streams) {
  const char* env = std::getenv("PHOS_PCCL_HASH_THREADS");
  if (env && *env) return std::strcmp(env, "0") != 0;
  return 4 * streams <= std::thread::hardware_concurrency();
}

class PieceHasher {
 public:
  explicit PieceHasher(bool helper) {
    if (helper) thread_ = std::thread([this] { run(); });
  }
  ~PieceHasher() {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    work_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  PieceHasher(const PieceHasher&) = delete;
  PieceHasher& operator=(const PieceHasher&) = delete;

  // A new chunk; pre: the previous one's digest() or abandon() returned.
  void begin() {
    std::lock_guard lock(mu_);
    sum_ = 0;
  }

  // n bytes at byte offset `at` of the chunk. With a helper they are hashed later: they must stay as they
  // are until digest() or abandon(). The queue needs no bound: it holds pointers, at most a chunk's
  // pieces, and digest() is never further away than the chunk's end.
  void add(const uint8_t* p, size_t n, uint64_t at) {
    if (!thread_.joinable()) return add_here(p, n, at);
    {
      std::lock_guard lock(mu_);
      todo_.push_back({p, n, at});
    }
    work_.notify_one();
  }

  // The same, hashed now on the calling thread: for bytes in a buffer that is about to be reused.
  void add_here(const uint8_t* p, size_t n, uint64_t at) {
    uint64_t s = piece_sum(p, n, at);
    std::lock_guard lock(mu_);
    sum_ += s;
  }

  // The hash of the chunk (len bytes, all added), once the helper has caught up.
  uint64_t digest(uint64_t len) {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return todo_.empty() && !busy_; });
    return chunk_digest(sum_, len);
  }

  // The chunk is given up (broken stream, failed device read): returns once the helper no longer reads
  // its bytes, which may go away with the chunk. No-op after digest().
  void abandon() {
    std::unique_lock lock(mu_);
    todo_.clear();
    idle_.wait(lock, [&] { return !busy_; });
  }

 private:
  struct Piece {
    const uint8_t* p;
    size_t n;
    uint64_t at;
  };

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      work_.wait(lock, [&] { return quit_ || !todo_.empty(); });
      if (quit_) return;
      Piece pc = todo_.front();
      todo_.pop_front();
      busy_ = true;
      lock.unlock();
      uint64_t s = piece_sum(pc.p, pc.n, pc.at);
      lock.lock();
      busy_ = false;
      sum_ += s;
      if (todo_.empty()) idle_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable work_, idle_;
  std::deque<Piece> todo_;
  bool busy_ = false, quit_ = false;
  uint64_t sum_ = 0;
  std::thread thread_;  // last: started once the rest is initialised
};

// Abandons the chunk on every way out of a send or receive that did not reach its digest().
struct AbandonGuard {
  PieceHasher& h;
  ~AbandonGuard() { h.abandon(); }
};

// ---------------------------------------------------------------------------------------------------
// Sender.

struct Batch {
  uint64_t id = 0;
  size_t total = 0;
  size_t done = 0;
  uint64_t bytes = 0;
  bool settled = false;
  std::vector<uint64_t> hashes;
  std::vector<StreamTotals> per_stream;
  Clock::time_point t0;
};

struct Chunk {
  std::shared_ptr<Batch> batch;
  size_t index = 0;
  std::shared_ptr<Region> src;
  uint64_t off = 0, len = 0;
  uint32_t alloc = 0;
  uint64_t dst_off = 0;
  int attempts = 0;
  uint64_t hash = 0;  // as sent last
};

struct SenderStream {
  uint32_t idx = 0;
  std::shared_ptr<Sock> sock;
  std::thread writer, reader;
  std::map<uint64_t, Chunk> unacked;  // seq -> chunk, this connection only
  uint64_t next_seq = 1;
  bool broken = false;
  bool dead = false;
  bool sending = false;
  bool end_sent = false, end_acked = false;
  std::string reason;
  Clock::time_point last_progress;
  StreamTotals totals;
};

enum class Fault { none, flip_byte, break_stream };

class Sender : public std::enable_shared_from_this<Sender> {
 public:
  std::string host;
  uint16_t port = 0;
  uint32_t nstreams = 0;
  uint32_t timeout_ms = 10000;
  uint32_t reconnects = 5;
  Fault fault = Fault::none;
  bool helpers = false;  // hash_helpers(nstreams)
  uint64_t session = 0;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  Bucket bucket;
  Napi::ThreadSafeFunction tsfn;
  // JS thread only.
  std::unordered_map<uint64_t, Napi::Promise::Deferred> deferreds;
  uint64_t next_batch = 1;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Chunk> queue;
  std::vector<std::unique_ptr<SenderStream>> streams;
  std::unordered_map<uint64_t, std::shared_ptr<Batch>> pending;
  std::atomic<bool> stop{false};
  bool closing = false;
  std::atomic<bool> fault_fired{false};
  Clock::time_point t0 = Clock::now();

  // Connects and handshakes one stream; throws Failure(AGENT_UNAVAILABLE or PROTO_VERSION).
  std::shared_ptr<Sock> dial(uint32_t idx) const {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw errno_failure(PHOS_ERR_INTERNAL, errno, "pccl transport: socket()");
    auto s = std::make_shared<Sock>(fd);
    tune(fd, timeout_ms);
    set_timeouts(fd, timeout_ms);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), addr_len);
    int err = rc == 0 ? 0 : errno;
    if (rc != 0 && err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int pr = poll(&p, 1, static_cast<int>(timeout_ms));
      if (pr <= 0) err = pr == 0 ? ETIMEDOUT : errno;
      else {
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
      }
    }
    fcntl(fd, F_SETFL, fl);
    if (err != 0) throw unavailable("connect stream " + std::to_string(idx), err);
    Hello h{kMagicHello, kVersion, static_cast<uint16_t>(idx), static_cast<uint16_t>(nstreams), 0, 0, session, 0};
    Reply r{};
    if (!write_full(fd, &h, sizeof h) || !read_full(fd, &r, sizeof r)) throw unavailable("handshake of stream " + std::to_string(idx), errno);
    if (r.magic != kMagicReply) throw Failure(PHOS_ERR_BAD_FRAME, "pccl transport: " + where() + " is not a pccl receiver");
    if (r.status == kReplyBadVersion || r.version != kVersion)
      throw Failure(PHOS_ERR_PROTO_VERSION, "pccl transport: " + where() + " speaks transport version " + std::to_string(r.version) + ", this agent " + std::to_string(kVersion));
    if (r.status == kReplyBusy) throw Failure(PHOS_ERR_ILLEGAL_STATE, "pccl transport: " + where() + " serves another session");
    if (r.status != kReplyOk) throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: " + where() + " refused stream " + std::to_string(idx) + " of " + std::to_string(nstreams));
    set_timeouts(fd, timeout_ms);
    return s;
  }

  std::string where() const { return "receiver " + host + ":" + std::to_string(port); }

  Failure unavailable(const std::string& what, int err) const {
    return Failure(PHOS_ERR_AGENT_UNAVAILABLE, "pccl transport: " + what + " to " + where() + ": " + errno_text(err))
        .with("host", host)
        .with("port", port);
  }

  void start_threads() {
    for (auto& s : streams) {
      SenderStream* sp = s.get();
      sp->last_progress = Clock::now();
      sp->reader = std::thread([self = shared_from_this(), sp, sock = sp->sock] { self->read_acks(*sp, sock); });
      sp->writer = std::thread([self = shared_from_this(), sp] { self->write_loop(*sp); });
    }
  }

  // --- events to JS -------------------------------------------------------------------------------

  void event(std::string type, uint32_t stream, std::string reason, double attempt = -1) {
    post(tsfn, [type = std::move(type), stream, reason = std::move(reason), attempt](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", type);
      o.Set("stream", stream);
      if (!reason.empty()) o.Set("reason", reason);
      if (attempt >= 0) o.Set("attempt", attempt);
      cb.Call({o});
    });
  }

  void resent_event(const Chunk& c, const char* why, uint64_t got) {
    post(tsfn, [alloc = c.alloc, off = c.dst_off, len = c.len, why, sent = c.hash, got](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "resend");
      o.Set("alloc", alloc);
      o.Set("offset", static_cast<double>(off));
      o.Set("length", static_cast<double>(len));
      o.Set("reason", why);
      if (std::strcmp(why, "corrupt") == 0) {
        o.Set("expected", hash_hex(sent));
        o.Set("actual", hash_hex(got));
      }
      cb.Call({o});
    });
  }

  // pre: mu held. Settles a batch once (success or the first failure).
  void settle(const std::shared_ptr<Batch>& b, const Failure* f) {
    if (b->settled) return;
    b->settled = true;
    pending.erase(b->id);
    cv.notify_all();
    std::shared_ptr<Sender> self = shared_from_this();
    if (f) {
      // Its chunks still queued are dropped; acks still in flight for it are ignored.
      std::erase_if(queue, [&](const Chunk& c) { return c.batch == b; });
      post(tsfn, [self, id = b->id, f = *f](Napi::Env env, Napi::Function) {
        auto it = self->deferreds.find(id);
        if (it == self->deferreds.end()) return;
        it->second.Reject(failure_object(env, f));
        self->deferreds.erase(it);
      });
      return;
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - b->t0).count();
    post(tsfn, [self, b, ms](Napi::Env env, Napi::Function) {
      auto it = self->deferreds.find(b->id);
      if (it == self->deferreds.end()) return;
      Napi::Object o = Napi::Object::New(env);
      o.Set("bytes", static_cast<double>(b->bytes));
      o.Set("ms", ms);
      Napi::Array h = Napi::Array::New(env, b->hashes.size());
      for (uint32_t i = 0; i < b->hashes.size(); ++i) h.Set(i, hash_hex(b->hashes[i]));
      o.Set("hashes", h);
      o.Set("perStream", totals_array(env, b->per_stream, true));
      it->second.Resolve(o);
      self->deferreds.erase(it);
    });
  }

  // pre: mu held.
  void fail_all(const Failure& f) {
    std::vector<std::shared_ptr<Batch>> bs;
    for (auto& [id, b] : pending) bs.push_back(b);
    for (auto& b : bs) settle(b, &f);
    queue.clear();
  }

  bool all_dead() const {
    for (auto& s : streams)
      if (!s->dead) return false;
    return true;
  }

  // --- stream threads -----------------------------------------------------------------------------

  // pre: mu held. Marks the stream broken (first reason wins) and wakes both of its threads.
  void break_locked(SenderStream& s, const std::string& reason) {
    if (!s.broken) {
      s.broken = true;
      s.reason = reason;
      if (s.sock) s.sock->kill();
    }
    cv.notify_all();
  }

  void read_acks(SenderStream& s, std::shared_ptr<Sock> sock) {
    Ack a{};
    while (!stop.load()) {
      pollfd p{sock->fd, POLLIN, 0};
      int pr = poll(&p, 1, 100);
      if (pr < 0 && errno == EINTR) continue;
      std::unique_lock lock(mu);
      if (s.broken || s.sock != sock) return;
      if (pr == 0) {
        // Silence is a failure only when the receiver owes an ack for bytes fully handed to the kernel.
        if (!s.unacked.empty() && !s.sending &&
            Clock::now() - s.last_progress > std::chrono::milliseconds(timeout_ms)) {
          break_locked(s, "no acknowledgement for " + std::to_string(timeout_ms) + " ms");
          return;
        }
        continue;
      }
      lock.unlock();
      bool ok = read_full(sock->fd, &a, sizeof a);
      int err = errno;
      lock.lock();
      if (s.sock != sock) return;
      if (!ok || a.magic != kMagicAck) {
        break_locked(s, ok ? "bad acknowledgement from the receiver" : errno_text(err));
        return;
      }
      s.last_progress = Clock::now();
      if (a.kind == kAckEnd) {
        s.end_acked = true;
        cv.notify_all();
        return;
      }
      auto it = s.unacked.find(a.seq);
      if (it == s.unacked.end()) {
        break_locked(s, "acknowledgement for unknown chunk " + std::to_string(a.seq));
        return;
      }
      Chunk c = std::move(it->second);
      s.unacked.erase(it);
      if (c.batch->settled) continue;
      if (a.kind == kAckOk) {
        Batch& b = *c.batch;
        b.hashes[c.index] = c.hash;
        b.bytes += c.len;
        b.per_stream[s.idx].bytes += c.len;
        b.per_stream[s.idx].chunks += 1;
        s.totals.bytes += c.len;
        s.totals.chunks += 1;
        if (++b.done == b.total) settle(c.batch, nullptr);
      } else if (a.kind == kAckCorrupt) {
        s.totals.resent += 1;
        c.batch->per_stream[s.idx].resent += 1;
        if (c.attempts >= kMaxAttempts) {
          Failure f(PHOS_ERR_IMAGE_CORRUPT, "pccl transport: chunk at offset " + std::to_string(c.dst_off) + " of alloc " +
                                                std::to_string(c.alloc) + " failed its hash check at the receiver " +
                                                std::to_string(c.attempts) + " times in a row");
          f.with("alloc", c.alloc).with("offset", static_cast<double>(c.dst_off));
          settle(c.batch, &f);
        } else {
          resent_event(c, "corrupt", a.value);
          queue.push_front(std::move(c));
          cv.notify_all();
        }
      } else {
        Failure f(PHOS_ERR_NOT_FOUND, "pccl transport: " + where() + " has no destination for alloc " + std::to_string(c.alloc) +
                                          " covering [" + std::to_string(c.dst_off) + ", +" + std::to_string(c.len) + ")");
        f.with("alloc", c.alloc).with("offset", static_cast<double>(c.dst_off));
        settle(c.batch, &f);
      }
    }
  }

  // Sends one chunk; false when the stream broke (the caller requeues through recover()). Each piece goes
  // to the hasher, then on the wire while still in cache; the hash goes last, as the chunk's trailer.
  bool send_chunk(SenderStream& s, const std::shared_ptr<Sock>& sock, uint64_t seq, Chunk& c, PieceHasher& h) {
    const Region& r = *c.src;
    std::unique_ptr<Staging> staging;
    const uint8_t* host = nullptr;
    if (!r.is_device()) {
      host = r.host + c.off;
    } else {
      staging = std::make_unique<Staging>();
      if (c.len <= staging->size()) {  // one device read for the whole chunk; larger ones are read per piece
        device_read(r, c.off, staging->data(), c.len);
        host = staging->data();
      }
    }
    Frame f{kMagicFrame, kVersion, kFrameChunk, session, seq, c.alloc, 0, c.dst_off, c.len, 0};
    if (!write_full(sock->fd, &f, sizeof f, MSG_MORE)) return false;

    bool flip = fault == Fault::flip_byte && !fault_fired.exchange(true);
    bool cut = fault == Fault::break_stream && s.idx == nstreams - 1 && seq == 2 && !fault_fired.exchange(true);
    h.begin();
    AbandonGuard guard{h};  // after `staging`, so it goes first: the helper may be reading a whole-chunk staging
    for (uint64_t d = 0; d < c.len;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(c.len - d, kPiece));
      if (cut && d >= c.len / 2) {  // fault: the connection dies mid-chunk
        std::lock_guard lock(mu);
        break_locked(s, "fault transport-break-stream");
        return false;
      }
      if (!bucket.acquire(n, stop)) return false;
      const uint8_t* p;
      if (host) {
        p = host + d;
        h.add(p, n, d);
      } else {  // the staging buffer takes the next piece as soon as this one is sent
        device_read(r, c.off + d, staging->data(), n);
        p = staging->data();
        h.add_here(p, n, d);
      }
      if (flip) {  // fault: one byte of the first piece differs on the wire, the trailer's hash does not
        flip = false;
        std::vector<uint8_t> bad(p, p + std::min<size_t>(n, 4096));
        bad[0] ^= 0xff;
        if (!write_full(sock->fd, bad.data(), bad.size(), MSG_MORE)) return false;
        if (n > bad.size() && !write_full(sock->fd, p + bad.size(), n - bad.size(), MSG_MORE)) return false;
      } else if (!write_full(sock->fd, p, n, MSG_MORE)) {
        return false;
      }
      d += n;
    }
    uint64_t hash = h.digest(c.len);
    {  // before the trailer goes: the ack that answers it looks the hash up
      std::lock_guard lock(mu);
      auto it = s.unacked.find(seq);
      if (it != s.unacked.end()) it->second.hash = hash;
    }
    return write_full(sock->fd, &hash, sizeof hash);
  }

  void write_loop(SenderStream& s) {
    PieceHasher hasher(helpers);  // declared first: its helper outlives every send on this thread
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] {
        return stop.load() || s.broken || !queue.empty() || (closing && pending.empty() && !s.end_sent);
      });
      if (stop.load()) return;
      if (s.broken) {
        if (!recover(s, lock)) return;
        continue;
      }
      if (queue.empty()) {  // closing, nothing left anywhere: the end-of-session marker
        s.end_sent = true;
        Frame f{kMagicFrame, kVersion, kFrameEnd, session, 0, 0, 0, s.totals.chunks, s.totals.bytes, 0};
        auto sock = s.sock;
        lock.unlock();
        bool ok = write_full(sock->fd, &f, sizeof f);
        lock.lock();
        if (!ok) {
          s.end_sent = false;
          break_locked(s, errno_text(errno));
        }
        continue;
      }
      Chunk c = std::move(queue.front());
      queue.pop_front();
      c.attempts += 1;
      uint64_t seq = s.next_seq++;
      auto sock = s.sock;
      // A copy for the send: the reader may erase the map entry (ack, or a failed batch) meanwhile.
      Chunk snapshot = s.unacked.emplace(seq, std::move(c)).first->second;
      s.sending = true;
      lock.unlock();
      bool ok;
      try {
        ok = send_chunk(s, sock, seq, snapshot, hasher);
      } catch (const Failure& f) {  // the keeper's device read failed: the chunk's batch fails, the stream lives
        lock.lock();
        s.sending = false;
        s.unacked.erase(seq);
        settle(snapshot.batch, &f);
        continue;
      }
      int err = errno;
      lock.lock();
      s.sending = false;
      s.last_progress = Clock::now();
      if (!ok && !stop.load()) break_locked(s, errno_text(err));
    }
  }

  // pre: lock held, s.broken. Requeues what the receiver did not acknowledge, reconnects with bounded
  // retries inside timeout_ms; false when the stream is given up (or the sender stops).
  bool recover(SenderStream& s, std::unique_lock<std::mutex>& lock) {
    std::string reason = s.reason;
    for (auto it = s.unacked.rbegin(); it != s.unacked.rend(); ++it) {
      if (it->second.batch->settled) continue;
      it->second.attempts -= 1;  // a broken stream is not the chunk's fault
      s.totals.resent += 1;
      it->second.batch->per_stream[s.idx].resent += 1;
      resent_event(it->second, "stream-broken", 0);
      queue.push_front(std::move(it->second));
    }
    s.unacked.clear();
    cv.notify_all();
    std::thread old_reader = std::move(s.reader);
    lock.unlock();
    if (old_reader.joinable()) old_reader.join();
    event("stream-broken", s.idx, reason);
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    Failure last(PHOS_ERR_AGENT_UNAVAILABLE, "");
    for (uint32_t attempt = 1; attempt <= reconnects && !stop.load(); ++attempt) {
      auto delay = std::chrono::milliseconds(std::min<uint32_t>(50u << std::min(attempt - 1, 5u), 1000u));
      if (Clock::now() + delay > deadline) break;
      std::this_thread::sleep_for(delay);
      try {
        auto sock = dial(s.idx);
        lock.lock();
        if (stop.load()) return false;
        s.sock = sock;
        s.broken = false;
        s.reason.clear();
        s.next_seq = 1;
        s.totals.reconnects += 1;
        s.last_progress = Clock::now();
        s.end_sent = false;
        s.reader = std::thread([self = shared_from_this(), sp = &s, sock] { self->read_acks(*sp, sock); });
        lock.unlock();
        event("stream-resumed", s.idx, reason, attempt);
        lock.lock();
        return true;
      } catch (const Failure& f) {
        last = f;
        if (f.code != PHOS_ERR_AGENT_UNAVAILABLE) break;  // a receiver that answers "no" will keep answering it
      }
    }
    lock.lock();
    s.dead = true;
    s.sock.reset();
    std::string why = last.message.empty() ? reason : last.message;
    lock.unlock();
    event("stream-dead", s.idx, why);
    lock.lock();
    if (all_dead()) {
      Failure f(PHOS_ERR_AGENT_UNAVAILABLE, "pccl transport: every stream to " + where() + " is gone (last: " + why + "); " +
                                                "nothing unacknowledged counts as delivered");
      f.with("host", host).with("port", port);
      fail_all(f);
    }
    cv.notify_all();
    return false;
  }

  // Stops and joins every thread; pre: not on a stream thread.
  void shutdown_threads() {
    {
      std::lock_guard lock(mu);
      stop.store(true);
      for (auto& s : streams)
        if (s->sock) s->sock->kill();
      cv.notify_all();
    }
    for (auto& s : streams) {
      if (s->writer.joinable()) s->writer.join();
      if (s->reader.joinable()) s->reader.join();
    }
  }
};

std::mutex g_senders_mu;
auto& g_senders = *new std::unordered_map<uint32_t, std::shared_ptr<Sender>>();
uint32_t g_next_sender = 1;

std::shared_ptr<Sender> sender_get(uint32_t id, bool take = false) {
  std::lock_guard lock(g_senders_mu);
  auto it = g_senders.find(id);
  if (it == g_senders.end())
    throw Failure(PHOS_ERR_NOT_FOUND, "pccl transport: no sender with id " + std::to_string(id) + " (closed?)").with("id", id);
  auto s = it->second;
  if (take) g_senders.erase(it);
  return s;
}

double rate_arg(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return 0;
  uint64_t r = arg_u64(v, "bandwidthBytesPerSec");
  if (r == 0) throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: bandwidthBytesPerSec must be > 0 or null");
  return static_cast<double>(r);
}

// ---------------------------------------------------------------------------------------------------
// Receiver.

struct Dest {
  std::shared_ptr<Region> region;
  uint32_t id = 0;
  uint64_t base = 0;
};

struct Slot {
  std::shared_ptr<Sock> sock;
  bool ended = false;
  bool broken = false;
  bool lost_reported = false;
  Clock::time_point broken_since;
  StreamTotals totals;
};

class Receiver : public std::enable_shared_from_this<Receiver> {
 public:
  uint32_t nstreams = 0;
  uint32_t timeout_ms = 10000;
  bool helpers = false;  // hash_helpers(nstreams)
  int listen_fd = -1, wake_fd = -1;
  uint16_t port = 0;
  Napi::ThreadSafeFunction tsfn;

  std::mutex mu;
  uint64_t session = 0;
  std::unordered_map<uint32_t, Dest> dests;
  std::vector<Slot> slots;
  std::vector<std::thread> conns;
  std::vector<std::shared_ptr<Sock>> live;  // every open connection, for close
  std::thread acceptor;
  std::atomic<bool> stop{false};
  bool end_emitted = false;
  uint64_t bytes = 0, chunks = 0, reported_bytes = 0;
  Clock::time_point t0 = Clock::now();

  ~Receiver() {
    if (listen_fd >= 0) close(listen_fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  void emit(JsFn fn) { post(tsfn, std::move(fn)); }

  void simple(const char* type, uint32_t stream, std::string key, std::string value) {
    emit([type, stream, key = std::move(key), value = std::move(value)](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", type);
      o.Set("stream", stream);
      o.Set(key, value);
      cb.Call({o});
    });
  }

  void error_event(const Failure& f, int64_t stream) {
    emit([f, stream](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "error");
      if (stream >= 0) o.Set("stream", static_cast<double>(stream));
      o.Set("error", failure_object(env, f));
      cb.Call({o});
    });
  }

  void accept_loop() {
    auto last_progress = Clock::now();
    while (!stop.load()) {
      pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      int pr = poll(p, 2, 100);
      if (stop.load()) return;
      if (pr > 0 && (p[0].revents & POLLIN)) {
        sockaddr_storage ss{};
        socklen_t l = sizeof ss;
        int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &l, SOCK_CLOEXEC);
        if (fd >= 0) {
          auto sock = std::make_shared<Sock>(fd);
          std::lock_guard lock(mu);
          live.push_back(sock);
          conns.emplace_back([self = shared_from_this(), sock, peer = peer_name(ss)] { self->serve(sock, peer); });
        }
      }
      tick(last_progress);
    }
  }

  // Periodic work on the acceptor thread: progress records, and the "sender is gone" verdict.
  void tick(Clock::time_point& last_progress) {
    std::lock_guard lock(mu);
    auto now = Clock::now();
    if (now - last_progress >= std::chrono::milliseconds(250) && bytes != reported_bytes) {
      last_progress = now;
      reported_bytes = bytes;
      double ms = std::chrono::duration<double, std::milli>(now - t0).count();
      emit([b = bytes, c = chunks, ms](Napi::Env env, Napi::Function cb) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", "progress");
        o.Set("bytes", static_cast<double>(b));
        o.Set("chunks", static_cast<double>(c));
        o.Set("ms", ms);
        cb.Call({o});
      });
    }
    for (uint32_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.broken && !s.lost_reported && now - s.broken_since > std::chrono::milliseconds(timeout_ms)) {
        s.lost_reported = true;
        Failure f(PHOS_ERR_AGENT_UNAVAILABLE, "pccl transport: stream " + std::to_string(i) + " of session " + hash_hex(session) +
                                                  " broke and the sender did not come back within " + std::to_string(timeout_ms) +
                                                  " ms; chunks not reported as arrived did not arrive");
        f.with("stream", i);
        error_event(f, i);
      }
    }
  }

  bool reply(int fd, uint16_t status) {
    Reply r{kMagicReply, kVersion, status, 0};
    return write_full(fd, &r, sizeof r);
  }

  bool ack(int fd, uint16_t kind, uint64_t seq, uint64_t value) {
    Ack a{kMagicAck, kind, 0, seq, value};
    return write_full(fd, &a, sizeof a);
  }

  void serve(std::shared_ptr<Sock> sock, std::string peer) {
    int fd = sock->fd;
    tune(fd, timeout_ms);
    set_timeouts(fd, timeout_ms);  // for the hello only
    Hello h{};
    if (!read_full(fd, &h, sizeof h) || h.magic != kMagicHello) return drop(sock);
    if (h.version != kVersion) {
      reply(fd, kReplyBadVersion);
      return drop(sock);
    }
    uint32_t idx = h.stream;
    bool reconnect = false;
    {
      std::lock_guard lock(mu);
      if (h.streams != nstreams || idx >= nstreams) {
        reply(fd, kReplyBadStream);
        return drop_locked(sock);
      }
      if (session == 0) session = h.session;
      if (session != h.session || slots[idx].ended) {
        reply(fd, kReplyBusy);
        return drop_locked(sock);
      }
      Slot& s = slots[idx];
      reconnect = s.sock != nullptr || s.broken;
      if (s.sock) s.sock->kill();  // a half-open predecessor: the sender already gave it up
      if (reconnect) s.totals.reconnects += 1;
      s.sock = sock;
      s.broken = false;
      s.lost_reported = false;
    }
    if (!reply(fd, kReplyOk)) return closed(idx, sock, errno_text(errno));
    set_timeouts(fd, 0);  // an idle session (between pre-copy rounds) is not a failure
    emit([idx, peer, reconnect](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "stream");
      o.Set("stream", idx);
      o.Set("peer", peer);
      o.Set("reconnect", reconnect);
      cb.Call({o});
    });
    std::string why;
    try {
      why = receive_loop(idx, sock);
    } catch (const Failure& f) {  // the keeper's device write failed: this connection ends, the sender re-sends
      error_event(f, idx);
      why = f.message;
    }
    closed(idx, sock, why);
  }

  void drop(const std::shared_ptr<Sock>& sock) {
    std::lock_guard lock(mu);
    drop_locked(sock);
  }
  void drop_locked(const std::shared_ptr<Sock>& sock) {
    sock->kill();
    std::erase(live, sock);
  }

  void closed(uint32_t idx, const std::shared_ptr<Sock>& sock, const std::string& why) {
    bool report = false;
    {
      std::lock_guard lock(mu);
      std::erase(live, sock);
      Slot& s = slots[idx];
      if (s.sock == sock) {
        s.sock.reset();
        if (!s.ended && !stop.load()) {
          s.broken = true;
          s.broken_since = Clock::now();
          report = true;
        }
      }
    }
    if (report) simple("stream-closed", idx, "reason", why);
  }

  // Serves frames until the connection ends; returns why it ended.
  std::string receive_loop(uint32_t idx, const std::shared_ptr<Sock>& sock) {
    PieceHasher hasher(helpers);  // this connection's; its helper ends with the connection
    int fd = sock->fd;
    std::vector<uint8_t> scratch;
    for (;;) {
      Frame f{};
      if (!read_full(fd, &f, sizeof f)) return stop.load() ? "receiver closed" : errno_text(errno);
      if (f.magic != kMagicFrame || f.version != kVersion || f.session != session ||
          (f.kind == kFrameChunk && f.length > kMaxChunk) || (f.kind != kFrameChunk && f.kind != kFrameEnd)) {
        Failure e(PHOS_ERR_BAD_FRAME, "pccl transport: stream " + std::to_string(idx) + " sent a frame that is not a pccl chunk header (magic " +
                                          std::to_string(f.magic) + ", version " + std::to_string(f.version) + ", kind " + std::to_string(f.kind) + ")");
        error_event(e, idx);
        return "bad frame";
      }
      if (f.kind == kFrameEnd) {
        end_of_stream(idx);
        if (!ack(fd, kAckEnd, 0, f.offset)) return errno_text(errno);
        continue;
      }
      Dest d;
      {
        std::lock_guard lock(mu);
        auto it = dests.find(f.alloc);
        if (it != dests.end()) d = it->second;
      }
      bool fits = d.region && f.offset <= d.region->size - d.base && f.length <= d.region->size - d.base - f.offset;
      if (!fits) {
        if (!drain(fd, f.length + sizeof(uint64_t), scratch)) return errno_text(errno);  // bytes and trailer
        Failure e(PHOS_ERR_NOT_FOUND, "pccl transport: no destination registered for alloc " + std::to_string(f.alloc) + " covering [" +
                                          std::to_string(f.offset) + ", +" + std::to_string(f.length) + ")");
        e.with("alloc", f.alloc).with("offset", static_cast<double>(f.offset));
        error_event(e, idx);
        if (!ack(fd, kAckRefused, f.seq, 0)) return errno_text(errno);
        continue;
      }
      uint64_t got = 0;
      if (!receive_chunk(fd, f, d, got, hasher)) return errno ? errno_text(errno) : "connection closed by the peer mid-chunk";
      if (got != f.hash) {  // f.hash: the trailer, filled in by receive_chunk
        corrupt(idx, f, got);
        if (!ack(fd, kAckCorrupt, f.seq, got)) return errno_text(errno);
        continue;
      }
      arrived(idx, f);
      if (!ack(fd, kAckOk, f.seq, 0)) return errno_text(errno);
    }
  }

  static bool drain(int fd, uint64_t n, std::vector<uint8_t>& scratch) {
    scratch.resize(kPiece);
    while (n) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, kPiece));
      if (!read_full(fd, scratch.data(), k)) return false;
      n -= k;
    }
    return true;
  }

  // Reads n bytes into dst in kPiece pieces, each handed to the hasher as soon as it is in (`at`: dst's
  // offset in the chunk). `reused`: dst takes other bytes right after, so they are hashed in line.
  static bool read_hashed(int fd, uint8_t* dst, uint64_t n, uint64_t at, PieceHasher& h, bool reused) {
    for (uint64_t done = 0; done < n;) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n - done, kPiece));
      if (!read_full(fd, dst + done, k)) return false;
      if (reused) h.add_here(dst + done, k, at + done);
      else h.add(dst + done, k, at + done);
      done += k;
    }
    return true;
  }

  // Receives the chunk's bytes into the destination, hashing them as they come, then its trailer into
  // f.hash. Host mappings take the bytes in place (no copy); a bad hash leaves them there, unreported,
  // until the re-send overwrites them. Keeper regions: a chunk that fits the pinned staging buffer is
  // checked before it is copied to the device; a larger one is copied piece by piece before its hash is
  // known. Keeper chunks are hashed in line: the staging buffer dies with this call (a helper still
  // reading it would need a second guard) and host mappings are where the speed matters.
  static bool receive_chunk(int fd, Frame& f, const Dest& d, uint64_t& hash, PieceHasher& h) {
    h.begin();
    AbandonGuard guard{h};
    const Region& r = *d.region;
    uint64_t at = d.base + f.offset;
    if (!r.is_device()) {
      // The trailer is read while the helper hashes the last piece.
      if (!read_hashed(fd, r.host + at, f.length, 0, h, false) || !read_full(fd, &f.hash, sizeof f.hash)) return false;
      hash = h.digest(f.length);
      return true;
    }
    Staging st;
    if (f.length <= st.size()) {
      if (!read_hashed(fd, st.data(), f.length, 0, h, true)) return false;
      hash = h.digest(f.length);
      if (!read_full(fd, &f.hash, sizeof f.hash)) return false;
      if (hash == f.hash) device_write(r, at, st.data(), f.length);
      return true;
    }
    for (uint64_t done = 0; done < f.length;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(f.length - done, st.size()));
      if (!read_hashed(fd, st.data(), n, done, h, true)) return false;
      device_write(r, at + done, st.data(), n);
      done += n;
    }
    hash = h.digest(f.length);
    return read_full(fd, &f.hash, sizeof f.hash);
  }

  void corrupt(uint32_t idx, const Frame& f, uint64_t got) {
    {
      std::lock_guard lock(mu);
      slots[idx].totals.corrupt += 1;
    }
    Failure e(PHOS_ERR_IMAGE_CORRUPT, "pccl transport: chunk at offset " + std::to_string(f.offset) + " of alloc " + std::to_string(f.alloc) +
                                          " arrived with hash " + hash_hex(got) + ", its trailer says " + hash_hex(f.hash) +
                                          "; dropped, the sender re-sends it");
    e.with("alloc", f.alloc).with("offset", static_cast<double>(f.offset)).with("length", static_cast<double>(f.length));
    e.with("expected", hash_hex(f.hash)).with("actual", hash_hex(got));
    emit([e, idx, f](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "corrupt");
      o.Set("stream", idx);
      o.Set("alloc", f.alloc);
      o.Set("offset", static_cast<double>(f.offset));
      o.Set("length", static_cast<double>(f.length));
      o.Set("error", failure_object(env, e));
      cb.Call({o});
    });
  }

  void arrived(uint32_t idx, const Frame& f) {
    {
      std::lock_guard lock(mu);
      slots[idx].totals.bytes += f.length;
      slots[idx].totals.chunks += 1;
      bytes += f.length;
      chunks += 1;
    }
    emit([idx, alloc = f.alloc, off = f.offset, len = f.length, hash = f.hash](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "chunk");
      o.Set("stream", idx);
      o.Set("alloc", alloc);
      o.Set("offset", static_cast<double>(off));
      o.Set("length", static_cast<double>(len));
      o.Set("hash", hash_hex(hash));
      cb.Call({o});
    });
  }

  void end_of_stream(uint32_t idx) {
    std::lock_guard lock(mu);
    // The marker carries the sender's count of acknowledged chunks (frame offset); the receiver reports its
    // own count of verified ones, which is larger only when an ack was lost with a broken connection and
    // the chunk arrived twice.
    slots[idx].ended = true;
    if (end_emitted) return;
    for (auto& s : slots)
      if (!s.ended) return;
    end_emitted = true;
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::vector<StreamTotals> per;
    uint64_t corrupt_total = 0;
    for (auto& s : slots) {
      per.push_back(s.totals);
      corrupt_total += s.totals.corrupt;
    }
    emit([b = bytes, c = chunks, corrupt_total, per, ms, sess = session](Napi::Env env, Napi::Function cb) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "end");
      o.Set("session", hash_hex(sess));
      o.Set("bytes", static_cast<double>(b));
      o.Set("chunks", static_cast<double>(c));
      o.Set("corrupt", static_cast<double>(corrupt_total));
      o.Set("ms", ms);
      o.Set("perStream", totals_array(env, per, false));
      cb.Call({o});
    });
  }

  void shutdown_all() {
    stop.store(true);
    uint64_t one = 1;
    if (write(wake_fd, &one, sizeof one) < 0) {
      // only on counter overflow; the stop flag is already set
    }
    if (acceptor.joinable()) acceptor.join();
    std::vector<std::thread> ts;
    {
      std::lock_guard lock(mu);
      for (auto& s : live) s->kill();
      ts.swap(conns);
    }
    for (auto& t : ts) t.join();
  }
};

std::mutex g_receivers_mu;
auto& g_receivers = *new std::unordered_map<uint32_t, std::shared_ptr<Receiver>>();
uint32_t g_next_receiver = 1;

std::shared_ptr<Receiver> receiver_get(uint32_t id, bool take = false) {
  std::lock_guard lock(g_receivers_mu);
  auto it = g_receivers.find(id);
  if (it == g_receivers.end())
    throw Failure(PHOS_ERR_NOT_FOUND, "pccl transport: no receiver with id " + std::to_string(id) + " (closed?)").with("id", id);
  auto r = it->second;
  if (take) g_receivers.erase(it);
  return r;
}

int listen_on(const std::string& host, uint16_t port, uint16_t* bound) {
  socklen_t len = 0;
  sockaddr_storage ss = resolve(host, port, true, &len);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errno_failure(PHOS_ERR_INTERNAL, errno, "pccl transport: socket()");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  std::string at = host + ":" + std::to_string(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 64) != 0) {
    int err = errno;
    close(fd);
    throw errno_failure(err == EADDRINUSE ? PHOS_ERR_ILLEGAL_STATE : PHOS_ERR_BAD_ARGS, err, "pccl transport: listen on " + at).with("host", host);
  }
  sockaddr_storage got{};
  socklen_t gl = sizeof got;
  getsockname(fd, reinterpret_cast<sockaddr*>(&got), &gl);
  *bound = got.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&got)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&got)->sin_port);
  return fd;
}

uint32_t streams_arg(const Napi::Value& v) {
  uint32_t n = arg_u32(v, "streams");
  if (n < 1 || n > 64) throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: streams must be 1..64, got " + std::to_string(n));
  return n;
}

}  // namespace

// -----------------------------------------------------------------------------------------------------
// Exported functions.

Napi::Value transportListen(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info[0], "options");
    std::string host = arg_string(field(o, "host"), "host");
    uint32_t port = arg_u32(field(o, "port"), "port");
    if (port > 65535) throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: port must be 0..65535");
    auto r = std::make_shared<Receiver>();
    r->nstreams = streams_arg(field(o, "streams"));
    r->helpers = hash_helpers(r->nstreams);
    r->timeout_ms = arg_u32(field(o, "timeoutMs"), "timeoutMs");
    Napi::Function cb = arg_function(info[1], "onEvent");
    r->slots.resize(r->nstreams);
    r->listen_fd = listen_on(host, static_cast<uint16_t>(port), &r->port);
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake_fd < 0) throw errno_failure(PHOS_ERR_INTERNAL, errno, "pccl transport: eventfd");
    r->tsfn = Napi::ThreadSafeFunction::New(info.Env(), cb, "pccl.transport.receiver", 0, 1);
    r->acceptor = std::thread([r] { r->accept_loop(); });
    uint32_t id;
    {
      std::lock_guard lock(g_receivers_mu);
      id = g_next_receiver++;
      g_receivers.emplace(id, r);
    }
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("id", id);
    out.Set("port", r->port);
    return out;
  });
}

Napi::Value transportRegisterDest(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto r = receiver_get(arg_u32(info[0], "receiver"));
    uint32_t alloc = arg_u32(info[1], "alloc");
    Napi::Object o = arg_object(info[2], "dest");
    uint32_t dst = arg_u32(field(o, "dst"), "dst");
    uint64_t off = arg_u64(field(o, "offset"), "offset");
    auto region = regions_get(dst, "mapping or keeper region");
    if (!region->writable) throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: destination mapping " + std::to_string(dst) + " is read-only");
    regions_check_range(*region, dst, off, 0);
    std::lock_guard lock(r->mu);
    r->dests[alloc] = Dest{region, dst, off};
    return info.Env().Undefined();
  });
}

Napi::Value transportReceiverClose(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "receiver");
    std::shared_ptr<Receiver> r;
    {
      std::lock_guard lock(g_receivers_mu);
      auto it = g_receivers.find(id);
      if (it == g_receivers.end()) return info.Env().Undefined();  // idempotent
      r = it->second;
      g_receivers.erase(it);
    }
    r->shutdown_all();
    r->tsfn.Release();
    return info.Env().Undefined();
  });
}

Napi::Value transportConnect(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info[0], "options");
    auto s = std::make_shared<Sender>();
    s->host = arg_string(field(o, "host"), "host");
    uint32_t port = arg_u32(field(o, "port"), "port");
    if (port < 1 || port > 65535) throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: port must be 1..65535");
    s->port = static_cast<uint16_t>(port);
    s->nstreams = streams_arg(field(o, "streams"));
    s->helpers = hash_helpers(s->nstreams);
    s->bucket.set_rate(rate_arg(field(o, "bandwidthBytesPerSec")));
    s->timeout_ms = arg_u32(field(o, "timeoutMs"), "timeoutMs");
    s->reconnects = arg_u32(field(o, "reconnects"), "reconnects");
    Napi::Value fv = field(o, "fault");
    if (!fv.IsNull() && !fv.IsUndefined()) {
      std::string f = arg_string(fv, "fault");
      if (f == "transport-flip-byte") s->fault = Fault::flip_byte;
      else if (f == "transport-break-stream") s->fault = Fault::break_stream;
    }
    Napi::Function cb = arg_function(info[1], "onEvent");
    s->session = random_session();
    s->tsfn = Napi::ThreadSafeFunction::New(info.Env(), cb, "pccl.transport.sender", 0, 1);
    struct Out {
      uint32_t id = 0;
    };
    return run_async<Out>(
        info.Env(), "pccl.transportConnect",
        [s]() -> Out {
          try {
            s->addr = resolve(s->host, s->port, false, &s->addr_len);
            for (uint32_t i = 0; i < s->nstreams; ++i) {
              auto st = std::make_unique<SenderStream>();
              st->idx = i;
              st->sock = s->dial(i);
              s->streams.push_back(std::move(st));
            }
          } catch (...) {
            s->streams.clear();
            s->tsfn.Release();
            throw;
          }
          s->start_threads();
          std::lock_guard lock(g_senders_mu);
          Out out{g_next_sender++};
          g_senders.emplace(out.id, s);
          return out;
        },
        [s](Napi::Env env, Out& out) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("id", out.id);
          o.Set("session", hash_hex(s->session));
          return o;
        });
  });
}

Napi::Value transportSend(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto s = sender_get(arg_u32(info[0], "sender"));
    Napi::Array a = arg_array(info[1], "items");
    auto b = std::make_shared<Batch>();
    b->t0 = Clock::now();
    b->total = a.Length();
    b->hashes.assign(b->total, 0);
    b->per_stream.resize(s->nstreams);
    std::vector<Chunk> chunks;
    chunks.reserve(b->total);
    std::unordered_map<uint32_t, std::shared_ptr<Region>> seen;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Object it = arg_object(a.Get(i), "items[i]");
      Chunk c;
      uint32_t src = arg_u32(field(it, "src"), "items[i].src");
      auto& r = seen[src];
      if (!r) r = regions_get(src, "mapping or keeper region");
      c.src = r;
      c.off = arg_u64(field(it, "offset"), "items[i].offset");
      c.len = arg_u64(field(it, "length"), "items[i].length");
      c.alloc = arg_u32(field(it, "alloc"), "items[i].alloc");
      c.dst_off = arg_u64(field(it, "chunkOffset"), "items[i].chunkOffset");
      if (c.len == 0 || c.len > kMaxChunk)
        throw Failure(PHOS_ERR_BAD_ARGS, "pccl transport: items[" + std::to_string(i) + "].length must be 1.." + std::to_string(kMaxChunk));
      regions_check_range(*r, src, c.off, c.len);
      c.batch = b;
      c.index = i;
      chunks.push_back(std::move(c));
    }
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    std::lock_guard lock(s->mu);
    if (s->closing) throw Failure(PHOS_ERR_ILLEGAL_STATE, "pccl transport: sender is closing");
    if (s->all_dead())
      throw Failure(PHOS_ERR_AGENT_UNAVAILABLE, "pccl transport: every stream to " + s->where() + " is gone").with("host", s->host);
    b->id = s->next_batch++;
    s->deferreds.emplace(b->id, deferred);
    if (b->total == 0) {
      s->settle(b, nullptr);
      return deferred.Promise();
    }
    s->pending.emplace(b->id, b);
    for (auto& c : chunks) s->queue.push_back(std::move(c));
    s->cv.notify_all();
    return deferred.Promise();
  });
}

Napi::Value transportSetBandwidth(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto s = sender_get(arg_u32(info[0], "sender"));
    s->bucket.set_rate(rate_arg(info[1]));
    return info.Env().Undefined();
  });
}

Napi::Value transportClose(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto s = sender_get(arg_u32(info[0], "sender"), true);
    {
      std::lock_guard lock(s->mu);
      s->closing = true;
      if (!s->pending.empty()) {
        Failure f(PHOS_ERR_CANCELLED, "pccl transport: the sender was closed with this send still in flight");
        s->fail_all(f);
      }
      s->cv.notify_all();
    }
    struct Out {
      std::vector<StreamTotals> per;
      double ms = 0;
      bool ended = true;
    };
    return run_async<Out>(
        info.Env(), "pccl.transportClose",
        [s]() -> Out {
          Out out;
          {
            std::unique_lock lock(s->mu);
            auto deadline = Clock::now() + std::chrono::milliseconds(s->timeout_ms);
            s->cv.wait_until(lock, deadline, [&] {
              for (auto& st : s->streams)
                if (!st->dead && !st->end_acked) return false;
              return true;
            });
            for (auto& st : s->streams) {
              if (!st->dead && !st->end_acked) out.ended = false;
              out.per.push_back(st->totals);
            }
          }
          s->shutdown_threads();
          s->tsfn.Release();
          out.ms = std::chrono::duration<double, std::milli>(Clock::now() - s->t0).count();
          return out;
        },
        [](Napi::Env env, Out& out) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          uint64_t bytes = 0, chunks = 0;
          for (auto& t : out.per) {
            bytes += t.bytes;
            chunks += t.chunks;
          }
          o.Set("bytes", static_cast<double>(bytes));
          o.Set("chunks", static_cast<double>(chunks));
          o.Set("ms", out.ms);
          o.Set("ended", out.ended);
          o.Set("perStream", totals_array(env, out.per, true));
          return o;
        });
  });
}

}  // namespace phos::pccl
