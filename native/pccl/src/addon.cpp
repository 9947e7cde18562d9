// Registers pccl's functions with Node; nothing else. native/pccl/pccl.ts declares the same functions
// in the same order.
#include <napi.h>

#include "agent-socket.h"
#include "chunk-io.h"
#include "driver-ckpt.h"
#include "keeper.h"
#include "reaper.h"
#include "shm.h"
#include "transport.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  using namespace phos::pccl;
  struct Fn {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Fn fns[] = {
      // driver-ckpt.cpp
      {"driverCheckpoint", driverCheckpoint},
      {"driverState", driverState},
      {"restoreThreadId", restoreThreadId},
      // agent-socket.cpp
      {"agentListen", agentListen},
      {"agentSend", agentSend},
      {"agentClose", agentClose},
      {"agentServerClose", agentServerClose},
      {"closeFd", closeFd},
      // shm.cpp
      {"mapFd", mapFd},
      {"unmap", unmap},
      {"mapRead", mapRead},
      {"mapWrite", mapWrite},
      // chunk-io.cpp
      {"writeChunks", writeChunks},
      {"readChunks", readChunks},
      // keeper.cpp
      {"keeperImport", keeperImport},
      {"keeperRelease", keeperRelease},
      {"keeperExportFd", keeperExportFd},
      {"keeperSpare", keeperSpare},
      {"keeperCopy", keeperCopy},
      // transport.cpp
      {"transportListen", transportListen},
      {"transportRegisterDest", transportRegisterDest},
      {"transportReceiverClose", transportReceiverClose},
      {"transportConnect", transportConnect},
      {"transportSend", transportSend},
      {"transportSetBandwidth", transportSetBandwidth},
      {"transportClose", transportClose},
      // chunk-io.cpp (appended: the order above is the TS interface's)
      {"hashChunks", hashChunks},
      // reaper.cpp
      {"becomeSubreaper", becomeSubreaper},
      {"reap", reap},
      // driver-ckpt.cpp (appended)
      {"driverCopyShed", driverCopyShed},
  };
  for (const Fn& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(pccl, init)
