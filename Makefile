# thaw — see README.md.
SHELL := /bin/bash
GO      ?= go
CACHE   ?= $(CURDIR)/build/cache
export THAW_CACHE := $(CACHE)
AGENT   ?= $(CURDIR)/build/agent
export THAW_AGENT := $(AGENT)
PUBKEY  ?=

.PHONY: all build test unit vmtest kernels server initramfs s3server demo fuzz bench lint clean

all: build

build:
	$(GO) build -o build/thaw ./cmd/thaw

# The kernels the harness boots: Debian 13 and 12, cloud and full flavours,
# resolved through their metapackages, cached under $(CACHE)/kernels.
kernels:
	./scripts/fetch-kernels.sh $(CACHE)

# The real Debian 13 and Debian 12 server guests (root on LVM, swap, a
# stateful service), and the Debian 13 one with its root in LUKS on LVM,
# cached under $(CACHE)/server by the hash of the recipe.
server:
	go run ./scripts/buildserver $(CACHE)
	go run ./scripts/buildserver -suite bookworm $(CACHE)
	go run ./scripts/buildserver -luks $(CACHE)

# The restore agent's boot files: build/agent/vmlinuz (Debian 13, full
# flavour) and build/agent/initramfs.cpio.gz (u-root, thaw agent as uinit,
# NIC and disk drivers). PUBKEY=FILE bakes a trusted key in.
initramfs: kernels
	$(GO) run ./boot/mkinitramfs -out $(AGENT) $(if $(PUBKEY),-pubkey $(PUBKEY))

# The real S3 server the tests start (versitygw, a gateway over a
# directory), built from the Go module proxy into $(CACHE)/bin once.
VERSITYGW := $(CACHE)/bin/versitygw
s3server: $(VERSITYGW)
$(VERSITYGW):
	GOBIN=$(CACHE)/bin GOFLAGS= $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0

# Every fuzz target, as PACKAGE:TARGET. make unit runs each for
# FUZZTIME (new inputs are minimized for at most 50 runs, so the time goes
# to fuzzing); make fuzz runs each for FUZZLONG.
FUZZ := ./images/swsusp:FuzzReader ./images/swsusp:FuzzStreamReader \
	./images/lzo:FuzzRoundTrip ./images/lzo:FuzzDecompress \
	./images/bundle:FuzzOpen ./images/bundle:FuzzParseIndex ./images/bundle:FuzzChunk \
	./images/manifest:FuzzParse ./images/mailbox:FuzzParse ./images/mailbox:FuzzInjector \
	./netfetch/httpra:FuzzContentRange ./netfetch/bootparam:FuzzParse ./netfetch/dhcp:FuzzLease \
	./agent/plan:FuzzParseModulesAlias ./agent/dm:FuzzParseTable ./agent/nicmove:FuzzParseRoute \
	./agent/probe:FuzzParseIomem ./agent/probe:FuzzParseMBR ./agent/prepare:FuzzParseFstab \
	./netfetch/store:FuzzResolve ./netfetch/store:FuzzFormatLog ./agent/stage2:FuzzParse \
	./images/swsusp:FuzzTargetArea ./agent/plan:FuzzFromModulesTar ./kexec:FuzzVmlinux \
	./kexec:FuzzParseSystab ./agent/physmem:FuzzFADTPointers ./images/memmap:FuzzRead \
	./images/driverpack:FuzzRead ./images/driverpack:FuzzModinfo ./images/bundle:FuzzPackReader \
	./netfetch/s3:FuzzParseList ./images/bundle:FuzzDelta
FUZZTIME ?= 6s
FUZZLONG ?= 10m
FUZZJOBS ?= 1


unit: s3server
	$(GO) vet ./...
	$(GO) test ./...
	./scripts/fuzz.sh $(FUZZTIME) $(FUZZ)

VMTEST = $(GO) test -tags vm -timeout 80m -parallel 2 -v ./scripts/vmtest/ 2>&1 | tee build/vmtest.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+\S+_test.go)'; exit $${PIPESTATUS[0]}

vmtest: kernels server initramfs s3server
	$(VMTEST)

# kernels first: the unit tests of kexec/ also load the real Debian kernels.
# Then the unit and fuzz tests run while the server guests and the agent
# are built (those wait mostly on the archive and on one builder VM), and
# the VM tests last.
test: kernels
	$(MAKE) -j2 --output-sync=target unit server initramfs
	$(VMTEST)

fuzz:
	FUZZJOBS=$(FUZZJOBS) ./scripts/fuzz.sh $(FUZZLONG) $(FUZZ)

# Benchmarks: ratios against a baseline measured in the same run.
bench:
	$(GO) test -run='^$$' -bench=. ./images/swsusp/ ./images/lzo/ ./agent/capture/ ./agent/plan/
	./scripts/bench/bundle.sh
	$(GO) run ./scripts/bench/restorebench

demo:
	./scripts/demo.sh

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet ./... && $(GO) vet -tags vm ./scripts/vmtest/

clean:
	rm -rf build/thaw build/vmlogs
