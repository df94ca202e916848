//! The manifest, `stackproof.yml`, on its own: it reads (every key known), its services
//! are the ones stackproof runs with pinned images, and its gate queries parse.

use super::versions::Version;
use super::{parse_yaml, Severity, Sink, Source};
use crate::stack::manifest::{Manifest, SERVICE_NAMES};

/// Check the manifest text alone (also used for a lone `stackproof.yml`).
pub fn check_manifest_text(src: &Source, sink: &mut Sink) -> Option<Manifest> {
    let m: Manifest = parse_yaml(src, sink, "manifest")?;
    for (name, s) in &m.services {
        if !SERVICE_NAMES.contains(&name.as_str()) {
            sink.at(
                Severity::Error,
                "manifest.invalid",
                src,
                &format!("services/{name}"),
                format!("unknown service `{name}`"),
                format!("services are {}", SERVICE_NAMES.join(", ")),
            );
        }
        if Version::from_image(&s.image).is_none() {
            sink.at(
                Severity::Warning,
                "manifest.invalid",
                src,
                &format!("services/{name}/image"),
                format!("image `{}` has no version tag; lint cannot tell which syntax it reads", s.image),
                "pin a tag such as prom/prometheus:v2.42.0",
            );
        }
    }
    exposure(&m, src, sink);
    for (i, c) in m.gate.criteria.iter().enumerate() {
        if let Err(e) = crate::stack::promql::parse(&c.query) {
            sink.at(
                Severity::Error,
                "manifest.gate_promql",
                src,
                &format!("gate/criteria/{i}/query"),
                format!("gate criterion `{}`: query does not parse: {e}", c.name),
                "fix the PromQL (try it in Prometheus' expression browser)",
            );
        }
    }
    Some(m)
}

/// A listen address (`0.0.0.0:9090`, `:9090`, `[::]:9090`, `0.0.0.0`, `""`) means every
/// interface. With host networking, such a listener faces the internet.
pub fn is_wildcard(addr: &str) -> bool {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        Some(("", p)) if p.chars().all(|c| c.is_ascii_digit()) => "",
        _ => addr,
    };
    matches!(host.trim_start_matches('[').trim_end_matches(']'), "" | "0.0.0.0" | "::" | "*")
}

/// The listen addresses a service's arguments and environment give: (manifest path,
/// value). An empty `--…listen-address=` (a disabled listener) is not one.
pub fn listen_addresses(base: &str, list: &str, args: &[String], env: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = vec![];
    for (i, a) in args.iter().enumerate() {
        if let Some((flag, value)) = a.split_once('=') {
            if flag.starts_with("--") && flag.contains("listen") && !value.is_empty() {
                out.push((format!("{base}/{list}/{i}"), value.to_string()));
            }
        }
    }
    for (k, v) in env {
        let k_up = k.to_ascii_uppercase();
        if k_up.ends_with("_ADDR") || k_up.ends_with("_ADDRESS") || k_up.contains("LISTEN") {
            out.push((format!("{base}/env/{k}"), v.clone()));
        }
    }
    out
}

/// A service that is not `public` must not listen on every interface (error), and should
/// say where it listens (warning: an image's default is usually every interface). The
/// host exporter is never public.
fn exposure(m: &Manifest, src: &Source, sink: &mut Sink) {
    let hint = "listen on 127.0.0.1 (stackproof reaches every service through SSH tunnels), or set `public: true` on the port if it must face the network";
    for (name, s) in &m.services {
        let public = s.ports.iter().any(|p| p.public);
        let found = listen_addresses(&format!("services/{name}"), "args", &s.args, &s.env);
        for (path, addr) in &found {
            if !public && is_wildcard(addr) {
                sink.at(
                    Severity::Error,
                    "manifest.exposed",
                    src,
                    path,
                    format!("`{name}` listens on every interface (`{addr}`) but no port of it is `public`"),
                    hint,
                );
            }
        }
        if found.is_empty() && !s.ports.is_empty() && !public {
            sink.at(
                Severity::Warning,
                "manifest.exposed",
                src,
                &format!("services/{name}"),
                format!("`{name}` does not say which address it listens on; images usually default to every interface"),
                hint,
            );
        }
    }
    let he = &m.host_exporter;
    for (path, addr) in listen_addresses("host_exporter", "command", &he.command, &he.env) {
        if is_wildcard(&addr) {
            sink.at(Severity::Error, "manifest.exposed", src, &path, format!("the host exporter listens on every interface (`{addr}`)"), hint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses() {
        for w in ["0.0.0.0:9090", ":9090", "[::]:9090", "0.0.0.0", "", "::", "*:3000"] {
            assert!(is_wildcard(w), "{w}");
        }
        for l in ["127.0.0.1:9090", "127.0.0.1", "[::1]:9090", "10.0.0.5:9100", "localhost:3000"] {
            assert!(!is_wildcard(l), "{l}");
        }
    }

    #[test]
    fn listen_addresses_from_flags_and_environment() {
        let args = vec!["--web.listen-address=0.0.0.0:9090".to_string(), "--cluster.listen-address=".into(), "--config.file=x".into()];
        let env = [("GF_SERVER_HTTP_ADDR".to_string(), "127.0.0.1".to_string()), ("GF_X".into(), "0.0.0.0".into())].into();
        let a = listen_addresses("services/p", "args", &args, &env);
        assert_eq!(a, vec![("services/p/args/0".into(), "0.0.0.0:9090".into()), ("services/p/env/GF_SERVER_HTTP_ADDR".into(), "127.0.0.1".into())]);
    }
}
