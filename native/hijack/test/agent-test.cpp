// A fake node agent speaking the real frame protocol: it listens on a SOCK_SEQPACKET socket, starts
// app-test --agent under LD_PRELOAD=libphos with PHOS_AGENT_SOCK, and checks hello (+ staging memfd),
// alloc (+ slab fd), status, hash rounds (all chunks first, none when idle, exactly the touched chunk
// after a write), an unimplemented op, and that a garbage frame does not hurt the app.
// Usage: agent-test LIBPHOS APP-TEST
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "frames.h"
#include "msgpack.h"

using namespace phos::hijack;

static int g_sock = -1;
static std::vector<uint8_t> g_buf(1 << 20);

// Receives one frame (and at most one fd); returns its type or "" on EOF/timeout.
static std::string recv_frame(msgpack::Value* v, int* fd) {
  if (fd) *fd = -1;
  msghdr m{};
  iovec io{g_buf.data(), g_buf.size()};
  m.msg_iov = &io;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  m.msg_control = cbuf;
  m.msg_controllen = sizeof cbuf;
  ssize_t n = recvmsg(g_sock, &m, 0);
  if (n <= 0) return "";
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_type == SCM_RIGHTS) {
      int f;
      memcpy(&f, CMSG_DATA(c), sizeof f);
      if (fd) *fd = f; else close(f);
    }
  const char* why = nullptr;
  if (const char* code = frame_decode(g_buf.data(), static_cast<size_t>(n), v, &why)) {
    std::printf("libphos sent a bad frame: %s %s\n", code, why);
    return "bad";
  }
  return std::string(v->get("t")->s);
}

static void send_req(uint64_t id, const char* op) {
  msgpack::Writer w;
  frame_begin(w, PHOS_FRAME_REQ, 2);
  w.kv("id", id);
  w.kv("op", op);
  send(g_sock, w.bytes().data(), w.bytes().size(), 0);
}

// Sends req and waits for its rep, skipping alloc/free frames.
static bool request(uint64_t id, const char* op, msgpack::Value* rep) {
  send_req(id, op);
  for (;;) {
    std::string t = recv_frame(rep, nullptr);
    if (t.empty()) return false;
    if (t != "rep") continue;
    uint64_t rid = 0;
    rep->get("id")->as_u64(&rid);
    if (rid == id) return true;
  }
}

static std::vector<uint64_t> changed_of(const msgpack::Value& rep) {
  std::vector<uint64_t> out;
  const msgpack::Value* c = rep.get("changed");
  if (c && c->type == msgpack::Type::array)
    for (auto& i : c->items) { uint64_t u = 0; i.as_u64(&u); out.push_back(u); }
  return out;
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  signal(SIGPIPE, SIG_IGN);
  std::string path = "/tmp/phos-agent-test-" + std::to_string(getpid()) + ".sock";
  int ls = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  unlink(path.c_str());
  CHECK(bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(ls, 4) == 0);
  int to_child[2], from_child[2];
  CHECK(pipe(to_child) == 0 && pipe(from_child) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    setenv("LD_PRELOAD", argv[1], 1);
    setenv("PHOS_AGENT_SOCK", path.c_str(), 1);
    setenv("PHOS_JOB", "agent-test", 1);
    setenv("PHOS_STAGING_MIB", "4", 1);
    execl(argv[2], argv[2], "--agent", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE* out = fdopen(from_child[0], "r");
  FILE* in = fdopen(to_child[1], "w");
  timeval tv{20, 0};
  g_sock = accept(ls, nullptr, nullptr);
  CHECK(g_sock >= 0);
  setsockopt(g_sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  msgpack::Value v;
  int fd = -1;
  CHECK(recv_frame(&v, &fd) == "hello");
  uint64_t pidv = 0, base = 0, staging = 0;
  CHECK(v.get("pid")->as_u64(&pidv) && pidv == static_cast<uint64_t>(pid));
  CHECK(v.get("job")->s == "agent-test");
  const char* want_base = getenv("PHOS_VA_BASE");
  uint64_t want = want_base && *want_base ? strtoull(want_base, nullptr, 16) : 0x600000000000ull;
  CHECK(v.get("vaBase")->as_u64(&base) && base == want);
  CHECK(v.get("stagingBytes")->as_u64(&staging) && staging == (4u << 20));
  struct stat sb{};
  CHECK(fd >= 0 && fstat(fd, &sb) == 0 && static_cast<uint64_t>(sb.st_size) == staging);
  if (fd >= 0) close(fd);
  {
    msgpack::Writer w;
    frame_begin(w, PHOS_FRAME_WELCOME, 1);
    w.kv("node", "node-test");
    send(g_sock, w.bytes().data(), w.bytes().size(), 0);
  }
  // Wait for the app to be ready; the slab's alloc frame (with fd) arrives meanwhile.
  char line[256] = {0};
  CHECK(std::fgets(line, sizeof line, out) && !strncmp(line, "ready", 5));
  unsigned long long pa = 0, pb = 0;
  std::sscanf(line, "ready a=%llx b=%llx", &pa, &pb);
  CHECK(recv_frame(&v, &fd) == "alloc");
  uint64_t va = 0, size = 0;
  CHECK(v.get("va")->as_u64(&va) && va >= base && v.get("size")->as_u64(&size) && size >= (6u << 20));
  CHECK(fd >= 0);
  if (fd >= 0) close(fd);

  msgpack::Value rep;
  CHECK(request(1, "status", &rep));
  uint64_t allocs = 0, bytes = 0, chunks = 0;
  CHECK(rep.get("ok")->b);
  CHECK(rep.get("allocations")->as_u64(&allocs) && allocs == 2);
  CHECK(rep.get("bytes")->as_u64(&bytes) && bytes == (4u << 20) + 4096);
  CHECK(rep.get("chunks")->as_u64(&chunks) && chunks == 3);

  CHECK(request(2, "hash-round", &rep));
  CHECK(rep.get("ok")->b);
  auto c1 = changed_of(rep);
  CHECK(c1.size() == 3);  // every chunk is new in the first round
  CHECK(request(3, "hash-round", &rep));
  CHECK(rep.get("ok")->b && changed_of(rep).empty());  // nothing ran in between

  std::fputs("touch\n", in);
  std::fflush(in);
  CHECK(std::fgets(line, sizeof line, out) && !strncmp(line, "touched", 7));
  CHECK(request(4, "hash-round", &rep));
  auto c3 = changed_of(rep);
  CHECK(c3.size() == 1 && c3[0] == ((pb - base) >> 21));

  // Unimplemented op: an error reply, not silence. (freeze/thaw/gate: test/integration/libphos-ops.test.ts)
  CHECK(request(5, "stream-out", &rep));
  CHECK(!rep.get("ok")->b && rep.get("err") && rep.get("err")->get("code")->s == PHOS_ERR_ILLEGAL_STATE);
  // Garbage, then a newer protocol version: ignored / refused, and the link keeps working.
  uint8_t junk[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
  send(g_sock, junk, sizeof junk, 0);
  {
    msgpack::Writer w;
    w.map(4);
    w.kv("v", 2);
    w.kv("t", "req");
    w.kv("id", 6);
    w.kv("op", "status");
    send(g_sock, w.bytes().data(), w.bytes().size(), 0);
    CHECK(recv_frame(&rep, nullptr) == "rep" && !rep.get("ok")->b && rep.get("err")->get("code")->s == PHOS_ERR_PROTO_VERSION);
  }
  CHECK(request(7, "status", &rep) && rep.get("ok")->b);

  std::fputs("exit\n", in);
  std::fflush(in);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // The app exited: the link ends with EOF, after nothing but well-formed frames.
  bool clean = true;
  for (;;) {
    std::string t = recv_frame(&v, nullptr);
    if (t.empty()) break;
    if (t == "bad") clean = false;
  }
  CHECK(clean);
  unlink(path.c_str());
  return phos_test::finish("agent-test");
}
