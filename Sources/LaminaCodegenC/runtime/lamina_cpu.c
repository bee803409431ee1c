/* lamina_cpu.c — which instruction sets this CPU runs, for the Lamina C runtime.
 *
 * A library compiled for AVX-512 must not start on a CPU without it (it would die of SIGILL at the
 * first such instruction), and a portable library picks the widest code the CPU runs. Both ask
 * lamina_cpu_missing. This file is compiled for the baseline of the architecture (-march=x86-64 on
 * x86-64), never with the flags of the code it guards, so the check itself runs on any CPU.
 *
 * On x86-64 the features come from CPUID, and the AVX and AVX-512 ones only count when the operating
 * system saves their registers (XGETBV: XCR0 bits 1-2 for AVX, 5-7 for AVX-512). Elsewhere no feature
 * of this table exists, so only code that requires none (the generic target) runs.
 *
 * LAMINA_CPU_DISABLE lists features to treat as missing (LAMINA_CPU_DISABLE=avx512f): tests run the
 * AVX2 code of a portable library, and the refusal of an AVX-512 one, on an AVX-512 machine.
 * lamina_cpu_disable_on_thread does the same for the calling thread alone, so one test can do it
 * while others in the same process load libraries (the environment is the whole process's, and its
 * children's). */
#include <stdlib.h>
#include <string.h>

#include "lamina_runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LAMINA_CPU_X86 1
#endif

/* CPUID leaf, register and bit of each feature (register: 1 = ECX, 2 = EBX of the leaf). */
typedef struct lamina_cpu_feature {
  const char* name;
  unsigned leaf, reg, bit;
  int needs_avx_state, needs_avx512_state;
} lamina_cpu_feature;

enum { LAMINA_CPU_ECX = 1, LAMINA_CPU_EBX = 2 };

static const lamina_cpu_feature lamina_cpu_features[] = {
    {"sse3", 1, LAMINA_CPU_ECX, 0, 0, 0},
    {"ssse3", 1, LAMINA_CPU_ECX, 9, 0, 0},
    {"fma", 1, LAMINA_CPU_ECX, 12, 1, 0},
    {"cx16", 1, LAMINA_CPU_ECX, 13, 0, 0},
    {"sse4.1", 1, LAMINA_CPU_ECX, 19, 0, 0},
    {"sse4.2", 1, LAMINA_CPU_ECX, 20, 0, 0},
    {"movbe", 1, LAMINA_CPU_ECX, 22, 0, 0},
    {"popcnt", 1, LAMINA_CPU_ECX, 23, 0, 0},
    {"aes", 1, LAMINA_CPU_ECX, 25, 0, 0},
    {"xsave", 1, LAMINA_CPU_ECX, 26, 0, 0},
    {"avx", 1, LAMINA_CPU_ECX, 28, 1, 0},
    {"f16c", 1, LAMINA_CPU_ECX, 29, 1, 0},
    {"rdrnd", 1, LAMINA_CPU_ECX, 30, 0, 0},
    {"bmi", 7, LAMINA_CPU_EBX, 3, 0, 0},
    {"avx2", 7, LAMINA_CPU_EBX, 5, 1, 0},
    {"bmi2", 7, LAMINA_CPU_EBX, 8, 0, 0},
    {"avx512f", 7, LAMINA_CPU_EBX, 16, 1, 1},
    {"avx512dq", 7, LAMINA_CPU_EBX, 17, 1, 1},
    {"rdseed", 7, LAMINA_CPU_EBX, 18, 0, 0},
    {"adx", 7, LAMINA_CPU_EBX, 19, 0, 0},
    {"avx512ifma", 7, LAMINA_CPU_EBX, 21, 1, 1},
    {"avx512cd", 7, LAMINA_CPU_EBX, 28, 1, 1},
    {"sha", 7, LAMINA_CPU_EBX, 29, 0, 0},
    {"avx512bw", 7, LAMINA_CPU_EBX, 30, 1, 1},
    {"avx512vl", 7, LAMINA_CPU_EBX, 31, 1, 1},
    {"avx512vbmi", 7, LAMINA_CPU_ECX, 1, 1, 1},
    {"avx512vbmi2", 7, LAMINA_CPU_ECX, 6, 1, 1},
    {"gfni", 7, LAMINA_CPU_ECX, 8, 0, 0},
    {"vaes", 7, LAMINA_CPU_ECX, 9, 1, 0},
    {"vpclmulqdq", 7, LAMINA_CPU_ECX, 10, 1, 0},
    {"avx512vnni", 7, LAMINA_CPU_ECX, 11, 1, 1},
    {"avx512bitalg", 7, LAMINA_CPU_ECX, 12, 1, 1},
    {"avx512vpopcntdq", 7, LAMINA_CPU_ECX, 14, 1, 1},
    {"lzcnt", 0x80000001u, LAMINA_CPU_ECX, 5, 0, 0},
};

/* The levels of the x86-64 psABI, as the features gcc and clang may use at each. */
static const char* const lamina_cpu_levels[][2] = {
    {"x86-64-v2", "cx16 popcnt sse3 sse4.1 sse4.2 ssse3"},
    {"x86-64-v3", "cx16 popcnt sse3 sse4.1 sse4.2 ssse3 avx avx2 bmi bmi2 f16c fma lzcnt movbe xsave"},
    {"x86-64-v4", "cx16 popcnt sse3 sse4.1 sse4.2 ssse3 avx avx2 bmi bmi2 f16c fma lzcnt movbe xsave "
                  "avx512f avx512bw avx512cd avx512dq avx512vl"},
};

/* Whether `list` (separated by spaces or commas) holds the word `name` (length `length`). */
static int lamina_cpu_listed(const char* list, const char* name, size_t length) {
  if (!list) return 0;
  const char* p = list;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    const char* start = p;
    while (*p && *p != ' ' && *p != ',') p++;
    if ((size_t)(p - start) == length && strncmp(start, name, length) == 0) return 1;
  }
  return 0;
}

/* Whether the CPU (and the operating system) supports the feature `name` of `length` characters. */
static int lamina_cpu_has(const char* name, size_t length) {
#ifdef LAMINA_CPU_X86
  for (size_t i = 0; i < sizeof lamina_cpu_features / sizeof lamina_cpu_features[0]; i++) {
    const lamina_cpu_feature* f = &lamina_cpu_features[i];
    if (strlen(f->name) != length || strncmp(f->name, name, length) != 0) continue;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(f->leaf, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned word = f->reg == LAMINA_CPU_EBX ? ebx : ecx;
    if (!((word >> f->bit) & 1)) return 0;
    if (f->needs_avx_state || f->needs_avx512_state) {
      /* The registers are usable only if the OS saves them: OSXSAVE, then XCR0. */
      if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return 0;
      unsigned xcr0_low, xcr0_high;
      __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
      if ((xcr0_low & 0x6) != 0x6) return 0;
      if (f->needs_avx512_state && (xcr0_low & 0xe0) != 0xe0) return 0;
    }
    return 1;
  }
#else
  (void)name;
  (void)length;
#endif
  return 0; /* a feature this table does not know is one the library cannot be sure of */
}

/* Appends `name` (`length` characters) to `missing` unless it is there already. */
static void lamina_cpu_note(char* missing, size_t size, const char* name, size_t length) {
  if (!missing || size == 0 || lamina_cpu_listed(missing, name, length)) return;
  size_t used = strlen(missing);
  if (used + (used > 0) + length + 1 > size) return;
  if (used > 0) missing[used++] = ' ';
  memcpy(missing + used, name, length);
  missing[used + length] = 0;
}

/* Features the calling thread treats as missing, beside LAMINA_CPU_DISABLE's. */
static _Thread_local char lamina_cpu_disabled_on_thread[256];

void lamina_cpu_disable_on_thread(const char* features) {
  lamina_cpu_disabled_on_thread[0] = 0;
  if (!features) return;
  /* A list too long for the buffer is cut at a separator, never inside a name. */
  size_t length = strlen(features);
  if (length >= sizeof lamina_cpu_disabled_on_thread) {
    length = sizeof lamina_cpu_disabled_on_thread - 1;
    while (length > 0 && features[length] != ' ' && features[length] != ',') length--;
  }
  memcpy(lamina_cpu_disabled_on_thread, features, length);
  lamina_cpu_disabled_on_thread[length] = 0;
}

int lamina_cpu_missing(const char* required, char* missing, size_t size) {
  if (missing && size > 0) missing[0] = 0;
  if (!required) return 0;
  const char* disabled = getenv("LAMINA_CPU_DISABLE");
  int count = 0;
  const char* p = required;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    const char* start = p;
    while (*p && *p != ' ' && *p != ',') p++;
    const size_t length = (size_t)(p - start);
    if (length == 0) continue;
    /* A level stands for its features. */
    const char* level = NULL;
    for (size_t i = 0; i < sizeof lamina_cpu_levels / sizeof lamina_cpu_levels[0]; i++)
      if (strlen(lamina_cpu_levels[i][0]) == length && strncmp(lamina_cpu_levels[i][0], start, length) == 0)
        level = lamina_cpu_levels[i][1];
    const char* q = level ? level : start;
    const char* end = level ? level + strlen(level) : p;
    while (q < end) {
      while (q < end && (*q == ' ' || *q == ',')) q++;
      const char* name = q;
      while (q < end && *q != ' ' && *q != ',') q++;
      const size_t name_length = (size_t)(q - name);
      if (name_length == 0) continue;
      if (!lamina_cpu_has(name, name_length) || lamina_cpu_listed(disabled, name, name_length) ||
          lamina_cpu_listed(lamina_cpu_disabled_on_thread, name, name_length)) {
        if (!missing || !lamina_cpu_listed(missing, name, name_length)) count++;
        lamina_cpu_note(missing, size, name, name_length);
      }
    }
  }
  return count;
}
