# Outpost — top-level driver.  `make demo` and `make test` do all set-up on a
# fresh Debian 12 machine (as root): packages, build, then the demo or tests.
BUILD   ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# make install: FHS paths under PREFIX (/usr: the unit runs /usr/sbin/outpostd);
# /etc, /var and /lib/systemd are absolute.  DESTDIR stages (no chown then).
PREFIX  ?= /usr
DESTDIR ?=
# make package: a Release build of its own, then CPack's .deb in it.
PKG_BUILD ?= $(BUILD)-pkg
# The account outpostd becomes (run_as), for deps and install.
ADD_USER = useradd --system --no-create-home --shell /usr/sbin/nologin outpost

# Debian 12 packages: build, libraries, and the real peers the tests use
# (prometheus for promtool only: its service is kept from starting; mandoc
# for the man pages' lint in unit/man; dpkg-dev (dpkg-shlibdeps) and lintian
# for make package).
PACKAGES = python3-lmdb build-essential cmake pkg-config clang libclang-rt-14-dev \
	libevent-dev libssl-dev openssl libopendkim-dev libc-ares-dev \
	libsodium-dev liblmdb-dev lmdb-utils libconfuse-dev libpsl-dev libidn2-dev \
	publicsuffix libcmocka-dev zlib1g-dev \
	python3 python3-aiosmtpd python3-dkim python3-nacl \
	libmail-dkim-perl libcryptx-perl libnet-dns-perl python3-dnspython \
	swaks dnsmasq-base procps iproute2 curl prometheus mandoc \
	dpkg-dev lintian valgrind clamav-daemon \
	libhiredis-dev redis-server unbound ldnsutils \
	python3-jsonschema

.PHONY: all deps build test demo bench install package fuzz clean format

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
		$(ADD_USER); fi; \
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

# Installed straight onto this machine (not staged), root gives the files the
# owners and modes the package's postinst gives them (conf/pkg/postinst); an
# existing /etc/outpost/outpost.conf is kept.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix $(PREFIX)
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		{ getent passwd outpost >/dev/null || $(ADD_USER); } && \
		chown root:outpost /etc/outpost /etc/outpost/outpost.conf && \
		chmod 0750 /etc/outpost && chmod 0640 /etc/outpost/outpost.conf && \
		chown outpost:outpost /var/lib/outpost && chmod 0700 /var/lib/outpost && \
		chown outpost:adm /var/log/outpost && chmod 0750 /var/log/outpost && \
		echo "make install: done; start it with" \
			"systemctl daemon-reload && systemctl enable --now outpostd"; \
	fi

# The .deb (conf/pkg/ holds its maintainer scripts), checked by lintian.
$(PKG_BUILD)/CMakeCache.txt:
	cmake -S . -B $(PKG_BUILD) -DCMAKE_BUILD_TYPE=Release -DOUTPOST_WERROR=ON \
		-DOUTPOST_ASAN_SUITE=OFF -DCMAKE_INSTALL_PREFIX=/usr $(CMAKE_FLAGS)

package: $(PKG_BUILD)/CMakeCache.txt
	cmake --build $(PKG_BUILD) -j $(JOBS) --target outpostd outpost outpost_pkg_files
	rm -f $(PKG_BUILD)/outpost_*.deb
	cd $(PKG_BUILD) && cpack -G DEB
	@if command -v lintian >/dev/null; then \
		echo "lintian $(PKG_BUILD)/outpost_*.deb"; \
		lintian $(PKG_BUILD)/outpost_*.deb; fi

fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DOUTPOST_FUZZ=ON \
		-DOUTPOST_ASAN_SUITE=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz $(PKG_BUILD)
