// Id table for host mappings and keeper regions (see regions.h).
#include "regions.h"

#include <mutex>
#include <string>
#include <unordered_map>

#include "failure.h"

namespace phos::pccl {

namespace {
std::mutex g_mu;
// Never destroyed: at process exit the driver may already be torn down, so regions still held then are
// left to the kernel rather than released through it from a static destructor.
auto& g_regions = *new std::unordered_map<uint32_t, std::shared_ptr<Region>>();
uint32_t g_next = 1;
}  // namespace

uint32_t regions_add(std::shared_ptr<Region> r) {
  std::lock_guard lock(g_mu);
  uint32_t id = g_next++;
  g_regions.emplace(id, std::move(r));
  return id;
}

std::shared_ptr<Region> regions_get(uint32_t id, const char* what) {
  std::lock_guard lock(g_mu);
  auto it = g_regions.find(id);
  if (it == g_regions.end())
    throw Failure(PHOS_ERR_NOT_FOUND, std::string("pccl: no ") + what + " with id " + std::to_string(id))
        .with("id", id);
  return it->second;
}

std::shared_ptr<Region> regions_take(uint32_t id, const char* what) {
  std::lock_guard lock(g_mu);
  auto it = g_regions.find(id);
  if (it == g_regions.end())
    throw Failure(PHOS_ERR_NOT_FOUND, std::string("pccl: no ") + what + " with id " + std::to_string(id))
        .with("id", id);
  auto r = std::move(it->second);
  g_regions.erase(it);
  return r;
}

void regions_check_range(const Region& r, uint32_t id, uint64_t off, uint64_t len) {
  if (off > r.size || len > r.size - off)
    throw Failure(PHOS_ERR_BAD_ARGS, "pccl: range [" + std::to_string(off) + ", +" + std::to_string(len) +
                                         ") lies outside region " + std::to_string(id) + " of " +
                                         std::to_string(r.size) + " bytes")
        .with("id", id);
}

}  // namespace phos::pccl
