#!/usr/bin/env bash
# Installs qlib's build and test dependencies from Debian (bookworm) when they are missing.
set -euo pipefail
packages=(cmake g++ make pkg-config libsimdjson-dev libxsimd-dev libbenchmark-dev catch2 zlib1g-dev
          python3 python3-numpy doxygen clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "qlib: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
