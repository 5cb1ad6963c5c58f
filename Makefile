# paygate — the two commands a new user needs are `make up` and `make test`.
SHELL := bash
.DEFAULT_GOAL := help
STAMP := node_modules/.paygate-installed

.PHONY: help install system-deps generate build certs up up-ha test test-unit test-e2e typecheck clean \
        images kind-up kind-down helm-tools bench bench-recovery bench-idempotency lint format proto-baseline

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): package.json package-lock.json
	@echo "==> installing npm packages (better-sqlite3 compiles from source the first time: ~2-3 min)"
	@# npm ci rejects this lock file (npm 11 drops other platforms' optional buf binaries from it); install respects the pins.
	npm install --no-audit --no-fund
	@touch $@

install: $(STAMP) ## install npm packages

system-deps: ## install Debian packages the tests use (openssl, redis-server) if missing
	@scripts/system-deps.sh

generate: $(STAMP) ## regenerate TypeScript from proto/ (buf, local plugin) and lint the protos
	npx buf generate
	npx buf lint

lint: $(STAMP) ## the linter and formatter check (biome.jsonc) and the proto checks, as make test runs them
	npx biome lint --diagnostic-level=error .
	npx biome format .
	@scripts/check-protos.sh

format: $(STAMP) ## rewrite the tree in the project's format (biome.jsonc)
	npx biome format --write .

proto-baseline: $(STAMP) ## record the current protos as the released API that buf breaking compares against
	npx buf build -o proto/api-baseline.binpb

build: $(STAMP) ## bundle every service into dist/
	@node scripts/build.mjs

certs: ## make the local CA and per-service certificates in .certs/
	@scripts/certs.sh .certs

up: build certs ## run the whole system locally (two banks, gateway) on ./data; Ctrl-C stops
	@node scripts/up.mjs

up-ha: build certs ## the same with three gateway replicas on a private PostgreSQL and Redis (./data/ha); kill replicas, nothing breaks
	@scripts/system-deps.sh up-ha
	@node scripts/up-ha.mjs

typecheck: $(STAMP)
	npx tsc -p tsconfig.json

test: system-deps build ## run every test: typecheck, unit, end-to-end (real processes, mTLS, SQLite)
	@scripts/test.sh

test-unit: build
	@scripts/test.sh unit

test-e2e: build
	@scripts/test.sh e2e

clean: ## remove build output, local data and certificates
	rm -rf dist data .certs .tmp

images: ## build the container image (needs Docker)
	deploy/images.sh

kind-up: ## create a kind cluster with cert-manager and install the chart (needs Docker, kind, kubectl)
	deploy/kind/up.sh

kind-down: ## delete the kind cluster
	deploy/kind/down.sh

helm-tools: ## build helm into .tools/bin with go install
	scripts/tools.sh helm

bench: build certs ## benchmark every scenario on a real stack (~6 min); writes bench/results/ and bench/README.md
	node --import tsx bench/run.ts $(BENCH_ARGS)

bench-recovery: build ## restart a gateway with 10,000 unacknowledged COMMIT decisions and time their resolution (~1 min)
	node --import tsx bench/recovery.ts $(RECOVERY_ARGS)

bench-idempotency: build ## time the idempotency check, Redis fast path vs the SQLite log (~30 s; IDEMPOTENCY_ARGS=--no-rpc: in process only)
	node --import tsx services/gateway/bench/idempotency-cost.ts $(IDEMPOTENCY_ARGS)
