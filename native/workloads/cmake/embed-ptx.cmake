# Turns a .ptx file into a header holding it as a raw string literal `kPtx` (cmake -P, IN= OUT=).
file(READ "${IN}" ptx)
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by embed-ptx.cmake; do not edit.\n#pragma once\n"
  "static const char kPtx[] = R\"PHOSPTX(${ptx})PHOSPTX\";\n")
file(RENAME "${OUT}.tmp" "${OUT}")
