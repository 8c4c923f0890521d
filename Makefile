# minicontainer: set up, demonstrate, test and benchmark.
#
#   sudo make demo     system packages, virtual environment, sample rootfs,
#                      minictr on root's PATH, then a first container
#   sudo make test     the whole test suite (host tests, then cgroup v2 in a VM)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ROOTFS := rootfs/busybox

# Debian packages: build tools for python-prctl, the sample rootfs, the peers
# and fixtures the tests use (runc, crun, registry, skopeo, umoci, nftables),
# and qemu for the cgroup v2 tests.
APT_PACKAGES := python3 python3-venv python3-dev gcc libcap-dev busybox-static \
	iproute2 nftables iptables runc crun skopeo umoci docker-registry \
	apache2-utils openssl qemu-system-x86 xz-utils cpio kmod procps

.PHONY: help check-root setup packages venv rootfs install demo test test-host \
	test-unit test-cgroup-v2 bench lint clean

help:
	@sed -n '2,6p' Makefile | sed 's/^# \{0,1\}//'

check-root:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make: this target needs root: run 'sudo make $(MAKECMDGOALS)'" >&2; exit 1; fi

packages: check-root
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi

venv: check-root
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every start would
	@# otherwise compile the package again.
	$(PY) -m compileall -q minicontainer

rootfs: check-root
	@test -x $(ROOTFS)/bin/busybox || sh rootfs/build-busybox.sh $(CURDIR)/$(ROOTFS)

install: check-root
	ln -sf $(CURDIR)/$(VENV)/bin/minictr /usr/local/bin/minictr

setup: packages venv rootfs install

demo: setup
	minictr run --rm $(ROOTFS) /bin/sh -c 'echo hello from $$(hostname); ps'

test: check-root test-host test-cgroup-v2

test-unit:
	$(PY) -m pytest -q tests/unit

test-host: check-root rootfs
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/integration

test-cgroup-v2: check-root rootfs
	VM_TIMEOUT=1500 bash scripts/vm.sh '$(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider tests/cgroup2'

bench: check-root rootfs
	$(PY) scripts/bench.py

lint:
	$(VENV)/bin/ruff check minicontainer tests scripts
	$(VENV)/bin/ruff format --check minicontainer tests scripts

clean:
	rm -rf $(ROOTFS) .vm-cache build *.egg-info
