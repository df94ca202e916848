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
