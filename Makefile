# pqx: `make demo` runs the main job end to end, `make test` runs the test suite.
# Both bring up the local services they need (scripts/services.sh) on a fresh Debian machine.

.PHONY: demo test test-containers image bench services services-stop init-config build lint

demo:
	scripts/demo.sh

# The load and chaos tests run last, on their own, and print their reconciliations.
test: services
	cargo test --workspace --no-fail-fast -- --skip ten_thousand_commands_reconcile --skip five_thousand_commands_survive
	cargo test -p pqx-app --test load -- --nocapture
	cargo test -p pqx-app --test chaos -- --nocapture

# The containers for real, with podman (installed from Debian's packages when missing): the pqx
# image, docker-compose.yml end to end, run.sh and DockerExec against a real engine. The image is
# built as pqx-server:test from the debug binaries `make test` builds, not as `make image` builds
# it (the same Dockerfile; a release build would double the time of CI).
test-containers: services
	cargo build --bins -p pqx-app
	PQX_BINARIES=target/debug PQX_IMAGE_TAG=test scripts/containers.sh image
	PQX_IMAGE_TAG=test cargo test -p pqx-app --test containers -- --ignored --test-threads=1 --nocapture

# The release binaries, then the images docker-compose.yml runs: pqx-server, pqx-rabbitmq and
# pqx-postgres (with Docker when its engine answers, else podman, set up by scripts/containers.sh).
image:
	cargo build --release --bins -p pqx-app
	scripts/containers.sh image

# Figures of throughput, latency, memory, routing scale, signing and failover from a release
# build, in one run: a table on stdout and the same as JSON in target/bench/bench.json.
bench:
	scripts/services.sh --postgres --cluster
	cargo build --release --bins -p pqx-app -p pqx-bench
	target/release/pqx-bench

services:
	scripts/services.sh --postgres --second-node --tls --cluster --fleet-net
	scripts/test-tools.sh

services-stop:
	scripts/services.sh stop

build:
	cargo build --release --bins

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Copies the config templates to ./conn.yml and ./init.yml, never overwriting yours.
init-config:
	@for f in conn init; do \
	  if [ -e $$f.yml ]; then echo "$$f.yml exists: left as it is"; \
	  else cp config/$$f.yml.template $$f.yml && echo "wrote $$f.yml: edit it for your broker and database"; fi; \
	done
