# imgnorm — the README's commands. Every target installs what is missing first (Debian 12, root).
BUILD     ?= build
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=
SECONDS   ?= 60
PREFIX    ?= /usr/local

.PHONY: all deps build install run test test-unit test-ref test-sanitize test-tsan bench fuzz format clean

all: build

deps:
	./scripts/install-deps.sh test

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

## make install: library, headers, CMake package (find_package(imgnorm)) and CLI into PREFIX
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

## make run: the main job on the bundled sample dataset, examples/flowers: stats, then normalize
run: build
	./$(BUILD)/imgnorm stats examples/flowers --size 224 -o $(BUILD)/stats.json --force
	@echo
	@echo "stats.json written to $(BUILD)/stats.json; as torchvision constants:"
	@./$(BUILD)/imgnorm merge $(BUILD)/stats.json --format torchvision
	@echo
	./$(BUILD)/imgnorm normalize examples/flowers --stats $(BUILD)/stats.json --mode standardize -o $(BUILD)/flowers-normalized --force -q
	./$(BUILD)/imgnorm inspect $(BUILD)/flowers-normalized/images.npy
	@echo
	@echo "The same from Python (PYTHONPATH=$(BUILD)/python /usr/bin/python3):"
	PYTHONPATH=$(BUILD)/python /usr/bin/python3 -c "import imgnorm; \
	  s = imgnorm.stats('examples/flowers', size=224, progress=False); print(s); \
	  x, y = imgnorm.normalize('examples/flowers', stats=s, progress=False); \
	  print(x.shape, x.dtype, 'labels', y[:8], 'mean', x.mean(axis=(0, 1, 2)).round(6))"

## make test: every test (GoogleTest through ctest, and the Python reference tests)
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

test-ref: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L ref

## ASan + UBSan build of the whole suite: unit tests and the Python reference tests (they run the
## sanitized CLI as a subprocess; a leak or any ASan/UBSan report makes it exit non-zero).
SANITIZE_ENV = ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGNORM_SANITIZE=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && $(SANITIZE_ENV) ctest --output-on-failure -j $(JOBS)

## ThreadSanitizer run of the parallel code: the pipeline and the multi-threaded .npy writer
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGNORM_TSAN=ON
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
	  ctest --output-on-failure -j $(JOBS) -R '^(pipeline|npy)\.' -L unit

## libFuzzer targets (clang, ASan + UBSan), each run for SECONDS seconds; crashers go to
## tests/data/crashers/ (replayed by `make test`). See fuzz/run.sh.
fuzz:
	./scripts/install-deps.sh fuzz
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DIMGNORM_BUILD_FUZZ=ON -DIMGNORM_BUILD_TESTS=OFF
	cmake --build build-fuzz -j $(JOBS) --target imgnorm_fuzzers
	./fuzz/run.sh build-fuzz $(SECONDS)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp' '*.h')

## make bench: imgnorm against its peers on the 3,670-image dataset, then the kernel
## micro-benchmarks (bench/README.md). QUICK=1: 1,000 images, 1 run. RUNS=N runs per command
## (default 3). SCALING=1: also 1,000 to 20,000 images. SAVE=1: write bench/results/<date>.md.
bench: deps
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DIMGNORM_BUILD_BENCH=ON
	cmake --build build-bench -j $(JOBS) --target imgnorm_cli imgnorm_bench decode_only whitening_bench imgnorm_python imgnorm_python_files
	/usr/bin/python3 bench/run.py --build build-bench $(if $(filter-out 0,$(QUICK)),--quick) \
	  $(if $(RUNS),--runs $(RUNS)) $(if $(filter-out 0,$(SCALING)),--scaling) \
	  $(if $(filter-out 0,$(SAVE)),--save)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
