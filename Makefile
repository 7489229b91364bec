# Berth: the two commands that matter are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
RUN_DIR ?= $(CURDIR)/.berth
SOCKET ?= $(RUN_DIR)/berth.sock
VENV ?= $(CURDIR)/.venv
APT_PACKAGES := libsystemd-dev libsqlite3-dev pkg-config

.PHONY: deps build run test test-swift test-integration check-schemas check-architecture check-format format verify-units \
  fuzz-build fuzz-short fuzz fuzz-socket fuzz-http bench bench-peer install clean

## System packages (Debian): libsystemd for sd_notify/journald/socket activation, SQLite for the store.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

## Runs berthd in the foreground on the embedded default: simulator adapter, demo inventory, system clock,
## and the Blazar-compatible REST API on loopback without Keystone (noauth: X-Auth-Token is USER:PROJECT).
## The openstack CLI (python-openstackclient + python-blazarclient) goes into .venv-osc, if PyPI is reachable.
BLAZAR_LISTEN ?= 127.0.0.1:1234
OSC := $(CURDIR)/.venv-osc/bin/openstack
run: build
	@mkdir -p $(RUN_DIR)
	@bash Tests/openstack-clients/setup-venv.sh >/dev/null 2>&1 || echo "(the openstack CLI could not be installed into .venv-osc; the REST API works without it)"
	@echo "berthd: socket $(SOCKET), state $(RUN_DIR)/state, Blazar API http://$(BLAZAR_LISTEN)/v1 (Ctrl-C stops it)"
	@echo "try, in another terminal:"
	@echo "  .build/debug/berthctl --socket $(SOCKET) host list"
	@echo "  .build/debug/berthctl --socket $(SOCKET) lease create --name demo --project p1 --start now --duration 2h --hosts 2"
	@echo "  .build/debug/berthctl --socket $(SOCKET) lease list"
	@echo "  $(OSC) --os-auth-type admin_token --os-endpoint http://$(BLAZAR_LISTEN)/v1 --os-token admin:p1 reservation lease list"
	.build/debug/berthd --socket $(SOCKET) --state-dir $(RUN_DIR)/state --demo --blazar-listen $(BLAZAR_LISTEN) --blazar-auth noauth

$(VENV)/.ready: Tests/integration/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r Tests/integration/requirements.txt
	touch $@

## Everything: unit and property tests (Swift Testing), integration tests against the real daemon,
## schema checks and systemd unit verification. Builds once, then runs with --skip-build.
test: deps $(VENV)/.ready
	$(MAKE) check-format
	$(SWIFT) build --build-tests
	$(MAKE) test-swift test-integration check-schemas check-architecture verify-units fuzz-short

test-swift:
	$(SWIFT) test --skip-build

test-integration: $(VENV)/.ready
	BERTHD=$(CURDIR)/.build/debug/berthd BERTHCTL=$(CURDIR)/.build/debug/berthctl \
	  $(VENV)/bin/python -m pytest Tests/integration

check-schemas: $(VENV)/.ready
	$(VENV)/bin/python scripts/check_schemas.py

## docs/architecture.md's table of targets against Package.swift and the sources' imports.
check-architecture:
	python3 scripts/check_architecture.py

## Style: the toolchain's swift-format with .swift-format (generated files opt out in their first
## line). `make format` rewrites the tree in place; `check-format` fails on any difference.
FORMAT_PATHS := Sources Tests Package.swift
check-format:
	$(SWIFT) format lint --strict --recursive $(FORMAT_PATHS) && echo "swift-format: ok"

format:
	$(SWIFT) format format --in-place --recursive $(FORMAT_PATHS)

## systemd-analyze verify needs the ExecStart binary to exist at its installed path: verify a copy
## of the unit that points at the freshly built one. Then the sandbox: `systemd-analyze security`
## must rate berthd.service at an exposure of MAX_EXPOSURE or lower; --threshold takes
## tenths and makes it fail above.
MAX_EXPOSURE_TENTHS ?= 20
verify-units:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	sed "s#/usr/local/bin/berthd#$(CURDIR)/.build/debug/berthd#g" systemd/berthd.service > $$tmp/berthd.service; \
	cp systemd/berthd.socket $$tmp/; \
	systemd-analyze verify $$tmp/berthd.service $$tmp/berthd.socket && echo "systemd units verify: ok" || exit 1; \
	out=$$(systemd-analyze security --offline=yes --threshold=$(MAX_EXPOSURE_TENTHS) $$tmp/berthd.service 2>&1); rc=$$?; \
	echo "$$out" | grep "Overall exposure level"; \
	if [ $$rc -ne 0 ]; then echo "$$out"; echo "berthd.service exposure is above $(MAX_EXPOSURE_TENTHS)/10"; exit 1; fi; \
	echo "systemd-analyze security: exposure at most $(MAX_EXPOSURE_TENTHS)/10: ok"

## Fuzzing (docs/reliability.md, "Fuzzing"). The libFuzzer target `berth-fuzz` exists only with
## BERTH_FUZZ=1 and links only with --sanitize=fuzzer, in its own scratch directory. New inputs go to
## FUZZ_DIR/corpus (Tests/fuzz/corpus is read, never written); crashes to FUZZ_DIR/artifacts/.
FUZZ_SCRATCH ?= $(CURDIR)/.build-fuzz
FUZZ_DIR ?= $(FUZZ_SCRATCH)/work
FUZZ_BIN := $(FUZZ_SCRATCH)/debug/berth-fuzz
## SWIFT_BACKTRACE=enable=no: the Swift runtime's backtracer would otherwise take the crash signal
## before libFuzzer can save the input that caused it.
FUZZ_FLAGS ?= -dict=Tests/fuzz/jsonrpc.dict -max_len=16384 -timeout=30 -print_final_stats=1
FUZZ_SHORT_TIME ?= 60
FUZZ_SHORT_RUNS ?= 500000
FUZZ_TIME ?= 3600
FUZZ_SOCKET_INPUTS ?= 1000000
FUZZ_HTTP_INPUTS ?= 200000
fuzz-build: deps
	BERTH_FUZZ=1 $(SWIFT) build --sanitize=fuzzer --product berth-fuzz --scratch-path $(FUZZ_SCRATCH)

## CI: a bounded pass over the committed corpus (at most FUZZ_SHORT_RUNS inputs or FUZZ_SHORT_TIME s).
fuzz-short: fuzz-build
	@mkdir -p $(FUZZ_DIR)/short-corpus $(FUZZ_DIR)/artifacts
	SWIFT_BACKTRACE=enable=no $(FUZZ_BIN) $(FUZZ_FLAGS) -runs=$(FUZZ_SHORT_RUNS) -max_total_time=$(FUZZ_SHORT_TIME) \
	  -artifact_prefix=$(FUZZ_DIR)/artifacts/ $(FUZZ_DIR)/short-corpus Tests/fuzz/corpus

## Long runs: libFuzzer for FUZZ_TIME seconds, then the socket fuzzer for FUZZ_SOCKET_INPUTS lines
## against the debug berthd (report in FUZZ_DIR/socket-report.json).
fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	SWIFT_BACKTRACE=enable=no $(FUZZ_BIN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_TIME) -artifact_prefix=$(FUZZ_DIR)/artifacts/ \
	  $(FUZZ_DIR)/corpus Tests/fuzz/corpus
	$(MAKE) fuzz-socket

fuzz-socket: $(VENV)/.ready
	@mkdir -p $(FUZZ_DIR)
	$(SWIFT) build --product berthd
	BERTHD=$(CURDIR)/.build/debug/berthd $(VENV)/bin/python Tests/fuzz/socket_fuzzer.py \
	  --inputs $(FUZZ_SOCKET_INPUTS) --report $(FUZZ_DIR)/socket-report.json

## The REST API's HTTP fuzzer, FUZZ_HTTP_INPUTS requests (report in FUZZ_DIR/http-report.json).
fuzz-http: $(VENV)/.ready
	@mkdir -p $(FUZZ_DIR)
	$(SWIFT) build --product berthd
	BERTHD=$(CURDIR)/.build/debug/berthd $(VENV)/bin/python Tests/fuzz/http_fuzzer.py \
	  --inputs $(FUZZ_HTTP_INPUTS) --report $(FUZZ_DIR)/http-report.json

## Release build; allocator in process and lease.create over the socket against a real berthd.
bench: deps
	$(SWIFT) build -c release --product berthd
	$(SWIFT) build -c release --product berth-bench
	.build/release/berth-bench --berthd .build/release/berthd --output bench-results.json

## Peer comparison: OpenStack Blazar 18.0.0 from PyPI (pinned venv made by
## benchmarks/peers/blazar/setup.sh) against Berth's allocator, same population and requests;
## about 5 minutes. BENCH_PEER_ARGS=--large adds 10,000 hosts / 100,000 leases (30-40 minutes).
bench-peer: deps
	$(SWIFT) build -c release --product berth-bench
	python3 benchmarks/peers/blazar/compare.py $(BENCH_PEER_ARGS)

## Installs binaries, systemd units, sysusers/tmpfiles and an example config under DESTDIR.
## Units, sysusers.d and tmpfiles.d go to PREFIX/lib/... (systemd reads /usr/local/lib/systemd/system,
## /usr/local/lib/sysusers.d and /usr/local/lib/tmpfiles.d as well as /usr/lib/...), with ExecStart
## pointing at PREFIX/bin/berthd. BUILD=debug installs the debug binaries already built (what
## `make test` checks, without a second, release build); BUILD_DIR overrides where they are taken from.
BUILD ?= release
BUILD_DIR ?= $(CURDIR)/.build/$(BUILD)
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
install:
ifeq ($(BUILD),release)
	$(SWIFT) build -c release --product berthd
	$(SWIFT) build -c release --product berthctl
endif
	@test -x $(BUILD_DIR)/berthd -a -x $(BUILD_DIR)/berthctl || { echo "no berthd/berthctl in $(BUILD_DIR): build first"; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/berth $(DESTDIR)$(PREFIX)/libexec/berth $(DESTDIR)$(PREFIX)/share/doc/berth
	install -m 0755 $(BUILD_DIR)/berthd $(BUILD_DIR)/berthctl $(DESTDIR)$(PREFIX)/bin/
	sed -e "s#/usr/local/bin/berthd#$(PREFIX)/bin/berthd#g" -e "s#/etc/berth/#$(SYSCONFDIR)/berth/#g" \
	  systemd/berthd.service > $(DESTDIR)$(UNITDIR)/berthd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/berthd.service
	install -m 0644 systemd/berthd.socket $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/berth.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/berth.conf
	install -m 0644 systemd/berth.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/berth.conf
	install -m 0640 docs/berthd.example.json $(DESTDIR)$(SYSCONFDIR)/berth/berthd.json.example
	install -m 0644 docs/operations.md docs/berthd.example.json $(DESTDIR)$(PREFIX)/share/doc/berth/
	install -m 0755 contrib/slurm/berth-slurm-hook contrib/slurm/berth-resume contrib/slurm/berth-suspend \
	  contrib/slurm/berth-prolog $(DESTDIR)$(PREFIX)/libexec/berth/
	install -m 0644 contrib/slurm/berth_slurm.py $(DESTDIR)$(PREFIX)/libexec/berth/

clean:
	rm -rf .build $(RUN_DIR) $(VENV)
