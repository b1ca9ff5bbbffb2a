#!/usr/bin/env bash
# ctest package.consumer: installs this build tree into a temporary prefix, checks what was
# installed, then configures and builds examples/cpp against it (find_package(imgnorm CONFIG
# REQUIRED) through CMAKE_PREFIX_PATH, same compiler, Release) and runs the program, which also
# dlopen()s the plug-in that has libimgnorm.a linked in.
#
# Sanitizer builds (make test-sanitize): the installed imgnorm::imgnorm carries -fsanitize=... in
# its link interface (an instrumented libimgnorm.a cannot link without the runtime), so the example
# links the sanitizer runtime by itself and runs under ASan/UBSan like every other test.
#
# usage: package_test.sh BUILD_DIR SOURCE_DIR CXX GENERATOR LIBDIR INCLUDEDIR BINDIR
set -euo pipefail
if [ $# -ne 7 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR CXX GENERATOR LIBDIR INCLUDEDIR BINDIR" >&2
  exit 2
fi
build=$1 src=$2 cxx=$3 generator=$4 libdir=$5 includedir=$6 bindir=$7

work=$(mktemp -d "${TMPDIR:-/tmp}/imgnorm-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() { echo "package_test: $*" >&2; exit 1; }

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" \
  || { cat "$work/install.log"; fail "install failed"; }

echo "== installed files"
cmakedir=$prefix/$libdir/cmake/imgnorm
for f in "$cmakedir"/imgnormConfig.cmake "$cmakedir"/imgnormConfigVersion.cmake \
         "$cmakedir"/imgnormTargets.cmake "$cmakedir"/imgnormDependencies.cmake \
         "$prefix/$includedir"/imgnorm/{export,error,image,stats}.hpp; do
  [ -f "$f" ] || fail "missing $f"
done
lib=
for f in "$prefix/$libdir"/libimgnorm.{a,so}; do
  if [ -f "$f" ]; then lib=$f; fi
done
[ -n "$lib" ] || fail "no libimgnorm.a or libimgnorm.so in $prefix/$libdir"
echo "library: ${lib#"$prefix"/}"
"$prefix/$bindir/imgnorm" --version || fail "$bindir/imgnorm --version failed"

# The exported targets must be relocatable: nothing from the build or source tree, and a link
# interface of target names only (no absolute library paths a consumer's machine may not have).
if grep -n -F -e "$build" -e "$src" "$cmakedir"/*.cmake; then
  fail "installed CMake files name the build or source tree"
fi
if grep -n 'INTERFACE_LINK_LIBRARIES' "$cmakedir"/imgnormTargets.cmake | grep '/'; then
  fail "imgnormTargets.cmake links a path, not a target"
fi

echo "== examples/cpp against $prefix"
cmake -S "$src/examples/cpp" -B "$work/example" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log" \
  || { cat "$work/configure.log"; fail "configuring examples/cpp failed"; }
found=$(sed -n 's/^imgnorm_DIR:PATH=//p' "$work/example/CMakeCache.txt")
[ "$found" -ef "$cmakedir" ] || fail "examples/cpp found imgnorm in '$found', not in $cmakedir"
cmake --build "$work/example" -j 2 >"$work/build.log" \
  || { cat "$work/build.log"; fail "building examples/cpp failed"; }

echo "== run"
"$work/example/stats_demo" "$work/example/libdemo_module.so"

# The Python package, when the build has it: importable from PREFIX/lib/python3.X/dist-packages
# (the folder Debian's python3 searches for PREFIX=/usr/local), with nothing from the build tree.
if [ -d "$build/python/imgnorm" ]; then
  echo "== python package under $prefix"
  site=$(/usr/bin/python3 -c 'import sys; print(f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/dist-packages")')
  [ -f "$prefix/$site/imgnorm/__init__.py" ] || fail "no $site/imgnorm/__init__.py"
  ls "$prefix/$site"/imgnorm/_core*.so >/dev/null || fail "no $site/imgnorm/_core*.so"
  (cd "$work" && PYTHONPATH="$prefix/$site" /usr/bin/python3 -c "
import imgnorm, numpy as np
assert imgnorm.__file__.startswith('$prefix'), imgnorm.__file__
x = imgnorm.Normalizer(None, mode='scale')(np.full((2, 3, 4, 3), 255, np.uint8))
assert x.shape == (2, 3, 4, 3) and (x == 1).all()
print('imported', imgnorm.__version__, 'from', imgnorm.__file__)
") || fail "the installed Python package does not import"

  # `make install DESTDIR=ROOT` (PREFIX=/usr/local): the package lands in ROOT/usr/local/lib/
  # python3.X/dist-packages, the folder Debian's python3 searches, and imports from there.
  echo "== python package under DESTDIR=$work/root, prefix /usr/local"
  DESTDIR="$work/root" cmake --install "$build" --prefix /usr/local >"$work/install-root.log" \
    || { cat "$work/install-root.log"; fail "DESTDIR install failed"; }
  (cd "$work" && PYTHONPATH="$work/root/usr/local/$site" /usr/bin/python3 -c "
import imgnorm
assert imgnorm.__file__.startswith('$work/root/usr/local/$site/imgnorm/'), imgnorm.__file__
print('imported from', imgnorm.__file__)
") || fail "the Python package installed with DESTDIR does not import"
  /usr/bin/python3 -c "import site, sys; sys.exit('/usr/local/$site' not in site.getsitepackages())" \
    || fail "/usr/local/$site is not on Debian's python3 path"
fi
