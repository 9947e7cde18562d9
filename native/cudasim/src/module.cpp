// Modules and libraries from PTX text (also PTX found uncompressed inside a fatbin). Each .entry
// becomes a CUfunction bound by name to a registered CPU kernel; module-scope .global variables get
// zero-filled device memory (initialisers are not evaluated).
#include "module.h"

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "log.h"
#include "memory.h"
#include "stream.h"

struct CUmod_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::module;
  std::vector<std::unique_ptr<CUfunc_st>> functions;
  std::map<std::string, std::pair<CUdeviceptr, size_t>> globals;
};

struct CUlib_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::library;
  CUmod_st *module = nullptr;
  std::vector<std::unique_ptr<CUkern_st>> kernels;
};

namespace phos::cudasim {
namespace {

constexpr uint32_t kFatbinMagic = 0xBA55ED50;
constexpr uint32_t kFatbinWrapperMagic = 0x466243b1;

struct FatbinEntry {
  uint16_t kind;  // 1 = PTX, 2 = ELF
  uint16_t unknown1;
  uint32_t header_size;
  uint64_t size;
  uint32_t compressed_size;
  uint32_t unknown2;
  uint16_t minor, major;
  uint32_t arch;
  uint32_t name_offset, name_len;
  uint64_t flags;  // 0x2000: compressed
};

// The first uncompressed PTX text inside a fatbin, or empty.
std::string ptx_from_fatbin(const unsigned char *p) {
  uint16_t header_size;
  uint64_t fat_size;
  memcpy(&header_size, p + 6, 2);
  memcpy(&fat_size, p + 8, 8);
  const unsigned char *e = p + header_size, *end = e + fat_size;
  while (e + sizeof(FatbinEntry) <= end) {
    FatbinEntry h;
    memcpy(&h, e, sizeof h);
    if (h.header_size == 0) break;
    const char *payload = reinterpret_cast<const char *>(e + h.header_size);
    if (h.kind == 1 && !(h.flags & 0x2000)) return std::string(payload, strnlen(payload, h.size));
    if (h.kind == 1) CUSIM_WARN("fatbin PTX is compressed; rebuild without -Xfatbin -compress-all");
    e += h.header_size + h.size;
  }
  return "";
}

std::string image_text(const void *image) {
  auto *p = static_cast<const unsigned char *>(image);
  uint32_t magic;
  memcpy(&magic, p, 4);
  if (magic == kFatbinWrapperMagic) {
    const void *data;
    memcpy(&data, p + 8, sizeof data);
    return image_text(data);
  }
  if (magic == kFatbinMagic) return ptx_from_fatbin(p);
  if (p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F') {
    CUSIM_WARN("cubin images cannot run on cudasim; load PTX (or a fatbin that embeds PTX)");
    return "";
  }
  return static_cast<const char *>(image);
}

void make_function(CUmod_st *m, const ptx::Entry &e) {
  auto f = std::make_unique<CUfunc_st>();
  f->module = m;
  f->entry = e;
  for (const ptx::Param &p : e.params) {
    f->offsets.push_back(p.offset);
    f->sizes.push_back(p.size);
  }
  bind_kernel(f.get());
  m->functions.push_back(std::move(f));
}

CUresult load_text(const std::string &text, CUmod_st **out) {
  if (text.empty()) return CUDA_ERROR_INVALID_IMAGE;
  ptx::Module parsed;
  std::string err;
  if (!ptx::parse(text, &parsed, &err)) {
    CUSIM_WARN("cannot load module: %s", err.c_str());
    return CUDA_ERROR_INVALID_PTX;
  }
  auto m = std::make_unique<CUmod_st>();
  for (const ptx::Entry &e : parsed.entries) make_function(m.get(), e);
  for (const ptx::Global &g : parsed.globals) {
    CUdeviceptr d;
    if (CUresult r = memory::alloc_device(g.size ? g.size : 1, &d)) return r;
    m->globals[g.name] = {d, g.size};
  }
  *out = m.release();
  return CUDA_SUCCESS;
}

CUresult load_image(const void *image, CUmod_st **out) {
  if (!image || !out) return CUDA_ERROR_INVALID_VALUE;
  return load_text(image_text(image), out);
}

void unload(CUmod_st *m) {
  for (auto &[name, g] : m->globals) memory::free_device(g.first);
  for (auto &f : m->functions) f->magic = Magic::dead;
  m->magic = Magic::dead;
  delete m;
}

CUfunc_st *find_function(CUmod_st *m, const char *name) {
  for (auto &f : m->functions)
    if (f->entry.name == name) return f.get();
  return nullptr;
}

CUresult param_info(CUfunc_st *f, size_t index, size_t *offset, size_t *size) {
  if (!offset || index >= f->entry.params.size()) return CUDA_ERROR_INVALID_VALUE;
  *offset = f->entry.params[index].offset;
  if (size) *size = f->entry.params[index].size;
  return CUDA_SUCCESS;
}

CUresult func_attribute(int *v, CUfunction_attribute a, CUfunc_st *f) {
  uint32_t shared = std::max(f->entry.static_shared, f->plugin_shared);
  switch (a) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *v = static_cast<int>(shared); break;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *v = 0; break;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *v = 0; break;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *v = 32; break;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION: *v = 90; break;
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *v = 90; break;
    case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA: *v = 0; break;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *v = f->max_dynamic_shared; break;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *v = -1; break;
    default: *v = 0; break;
  }
  return CUDA_SUCCESS;
}

CUresult set_func_attribute(CUfunc_st *f, CUfunction_attribute a, int value) {
  if (a == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
    if (value < 0 || value > 227 * 1024) return CUDA_ERROR_INVALID_VALUE;
    f->max_dynamic_shared = value;
  }
  return CUDA_SUCCESS;
}

CUfunc_st *as_function(CUfunction f) {
  return has_magic(f, Magic::function) ? f : nullptr;
}

}  // namespace

bool bind_kernel(CUfunc_st *f) {
  if (f->fn.load()) return true;
  kernels::Impl impl;
  if (!kernels::lookup(f->entry.name, &impl)) return false;
  f->plugin_shared = impl.static_shared;
  f->fn.store(impl.fn);
  return true;
}

CUfunc_st *launchable(CUfunction f) {
  if (has_magic(f, Magic::function)) return f;
  if (has_magic(f, Magic::kernel)) return reinterpret_cast<CUkern_st *>(f)->function;
  return nullptr;
}

}  // namespace phos::cudasim

using namespace phos::cudasim;

// ---- modules ----
CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  return load_image(image, module);
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int, CUjit_option *, void **) {
  return cuModuleLoadData(module, image);
}

CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin) {
  return cuModuleLoadData(module, fatCubin);
}

CUresult cuModuleLoad(CUmodule *module, const char *fname) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!fname || !module) return CUDA_ERROR_INVALID_VALUE;
  std::ifstream in(fname, std::ios::binary);
  if (!in) return CUDA_ERROR_FILE_NOT_FOUND;
  std::stringstream ss;
  ss << in.rdbuf();
  return load_image(ss.str().c_str(), module);
}

CUresult cuModuleUnload(CUmodule hmod) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (!has_magic(hmod, Magic::module)) return CUDA_ERROR_INVALID_HANDLE;
  synchronize_all_streams();
  unload(hmod);
  return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name) {
  if (CUresult r = require_init()) return r;
  if (!has_magic(hmod, Magic::module)) return CUDA_ERROR_INVALID_HANDLE;
  if (!hfunc || !name) return CUDA_ERROR_INVALID_VALUE;
  CUfunc_st *f = find_function(hmod, name);
  if (!f) return CUDA_ERROR_NOT_FOUND;
  *hfunc = f;
  return CUDA_SUCCESS;
}

CUresult cuModuleGetFunctionCount(unsigned int *count, CUmodule mod) {
  if (!has_magic(mod, Magic::module)) return CUDA_ERROR_INVALID_HANDLE;
  if (!count) return CUDA_ERROR_INVALID_VALUE;
  *count = static_cast<unsigned>(mod->functions.size());
  return CUDA_SUCCESS;
}

CUresult cuModuleEnumerateFunctions(CUfunction *functions, unsigned int n, CUmodule mod) {
  if (!has_magic(mod, Magic::module)) return CUDA_ERROR_INVALID_HANDLE;
  if (!functions) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < n && i < mod->functions.size(); i++) functions[i] = mod->functions[i].get();
  return CUDA_SUCCESS;
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name) {
  if (CUresult r = require_init()) return r;
  if (!has_magic(hmod, Magic::module)) return CUDA_ERROR_INVALID_HANDLE;
  if (!name) return CUDA_ERROR_INVALID_VALUE;
  auto it = hmod->globals.find(name);
  if (it == hmod->globals.end()) return CUDA_ERROR_NOT_FOUND;
  if (dptr) *dptr = it->second.first;
  if (bytes) *bytes = it->second.second;
  return CUDA_SUCCESS;
}

CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode *mode) {
  if (!mode) return CUDA_ERROR_INVALID_VALUE;
  *mode = CU_MODULE_EAGER_LOADING;
  return CUDA_SUCCESS;
}

// ---- functions ----
// A CUkernel passed here reads as an invalid handle, as on the real driver (interception.md §4).
CUresult cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t *paramOffset, size_t *paramSize) {
  if (CUresult r = require_init()) return r;
  CUfunc_st *f = as_function(func);
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  return param_info(f, paramIndex, paramOffset, paramSize);
}

CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc) {
  if (CUresult r = require_init()) return r;
  CUfunc_st *f = launchable(hfunc);
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  if (!pi) return CUDA_ERROR_INVALID_VALUE;
  return func_attribute(pi, attrib, f);
}

CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value) {
  if (CUresult r = require_init()) return r;
  CUfunc_st *f = launchable(hfunc);
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  return set_func_attribute(f, attrib, value);
}

CUresult cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache) {
  return launchable(hfunc) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult cuFuncGetName(const char **name, CUfunction hfunc) {
  CUfunc_st *f = launchable(hfunc);
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  if (!name) return CUDA_ERROR_INVALID_VALUE;
  *name = f->entry.name.c_str();
  return CUDA_SUCCESS;
}

CUresult cuFuncGetModule(CUmodule *hmod, CUfunction hfunc) {
  CUfunc_st *f = as_function(hfunc);
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  if (!hmod) return CUDA_ERROR_INVALID_VALUE;
  *hmod = f->module;
  return CUDA_SUCCESS;
}

CUresult cuFuncIsLoaded(CUfunctionLoadingState *state, CUfunction function) {
  if (!launchable(function)) return CUDA_ERROR_INVALID_HANDLE;
  if (!state) return CUDA_ERROR_INVALID_VALUE;
  *state = CU_FUNCTION_LOADING_STATE_LOADED;
  return CUDA_SUCCESS;
}

CUresult cuFuncLoad(CUfunction function) {
  return launchable(function) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// ---- libraries (context-independent loading, what cudart 12/13 uses) ----
CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *, void **, unsigned int,
                           CUlibraryOption *, void **, unsigned int) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (!library) return CUDA_ERROR_INVALID_VALUE;
  CUmod_st *m;
  if (CUresult r = load_image(code, &m)) return r;
  auto *lib = new CUlib_st;
  lib->module = m;
  for (auto &f : m->functions) {
    auto k = std::make_unique<CUkern_st>();
    k->library = lib;
    k->function = f.get();
    lib->kernels.push_back(std::move(k));
  }
  *library = lib;
  return CUDA_SUCCESS;
}

CUresult cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jo, void **jv,
                               unsigned int nj, CUlibraryOption *lo, void **lv, unsigned int nl) {
  if (!fileName) return CUDA_ERROR_INVALID_VALUE;
  std::ifstream in(fileName, std::ios::binary);
  if (!in) return CUDA_ERROR_FILE_NOT_FOUND;
  std::stringstream ss;
  ss << in.rdbuf();
  return cuLibraryLoadData(library, ss.str().c_str(), jo, jv, nj, lo, lv, nl);
}

CUresult cuLibraryUnload(CUlibrary library) {
  CUSIM_API_ENTER();
  if (!has_magic(library, Magic::library)) return CUDA_ERROR_INVALID_HANDLE;
  synchronize_all_streams();
  for (auto &k : library->kernels) k->magic = Magic::dead;
  unload(library->module);
  library->magic = Magic::dead;
  delete library;
  return CUDA_SUCCESS;
}

CUresult cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name) {
  if (!has_magic(library, Magic::library)) return CUDA_ERROR_INVALID_HANDLE;
  if (!pKernel || !name) return CUDA_ERROR_INVALID_VALUE;
  for (auto &k : library->kernels) {
    if (k->function->entry.name == name) {
      *pKernel = reinterpret_cast<CUkernel>(k.get());
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_NOT_FOUND;
}

CUresult cuLibraryGetKernelCount(unsigned int *count, CUlibrary lib) {
  if (!has_magic(lib, Magic::library)) return CUDA_ERROR_INVALID_HANDLE;
  if (!count) return CUDA_ERROR_INVALID_VALUE;
  *count = static_cast<unsigned>(lib->kernels.size());
  return CUDA_SUCCESS;
}

CUresult cuLibraryEnumerateKernels(CUkernel *kernels, unsigned int n, CUlibrary lib) {
  if (!has_magic(lib, Magic::library)) return CUDA_ERROR_INVALID_HANDLE;
  if (!kernels) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < n && i < lib->kernels.size(); i++)
    kernels[i] = reinterpret_cast<CUkernel>(lib->kernels[i].get());
  return CUDA_SUCCESS;
}

CUresult cuLibraryGetModule(CUmodule *pMod, CUlibrary library) {
  if (!has_magic(library, Magic::library)) return CUDA_ERROR_INVALID_HANDLE;
  if (!pMod) return CUDA_ERROR_INVALID_VALUE;
  *pMod = library->module;
  return CUDA_SUCCESS;
}

CUresult cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary library, const char *name) {
  if (!has_magic(library, Magic::library)) return CUDA_ERROR_INVALID_HANDLE;
  return cuModuleGetGlobal_v2(dptr, bytes, library->module, name);
}

namespace {
CUkern_st *as_kernel(CUkernel k) {
  return has_magic(k, Magic::kernel) ? reinterpret_cast<CUkern_st *>(k) : nullptr;
}
}  // namespace

CUresult cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel) {
  if (CUresult r = require_context()) return r;
  CUkern_st *k = as_kernel(kernel);
  if (!k) return CUDA_ERROR_INVALID_HANDLE;
  if (!pFunc) return CUDA_ERROR_INVALID_VALUE;
  *pFunc = k->function;
  return CUDA_SUCCESS;
}

CUresult cuKernelGetParamInfo(CUkernel kernel, size_t paramIndex, size_t *paramOffset, size_t *paramSize) {
  CUkern_st *k = as_kernel(kernel);
  if (!k) return CUDA_ERROR_INVALID_HANDLE;
  return param_info(k->function, paramIndex, paramOffset, paramSize);
}

CUresult cuKernelGetName(const char **name, CUkernel hfunc) {
  CUkern_st *k = as_kernel(hfunc);
  if (!k) return CUDA_ERROR_INVALID_HANDLE;
  if (!name) return CUDA_ERROR_INVALID_VALUE;
  *name = k->function->entry.name.c_str();
  return CUDA_SUCCESS;
}

CUresult cuKernelGetLibrary(CUlibrary *pLib, CUkernel kernel) {
  CUkern_st *k = as_kernel(kernel);
  if (!k) return CUDA_ERROR_INVALID_HANDLE;
  if (!pLib) return CUDA_ERROR_INVALID_VALUE;
  *pLib = k->library;
  return CUDA_SUCCESS;
}

CUresult cuKernelGetAttribute(int *pi, CUfunction_attribute attrib, CUkernel kernel, CUdevice) {
  CUkern_st *k = as_kernel(kernel);
  if (!k) return CUDA_ERROR_INVALID_HANDLE;
  if (!pi) return CUDA_ERROR_INVALID_VALUE;
  return func_attribute(pi, attrib, k->function);
}

CUresult cuKernelSetAttribute(CUfunction_attribute attrib, int val, CUkernel kernel, CUdevice) {
  CUkern_st *k = as_kernel(kernel);
  if (!k) return CUDA_ERROR_INVALID_HANDLE;
  return set_func_attribute(k->function, attrib, val);
}

CUresult cuKernelSetCacheConfig(CUkernel kernel, CUfunc_cache, CUdevice) {
  return as_kernel(kernel) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}
