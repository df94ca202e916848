//! What makes a drill's delivery Alertmanager's, and no other process's on the host:
//! - a per-drill token ([`webhook::Webhook::token`]) written into the Alertmanager
//!   container as the drill receiver's `http_config.authorization.credentials_file`
//!   ([`token_file`], [`install_token`]): Alertmanager reads that file on every request,
//!   so the new token is used from the next notification on, without a reload. The
//!   token never enters the config, the URL (which /api/v2/status shows unmasked) or a
//!   file on the host's disk outside Docker's data root;
//! - the reverse tunnel's listener on the host bound to loopback only ([`check_tunnel`]):
//!   with sshd's `GatewayPorts yes` it would face the network;
//! - Alertmanager's own count of webhook notifications grown by at least the deliveries
//!   the webhook took ([`shortfall`]).

use super::observe::{counter, per_receiver};
use super::webhook;
use crate::error::{Error, Kind, Result};
use crate::remote::conn::{listeners, Listener};
use crate::remote::ssh::Ssh;
use crate::remote::Conn;
use crate::stack::alertmanager::Config as AmConfig;
use crate::stack::Stack;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The file the drill receiver's webhook reads its bearer token from (pure: `Err` says
/// what to add to alertmanager.yml).
pub fn token_file(am: &AmConfig, receiver: &str) -> std::result::Result<String, String> {
    am.bearer_file(receiver)
}

/// Write the drill's token into the running Alertmanager container at `path` (0400,
/// owned by the container's user).
pub async fn install_token(conn: &Conn, stack: &Stack, path: &str, token: &str) -> Result<()> {
    let name = &stack.manifest.name;
    let observed = conn.engine.observed(name).await?;
    let am = observed.iter().find(|o| o.service == "alertmanager" && o.state == "running").ok_or_else(|| {
        Error::remote(
            Kind::DrillPrecondition,
            format!("the drill cannot start: stack `{name}` has no running Alertmanager container"),
            "run `stackproof deploy`",
        )
    })?;
    let user = stack.manifest.services.get("alertmanager").and_then(|s| s.user.clone());
    let spec = crate::engine::spec::ContainerSpec { user, ..Default::default() };
    let (uid, gid) = spec.uid_gid();
    conn.engine.put_secret(&am.id, path, token.as_bytes(), uid, gid).await.map_err(|e| {
        Error::remote(
            Kind::DrillPrecondition,
            format!("the drill cannot write its token into the Alertmanager container: {e}"),
            "the Alertmanager container's root filesystem must be writable (`read_only: false` on the alertmanager service in stackproof.yml, then `stackproof deploy`)",
        )
    })
}

/// Is this listener bound to a loopback address (127.0.0.0/8, ::1, ::ffff:127.x)?
pub fn is_loopback(l: &Listener) -> bool {
    if let Some(v4) = l.ipv4() {
        return v4.is_loopback();
    }
    if l.addr.len() != 32 {
        return false;
    }
    // /proc/net/tcp6 prints four 32-bit words, each in host (little-endian) order.
    let mut bytes = [0u8; 16];
    for (i, chunk) in l.addr.as_bytes().chunks(8).enumerate() {
        let Some(w) = std::str::from_utf8(chunk).ok().and_then(|c| u32::from_str_radix(c, 16).ok()) else { return false };
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.swap_bytes().to_be_bytes());
    }
    let v6 = Ipv6Addr::from(bytes);
    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4: Ipv4Addr| v4.is_loopback())
}

/// The drill port's listeners that are not on loopback (pure), as addresses to print.
pub fn exposed(all: &BTreeSet<Listener>, port: u16) -> Vec<String> {
    all.iter()
        .filter(|l| l.port == port && !is_loopback(l))
        .map(|l| match l.ipv4() {
            Some(v4) => v4.to_string(),
            None if l.addr.chars().all(|c| c == '0') => "::".to_string(),
            None => format!("IPv6 {}", l.addr),
        })
        .collect()
}

/// After the reverse forward is up: refuse it unless every listener on the drill port
/// is on loopback (sshd's `GatewayPorts yes` binds it to every interface, where any
/// host on the network could post to the drill receiver).
pub async fn check_tunnel(ssh: &Ssh, port: u16) -> Result<()> {
    let all = listeners(ssh).await?;
    if !all.iter().any(|l| l.port == port) {
        return Err(Error::remote(
            Kind::ForwardFailed,
            format!("the drill's reverse tunnel is up but nothing listens on port {port} on {}", ssh.host().name),
            "check sshd's AllowTcpForwarding on the host",
        ));
    }
    let bad = exposed(&all, port);
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::remote(
        Kind::ForwardFailed,
        format!("the drill's reverse tunnel on {} listens on port {port} at {} (not loopback only): refused", ssh.host().name, bad.join(", ")),
        "set `GatewayPorts no` (or `clientspecified`) in the host's sshd_config and reload sshd, and make sure nothing else listens on `drill.port`",
    ))
}

/// Alertmanager's `/metrics` text, when it answers.
pub async fn am_metrics(client: &reqwest::Client, am_url: &str) -> Option<String> {
    let r = client.get(format!("{am_url}/metrics")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Did Alertmanager count at least the `delivered` notifications the webhook took?
/// `None` when it did; otherwise what is wrong (pure). Alertmanager 0.25 counts
/// `alertmanager_notifications_total` per integration only (newer ones per receiver
/// too): other webhook receivers can only add to it, never hide a forged delivery.
pub fn shortfall(before: Option<&str>, after: Option<&str>, receiver: &str, delivered: usize) -> Option<String> {
    if delivered == 0 {
        return None;
    }
    let (Some(before), Some(after)) = (before, after) else {
        return Some("Alertmanager's /metrics could not be read before and after the drill: its deliveries are not confirmed".into());
    };
    const M: &str = "alertmanager_notifications_total";
    if !after.lines().any(|l| l.starts_with(M)) {
        return Some(format!("Alertmanager's /metrics has no {M}: the drill's deliveries are not confirmed"));
    }
    let grew = counter(after, M, "webhook", receiver) - counter(before, M, "webhook", receiver);
    if grew >= delivered as f64 {
        return None;
    }
    let label = if per_receiver(after) { format!("integration=\"webhook\",receiver_name=\"{receiver}\"") } else { "integration=\"webhook\"".to_string() };
    Some(format!(
        "the webhook took {delivered} notification(s) bearing the drill's token, but Alertmanager's {M}{{{label}}} grew by {grew}: something other than this stack's Alertmanager posted to the drill receiver"
    ))
}

/// A note for the POSTs the webhook refused, if any.
pub fn refused_note(hook: &webhook::Webhook) -> Option<String> {
    match hook.refused() {
        (0, 0) => None,
        (u, d) => Some(format!(
            "the drill webhook refused {u} POST(s) without its token and {d} past its inbox cap ({} bodies, {} bytes)",
            webhook::MAX_BODIES,
            webhook::MAX_BYTES
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::conn::parse_listeners;

    #[test]
    fn only_loopback_listeners_pass() {
        // 127.0.0.1:9799, ::1:9799
        let ok = parse_listeners("0100007F:2647\n00000000000000000000000001000000:2647\n0000000000000000FFFF00000100007F:2647\n00000000:0016\n");
        assert!(exposed(&ok, 9799).is_empty(), "{:?}", exposed(&ok, 9799));
        // GatewayPorts yes: 0.0.0.0:9799 and [::]:9799; a LAN address.
        let bad = parse_listeners("00000000:2647\n00000000000000000000000000000000:2647\n0A01A8C0:2647\n0100007F:2648\n");
        assert_eq!(exposed(&bad, 9799), vec!["0.0.0.0".to_string(), "::".into(), "192.168.1.10".into()]);
        assert!(exposed(&bad, 9800).is_empty());
    }

    #[test]
    fn the_drill_receiver_must_read_its_token_from_a_file() {
        let am = |extra: &str| -> AmConfig {
            serde_yaml::from_str(&format!(
                "route: {{receiver: d}}\nreceivers:\n  - name: d\n    webhook_configs:\n      - url: http://127.0.0.1:9799/\n{extra}"
            ))
            .unwrap()
        };
        let e = token_file(&am(""), "d").unwrap_err();
        assert!(e.contains("credentials_file: /run/secrets/drill/token"), "{e}");
        let ok = am("        http_config:\n          authorization:\n            type: Bearer\n            credentials_file: /run/secrets/drill/token\n");
        assert_eq!(token_file(&ok, "d").unwrap(), "/run/secrets/drill/token");
        assert!(token_file(&ok, "x").unwrap_err().contains("no receiver `x`"));
        let rel = am("        http_config: {authorization: {credentials_file: token}}\n");
        assert!(token_file(&rel, "d").unwrap_err().contains("not an absolute path"));
        // The stack's own alertmanager.yml has it.
        let stack = Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap();
        let text = stack.read_text("alertmanager/alertmanager.yml").unwrap();
        let am: AmConfig = serde_yaml::from_str(&text).unwrap();
        assert_eq!(token_file(&am, &stack.manifest.drill.receiver).unwrap(), "/run/secrets/drill/token");
    }

    #[test]
    fn deliveries_alertmanager_did_not_count_fail_the_drill() {
        let before = "alertmanager_notifications_total{integration=\"webhook\"} 3\nalertmanager_notifications_total{integration=\"email\"} 1\n";
        let after2 = "alertmanager_notifications_total{integration=\"webhook\"} 5\nalertmanager_notifications_total{integration=\"email\"} 1\n";
        assert_eq!(shortfall(Some(before), Some(after2), "stackproof-drill", 2), None);
        assert_eq!(shortfall(Some(before), Some(after2), "stackproof-drill", 1), None);
        let e = shortfall(Some(before), Some(after2), "stackproof-drill", 3).unwrap();
        assert!(e.contains("took 3") && e.contains("grew by 2") && e.contains("integration=\"webhook\"}"), "{e}");
        assert!(shortfall(None, Some(after2), "stackproof-drill", 1).unwrap().contains("not confirmed"));
        assert!(shortfall(Some(before), Some("up 1\n"), "stackproof-drill", 1).unwrap().contains("no alertmanager_notifications_total"));
        assert_eq!(shortfall(None, None, "stackproof-drill", 0), None);
        // Per receiver (newer Alertmanager): another webhook receiver's growth does not count.
        let b = "alertmanager_notifications_total{integration=\"webhook\",receiver_name=\"stackproof-drill\"} 1\nalertmanager_notifications_total{integration=\"webhook\",receiver_name=\"critical\"} 0\n";
        let a = "alertmanager_notifications_total{integration=\"webhook\",receiver_name=\"stackproof-drill\"} 1\nalertmanager_notifications_total{integration=\"webhook\",receiver_name=\"critical\"} 4\n";
        assert!(shortfall(Some(b), Some(a), "stackproof-drill", 1).unwrap().contains("receiver_name=\"stackproof-drill\""));
    }
}
