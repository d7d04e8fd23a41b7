# duet: see README.md. `make test` is what CI runs (through .ci/run).
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s

.PHONY: test deps fmt-check vet typecheck bench fuzz vectors

test: deps fmt-check vet
	$(GO) test -race -count=1 ./...

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

# A short, bounded run of every fuzz target (FUZZTIME each).
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

# Regenerates testdata/vectors from the Go implementation.
vectors:
	$(GO) run ./cmd/duetvectors -out testdata/vectors
