// Kernel registry, plugin loading and the block runner (see kernels.h).
#include "kernels.h"

#include <dirent.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "log.h"
#include "options.h"

namespace phos::cudasim::kernels {
namespace {

std::mutex g_reg_mutex;
std::map<std::string, Impl> &registry() {
  static auto *r = new std::map<std::string, Impl>;
  return *r;
}

int register_kernel(const char *entry, cudasim_block_fn fn, uint32_t static_shared) {
  if (!entry || !fn) return -EINVAL;
  std::lock_guard lk(g_reg_mutex);
  auto [it, ok] = registry().emplace(entry, Impl{fn, static_shared});
  if (!ok) {
    CUSIM_WARN("kernel %s registered twice; keeping the first", entry);
    return -EEXIST;
  }
  CUSIM_DEBUG("registered CPU kernel %s", entry);
  return 0;
}

const cudasim_host_api kHostApi = {sizeof(cudasim_host_api), CUDASIM_ABI_VERSION, register_kernel};

void load_one(const std::string &path) {
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    CUSIM_WARN("cannot load kernel plugin %s: %s", path.c_str(), dlerror());
    return;
  }
  auto fn = reinterpret_cast<cudasim_plugin_register_fn>(dlsym(h, CUDASIM_PLUGIN_SYMBOL));
  if (!fn) {
    CUSIM_WARN("%s has no %s; not a cudasim kernel plugin", path.c_str(), CUDASIM_PLUGIN_SYMBOL);
    return;
  }
  if (int rc = fn(&kHostApi)) CUSIM_WARN("kernel plugin %s failed to register (%d)", path.c_str(), rc);
  else CUSIM_INFO("loaded kernel plugin %s", path.c_str());
}

bool ends_with_so(const char *name) {
  size_t n = strlen(name);
  return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

void load_path(const std::string &path) {
  DIR *d = opendir(path.c_str());
  if (!d) {
    if (errno == ENOTDIR) load_one(path);
    else if (errno != ENOENT) CUSIM_WARN("cannot read kernel plugin path %s: %s", path.c_str(), strerror(errno));
    return;
  }
  std::vector<std::string> files;
  while (dirent *e = readdir(d))
    if (ends_with_so(e->d_name)) files.push_back(path + "/" + e->d_name);
  closedir(d);
  std::sort(files.begin(), files.end());  // deterministic order: first registration wins
  for (auto &f : files) load_one(f);
}

std::string default_dir() {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void *>(&load_plugins), &info) || !info.dli_fname) return "";
  std::string self = info.dli_fname;
  size_t slash = self.rfind('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/kernels";
}

// ---- block pool ----
struct Job {
  const cudasim_launch *launch;
  cudasim_block_fn fn;
  uint32_t shared_bytes;
  uint64_t total;
  uint32_t gx, gy;  // copied: a late helper must not read `launch` once the grid is done
  std::atomic<uint64_t> next{0};
  std::atomic<int> running{0};
  std::mutex m;
  std::condition_variable cv;
};

void run_blocks(Job &j) {
  thread_local std::vector<unsigned char> shared;
  if (shared.size() < j.shared_bytes) shared.resize(j.shared_bytes);
  const uint32_t gx = j.gx, gy = j.gy;
  for (uint64_t b; (b = j.next.fetch_add(1)) < j.total;) {
    if (j.shared_bytes) memset(shared.data(), 0, j.shared_bytes);
    j.fn(j.launch, static_cast<uint32_t>(b % gx), static_cast<uint32_t>(b / gx % gy),
         static_cast<uint32_t>(b / gx / gy), j.shared_bytes ? shared.data() : nullptr);
  }
}

struct Pool {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Job>> tokens;  // one token per helper a job may use
  unsigned size = 0;

  void start() {
    unsigned n = std::thread::hardware_concurrency();
    size = n > 1 ? n - 1 : 1;
    for (unsigned i = 0; i < size; i++) std::thread([this] { loop(); }).detach();
  }

  void loop() {
    for (;;) {
      std::shared_ptr<Job> j;
      {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return !tokens.empty(); });
        j = std::move(tokens.front());
        tokens.pop_front();
      }
      j->running.fetch_add(1);  // before claiming blocks: the owner waits for running == 0
      run_blocks(*j);
      if (j->running.fetch_sub(1) == 1) {
        std::lock_guard lk(j->m);
        j->cv.notify_all();
      }
    }
  }
};

Pool &pool() {
  static Pool *p = [] {
    auto *np = new Pool;  // leaked: helpers live for the whole process
    np->start();
    return np;
  }();
  return *p;
}

}  // namespace

void load_plugins() {
  std::string list = options().kernels;
  if (list.empty()) list = default_dir();
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ':');)
    if (!item.empty()) load_path(item);
}

bool lookup(const std::string &entry, Impl *out) {
  std::lock_guard lk(g_reg_mutex);
  auto it = registry().find(entry);
  if (it == registry().end()) return false;
  *out = it->second;
  return true;
}

void run_grid(const cudasim_launch &launch, cudasim_block_fn fn, uint32_t shared_bytes) {
  auto j = std::make_shared<Job>();
  j->launch = &launch;
  j->fn = fn;
  j->shared_bytes = shared_bytes;
  j->total = uint64_t{launch.grid[0]} * launch.grid[1] * launch.grid[2];
  j->gx = launch.grid[0];
  j->gy = launch.grid[1];
  if (j->total > 1) {
    Pool &p = pool();
    uint64_t helpers = std::min<uint64_t>(p.size, j->total - 1);
    std::lock_guard lk(p.m);
    for (uint64_t i = 0; i < helpers; i++) p.tokens.push_back(j);
    p.cv.notify_all();
  }
  run_blocks(*j);
  std::unique_lock lk(j->m);
  j->cv.wait(lk, [&] { return j->running.load() == 0; });
}

}  // namespace phos::cudasim::kernels
