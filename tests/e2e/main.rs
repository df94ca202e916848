//! The end-to-end tests, one crate (`cargo test --test e2e`), their helpers written once
//! in `support`. Most need the sandbox (`scripts/sandbox up`: sshd on 127.0.0.1:2222,
//! Docker, the registry on 127.0.0.1:5000) or the real programs (Prometheus,
//! Alertmanager, node-exporter, python3, chromium) and are `#[ignore]`d: `scripts/test`
//! runs them with `cargo test --workspace -- --ignored --test-threads=1` (one at a time:
//! they share the host's ports). The shared sandbox: wrap runs in
//! `flock /tmp/sandbox-e2e.lock …`.

mod support;

mod deploy;
mod drill;
mod drill_all;
mod drill_auth;
mod grafana;
mod hardening;
mod host_exporter;
mod interrupt;
mod paging;
mod verify;
mod watch;
mod world;
