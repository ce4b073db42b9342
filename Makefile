# The two commands of the README, and a few helpers.
.PHONY: demo run test lint bench

# The whole stack on real nodes (kubelet + containerd, root): the shipped base applied with
# kubectl apply -k, a StatefulSet keeping its IPs through pod deletion, node death, scaling.
demo:
	./scripts/install-deps.sh
	cargo build --release -p nethouse -p nethouse-cni -p nethouse-scheduler-extender -p nethouse-location-controller -p nethouse-e2e
	bash tests/harness/build-k8s.sh >/dev/null
	target/release/nethouse-demo

# A local NetHouse with two zones, serving until Ctrl-C.
run:
	./scripts/install-deps.sh
	./scripts/nethouse-local.sh

# Every test: formatting, lints, unit, property and integration tests.
test:
	./scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Prints the tables recorded in BENCHMARKS.md (about 35 minutes; 1M-lease start-up, several
# control planes, real nodes with NetHouse and Whereabouts, a 3-member etcd included; the cluster,
# real-node and etcd benches need root; the etcd bench times the release nethouse).
bench:
	cargo bench -p nethouse --bench service
	NETHOUSE_CNI_BIN=$$(./scripts/build-cni-static.sh) cargo bench -p nethouse-cni --bench cni
	cargo bench -p nethouse-scheduler-extender --bench filter
	cargo bench -p nethouse-e2e --bench cluster
	cargo bench -p nethouse-e2e --bench scheduler
	cargo bench -p nethouse-e2e --bench real_nodes
	cargo build --release -p nethouse
	cargo bench -p nethouse-e2e --bench etcd
