# Reliability and security under faults (issue 7): the chaos soak and fuzzing.
# Included by the main Makefile.

# Flags for the chaos suite, e.g. make chaos CHAOS_ARGS="--duration=5m --out=/tmp/c.json".
# `go run ./test/chaos/cmd --help` lists them.
CHAOS_ARGS ?=
# How long `make fuzz` runs each fuzz target.
FUZZ_TIME ?= 30s

# package:target pairs that `make fuzz` runs.
FUZZ_TARGETS := \
	./api/v1alpha1:FuzzParseTokenDuration \
	./api/v1alpha1:FuzzEffective \
	./internal/schedule:FuzzSchedule \
	./internal/cloudflare:FuzzResponseDecoding \
	./internal/cloudflare/sim:FuzzHandler

##@ Reliability

.PHONY: chaos
chaos: envtest ## Chaos soak: churn, Cloudflare faults, leader SIGKILLs, an API server restart; prints the figures (≤ 20 min).
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) run ./test/chaos/cmd $(CHAOS_ARGS)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_TIME each (default 30s).
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZ_TIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZ_TIME); \
	done
