#!/usr/bin/env bash
# Builds the wire-protocol fuzz target with libFuzzer and runs it for FUZZ_SECONDS (default 20).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-20}
cc=${CLANG:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz_wire: cannot fuzz: $cc not found (install clang)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_wire.XXXXXX")
keep=0
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOF
if ! "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >"$work/probe.log" 2>&1; then
    echo "fuzz_wire: cannot fuzz: $cc cannot link -fsanitize=fuzzer (install libFuzzer, e.g. libclang-rt-dev)" >&2
    exit 1
fi

# The sources include the configure-generated config.h; an unconfigured tree gets an empty one.
confdir=$root
if [ ! -f "$root/config.h" ]; then
    confdir=$work/conf
    mkdir "$confdir"
    : >"$confdir/config.h"
fi

if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$confdir" -I "$root/include" "$root/tests/fuzz/fuzz_wire.c" "$root"/src/wire/*.c \
    -o "$work/fuzz_wire" >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    echo "fuzz_wire: build failed" >&2
    exit 1
fi

mkdir "$work/corpus"
if [ -d "$here/corpus" ]; then
    find "$here/corpus" -maxdepth 1 -type f -exec cp {} "$work/corpus/" \;
fi

status=0
"$work/fuzz_wire" -max_total_time="$seconds" -max_len=10240 -print_final_stats=1 \
    -artifact_prefix="$work/" "$work/corpus" >"$work/fuzz.log" 2>&1 || status=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/fuzz.log" | tail -n 1)
if [ -z "$runs" ]; then
    runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$work/fuzz.log" | tail -n 1)
fi

if [ "$status" -ne 0 ]; then
    keep=1
    echo "fuzz_wire: ${runs:-?} runs, exit status $status: failure; log and crash input in $work" >&2
    exit 1
fi
echo "fuzz_wire: ${runs:-?} runs in ${seconds}s, exit status 0"
