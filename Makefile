# duet: see README.md. `make test` is what CI runs (through .ci/run).
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s

.PHONY: test deps fmt-check vet typecheck bench fuzz vectors cluster-soak nattest turnbench fwdbench abuse

# The second run checks allocation counts, which -race changes (sync.Pool
# drops items there).
test: deps fmt-check vet
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '^TestBulkMessagesCopiedOnce$$' ./relay

# Installs what the tests need when it is missing (Debian, as root).
deps:
	@bash scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# duet.d.ts against the browser SDK's JavaScript, and the TypeScript example
# (also run by make test, as web's TestSDKTypes).
typecheck: deps
	node web/typecheck/check.mjs

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# The abuse suite (docs: README "The relay under attack"): each attack of
# issue 12 against a live relay on loopback, with a bystander pair; prints
# a Markdown table. Bounded: about 4–5 minutes. Fails if a reading victim was
# disconnected.
abuse:
	$(GO) run ./cmd/duetabuse -- --queue-budget 64MiB --trusted-proxies 127.0.0.0/8

# A short, bounded run of every fuzz target (FUZZTIME each).
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

# Regenerates testdata/vectors from the Go implementation.
vectors:
	$(GO) run ./cmd/duetvectors -out testdata/vectors

# The cluster tests with their big counts: TestReadYourWrites registers
# RYW_N fresh identities on one node of a 3-node NATS cluster and uses them
# on another (make test runs 300).
RYW_N ?= 5000
cluster-soak:
	@bash -o pipefail -c "DUET_RYW_N=$(RYW_N) $(GO) test -race -count=1 -timeout 30m -run 'TestReadYourWrites' -v ./relay/ 2>&1 | grep -E '^(---|ok|FAIL|PASS)|identities'"

# The NAT suite alone (root: network namespaces and nftables). It is part
# of `make test` too.
nattest: deps
	$(GO) test -count=1 -v ./nattest/

# The embedded TURN server against coturn (Debian's coturn package: its
# turnserver, turnutils_uclient and turnutils_peer), alternating in one run:
# loss and server CPU per relayed packet (scripts/turnbench.sh;
# TURNBENCH_LOADS, TURNBENCH_SECONDS, TURNBENCH_SIZE, TURNBENCH_ROUNDS;
# TURNBENCH_BASE=REV also runs that revision's duet: before and after).
turnbench: deps
	@bash scripts/turnbench.sh

# The relay's forwarding with duet loadtest (scripts/fwdbench.sh: a fresh
# relay per run; FWDBENCH_SESSIONS, FWDBENCH_RATE, FWDBENCH_DURATION,
# FWDBENCH_ROUNDS; FWDBENCH_BASE=REV alternates that revision's relay with
# this one's in one run), and the floor under it: forwarders that only move
# frames (cmd/fwdfloor, scripts/fwdfloor.c; FWDBENCH_FLOOR).
fwdbench: deps
	@bash scripts/fwdbench.sh
