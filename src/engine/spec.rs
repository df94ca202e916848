//! Desired containers as plain data (pure): what `plan` compares and `apply` creates.

use crate::stack::manifest::{Service, CONTAINER_ROOT};
use crate::stack::Manifest;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const LABEL_STACK: &str = "io.stackproof.stack";
pub const LABEL_SERVICE: &str = "io.stackproof.service";
pub const LABEL_RELEASE: &str = "io.stackproof.release";
pub const LABEL_CONFIG_HASH: &str = "io.stackproof.config-hash";

/// Everything that, when it changes, requires a new container. Secrets are compared
/// separately (by content, inside the container) so that no hash of a secret is ever
/// published in a label.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub service: String,
    pub image: String,
    pub user: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub binds: Vec<String>,
    /// Named volume → mount point.
    pub volumes: BTreeMap<String, String>,
    pub pid_host: bool,
    pub ports: Vec<u16>,
    pub secrets: Vec<(String, String)>,
    /// Memory limit in bytes (0: none, only in hand-made specs).
    pub memory: u64,
    /// Capabilities added back after dropping all.
    pub cap_add: Vec<String>,
    /// Read-only root filesystem, with a tmpfs on `/tmp`.
    pub read_only: bool,
}

/// Every container: no capability but those the manifest adds back, no privilege gained
/// through setuid binaries, logs rotated by the engine.
pub const CAP_DROP: &str = "ALL";
pub const SECURITY_OPT: &str = "no-new-privileges:true";
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILE: &str = "3";
/// The tmpfs a read-only container writes its scratch files to.
pub const TMPFS: (&str, &str) = ("/tmp", "rw,noexec,nosuid,nodev,size=64m,mode=1777");

impl ContainerSpec {
    /// sha256 of the spec: the `io.stackproof.config-hash` label.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("serializable");
        hex(&Sha256::digest(json))[..16].to_string()
    }

    /// The uid the container runs as (secrets are owned by it).
    pub fn uid_gid(&self) -> (u64, u64) {
        let user = self.user.as_deref().unwrap_or("0");
        let mut it = user.split(':');
        let uid = it.next().and_then(|u| u.parse().ok()).unwrap_or(0);
        let gid = it.next().and_then(|g| g.parse().ok()).unwrap_or(uid);
        (uid, gid)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Container name of a service: `<stack>-<service>` with `_` as `-`.
pub fn container_name(stack: &str, service: &str) -> String {
    format!("{stack}-{}", service.replace('_', "-"))
}

/// Volume name: `<stack>-<volume>`.
pub fn volume_name(stack: &str, volume: &str) -> String {
    format!("{stack}-{volume}")
}

pub fn spec_for(m: &Manifest, service: &str, svc: &Service, image: &str, remote_dir: &str) -> ContainerSpec {
    let mut binds = vec![format!("{remote_dir}:{CONTAINER_ROOT}:ro")];
    if svc.host_rootfs {
        binds.push("/:/host:ro,rslave".to_string());
    }
    ContainerSpec {
        name: container_name(&m.name, service),
        service: service.to_string(),
        image: image.to_string(),
        user: svc.user.clone(),
        args: svc.args.clone(),
        env: svc.env.clone(),
        binds,
        volumes: svc.volumes.iter().map(|v| (volume_name(&m.name, &v.name), v.dest.clone())).collect(),
        pid_host: svc.host_pid,
        ports: svc.ports.iter().map(|p| p.port).collect(),
        secrets: svc.secrets.iter().map(|s| (s.name.clone(), s.dest.clone())).collect(),
        memory: svc.memory_bytes(),
        cap_add: svc.cap_add.clone(),
        read_only: svc.read_only_root(),
    }
}

/// All desired containers of a stack on a host (images resolved with the host's overrides).
pub fn desired(m: &Manifest, overrides: &BTreeMap<String, String>, remote_dir: &str) -> Vec<ContainerSpec> {
    m.services
        .iter()
        .map(|(name, svc)| {
            let image = m.image_for(name, overrides).unwrap_or(&svc.image);
            spec_for(m, name, svc, image, remote_dir)
        })
        .collect()
}

/// sha256 over the files (path and content hash) under any of `prefixes`, from a
/// release's file map. Empty prefixes → empty string (the service reads no files).
pub fn files_hash(files: &BTreeMap<String, String>, prefixes: &[String]) -> String {
    if prefixes.is_empty() {
        return String::new();
    }
    let mut h = Sha256::new();
    for (path, sum) in files {
        if prefixes.iter().any(|p| path_under(path, p)) {
            h.update(path.as_bytes());
            h.update(b"\0");
            h.update(sum.as_bytes());
            h.update(b"\n");
        }
    }
    hex(&h.finalize())[..16].to_string()
}

/// `prometheus/rules/a.yml` is under `prometheus/` and under `prometheus/rules/a.yml`.
pub fn path_under(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    path == p || path.starts_with(&format!("{p}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        Manifest::from_yaml(&text).unwrap()
    }

    #[test]
    fn specs_mount_the_remote_dir_read_only_and_use_overrides() {
        let m = manifest();
        let o = BTreeMap::from([("prometheus".to_string(), "127.0.0.1:5000/p:1".to_string())]);
        let d = desired(&m, &o, "/srv/sp");
        let p = d.iter().find(|s| s.service == "prometheus").unwrap();
        assert_eq!(p.image, "127.0.0.1:5000/p:1");
        assert_eq!(p.binds[0], "/srv/sp:/stackproof:ro");
        assert_eq!(p.name, "stackproof-prometheus");
        let ne = d.iter().find(|s| s.service == "node_exporter").unwrap();
        assert!(ne.pid_host && ne.binds.contains(&"/:/host:ro,rslave".to_string()));
        assert_eq!(ne.name, "stackproof-node-exporter");
    }

    #[test]
    fn hash_changes_with_args_not_with_nothing() {
        let m = manifest();
        let a = desired(&m, &BTreeMap::new(), "/srv/sp");
        let b = desired(&m, &BTreeMap::new(), "/srv/sp");
        assert_eq!(a[0].hash(), b[0].hash());
        let mut c = a[0].clone();
        c.args.push("--x".into());
        assert_ne!(a[0].hash(), c.hash());
    }

    #[test]
    fn files_hash_only_sees_its_prefixes() {
        let f1 = BTreeMap::from([("prometheus/p.yml".to_string(), "1".to_string()), ("grafana/d.json".to_string(), "1".to_string())]);
        let mut f2 = f1.clone();
        f2.insert("grafana/d.json".into(), "2".into());
        let pre = vec!["prometheus/".to_string()];
        assert_eq!(files_hash(&f1, &pre), files_hash(&f2, &pre));
        assert_ne!(files_hash(&f1, &["grafana/".into()]), files_hash(&f2, &["grafana/".into()]));
        assert!(path_under("prometheus/rules/a.yml", "prometheus"));
        assert!(!path_under("prometheus2/a.yml", "prometheus/"));
    }

    #[test]
    fn uid_gid_parsing() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/x");
        let g = d.iter().find(|s| s.service == "grafana").unwrap();
        assert_eq!(g.uid_gid(), (472, 472));
    }

    #[test]
    fn default_stack_containers_are_confined() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let by = |n: &str| d.iter().find(|s| s.service == n).unwrap();
        for s in &d {
            assert!(s.cap_add.is_empty(), "{} adds capabilities", s.service);
            assert!(s.memory >= 64 << 20 && s.memory <= 2 << 30, "{}: {}", s.service, s.memory);
            // Every service runs as an unprivileged user: capabilities would be unused.
            assert!(s.user.as_deref().is_some_and(|u| !u.starts_with("0")), "{} runs as root", s.service);
        }
        // Prometheus, Alertmanager (when no receiver secret is copied in) and node-exporter
        // write only to their volumes; Grafana has a secret copied into its filesystem.
        assert!(by("prometheus").read_only && by("node_exporter").read_only);
        // The drill writes its per-drill token into the Alertmanager container.
        assert!(!by("alertmanager").read_only);
        assert!(!by("grafana").read_only);
        assert_eq!(by("prometheus").memory, 1 << 30);
        assert_eq!(by("node_exporter").memory, 128 << 20);
    }

    #[test]
    fn confinement_is_part_of_the_config_hash() {
        let m = manifest();
        let a = desired(&m, &BTreeMap::new(), "/srv/sp").remove(0);
        for change in [
            |s: &mut ContainerSpec| s.memory += 1,
            |s: &mut ContainerSpec| s.read_only = !s.read_only,
            |s: &mut ContainerSpec| s.cap_add.push("NET_RAW".into()),
        ] {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(a.hash(), b.hash());
        }
    }
}
