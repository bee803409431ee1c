/*
 * SwiftPM links a Linux executable with `--defsym main=<Target>_main` (so tests can link against
 * executables), and with -parse-as-library no Swift `main` exists to be renamed: these are the
 * `<Target>_main` it asks for. Each hands control to libFuzzer's driver with the target's
 * LLVMFuzzerTestOneInput, as libFuzzer's own main would.
 */
#include <stddef.h>
#include <stdint.h>

#include "FuzzEntry.h"

int LLVMFuzzerRunDriver(int* argc, char*** argv, int (*callback)(const uint8_t* data, size_t size));
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int FuzzModelSource_main(int argc, char** argv) {
  return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}

int FuzzTensorFiles_main(int argc, char** argv) {
  return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}
