#!/usr/bin/env bash
# Runs every native Go fuzz target of the module (every `func FuzzXxx` in a
# _test.go file) for a short, bounded time, one after the other. Any failure
# fails the script; go test then leaves the failing input under
# <pkg>/testdata/fuzz/<FuzzName>/ — commit it with the fix, and it runs as a
# regression test on every `go test`.
#
#   scripts/fuzz.sh                  # every target, FUZZTIME each (default 8s)
#   FUZZTIME=5m scripts/fuzz.sh wire # longer, one package
#   scripts/fuzz.sh -list            # list the targets
#
# The committed seed corpora (testdata/fuzz/<FuzzName>/) are written by each
# package's TestWriteFuzzSeeds:
#   DYNKEY_WRITE_FUZZ_SEEDS=1 go test ./... -run TestWriteFuzzSeeds
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-8s}"
# A hard bound per target: the fuzz time plus building the instrumented test
# binary and running the seed corpus.
TARGET_TIMEOUT="${TARGET_TIMEOUT:-240}"

targets=()
while IFS= read -r line; do
  targets+=("$line")
done < <(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*\(' . |
  sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' | sort -u)

if [ "${1:-}" = "-list" ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
filter="${1:-}"

start=$(date +%s)
n=0
for t in "${targets[@]}"; do
  pkg=${t% *}
  name=${t#* }
  if [ -n "$filter" ] && [ "$pkg" != "$filter" ]; then
    continue
  fi
  n=$((n + 1))
  t0=$(date +%s)
  echo "-- fuzz ./$pkg $name ($FUZZTIME)"
  if ! timeout "$TARGET_TIMEOUT" go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel 2 "./$pkg" > /tmp/dynkey-fuzz.$$.log 2>&1; then
    cat /tmp/dynkey-fuzz.$$.log
    rm -f /tmp/dynkey-fuzz.$$.log
    echo "FAIL: fuzz target $name in ./$pkg (a failing input is under $pkg/testdata/fuzz/$name/)"
    exit 1
  fi
  grep "^fuzz: elapsed" /tmp/dynkey-fuzz.$$.log | tail -n 1 || true
  echo "   $(( $(date +%s) - t0 ))s"
done
rm -f /tmp/dynkey-fuzz.$$.log
if [ "$n" -eq 0 ]; then
  echo "no fuzz targets found${filter:+ in $filter}"
  exit 1
fi
echo "fuzzed $n targets in $(( $(date +%s) - start ))s"
