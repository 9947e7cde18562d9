// Writes each range to its own file atomically (O_EXCL temp name in the same directory, optional fsync,
// rename), so a reader never sees a partial chunk under its final name and a failed write leaves nothing
// behind; reads verify the hash before anything lands in the destination, so a damaged image never
// reaches the app's memory. The source/destination is a region id: host mapping or keeper range.
#include "chunk-io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "chunk-hasher.h"
#include "js.h"
#include "keeper.h"
#include "regions.h"

namespace phos::pccl {

namespace {

struct Item {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string path;
  uint64_t hash = 0;  // readChunks: expected
};

struct Result {
  std::vector<uint64_t> hashes;
  uint64_t bytes = 0;
  double ms = 0;
};

std::atomic<uint64_t> g_tmp_seq{0};

// Which code a failed write of an image file gets: a full disk is the caller's to fix by freeing space.
Failure write_failure(int err, const std::string& what, const std::string& path) {
  const char* code = PHOS_ERR_INTERNAL;
  if (err == ENOSPC || err == EDQUOT) code = PHOS_ERR_DISK_FULL;
  else if (err == ENOENT || err == ENOTDIR || err == EACCES || err == EPERM || err == EROFS || err == EEXIST ||
           err == ENAMETOOLONG)
    code = PHOS_ERR_BAD_ARGS;
  Failure f = errno_failure(code, err, what + " " + path);
  f.with("path", path);
  return f;
}

Failure corrupt(const std::string& path, const std::string& why) {
  return Failure(PHOS_ERR_IMAGE_CORRUPT, "chunk file " + path + " " + why).with("path", path);
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw write_failure(errno, "write", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Hands the bytes of [off, off+len) of r to fn(p, n) in order, in pieces of at most Staging::kBytes:
// a host mapping in place, a keeper region through pinned staging (taken from the pool on first use and
// kept in `s` for the caller's next range).
template <class Fn>
void for_each_piece(const Region& r, uint64_t off, uint64_t len, std::unique_ptr<Staging>& s, Fn&& fn) {
  if (!r.is_device()) {
    const uint8_t* p = r.host + off;
    for (uint64_t done = 0; done < len;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(len - done, Staging::kBytes));
      fn(p + done, n);
      done += n;
    }
    return;
  }
  if (!s && len) s = std::make_unique<Staging>();
  for (uint64_t done = 0; done < len;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len - done, s->size()));
    device_read(r, off + done, s->data(), n);
    fn(s->data(), n);
    done += n;
  }
}

// Streams one range into fd, hashing the same bytes it writes.
uint64_t stream_out(const Region& r, const Item& it, int fd) {
  ChunkHasher h;
  std::unique_ptr<Staging> s;
  for_each_piece(r, it.offset, it.length, s, [&](const uint8_t* p, size_t n) {
    h.update(p, n);
    write_all(fd, p, n, it.path);
  });
  return h.digest();
}

uint64_t write_one(const Region& r, const Item& it, bool sync) {
  std::string tmp = it.path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(g_tmp_seq++);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw write_failure(errno, "create", it.path);
  try {
    uint64_t hash = stream_out(r, it, fd);
    if (sync && fsync(fd) != 0) throw write_failure(errno, "fsync", it.path);
    int rc = close(fd);
    fd = -1;
    if (rc != 0) throw write_failure(errno, "close", it.path);
    if (rename(tmp.c_str(), it.path.c_str()) != 0) throw write_failure(errno, "rename into", it.path);
    return hash;
  } catch (...) {
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    throw;
  }
}

void fsync_dir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw write_failure(errno, "open directory", dir);
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) throw write_failure(err, "fsync directory", dir);
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Result write_all_items(const std::shared_ptr<Region>& r, const std::vector<Item>& items, bool sync) {
  auto t0 = std::chrono::steady_clock::now();
  Result res;
  std::set<std::string> dirs;
  for (const Item& it : items) {
    res.hashes.push_back(write_one(*r, it, sync));
    res.bytes += it.length;
    if (sync) dirs.insert(dir_of(it.path));
  }
  for (const auto& d : dirs) fsync_dir(d);  // the renames themselves must survive a crash
  res.ms = ms_since(t0);
  return res;
}

// hashChunks: the same hash stream_out computes, with nothing written; one staging buffer for all items.
Result hash_all_items(const std::shared_ptr<Region>& r, const std::vector<Item>& items) {
  auto t0 = std::chrono::steady_clock::now();
  Result res;
  res.hashes.reserve(items.size());
  std::unique_ptr<Staging> s;
  for (const Item& it : items) {
    ChunkHasher h;
    for_each_piece(*r, it.offset, it.length, s, [&h](const uint8_t* p, size_t n) { h.update(p, n); });
    res.hashes.push_back(h.digest());
    res.bytes += it.length;
  }
  res.ms = ms_since(t0);
  return res;
}

// Reads exactly it.length bytes of it.path into buf; the file must be exactly that long.
void read_file(const Item& it, uint8_t* buf) {
  int fd = open(it.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw corrupt(it.path, "is missing");
    throw errno_failure(PHOS_ERR_IMAGE_CORRUPT, err, "cannot open chunk file " + it.path).with("path", it.path);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != it.length) {
    close(fd);
    throw corrupt(it.path, "is " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(it.length));
  }
  uint64_t done = 0;
  while (done < it.length) {
    ssize_t n = read(fd, buf + done, it.length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      if (n == 0) throw corrupt(it.path, "ended after " + std::to_string(done) + " of " + std::to_string(it.length) + " bytes");
      throw errno_failure(PHOS_ERR_IMAGE_CORRUPT, err, "cannot read chunk file " + it.path).with("path", it.path);
    }
    done += static_cast<uint64_t>(n);
  }
  close(fd);
}

void verify(const Item& it, const uint8_t* buf) {
  ChunkHasher h;
  h.update(buf, it.length);
  uint64_t got = h.digest();
  if (got != it.hash)
    throw corrupt(it.path, "has hash " + hash_hex(got) + ", expected " + hash_hex(it.hash))
        .with("expected", hash_hex(it.hash))
        .with("actual", hash_hex(got));
}

// Per pool thread, reused across calls: fresh host memory costs a page fault per 4 KiB.
thread_local std::vector<uint8_t> t_scratch;
constexpr size_t kScratchKeep = size_t{64} << 20;

Result read_all_items(const std::shared_ptr<Region>& r, const std::vector<Item>& items) {
  auto t0 = std::chrono::steady_clock::now();
  Result res;
  std::unique_ptr<Staging> staging;
  for (const Item& it : items) {
    uint8_t* buf;
    if (r->is_device() && it.length <= Staging::kBytes) {
      if (!staging) staging = std::make_unique<Staging>();
      buf = staging->data();
    } else {
      if (t_scratch.size() < it.length) t_scratch.resize(it.length);
      buf = t_scratch.data();
    }
    read_file(it, buf);
    verify(it, buf);
    if (r->is_device()) device_write(*r, it.offset, buf, it.length);
    else std::memcpy(r->host + it.offset, buf, it.length);
    res.bytes += it.length;
  }
  if (t_scratch.capacity() > kScratchKeep) std::vector<uint8_t>().swap(t_scratch);
  res.ms = ms_since(t0);
  return res;
}

// {hashes, bytes, ms}: writeChunks' and hashChunks' result.
Napi::Value hashes_to_js(Napi::Env env, Result& res) {
  Napi::Array out = Napi::Array::New(env, res.hashes.size());
  for (uint32_t i = 0; i < res.hashes.size(); ++i) out.Set(i, hash_hex(res.hashes[i]));
  Napi::Object o = Napi::Object::New(env);
  o.Set("hashes", out);
  o.Set("bytes", static_cast<double>(res.bytes));
  o.Set("ms", res.ms);
  return o;
}

uint64_t parse_hash(const std::string& s) {
  if (s.size() != 16) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: hash '" + s + "' is not 16 hex digits");
  uint64_t h = 0;
  for (char c : s) {
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (v < 0) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: hash '" + s + "' is not 16 lower-case hex digits");
    h = h << 4 | static_cast<uint64_t>(v);
  }
  return h;
}

// Items of a chunk call: offset and length always, `path` unless hashing only, `hash` when reading.
enum class Fields { path, path_and_hash, range_only };

std::vector<Item> parse_items(const Napi::Value& v, uint32_t id, const Region& r, Fields fields) {
  Napi::Array a = arg_array(v, "items");
  std::vector<Item> items;
  items.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Object o = arg_object(a.Get(i), "items[i]");
    Item it;
    it.offset = arg_u64(field(o, "offset"), "items[i].offset");
    it.length = arg_u64(field(o, "length"), "items[i].length");
    if (fields != Fields::range_only) it.path = arg_string(field(o, "path"), "items[i].path");
    if (fields == Fields::path_and_hash) it.hash = parse_hash(arg_string(field(o, "hash"), "items[i].hash"));
    regions_check_range(r, id, it.offset, it.length);
    items.push_back(std::move(it));
  }
  return items;
}

}  // namespace

Napi::Value writeChunks(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info[0], "options");
    uint32_t id = arg_u32(field(o, "src"), "src");
    auto r = regions_get(id, "mapping or keeper region");
    std::vector<Item> items = parse_items(field(o, "items"), id, *r, Fields::path);
    bool sync = arg_bool(field(o, "fsync"), "fsync");
    return run_async<Result>(
        info.Env(), "pccl.writeChunks", [r, items = std::move(items), sync] { return write_all_items(r, items, sync); },
        hashes_to_js);
  });
}

Napi::Value readChunks(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info[0], "options");
    uint32_t id = arg_u32(field(o, "dst"), "dst");
    auto r = regions_get(id, "mapping or keeper region");
    if (!r->writable) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: readChunks into read-only mapping " + std::to_string(id));
    std::vector<Item> items = parse_items(field(o, "items"), id, *r, Fields::path_and_hash);
    return run_async<Result>(
        info.Env(), "pccl.readChunks", [r, items = std::move(items)] { return read_all_items(r, items); },
        [](Napi::Env env, Result& res) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("bytes", static_cast<double>(res.bytes));
          o.Set("ms", res.ms);
          return o;
        });
  });
}

Napi::Value hashChunks(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info[0], "options");
    uint32_t id = arg_u32(field(o, "src"), "src");
    auto r = regions_get(id, "mapping or keeper region");
    std::vector<Item> items = parse_items(field(o, "items"), id, *r, Fields::range_only);
    return run_async<Result>(
        info.Env(), "pccl.hashChunks", [r, items = std::move(items)] { return hash_all_items(r, items); },
        hashes_to_js);
  });
}

}  // namespace phos::pccl
