#!/usr/bin/env bash
# Builds every fuzz target and runs each briefly from generated seeds.
#
#   tests/fuzz-smoke.sh [SECONDS]        (default 10 s per target)
#
# Seeds come from fuzz/seeds.py (the shared data set's traces, dumps and
# ATRs when ../shared/ccid-data exists, built-in inputs otherwise) and are
# written to a temporary directory, as is the corpus the runs grow, so
# fuzz/corpus is left alone. Needs cargo-fuzz and a nightly-capable
# toolchain (RUSTC_BOOTSTRAP=1 is set here). Honours CARGO_TARGET_DIR
# (default /work/target-fuzz when that exists, else cargo's own).
#
# The `trace` target needs the ccid-sim crate (feature `sim`); when that
# crate does not build, the target is reported as skipped with the reason.
#
# Exit status: 0 when every target ran without a crash (or when
# cargo-fuzz or python3 is missing: the run is then skipped with the
# reason, an error with FUZZ_SMOKE_REQUIRED=1), 1 when one crashed (its
# reproducer is kept under fuzz/artifacts/<target>/), 2 when the targets
# do not build.
set -u

SECONDS_EACH=${1:-10}
case $SECONDS_EACH in '' | *[!0-9]*)
	echo "usage: $0 [SECONDS]" >&2
	exit 2
	;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/fuzz" || exit 2
export RUSTC_BOOTSTRAP=1
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /work/target-fuzz ]; then
	export CARGO_TARGET_DIR=/work/target-fuzz
fi

# Without the tools the run is skipped with its reason (exit 0), unless
# FUZZ_SMOKE_REQUIRED=1 makes that an error.
missing() {
	echo "fuzz-smoke: skipped: $1"
	echo "fuzz-smoke: 0 passed, 0 failed, $(grep -c '^name = ' "$ROOT/fuzz/Cargo.toml" | awk '{print $1 - 1}') skipped"
	[ "${FUZZ_SMOKE_REQUIRED:-0}" = 1 ] && exit 2
	exit 0
}
cargo fuzz --version >/dev/null 2>&1 || missing "cargo-fuzz is not installed (cargo install cargo-fuzz)"
command -v python3 >/dev/null || missing "python3 is needed to write the seeds"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

python3 "$ROOT/fuzz/seeds.py" "$WORK/seeds" >"$WORK/seeds.log" || {
	cat "$WORK/seeds.log" >&2
	echo "fuzz-smoke: writing seeds failed" >&2
	exit 2
}

FEATURES=(--features sim)
SKIP_TRACE=""
if ! cargo fuzz build "${FEATURES[@]}" >"$WORK/build.log" 2>&1; then
	if ! cargo fuzz build >"$WORK/build-nosim.log" 2>&1; then
		tail -40 "$WORK/build-nosim.log" >&2
		echo "fuzz-smoke: the fuzz targets do not build" >&2
		exit 2
	fi
	FEATURES=()
	SKIP_TRACE="ccid-sim does not build: $(grep -m1 '^error' "$WORK/build.log")"
fi

BIN="${CARGO_TARGET_DIR:-$ROOT/fuzz/target}/$(rustc -vV | sed -n 's/^host: //p')/release"

passed=0
failed=0
skipped=0
printf '%-16s %12s %10s  %s\n' target executions exec/s result
for t in $(cargo fuzz list); do
	if [ "$t" = trace ] && [ -n "$SKIP_TRACE" ]; then
		printf '%-16s %12s %10s  SKIP (%s)\n' "$t" - - "$SKIP_TRACE"
		skipped=$((skipped + 1))
		continue
	fi
	corpus="$WORK/corpus/$t"
	mkdir -p "$corpus" "$ROOT/fuzz/artifacts/$t"
	seeds=()
	[ -d "$WORK/seeds/$t" ] && seeds=("$WORK/seeds/$t")
	log="$WORK/$t.log"
	# The binaries cargo fuzz built, run directly: no cargo call per target.
	"$BIN/$t" "$corpus" "${seeds[@]}" -artifact_prefix="$ROOT/fuzz/artifacts/$t/" \
		-max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	if [ $rc -eq 0 ]; then
		printf '%-16s %12s %10s  ok\n' "$t" "${runs:-?}" "${rate:-?}"
		passed=$((passed + 1))
	else
		printf '%-16s %12s %10s  FAILED (exit %s)\n' "$t" "${runs:-?}" "${rate:-?}" "$rc"
		grep -m5 -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
done

if [ $skipped -gt 0 ]; then
	echo "fuzz-smoke: $passed passed, $failed failed, $skipped skipped"
else
	echo "fuzz-smoke: $passed passed, $failed failed"
fi
[ $failed -eq 0 ]
