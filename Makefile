# sluice: kernel bypass for unmodified Linux applications.
#
#   make demo     set up, then an unmodified sockperf through the kernel and through sluice
#   make test     set up, then every test (needs root: the lab is network namespaces)
#   make bench    sluice against the kernel, side by side (QUICK=1 for a smoke run)
#   make build | deps | lab-up | lab-down | install PREFIX=/usr/local | clean

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local
TARGET_DIR ?= $(CURDIR)/target
RELEASE := $(TARGET_DIR)/release
# Two cores: parallel test threads would starve the busy-polling processes under test.
TEST_THREADS ?= 1
# Seconds of coverage-guided fuzzing per wire-parser target in make test.
FUZZ_SECONDS ?= 20

# Debian packages that building, testing and benchmarking need.
DEB_PACKAGES := build-essential pkg-config libclang-dev clang \
	libdpdk-dev dpdk dpdk-dev libnuma-dev \
	iproute2 ethtool nftables iputils-ping tcpdump tshark \
	sockperf iperf3 redis-server redis-tools curl python3

.PHONY: all deps build test test-unit demo bench lab-up lab-down install clean fmt lint

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing" $$missing; \
		[ "$$(id -u)" = 0 ] || { echo "make deps: run as root to install packages" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make deps: all packages present"; fi
	@command -v $(CARGO) >/dev/null || { echo "make deps: cargo not found (install Rust with rustup)" >&2; exit 1; }
	@command -v cargo-fuzz >/dev/null || { echo "make deps: installing cargo-fuzz"; $(CARGO) install --locked cargo-fuzz; }

build: deps
	$(CARGO) build --release --workspace

# The tests need root and the lab; they fail loudly without them.
test: build
	tools/sluice-lab up
	@mkdir -p $(TARGET_DIR); rc=0; set -o pipefail; \
	$(CARGO) test --release --workspace -- --test-threads=$(TEST_THREADS) 2>&1 | tee $(TARGET_DIR)/test.log || rc=$$?; \
	tools/sluice-lab down; \
	fuzz=0; stack/fuzz/run.sh $(FUZZ_SECONDS) || { fuzz=1; rc=1; }; \
	awk -v fuzz=$$fuzz '/^test result:/ { for (i = 1; i <= NF; i++) { if ($$(i+1) ~ /^passed/) p += $$i; if ($$(i+1) ~ /^failed/) f += $$i } } \
		END { if (fuzz) f++; else p++; printf "\ntotal: %d passed, %d failed\n", p, f }' $(TARGET_DIR)/test.log; \
	exit $$rc

demo: build
	tools/demo.sh

bench: build
	tools/bench/run.sh $(if $(QUICK),--quick,)

lab-up:
	tools/sluice-lab up $(if $(TOPOLOGY),--topology $(TOPOLOGY),)

lab-down:
	tools/sluice-lab down

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/sluice/profiles \
		$(DESTDIR)$(PREFIX)/share/sluice/wireshark
	install -m 0755 $(RELEASE)/libsluice.so $(RELEASE)/libsluice_dpdk.so $(DESTDIR)$(PREFIX)/lib/
	install -m 0755 $(RELEASE)/sluice $(DESTDIR)$(PREFIX)/bin/sluice
	install -m 0755 $(RELEASE)/sluice-stat $(DESTDIR)$(PREFIX)/bin/sluice-stat
	install -m 0755 tools/sluice-lab $(DESTDIR)$(PREFIX)/bin/sluice-lab
	install -m 0644 tools/profiles/*.conf $(DESTDIR)$(PREFIX)/share/sluice/profiles/
	install -m 0644 tools/sluice-stream.lua $(DESTDIR)$(PREFIX)/share/sluice/wireshark/

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
