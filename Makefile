# Entry points. Every target first runs tools/setup.sh (idempotent: installs
# what is missing with apt, then builds).
.PHONY: all build test test-sanitize test-fast demo fuzz format format-check bench package clean

all: build

build:
	tools/setup.sh

# Integration tests use private ports and directories, so they run side by
# side (they mostly wait on brokers, group joins and timers).
TEST_JOBS ?= 3

# The whole suite once, in the plain build (-Werror): under 15 minutes on
# 2 cores. The sanitizer runs of the same suite are test-sanitize (CI runs
# both: .ci/run).
test: build
	cd build && ctest --output-on-failure -j$(TEST_JOBS)
	@echo "make test: all tests passed (plain build; make test-sanitize runs them under ASan+UBSan and TSan)"

# The whole suite again under ASan+UBSan (LeakSanitizer on) and under
# ThreadSanitizer; each build has its own directory. ~15-25 minutes.
test-sanitize:
	tools/setup.sh --no-build
	FD_BUILD_DIR=build-asan FD_SANITIZE=address,undefined tools/setup.sh
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(TEST_JOBS)
	FD_BUILD_DIR=build-tsan FD_SANITIZE=thread tools/setup.sh
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -j$(TEST_JOBS)
	@echo "make test-sanitize: all suites passed (asan+ubsan, tsan)"

# Alias of test (kept for scripts that call it).
test-fast: test

demo: build
	tools/demo.sh

# libFuzzer: each target for FUZZ_SECONDS (default 60) seconds.
FUZZ_SECONDS ?= 60
fuzz:
	tools/setup.sh --no-build
	CC=clang FD_BUILD_DIR=build-fuzz FD_CMAKE_ARGS="-DFD_FUZZ=ON" tools/setup.sh
	tools/fuzz.sh build-fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files --cached --others --exclude-standard '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files --cached --others --exclude-standard '*.c' '*.h')

bench: build
	build/funnelctl bench

# The Debian package (CPack): build-release/funneld_VERSION_ARCH.deb.
package:
	FD_BUILD_DIR=build-release FD_BUILD_TYPE=Release tools/setup.sh
	cd build-release && cpack

clean:
	rm -rf build build-asan build-tsan build-fuzz build-release
