#pragma once
// GCC 12.2 reports the _mm512_undefined_*() placeholders inside its own AVX-512 intrinsics as "maybe
// uninitialized" in whichever function they end up inlined into (GCC bug 105593, fixed in 12.3).
// Headers whose functions use AVX-512 intrinsics (directly or through xsimd) wrap their bodies in
// these macros so the false positive does not bury real warnings; code that inlines the small
// kernels::* helpers into its own functions wraps those functions too.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#define QLIB_SIMD_DIAGNOSTICS_BEGIN \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
        _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define QLIB_SIMD_DIAGNOSTICS_END _Pragma("GCC diagnostic pop")
#else
#define QLIB_SIMD_DIAGNOSTICS_BEGIN
#define QLIB_SIMD_DIAGNOSTICS_END
#endif

// The x86 intrinsics headers are included here, inside the same suppression: at -O1 (sanitizer builds)
// GCC keeps xsimd's math functions (exp) out of line, and their false positives are then reported at
// the intrinsics' own lines, whose diagnostic state is the one of the first inclusion. Headers that
// include xsimd or simdjson (which includes the intrinsics too) include this header first.
#if defined(__x86_64__) || defined(__i386__)
QLIB_SIMD_DIAGNOSTICS_BEGIN
#include <immintrin.h>
QLIB_SIMD_DIAGNOSTICS_END
#endif
