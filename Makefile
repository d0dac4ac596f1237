# kabuto — build, guest image, install, tests, benchmarks.
# `make help` lists the targets.

GO        ?= go
PREFIX    ?= /usr/local
SHAREDIR  ?= /usr/share/kabuto
BUILD     ?= build
VERSION   ?= 0.1.0
COMMIT    := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
export KABUTO_CACHE ?= /var/cache/kabuto

HOST_LDFLAGS := -s -w -X main.version=$(VERSION) -X main.gitCommit=$(COMMIT)
GOFILES := $(shell find . -name '*.go' -not -path './build/*')

APT_PACKAGES := qemu-system-x86 busybox-static runc cpio iproute2 iptables \
	linux-source-6.1 flex bison bc libelf-dev libssl-dev build-essential \
	docker.io podman conmon containerd netavark aardvark-dns

.PHONY: all help deps build agent guest install demo test unit integration clients bench ci clean vet validation

all: build guest

help:
	@echo "make deps        install the Debian packages kabuto needs (apt)"
	@echo "make build       build the kabuto binary ($(BUILD)/kabuto)"
	@echo "make guest       build the guest kernel (cached in $(KABUTO_CACHE)) and the agent initrd"
	@echo "make install     install kabuto, the guest image and the sample configuration"
	@echo "make demo        run a busybox container in a VM"
	@echo "make test        unit, integration (real QEMU guests) and client tests (docker, podman, ctr)"
	@echo "make bench       every performance goal vs runc / a bare boot; rewrites docs/performance.md (DENSITY=200 for the full density run)"
	@echo "make validation  the OCI runtime-tools validation suite, runc and kabuto side by side"
	@echo "make ci          what .ci/run does: deps, test, bench"

deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)

build: $(BUILD)/kabuto

$(BUILD)/kabuto: $(GOFILES) go.mod go.sum
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -trimpath -tags osusergo,netgo -ldflags '$(HOST_LDFLAGS)' -o $@ .

agent: $(BUILD)/kabuto-agent

# The agent is PID 1 of the guest: static, with a small C constructor
# (guest/nsenter) that enters namespaces before the Go runtime starts.
$(BUILD)/kabuto-agent: $(GOFILES) go.mod go.sum
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -trimpath -tags osusergo,netgo -ldflags '-s -w -extldflags=-static' -o $@ ./cmd/kabuto-agent

guest: $(BUILD)/vmlinux $(BUILD)/kabuto-initrd.img

$(BUILD)/vmlinux: guest/build-kernel.sh guest/kernel/kabuto.config guest/kernel/lapic-timer-period.patch
	@mkdir -p $(BUILD)
	guest/build-kernel.sh $@

$(BUILD)/kabuto-initrd.img: $(BUILD)/kabuto-agent guest/build-initrd.sh
	guest/build-initrd.sh $(BUILD)/kabuto-agent $@

install: build guest
	install -D -m 0755 $(BUILD)/kabuto $(DESTDIR)$(PREFIX)/bin/kabuto
	install -D -m 0644 $(BUILD)/vmlinux $(DESTDIR)$(SHAREDIR)/vmlinux
	install -D -m 0644 $(BUILD)/kabuto-initrd.img $(DESTDIR)$(SHAREDIR)/kabuto-initrd.img
	install -D -m 0644 configuration.toml.sample $(DESTDIR)$(SHAREDIR)/configuration.toml.sample

demo: install
	KABUTO=$(DESTDIR)$(PREFIX)/bin/kabuto tests/demo.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $(GOFILES))" || { gofmt -l $(GOFILES); exit 1; }

unit:
	$(GO) test $$($(GO) list ./... | grep -v /tests/)

integration: build guest
	KABUTO_BIN=$(abspath $(BUILD)/kabuto) KABUTO_KERNEL=$(abspath $(BUILD)/vmlinux) \
	KABUTO_INITRD=$(abspath $(BUILD)/kabuto-initrd.img) \
	$(GO) test -count=1 -v -timeout 40m ./tests/integration/

# The real clients (dockerd, podman/conmon, containerd) drive the installed kabuto.
clients: install
	tests/clients/setup.sh
	$(GO) test -count=1 -v -timeout 30m ./tests/clients/

test: vet unit integration clients

bench: build guest
	$(GO) test -count=1 ./tests/bench
	KABUTO_BIN=$(abspath $(BUILD)/kabuto) KABUTO_KERNEL=$(abspath $(BUILD)/vmlinux) \
	KABUTO_INITRD=$(abspath $(BUILD)/kabuto-initrd.img) \
	$(GO) run ./tests/bench

# The OCI runtime-tools validation suite (v0.9.0, built from the module
# cache by tests/conformance, its own module) against runc and the installed
# kabuto; logs and results.json in build/conformance.
validation: install
	cd tests/conformance && $(GO) run . -out $(abspath $(BUILD))/conformance -doc $(abspath docs/conformance.md)

ci: deps test validation bench

clean:
	rm -rf $(BUILD)
