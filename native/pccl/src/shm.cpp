// mmap(MAP_SHARED) of fds handed over by libphos. A mapping past the end of the file would SIGBUS the
// agent on first touch, so the file's size is checked before mapping.
#include "shm.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "js.h"
#include "regions.h"

namespace phos::pccl {

namespace {

struct HostMapping final : Region {
  ~HostMapping() override {
    if (host) munmap(host, size);
  }
};

std::shared_ptr<Region> map_fd(int fd, uint64_t size, bool writable) {
  if (size == 0) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: cannot map 0 bytes of fd " + std::to_string(fd));
  struct stat st {};
  if (fstat(fd, &st) != 0) throw errno_failure(PHOS_ERR_BAD_ARGS, errno, "pccl: fstat(fd " + std::to_string(fd) + ")");
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < size)
    throw Failure(PHOS_ERR_BAD_ARGS, "pccl: fd " + std::to_string(fd) + " holds " + std::to_string(st.st_size) +
                                         " bytes, fewer than the " + std::to_string(size) + " to map");
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* p = mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    throw errno_failure(PHOS_ERR_BAD_ARGS, errno,
                        "pccl: mmap(fd " + std::to_string(fd) + ", " + std::to_string(size) + " bytes)");
  auto m = std::make_shared<HostMapping>();
  m->host = static_cast<uint8_t*>(p);
  m->size = size;
  m->writable = writable;
  return m;
}

std::shared_ptr<Region> host_region(uint32_t id) {
  auto r = regions_get(id, "mapping");
  if (r->is_device()) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: id " + std::to_string(id) + " is a keeper region, not a mapping");
  return r;
}

}  // namespace

Napi::Value mapFd(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int fd = arg_fd(info[0], "fd");
    uint64_t size = arg_u64(info[1], "size");
    bool writable = arg_bool(info[2], "writable");
    return Napi::Number::New(info.Env(), regions_add(map_fd(fd, size, writable)));
  });
}

Napi::Value unmap(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "id");
    host_region(id);
    regions_take(id, "mapping");
    return info.Env().Undefined();
  });
}

Napi::Value mapRead(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "id");
    uint64_t off = arg_u64(info[1], "offset");
    uint64_t len = arg_u64(info[2], "length");
    auto r = host_region(id);
    regions_check_range(*r, id, off, len);
    return Napi::Buffer<uint8_t>::Copy(info.Env(), r->host + off, len);
  });
}

Napi::Value mapWrite(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "id");
    uint64_t off = arg_u64(info[1], "offset");
    if (!info[2].IsBuffer()) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: argument bytes must be a Buffer");
    auto bytes = info[2].As<Napi::Buffer<uint8_t>>();
    auto r = host_region(id);
    if (!r->writable) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: mapping " + std::to_string(id) + " is read-only");
    regions_check_range(*r, id, off, bytes.Length());
    std::memcpy(r->host + off, bytes.Data(), bytes.Length());
    return info.Env().Undefined();
  });
}

}  // namespace phos::pccl
