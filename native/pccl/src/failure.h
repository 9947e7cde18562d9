// Failures inside the addon: a phos error code (from phos/proto.h) plus a message naming the object, and
// extra fields (path, pid, CUDA error name) that become properties of the JS error. Thrown as a C++
// exception inside the addon only; js.cpp turns it into a plain JS Error {name: 'PcclError', code, ...}.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "phos/proto.h"

namespace phos::pccl {

struct Failure {
  std::string code;     // a PHOS_ERR_* string
  std::string message;  // what failed and why, naming the object
  std::vector<std::pair<std::string, std::string>> strings;
  std::vector<std::pair<std::string, double>> numbers;

  Failure() = default;
  Failure(std::string c, std::string m) : code(std::move(c)), message(std::move(m)) {}
  Failure& with(std::string key, std::string value) {
    strings.emplace_back(std::move(key), std::move(value));
    return *this;
  }
  Failure& with(std::string key, double value) {
    numbers.emplace_back(std::move(key), value);
    return *this;
  }
};

// "open(/x/y): No space left on device" with `errno` (the symbolic name, e.g. "ENOSPC") attached.
Failure errno_failure(const char* code, int err, const std::string& what);

}  // namespace phos::pccl
