#!/usr/bin/env bash
# Builds pgscope's fuzz targets with libFuzzer (ASan and UBSan on) and runs each for
# FUZZ_SECONDS (default 20), seeded with a corpus from the test suite:
#   fuzz_wire         first packets, both framers, SASL rewriting, errors (corpus/wire)
#   fuzz_track        conversations of both directions through the framers into track
#                     (corpus/track: simple, extended, COPY and error conversations)
#   fuzz_fingerprint  splitting, pre-digest, cache, normalization, literals, tags (the SQL
#                     texts of tests/unit/test_fingerprint.c)
# FUZZ_TARGETS chooses some of them (default: all three).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-wire track fingerprint}
cc=${CLANG:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz: cannot fuzz: $cc not found (install clang)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pgscope-fuzz.XXXXXX")
keep=0
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOF
if ! "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >"$work/probe.log" 2>&1; then
    echo "fuzz: cannot fuzz: $cc cannot link -fsanitize=fuzzer (install libFuzzer, e.g. libclang-rt-dev)" >&2
    exit 1
fi

# The sources include the configure-generated config.h; an unconfigured tree gets an empty one.
confdir=$root
if [ ! -f "$root/config.h" ]; then
    confdir=$work/conf
    mkdir "$confdir"
    : >"$confdir/config.h"
fi

sources() { # target: the sources and libraries it links
    case $1 in
    wire) echo "$root/src/wire/frame.c $root/src/wire/message.c" ;;
    track) echo "$root/src/track/track.c $root/src/wire/frame.c $root/src/wire/message.c" ;;
    fingerprint) echo "$root/src/analyze/fingerprint.c -lpg_query" ;;
    *) return 1 ;;
    esac
}

# The SQL texts the unit tests feed the fingerprint code, one seed file each.
fingerprint_seeds() { # dir
    sed -n 's/^[^"]*"\(\(SELECT\|INSERT\|UPDATE\|DELETE\|WITH\|CREATE\|ALTER\|SET\|NOTIFY\|COMMENT\|EXECUTE\|PREPARE\|CALL\|COPY\|BEGIN\|VALUES\|select\|insert\|update\|delete\)[^"]*\)".*/\1/p' \
        "$root/tests/unit/test_fingerprint.c" | head -n 300 | {
        i=0
        while IFS= read -r line; do
            printf '%b' "$line" >"$1/seed_$i"
            i=$((i + 1))
        done
    }
}

fuzz_one() { # target
    local t=$1 bin=$work/fuzz_$1 corpus=$work/corpus_$1 status=0 runs
    # shellcheck disable=SC2046
    if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I "$confdir" -I "$root/include" "$here/fuzz_$t.c" $(sources "$t") -o "$bin" \
        >"$work/build_$t.log" 2>&1; then
        cat "$work/build_$t.log" >&2
        echo "fuzz_$t: build failed" >&2
        return 1
    fi
    mkdir "$corpus"
    if [ -d "$here/corpus/$t" ]; then
        find "$here/corpus/$t" -maxdepth 1 -type f -exec cp {} "$corpus/" \;
    fi
    [ "$t" = fingerprint ] && fingerprint_seeds "$corpus"
    "$bin" -max_total_time="$seconds" -max_len=10240 -print_final_stats=1 -rss_limit_mb=2048 \
        -artifact_prefix="$work/$t-" "$corpus" >"$work/fuzz_$t.log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/fuzz_$t.log" |
        tail -n 1)
    if [ "$status" -ne 0 ]; then
        keep=1
        tail -n 40 "$work/fuzz_$t.log" >&2
        echo "fuzz_$t: ${runs:-?} runs, exit status $status: failure; log and crash input in $work" >&2
        return 1
    fi
    echo "fuzz_$t: ${runs:-?} runs in ${seconds}s from $(find "$corpus" -type f | wc -l) inputs, exit status 0"
}

failed=0
for t in $targets; do
    sources "$t" >/dev/null || { echo "fuzz: unknown target $t" >&2; exit 2; }
    fuzz_one "$t" || failed=1
done
exit "$failed"
