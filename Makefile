# Berth: the two commands that matter are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
RUN_DIR ?= $(CURDIR)/.berth
SOCKET ?= $(RUN_DIR)/berth.sock
VENV ?= $(CURDIR)/.venv
APT_PACKAGES := libsystemd-dev libsqlite3-dev pkg-config

.PHONY: deps build run test test-swift test-integration check-schemas verify-units bench bench-peer install clean

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

## Runs berthd in the foreground on the embedded default: simulator adapter, demo inventory, system clock.
run: build
	@mkdir -p $(RUN_DIR)
	@echo "berthd: socket $(SOCKET), state $(RUN_DIR)/state (Ctrl-C stops it)"
	@echo "try, in another terminal:"
	@echo "  .build/debug/berthctl --socket $(SOCKET) host list"
	@echo "  .build/debug/berthctl --socket $(SOCKET) lease create --name demo --project p1 --start now --duration 2h --hosts 2"
	@echo "  .build/debug/berthctl --socket $(SOCKET) lease list"
	.build/debug/berthd --socket $(SOCKET) --state-dir $(RUN_DIR)/state --demo

$(VENV)/.ready: Tests/integration/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r Tests/integration/requirements.txt
	touch $@

## Everything: unit and property tests (Swift Testing), integration tests against the real daemon,
## schema checks and systemd unit verification. Builds once, then runs with --skip-build.
test: deps $(VENV)/.ready
	$(SWIFT) build --build-tests
	$(MAKE) test-swift test-integration check-schemas verify-units

test-swift:
	$(SWIFT) test --skip-build

test-integration: $(VENV)/.ready
	BERTHD=$(CURDIR)/.build/debug/berthd BERTHCTL=$(CURDIR)/.build/debug/berthctl \
	  $(VENV)/bin/python -m pytest Tests/integration

check-schemas: $(VENV)/.ready
	$(VENV)/bin/python scripts/check_schemas.py

## systemd-analyze verify needs the ExecStart binary to exist at its installed path: verify a copy
## of the unit that points at the freshly built one.
verify-units:
	@tmp=$$(mktemp -d); \
	sed "s#/usr/local/bin/berthd#$(CURDIR)/.build/debug/berthd#g" systemd/berthd.service > $$tmp/berthd.service; \
	cp systemd/berthd.socket $$tmp/; \
	systemd-analyze verify $$tmp/berthd.service $$tmp/berthd.socket && echo "systemd units verify: ok"; \
	rc=$$?; rm -rf $$tmp; exit $$rc

## Release build; allocator in process and lease.create over the socket against a real berthd.
bench: deps
	$(SWIFT) build -c release --product berthd
	$(SWIFT) build -c release --product berth-bench
	.build/release/berth-bench --berthd .build/release/berthd --output bench-results.json

## Peer comparison (issue #7): OpenStack Blazar 18.0.0 from PyPI (pinned venv made by
## benchmarks/peers/blazar/setup.sh) against Berth's allocator, same population and requests;
## about 5 minutes. BENCH_PEER_ARGS=--large adds 10,000 hosts / 100,000 leases (30-40 minutes).
bench-peer: deps
	$(SWIFT) build -c release --product berth-bench
	python3 benchmarks/peers/blazar/compare.py $(BENCH_PEER_ARGS)

install:
	$(SWIFT) build -c release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/lib/systemd/system $(DESTDIR)/usr/lib/sysusers.d $(DESTDIR)/usr/lib/tmpfiles.d $(DESTDIR)/etc/berth
	install -m 0755 .build/release/berthd .build/release/berthctl $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 systemd/berthd.service systemd/berthd.socket $(DESTDIR)/lib/systemd/system/
	install -m 0644 systemd/berth.sysusers.conf $(DESTDIR)/usr/lib/sysusers.d/berth.conf
	install -m 0644 systemd/berth.tmpfiles.conf $(DESTDIR)/usr/lib/tmpfiles.d/berth.conf
	install -m 0640 docs/berthd.example.json $(DESTDIR)/etc/berth/berthd.json.example
	install -d $(DESTDIR)$(PREFIX)/libexec/berth
	install -m 0755 contrib/slurm/berth-slurm-hook contrib/slurm/berth-resume contrib/slurm/berth-suspend \
	  contrib/slurm/berth-prolog $(DESTDIR)$(PREFIX)/libexec/berth/
	install -m 0644 contrib/slurm/berth_slurm.py $(DESTDIR)$(PREFIX)/libexec/berth/

clean:
	rm -rf .build $(RUN_DIR) $(VENV)
