#!/usr/bin/env bash
# Packaging checks, run by CTest: usage <build dir> <mode>
#   install      cmake --install into a temporary prefix; only headers + CMake/pkg-config files are
#                installed; a consumer builds with find_package(qlib) and with pkg-config, and runs
#   subdirectory a consumer builds with add_subdirectory(qlib) and runs
#   vcpkg        the overlay port's files are well-formed and its install layout equals cmake --install's
#   conan        conanfile.py declares a header-only package with the qlib::qlib target
set -euo pipefail
build=$(cd "$1" && pwd); mode=$2
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/qlib-pkg-$mode.XXXXXX")
trap 'rm -rf "$work"' EXIT

layout() { (cd "$1" && find . -type f | sort); }

case $mode in
install)
  cmake --install "$build" --prefix "$work/prefix" >/dev/null
  bad=$(layout "$work/prefix" | grep -vE '^\./include/qlib/.*\.hpp$|^\./share/qlib/[^/]+\.cmake$|^\./share/pkgconfig/qlib\.pc$' || true)
  [ -z "$bad" ] || { echo "unexpected installed files:"; echo "$bad"; exit 1; }
  grep -q "#define QLIB_VERSION_MINOR" "$work/prefix/include/qlib/version.hpp"
  cmake -S "$src/tests/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
  cmake --build "$work/consumer" -j2 >/dev/null
  "$work/consumer/consumer" "$work"
  export PKG_CONFIG_PATH="$work/prefix/share/pkgconfig"
  # shellcheck disable=SC2046
  g++ $(pkg-config --cflags qlib) "$src/tests/consumer/main.cpp" -o "$work/consumer-pc" $(pkg-config --libs qlib)
  "$work/consumer-pc" "$work"
  ;;
subdirectory)
  cmake -S "$src/tests/consumer" -B "$work/consumer" -DQLIB_SUBDIR="$src" >/dev/null
  cmake --build "$work/consumer" -j2 >/dev/null
  "$work/consumer/consumer" "$work"
  ;;
vcpkg)
  port=$src/ports/qlib
  for f in vcpkg.json portfile.cmake usage; do [ -f "$port/$f" ] || { echo "missing ports/qlib/$f"; exit 1; }; done
  /usr/bin/python3 - "$port/vcpkg.json" "$src/include/qlib/version.hpp" <<'PY'
import json, re, sys
m = json.load(open(sys.argv[1]))
v = dict(re.findall(r"#define QLIB_VERSION_(MAJOR|MINOR|PATCH) (\d+)", open(sys.argv[2]).read()))
assert m["name"] == "qlib", m
assert m["version"] == f"{v['MAJOR']}.{v['MINOR']}.{v['PATCH']}", (m["version"], v)
deps = {d if isinstance(d, str) else d["name"] for d in m["dependencies"]}
assert {"simdjson", "xsimd", "zlib"} <= deps, deps
PY
  grep -q 'set(VCPKG_BUILD_TYPE release)' "$port/portfile.cmake"
  grep -q 'vcpkg_cmake_config_fixup(CONFIG_PATH share/qlib)' "$port/portfile.cmake"
  # The port configures with these options; its install must equal a plain cmake --install.
  opts=$(sed -n '/vcpkg_cmake_configure/,/)/p' "$port/portfile.cmake" | grep -oE -- '-D[A-Z_]+=[A-Za-z0-9_]+')
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$work/port-build" $opts >/dev/null
  cmake --install "$work/port-build" --prefix "$work/port" >/dev/null
  cmake --install "$build" --prefix "$work/plain" >/dev/null
  diff <(layout "$work/port") <(layout "$work/plain")
  ;;
conan)
  /usr/bin/python3 - "$src/conanfile.py" "$src/include/qlib/version.hpp" <<'PY'
import ast, re, sys
tree = ast.parse(open(sys.argv[1]).read())
cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
attrs = {t.id: n.value for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
lit = lambda k: ast.literal_eval(attrs[k])
assert lit("name") == "qlib"
assert lit("package_type") == "header-library"
assert lit("no_copy_source") is True
v = dict(re.findall(r"#define QLIB_VERSION_(MAJOR|MINOR|PATCH) (\d+)", open(sys.argv[2]).read()))
assert lit("version") == f"{v['MAJOR']}.{v['MINOR']}.{v['PATCH']}"
methods = {n.name: ast.unparse(n) for n in cls.body if isinstance(n, ast.FunctionDef)}
assert "self.info.clear()" in methods["package_id"]
for dep in ("simdjson/", "xsimd/", "zlib/"):
    assert dep in methods["requirements"], dep
assert "transitive_headers=True" in methods["requirements"]
assert "'cmake_target_name', 'qlib::qlib'" in methods["package_info"]
print("conanfile.py: header-library qlib", lit("version"))
PY
  ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
echo "packaging $mode: ok"
