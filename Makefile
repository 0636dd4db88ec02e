# Outpost — top-level driver.  `make demo` and `make test` do all set-up on a
# fresh Debian 12 machine (as root): packages, build, then the demo or tests.
BUILD   ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

# Debian 12 packages: build, libraries, and the real peers the tests use
# (prometheus for promtool only: its service is kept from starting; mandoc
# for the man pages' lint in unit/man).
PACKAGES = python3-lmdb build-essential cmake pkg-config clang libclang-rt-14-dev \
	libevent-dev libssl-dev openssl libopendkim-dev libc-ares-dev \
	libsodium-dev liblmdb-dev lmdb-utils libconfuse-dev libpsl-dev libidn2-dev \
	publicsuffix libcmocka-dev libsystemd-dev \
	python3 python3-aiosmtpd python3-dkim python3-nacl \
	libmail-dkim-perl libcryptx-perl libnet-dns-perl python3-dnspython \
	swaks dnsmasq-base procps iproute2 curl prometheus mandoc

.PHONY: all deps build test demo bench install fuzz clean format

all: build

deps:
	@missing=$$(for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make deps: missing packages (run as root): $$missing" >&2; exit 1; fi; \
		echo "make deps: installing $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		pol=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
			chmod +x /usr/sbin/policy-rc.d; pol=1; fi; \
		apt-get install -y --no-install-recommends $$missing || \
		{ apt-get update && apt-get install -y --no-install-recommends $$missing; }; \
		rc=$$?; [ -n "$$pol" ] && rm -f /usr/sbin/policy-rc.d; \
		[ $$rc = 0 ] || exit $$rc; \
	fi
	@# outpostd started as root runs as this account (run_as).
	@if ! getent passwd outpost >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make deps: no user 'outpost' (outpostd started as root needs it)" >&2; \
		else echo "make deps: creating the system user outpost"; \
		useradd --system --no-create-home --shell /usr/sbin/nologin outpost; fi; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DOUTPOST_WERROR=ON $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Tests, the demo and benchmarks talk to loopback only: the daemon refuses any
# other address and never falls back to the system resolver.
test demo bench: export OUTPOST_LOOPBACK_ONLY = 1

test: deps
	$(MAKE) build
	t/run-ctest $(BUILD)

# make demo [DEMO_N=5000] [DEMO_DIR=/tmp/outpost-demo]: what it shows is in
# the README; it needs swaks, dnsmasq-base, python3-dkim (with python3-nacl
# for Ed25519) and python3-dnspython of PACKAGES.
demo: deps
	$(MAKE) build
	t/tools/demo.sh $(BUILD)

bench: deps
	$(MAKE) build
	t/bench/run.sh $(BUILD)

install: build
	cmake --install $(BUILD)

fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DOUTPOST_FUZZ=ON \
		-DOUTPOST_ASAN_SUITE=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
