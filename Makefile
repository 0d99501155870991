# thaw — see README.md.
SHELL := /bin/bash
GO      ?= go
CACHE   ?= $(CURDIR)/build/cache
export THAW_CACHE := $(CACHE)
AGENT   ?= $(CURDIR)/build/agent
export THAW_AGENT := $(AGENT)
PUBKEY  ?=

.PHONY: all build test unit vmtest kernels server initramfs demo fuzz bench lint clean

all: build

build:
	$(GO) build -o build/thaw ./cmd/thaw

# The kernels the harness boots: Debian 13 and 12, cloud and full flavours,
# resolved through their metapackages, cached under $(CACHE)/kernels.
kernels:
	./scripts/fetch-kernels.sh $(CACHE)

# The real Debian 13 and Debian 12 server guests (root on LVM, swap, a
# stateful service), cached under $(CACHE)/server by the hash of the recipe.
server:
	go run ./scripts/buildserver $(CACHE)
	go run ./scripts/buildserver -suite bookworm $(CACHE)

# The restore agent's boot files: build/agent/vmlinuz (Debian 13, full
# flavour) and build/agent/initramfs.cpio.gz (u-root, thaw agent as uinit,
# NIC and disk drivers). PUBKEY=FILE bakes a trusted key in.
initramfs: kernels
	$(GO) run ./boot/mkinitramfs -out $(AGENT) $(if $(PUBKEY),-pubkey $(PUBKEY))

unit:
	$(GO) vet ./...
	$(GO) test ./...
	$(GO) test -run='^$$' -fuzz=FuzzReader -fuzztime=10s ./images/swsusp/
	$(GO) test -run='^$$' -fuzz=FuzzStreamReader -fuzztime=5s ./images/swsusp/
	$(GO) test -run='^$$' -fuzz=FuzzRoundTrip -fuzztime=10s ./images/lzo/
	$(GO) test -run='^$$' -fuzz=FuzzDecompress -fuzztime=5s ./images/lzo/
	$(GO) test -run='^$$' -fuzz=FuzzOpen -fuzztime=10s ./images/bundle/
	$(GO) test -run='^$$' -fuzz=FuzzParseIndex -fuzztime=5s ./images/bundle/
	$(GO) test -run='^$$' -fuzz=FuzzChunk -fuzztime=5s ./images/bundle/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=5s ./images/manifest/
	$(GO) test -run='^$$' -fuzz=FuzzContentRange -fuzztime=5s ./netfetch/httpra/
	$(GO) test -run='^$$' -fuzz=FuzzParseModulesAlias -fuzztime=5s ./agent/plan/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=5s ./netfetch/bootparam/
	$(GO) test -run='^$$' -fuzz=FuzzLease -fuzztime=5s ./netfetch/dhcp/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=5s -test.fuzzminimizetime=1s ./images/mailbox/
	$(GO) test -run='^$$' -fuzz=FuzzInjector -fuzztime=5s -test.fuzzminimizetime=1s ./images/mailbox/
	$(GO) test -run='^$$' -fuzz=FuzzParseTable -fuzztime=5s ./agent/dm/
	$(GO) test -run='^$$' -fuzz=FuzzParseRoute -fuzztime=5s ./agent/nicmove/
	$(GO) test -run='^$$' -fuzz=FuzzParseIomem -fuzztime=5s ./agent/probe/

vmtest: kernels server initramfs
	$(GO) test -tags vm -timeout 80m -parallel 2 -v ./scripts/vmtest/ 2>&1 | tee build/vmtest.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+\S+_test.go)'; exit $${PIPESTATUS[0]}

# kernels first: the unit tests of kexec/ also load the real Debian kernels.
test: kernels unit vmtest

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReader -fuzztime=5m ./images/swsusp/
	$(GO) test -run='^$$' -fuzz=FuzzOpen -fuzztime=5m ./images/bundle/

# Benchmarks: ratios against a baseline measured in the same run.
bench:
	$(GO) test -run='^$$' -bench=. ./images/swsusp/ ./images/lzo/
	./scripts/bench/bundle.sh

demo:
	./scripts/demo.sh

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet ./... && $(GO) vet -tags vm ./scripts/vmtest/

clean:
	rm -rf build/thaw build/vmlogs
