// Node-API glue shared by every component (see js.h).
#include "js.h"

#include <cmath>
#include <cstring>

namespace phos::pccl {

Failure errno_failure(const char* code, int err, const std::string& what) {
  const char* name = strerrorname_np(err);
  Failure f(code, what + ": " + std::strerror(err));
  f.with("errno", name ? name : std::to_string(err));
  return f;
}

Napi::Error to_js_error(Napi::Env env, const Failure& f) {
  Napi::Error e = Napi::Error::New(env, f.message);
  Napi::Object o = e.Value();
  o.Set("name", "PcclError");
  o.Set("code", f.code);
  for (const auto& [k, v] : f.strings) o.Set(k, v);
  for (const auto& [k, v] : f.numbers) o.Set(k, v);
  return e;
}

static Failure bad_arg(const char* name, const char* want) {
  return Failure(PHOS_ERR_BAD_ARGS, std::string("pccl: argument ") + name + " must be " + want);
}

uint64_t arg_u64(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw bad_arg(name, "a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) throw bad_arg(name, "a non-negative safe integer");
  return static_cast<uint64_t>(d);
}

uint32_t arg_u32(const Napi::Value& v, const char* name) {
  uint64_t x = arg_u64(v, name);
  if (x > UINT32_MAX) throw bad_arg(name, "a 32-bit unsigned integer");
  return static_cast<uint32_t>(x);
}

int32_t arg_fd(const Napi::Value& v, const char* name) {
  uint64_t x = arg_u64(v, name);
  if (x > INT32_MAX) throw bad_arg(name, "a file descriptor");
  return static_cast<int32_t>(x);
}

bool arg_bool(const Napi::Value& v, const char* name) {
  if (!v.IsBoolean()) throw bad_arg(name, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string arg_string(const Napi::Value& v, const char* name) {
  if (!v.IsString()) throw bad_arg(name, "a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) throw bad_arg(name, "a string without NUL");
  return s;
}

Napi::Object arg_object(const Napi::Value& v, const char* name) {
  if (!v.IsObject()) throw bad_arg(name, "an object");
  return v.As<Napi::Object>();
}

Napi::Array arg_array(const Napi::Value& v, const char* name) {
  if (!v.IsArray()) throw bad_arg(name, "an array");
  return v.As<Napi::Array>();
}

Napi::Function arg_function(const Napi::Value& v, const char* name) {
  if (!v.IsFunction()) throw bad_arg(name, "a function");
  return v.As<Napi::Function>();
}

Napi::Value field(const Napi::Object& o, const char* key) { return o.Get(key); }

Napi::Value guard(const Napi::CallbackInfo& info, const std::function<Napi::Value()>& body) {
  try {
    return body();
  } catch (const Failure& f) {
    throw to_js_error(info.Env(), f);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {  // node-addon-api converts only Napi::Error; anything else would abort
    throw to_js_error(info.Env(), Failure(PHOS_ERR_INTERNAL, std::string("pccl: ") + e.what()));
  }
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace phos::pccl
