# Overlay port: vcpkg install qlib --overlay-ports=<qlib checkout>/ports
# Builds from the checkout that contains this port (set QLIB_SOURCE_DIR to use another one).
set(VCPKG_BUILD_TYPE release)  # header-only: one configuration is enough

if(NOT DEFINED QLIB_SOURCE_DIR)
  get_filename_component(QLIB_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
endif()

vcpkg_cmake_configure(
  SOURCE_PATH "${QLIB_SOURCE_DIR}"
  OPTIONS
    -DQLIB_BUILD_TESTS=OFF
    -DQLIB_BUILD_BENCHMARKS=OFF
    -DQLIB_BUILD_EXAMPLES=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/qlib)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/debug")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${QLIB_SOURCE_DIR}/LICENSE")
