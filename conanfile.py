# Conan 2 recipe for qlib, a header-only library.
#   conan create . --build=missing        (then: find_package(qlib) + qlib::qlib in the consumer)
import os
import re

from conan import ConanFile
from conan.tools.files import copy, load


class QlibConan(ConanFile):
    name = "qlib"
    version = "0.1.0"
    license = "MIT"
    description = "Header-only C++20 library for LLM weight quantization and zero-copy tensor IO"
    topics = ("quantization", "llm", "safetensors", "gguf", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

    def set_version(self):
        # Keep the recipe in step with include/qlib/version.hpp when building from a checkout.
        header = os.path.join(self.recipe_folder, "include", "qlib", "version.hpp")
        if os.path.exists(header):
            parts = dict(re.findall(r"#define QLIB_VERSION_(MAJOR|MINOR|PATCH) (\d+)", load(self, header)))
            self.version = f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"

    def requirements(self):
        # qlib's public headers include these, so their headers must reach consumers.
        self.requires("simdjson/3.0.1", transitive_headers=True)
        self.requires("xsimd/8.1.0", transitive_headers=True)
        self.requires("zlib/1.3.1", transitive_headers=True)

    def validate(self):
        from conan.tools.build import check_min_cppstd
        check_min_cppstd(self, 20)

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "qlib")
        self.cpp_info.set_property("cmake_target_name", "qlib::qlib")
        self.cpp_info.set_property("pkg_config_name", "qlib")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.system_libs = ["pthread"]
