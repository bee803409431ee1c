/*
 * The entry point of each fuzz executable, and the per-input time limit.
 *
 * SwiftPM links a Linux executable with `--defsym main=<Target>_main` (so tests can link against
 * executables), and with -parse-as-library no Swift `main` exists to be renamed: these are the
 * `<Target>_main` it asks for. Each hands control to libFuzzer's driver, as libFuzzer's own main would,
 * with the target's LLVMFuzzerTestOneInput wrapped in a CPU-time limit.
 *
 * The limit is CPU time, not libFuzzer's -timeout (wall time): at nice 19 on a busy machine an input
 * that needs 2 s of CPU measured 28 s of wall time, so a wall-clock limit reports the machine's load
 * as hangs. A watchdog thread aborts when an input has used more than LAMINA_FUZZ_CPU_SECONDS of the
 * process's CPU time (10 s by default), and libFuzzer keeps the input as a crash.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "FuzzEntry.h"

int LLVMFuzzerRunDriver(int* argc, char*** argv, int (*callback)(const uint8_t* data, size_t size));
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static long long cpu_limit_ns = 10000000000LL;
/* The process's CPU time when the current input started; -1 between inputs. */
static _Atomic long long input_started_ns = -1;

static long long cpu_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* Checks ten times a second; aborting makes libFuzzer keep the input being run. */
static void* watchdog(void* unused) {
  (void)unused;
  for (;;) {
    usleep(100000);
    const long long started = atomic_load(&input_started_ns);
    if (started >= 0 && cpu_ns() - started > cpu_limit_ns) {
      static const char message[] =
          "\nfuzz: this input used more than its CPU-time limit (LAMINA_FUZZ_CPU_SECONDS): a hang\n";
      (void)!write(2, message, sizeof message - 1);
      abort();
    }
  }
  return NULL;
}

static int limited(const uint8_t* data, size_t size) {
  atomic_store(&input_started_ns, cpu_ns());
  const int result = LLVMFuzzerTestOneInput(data, size);
  atomic_store(&input_started_ns, -1);
  return result;
}

static int run(int argc, char** argv) {
  const char* configured = getenv("LAMINA_FUZZ_CPU_SECONDS");
  if (configured && atol(configured) > 0) cpu_limit_ns = atol(configured) * 1000000000LL;
  pthread_t thread;
  if (pthread_create(&thread, NULL, watchdog, NULL) != 0) abort();
  pthread_detach(thread);
  return LLVMFuzzerRunDriver(&argc, &argv, limited);
}

int FuzzModelSource_main(int argc, char** argv) { return run(argc, argv); }

int FuzzTensorFiles_main(int argc, char** argv) { return run(argc, argv); }
