# voca: one non-recursive Makefile.
#
#   make            build build/voca (installs missing build dependencies first)
#   make demo       simulate a feed, run voca on it, show what was stored and why
#   make test       unit tests (cmocka) and end-to-end tests (pytest) on loopback
#   make sanitize   the same suites under ASan + UBSan; a leak fails
#   make lint       formatter check, banned functions, header self-containment
#   make fuzz       decoder, redaction and connectors' classify under libFuzzer, FUZZ_SECONDS each
#   make bench      the ingest benchmark (tests/bench)
#   make crash      kill -9 voca 50 times while it delivers to the fakes (tests/bench)
#   make detect     detection report: recall, delay, false incidents (tests/bench/detect)
#   make real       incidents per rule and month on the real feeds in ../shared/data, if any
#   make zones      a desk in Los Angeles: seasons in UTC against seasons in its zone
#   make install    PREFIX (/usr/local) and DESTDIR as usual
#
# Dependencies come from Debian's archive through packaging/install-deps.sh,
# which runs only when pkg-config cannot find a library (or a test tool is
# missing), so on a ready machine nothing is installed.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PYTHON  ?= /usr/bin/python3
FUZZ_SECONDS ?= 30

# Sanitized builds live in their own tree so both can coexist.
ifeq ($(SAN),1)
BUILD   ?= build/san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT      = -O1
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2
endif

PKGS = libzmq libcjson libcurl sqlite3 yaml-0.1 zlib libcrypto
# Recursive (=) on purpose: expanded when a recipe runs, after deps exist.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lm
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	   -Wformat=2 -Wno-format-nonliteral
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -Iinclude -Iagent \
	     $(PKG_CFLAGS) -MMD -MP
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)

LIB_SRCS  = $(filter-out agent/main.c,$(wildcard agent/*.c rules/*.c connectors/*.c))
LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/default_config.o
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRCS = $(wildcard tests/bench/*.c)
BENCH_BINS = $(BENCH_SRCS:tests/bench/%.c=$(BUILD)/bench/%)
HEADERS   = $(wildcard include/voca/*.h agent/*.h rules/*.h)
C_FILES   = $(wildcard agent/*.c rules/*.c connectors/*.c tests/*/*.c) $(HEADERS)
VOCA      = $(BUILD)/voca

DEPS_STAMP      = build/.deps-ok
TEST_DEPS_STAMP = build/.test-deps-ok

.PHONY: all deps test-deps demo test unit e2e sanitize lint fuzz bench crash detect real zones install clean

all: $(VOCA)

# ---- dependencies ----

deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p $(@D)
	@command -v pkg-config >/dev/null 2>&1 && pkg-config --exists $(PKGS) && \
		command -v $(CC) >/dev/null 2>&1 || packaging/install-deps.sh
	@touch $@

test-deps: $(TEST_DEPS_STAMP)
# On Debian the script checks each package itself (clang's fuzzer runtime is a
# package no command reveals); elsewhere, check what can be checked and say so.
$(TEST_DEPS_STAMP): $(DEPS_STAMP)
	@if command -v dpkg-query >/dev/null 2>&1; then packaging/install-deps.sh --test; \
	else pkg-config --exists cmocka && $(PYTHON) -c 'import pytest, zmq' || \
		{ echo "make: needs cmocka, pytest, pyzmq, clang (see install-deps.sh)"; exit 1; }; fi
	@touch $@

# ---- the binary ----

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The built-in configuration is the documented example, compiled in, so
# "voca run" with no -c runs exactly what packaging/voca.example.yaml says.
$(BUILD)/gen/default_config.c: packaging/voca.example.yaml
	@mkdir -p $(@D)
	@{ echo '/* Generated from packaging/voca.example.yaml by the Makefile. */'; \
	   echo '#include "config.h"'; \
	   echo 'const char config_builtin[] ='; \
	   sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$$/\\n"/' $<; \
	   echo ';'; } > $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c | $(DEPS_STAMP)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libvoca.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(VOCA): $(BUILD)/agent/main.o $(BUILD)/libvoca.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# ---- tests ----

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvoca.a | $(TEST_DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libvoca.a $(PKG_LIBS) $(CMOCKA_LIBS)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; (cd tests/unit && ../../$$t); done

# The vendors' validators (ADF JSON schema, adaptivecards), pinned by the lock file.
CONFORMANCE_STAMP = tests/conformance/node_modules/.voca-ok
$(CONFORMANCE_STAMP): tests/conformance/package-lock.json | $(TEST_DEPS_STAMP)
	cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

e2e: $(VOCA) $(CONFORMANCE_STAMP) | $(TEST_DEPS_STAMP)
	VOCA_BIN=$(abspath $(VOCA)) $(PYTHON) -m pytest -q tests/e2e

test: unit e2e

sanitize: | $(TEST_DEPS_STAMP)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		$(MAKE) SAN=1 test

# ---- lint ----

BANNED = strcpy|strcat|sprintf|vsprintf|strtok|gets|atoi|atol|atoll
lint: | $(TEST_DEPS_STAMP)
	clang-format --dry-run --Werror $(C_FILES)
	@if grep -nE '\<($(BANNED))\s*\(' $(C_FILES); then \
		echo "lint: banned functions above (see STYLE: use snprintf, strtol, ...)"; exit 1; fi
	@set -e; for h in $(HEADERS); do \
		printf '#include "%s"\n' "$$h" | $(CC) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude \
			-Iagent $(PKG_CFLAGS) -x c -fsyntax-only - || \
			{ echo "lint: $$h is not self-contained"; exit 1; }; done
	@echo "lint: clean"

# ---- fuzzing ----

FUZZ_SRCS = agent/event.c agent/xalloc.c agent/log.c agent/buf.c
$(BUILD)/fuzz/fuzz_decode: tests/fuzz/fuzz_decode.c $(FUZZ_SRCS) | $(TEST_DEPS_STAMP)
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
		$(PKG_CFLAGS) -o $@ $^ $(shell pkg-config --libs libcjson) -lm

REDACT_SRCS = agent/redact.c agent/xalloc.c agent/log.c agent/buf.c agent/event.c
$(BUILD)/fuzz/fuzz_redact: tests/fuzz/fuzz_redact.c $(REDACT_SRCS) | $(TEST_DEPS_STAMP)
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
		$(PKG_CFLAGS) -o $@ $^ $(shell pkg-config --libs libcjson) -lm

CLASSIFY_SRCS = $(wildcard connectors/*.c) agent/hmac.c agent/xalloc.c agent/buf.c agent/log.c \
		agent/event.c
$(BUILD)/fuzz/fuzz_classify: tests/fuzz/fuzz_classify.c $(CLASSIFY_SRCS) | $(TEST_DEPS_STAMP)
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
		$(PKG_CFLAGS) -o $@ $^ $(shell pkg-config --libs libcjson libcrypto) -lm

fuzz: $(BUILD)/fuzz/fuzz_decode $(BUILD)/fuzz/fuzz_redact $(BUILD)/fuzz/fuzz_classify
	@mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/corpus-redact $(BUILD)/fuzz/corpus-classify
	$(BUILD)/fuzz/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		-print_final_stats=1 $(BUILD)/fuzz/corpus tests/fuzz/corpus
	$(BUILD)/fuzz/fuzz_redact -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		-print_final_stats=1 $(BUILD)/fuzz/corpus-redact tests/fuzz/corpus-redact
	$(BUILD)/fuzz/fuzz_classify -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
		-print_final_stats=1 $(BUILD)/fuzz/corpus-classify tests/fuzz/corpus-classify

# ---- benchmarks ----

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libvoca.a | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libvoca.a $(PKG_LIBS)

# Detection report over simulated seeds (prints numbers; see tests/bench/detect).
detect: $(VOCA) | $(TEST_DEPS_STAMP)
	$(PYTHON) tests/bench/detect --voca $(abspath $(VOCA))

# Incidents on real feeds, when ../shared/data holds any (see tests/bench/real_feed).
real: $(VOCA) | $(TEST_DEPS_STAMP)
	$(PYTHON) tests/bench/real_feed --voca $(abspath $(VOCA))

# A desk in Los Angeles closed at weekends: seasons learnt in UTC, then in its zone.
ZONE_ARGS = --seeds 1,2,3,4,5,6,7,8 --time-zone America/Los_Angeles --weekend 0.1
zones: $(VOCA) | $(TEST_DEPS_STAMP)
	$(PYTHON) tests/bench/detect --voca $(abspath $(VOCA)) $(ZONE_ARGS)
	$(PYTHON) tests/bench/detect --voca $(abspath $(VOCA)) $(ZONE_ARGS) --zoned

CRASH_ARGS ?=
crash: $(VOCA) | $(TEST_DEPS_STAMP)
	VOCA_BIN=$(abspath $(VOCA)) $(PYTHON) tests/bench/crash_delivery.py $(CRASH_ARGS)

BENCH_ARGS ?=
BACKTEST_BENCH_ARGS ?=
bench: $(VOCA) $(BENCH_BINS)
	$(BUILD)/bench/bench_ingest --voca $(abspath $(VOCA)) $(BENCH_ARGS)
	$(PYTHON) tests/bench/bench_backtest --voca $(abspath $(VOCA)) $(BACKTEST_BENCH_ARGS)

# ---- demo ----

demo: $(VOCA)
	packaging/demo.sh $(abspath $(VOCA))

# ---- install ----

install: $(VOCA)
	install -D -m 0755 $(VOCA) $(DESTDIR)$(PREFIX)/bin/voca
	install -D -m 0644 packaging/voca.example.yaml \
		$(DESTDIR)$(PREFIX)/share/doc/voca/voca.example.yaml
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/voca|$(PREFIX)/bin/voca|g' packaging/voca.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/voca.service
	install -D -m 0644 packaging/voca.1 $(DESTDIR)$(PREFIX)/share/man/man1/voca.1

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
