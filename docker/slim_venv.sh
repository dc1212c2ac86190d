#!/bin/sh
# slim_venv VENV "module, module, ...": leave in VENV only what runs, then prove it still imports.
# Removed: pip and setuptools (no installs at run time), packages' own test suites, and debug
# symbols of compiled modules (strip --strip-debug keeps every symbol the loader needs). Libraries
# that auditwheel vendored or re-linked (`*.libs`, an RPATH into one) were rewritten by patchelf,
# which strip corrupts: they are left alone.
set -eu
venv=$1
"$venv/bin/python3" -m pip uninstall -y -q pip setuptools
find "$venv" -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +
find "$venv" -type f -name '*.so*' ! -path '*.libs/*' | while read -r lib; do
  if readelf -d "$lib" 2>/dev/null | grep -q 'R[UN]*PATH.*\.libs'; then continue; fi
  if readelf -S "$lib" 2>/dev/null | grep -q '\.debug_info'; then strip --strip-debug "$lib"; fi
done
"$venv/bin/python3" -c "import importlib, sys; [importlib.import_module(m.strip()) for m in sys.argv[1].split(',')]" "$2"
