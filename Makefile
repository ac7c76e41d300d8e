# ftpsgate: the commands a newcomer needs.
#   make demo   run the proxy in front of an in-memory FTP server
#   make test   install the test tools, then vet, race-test and fuzz everything
#   make bench  the data path's speed beside its limit, in one process
#   make bench-peers  the same load against ftpsgate and ProFTPD mod_proxy

GO       ?= go
# Executions per fuzz target in make test, about 10 s each here. A count,
# not a duration: with a duration Go 1.26 sometimes fails a target with
# "context deadline exceeded" at the deadline on a busy machine, without
# any failing input (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 200000x
# FuzzSession (./proxy/) runs a real session per input, slower: a smaller
# count.
SESSION_FUZZTIME ?= 3000x
# make fuzz explores longer: about ten minutes in all here.
LONG_FUZZTIME ?= 2000000x
LONG_SESSION_FUZZTIME ?= 50000x
# The interop matrix with real servers and clients takes a while.
TESTTIMEOUT ?= 75m

.PHONY: all build demo test setup lint unit fuzz fuzz-short fuzz-run bench bench-peers clean

all: build

build:
	$(GO) build -o bin/ftpsgate ./cmd/ftpsgate

demo:
	$(GO) run ./cmd/ftpsgate demo

test: setup lint unit fuzz-short

# Real FTP servers and clients for the integration tests (idempotent).
setup:
	bash integration/setup.sh

lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# One package at a time (-p 1): the integration package loads both cores
# by itself, and the timing margins of the other packages' tests are meant
# for a machine that is busy, not starved.
unit:
	$(GO) test -race -count=1 -p 1 -timeout $(TESTTIMEOUT) ./...

# Every fuzz target of ftpctl and the session-level one of proxy: briefly
# in make test, a regression check on top of the seed corpora that plain
# go test runs; longer with make fuzz.
fuzz-short:
	@$(MAKE) --no-print-directory fuzz-run N=$(FUZZTIME) SN=$(SESSION_FUZZTIME)

fuzz:
	@$(MAKE) --no-print-directory fuzz-run N=$(LONG_FUZZTIME) SN=$(LONG_SESSION_FUZZTIME)

fuzz-run:
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in ./ftpctl/ ./proxy/; do \
		n=$(N); if [ $$pkg = ./proxy/ ]; then n=$(SN); fi; \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f ($$n)"; \
			if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $$n $$pkg >$$out 2>&1; then \
				cat $$out; exit 1; fi; \
			tail -n 1 $$out; \
		done; \
	done

# Benchmarks of the data path (proxy/bench_test.go), each ftpsgate figure
# printed beside its limit, a bare relay of the same copy code: medians of
# BENCHCOUNT runs, as this machine is shared. Not part of make test: speed
# is measured, never asserted.
BENCHCOUNT ?= 3
bench:
	$(GO) test -run '^$$' -bench '^Benchmark(Data|Files4KiB|Setup)$$' -benchmem -count $(BENCHCOUNT) -timeout 30m ./proxy/ | $(GO) run ./bench/ratio

# ftpsgate and ProFTPD 1.3.8 + mod_proxy in front of the same vsftpd, under
# the same load (bench/peers.sh: root, Debian 12, the integration lock).
bench-peers:
	bash bench/peers.sh

clean:
	rm -rf bin
