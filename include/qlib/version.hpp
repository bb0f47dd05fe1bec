#pragma once
// qlib's version. CMakeLists.txt reads project(VERSION) from these three macros, so they are the one
// place a release changes.
#define QLIB_VERSION_MAJOR 0
#define QLIB_VERSION_MINOR 1
#define QLIB_VERSION_PATCH 0

#define QLIB_DETAIL_STR2(x) #x
#define QLIB_DETAIL_STR(x) QLIB_DETAIL_STR2(x)
#define QLIB_VERSION_STRING \
    QLIB_DETAIL_STR(QLIB_VERSION_MAJOR) "." QLIB_DETAIL_STR(QLIB_VERSION_MINOR) "." QLIB_DETAIL_STR(QLIB_VERSION_PATCH)
/// One integer for comparisons: major * 10000 + minor * 100 + patch.
#define QLIB_VERSION (QLIB_VERSION_MAJOR * 10000 + QLIB_VERSION_MINOR * 100 + QLIB_VERSION_PATCH)

namespace qlib {
inline constexpr const char* version_string = QLIB_VERSION_STRING;
}
