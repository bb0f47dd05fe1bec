# Dependencies shared by the build tree and the installed package (qlibConfig.cmake).
include(CMakeFindDependencyMacro)
find_dependency(simdjson CONFIG)
find_dependency(xsimd CONFIG)
# Debian's xsimd 8 exports a link to "xtl" although its headers do not need it (xtl is only used for
# xtl::xcomplex support). Satisfy it with xtl when installed, else with an empty target.
if(NOT TARGET xtl)
  find_package(xtl CONFIG QUIET)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endif()
find_dependency(ZLIB)
find_dependency(Threads)
