//! `exposure: listeners`: the address each of the stack's ports is bound to on the host,
//! read from /proc/net/tcp through SSH (`remote::conn::listeners`). A port that is not
//! `public` in the manifest must not be bound to every interface: with host networking
//! that listener faces the internet, whatever answered through the tunnel.

use super::{Check, Status};
use crate::remote::conn::Listener;
use crate::stack::Manifest;
use std::collections::BTreeSet;

/// Whether a listener is bound to every interface (`0.0.0.0` or `::`).
pub fn is_wildcard(l: &Listener) -> bool {
    l.addr.chars().all(|c| c == '0')
}

/// The check, from the host's listeners (pure).
pub fn check(m: &Manifest, listeners: &BTreeSet<Listener>) -> Check {
    let public: BTreeSet<u16> = m.services.values().flat_map(|s| s.ports.iter().filter(|p| p.public).map(|p| p.port)).collect();
    let ports = m.ports();
    let exposed: Vec<String> = listeners
        .iter()
        .filter(|l| is_wildcard(l) && ports.contains_key(&l.port) && !public.contains(&l.port))
        .map(|l| format!("{} on port {} ({})", ports[&l.port], l.port, if l.addr.len() > 8 { "::" } else { "0.0.0.0" }))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let bound: Vec<String> = ports.keys().filter(|p| listeners.iter().any(|l| l.port == **p)).map(u16::to_string).collect();
    let (status, detail, hint) = if exposed.is_empty() {
        (Status::Pass, format!("no stack port on every interface (listening: {})", bound.join(", ")), String::new())
    } else {
        (
            Status::Fail,
            format!("bound to every interface, not public in the manifest: {}", exposed.join("; ")),
            "make the service listen on 127.0.0.1 (its listen flag), or mark the port `public: true` if it must face the network".to_string(),
        )
    };
    Check { name: "exposure: listeners".into(), status, detail, hint, duration_ms: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::conn::parse_listeners;

    fn manifest() -> Manifest {
        Manifest::from_yaml(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap()).unwrap()
    }

    #[test]
    fn loopback_listeners_pass_and_a_wildcard_one_fails() {
        let m = manifest();
        // 127.0.0.1:9090, 9093, 9100, 3000, 9101, and sshd on 0.0.0.0:22 (not ours).
        let ok = parse_listeners("0100007F:2382\n0100007F:2385\n0100007F:238C\n0100007F:0BB8\n0100007F:238D\n00000000:0016\n");
        let c = check(&m, &ok);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(c.detail.contains("9090") && c.detail.contains("9101"), "{c:?}");

        let mut bad = ok.clone();
        bad.extend(parse_listeners("00000000:0BB8\n00000000000000000000000000000000:238D\n"));
        let c = check(&m, &bad);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("grafana on port 3000 (0.0.0.0)") && c.detail.contains("host_exporter on port 9101 (::)"), "{c:?}");

        // A port marked public may be on every interface.
        let mut m = m;
        m.services.get_mut("grafana").unwrap().ports[0].public = true;
        assert!(check(&m, &bad).detail.contains("host_exporter") && !check(&m, &bad).detail.contains("grafana"));
    }
}
