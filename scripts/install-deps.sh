#!/usr/bin/env bash
# Installs the Debian 12 packages imgnorm needs to build, test and benchmark. Idempotent; run as root.
# Installs nothing when everything is already there, so `make` stays fast on a ready machine.
set -euo pipefail

build_pkgs=(
  g++ cmake make pkg-config
  libjpeg62-turbo-dev libturbojpeg0-dev libspng-dev libwebp-dev
  libopencv-imgproc-dev libtbb-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  pybind11-dev python3-dev python3-numpy
  libopenmpi-dev openmpi-bin
  liblapacke-dev libopenblas-dev
)
test_pkgs=(
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-numpy python3-opencv python3-pil python3-torch python3-torchvision
  python3-pytest python3-tqdm time
  python3-sklearn
)

want=("${build_pkgs[@]}")
case "${1:-all}" in
  build) ;;
  all | test) want+=("${test_pkgs[@]}") ;;
  fuzz) want+=("${test_pkgs[@]}" clang libclang-rt-14-dev) ;;
  *) echo "usage: $0 [build|test|fuzz]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
