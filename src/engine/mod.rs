//! The Docker Engine API (bollard) over the host's Docker socket, forwarded through the
//! SSH connection: no `docker` CLI on either side.

pub mod spec;

use crate::error::{Error, Kind, Result};
use crate::output::Progress;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use spec::{ContainerSpec, LABEL_CONFIG_HASH, LABEL_RELEASE, LABEL_SERVICE, LABEL_STACK};
use std::collections::HashMap;
use std::path::Path;

/// A container of the stack as it runs on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub service: String,
    pub image: String,
    pub config_hash: String,
    pub release: String,
    pub state: String,
    pub status: String,
}

pub struct Engine {
    pub docker: Docker,
    host: String,
}

fn docker_err(host: &str, what: &str, e: bollard::errors::Error) -> Error {
    Error::remote(
        Kind::Docker,
        format!("{what} on {host} failed: {e}"),
        "check that the SSH user may use the Docker socket (group `docker`) and that dockerd runs",
    )
}

impl Engine {
    /// Connect to the Docker API through a unix socket forwarded by SSH.
    pub async fn connect(socket: &Path, host: &str) -> Result<Engine> {
        let docker = Docker::connect_with_unix(&socket.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| docker_err(host, "connecting to Docker", e))?
            .negotiate_version()
            .await
            .map_err(|e| {
                Error::remote(
                    Kind::DockerUnreachable,
                    format!("the Docker API on {host} does not answer through the forwarded socket: {e}"),
                    "check `docker_socket` in the host entry and that the SSH user is in the `docker` group",
                )
            })?;
        Ok(Engine { docker, host: host.to_string() })
    }

    /// Containers labelled with the stack's name.
    pub async fn observed(&self, stack: &str) -> Result<Vec<Observed>> {
        let filter = format!("{LABEL_STACK}={stack}");
        let filters = HashMap::from([("label", vec![filter.as_str()])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
            .await
            .map_err(|e| docker_err(&self.host, "listing containers", e))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let l = |k: &str| labels.get(k).cloned().unwrap_or_default();
                Observed {
                    id: c.id.unwrap_or_default(),
                    name: c.names.and_then(|n| n.first().cloned()).unwrap_or_default().trim_start_matches('/').to_string(),
                    service: l(LABEL_SERVICE),
                    image: c.image.unwrap_or_default(),
                    config_hash: l(LABEL_CONFIG_HASH),
                    release: l(LABEL_RELEASE),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The id of the running container of `service` (any stack), if there is one.
    pub async fn observed_service(&self, service: &str) -> Option<String> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_SERVICE}={service}")]), ("status".to_string(), vec!["running".to_string()])]);
        let list = self.docker.list_containers(Some(ListContainersOptionsBuilder::default().filters(&filters).build())).await.ok()?;
        list.into_iter().find_map(|c| c.id)
    }

    /// Make sure the image is present, pulling it with progress when it is not.
    pub async fn ensure_image(&self, image: &str, progress: &Progress) -> Result<bool> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(false);
        }
        let (repo, tag) = split_image(image);
        progress.set_message(format!("pulling {image}"));
        let mut stream = self.docker.create_image(Some(CreateImageOptionsBuilder::default().from_image(repo).tag(tag).build()), None, None);
        let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let (Some(id), Some(d)) = (info.id.clone(), info.progress_detail.clone()) {
                        if let (Some(cur), Some(tot)) = (d.current, d.total) {
                            layers.insert(id, (cur, tot));
                        }
                    }
                    let (cur, tot) = layers.values().fold((0i64, 0i64), |a, v| (a.0 + v.0, a.1 + v.1));
                    if tot > 0 {
                        progress.set_length(tot as u64, cur.min(tot) as u64);
                    }
                }
                Err(e) => {
                    // bollard 0.21.1 can end a good stream with "bytes remaining on stream"
                    // (#560): trust the image list, not the stream's last word.
                    if self.docker.inspect_image(image).await.is_ok() {
                        break;
                    }
                    return Err(Error::remote(
                        Kind::ImagePull,
                        format!("pulling image {image} on {} failed: {e}", self.host),
                        "check the image name and tag, and that the host can reach its registry (or override it under `images:` in the host entry)",
                    ));
                }
            }
        }
        if self.docker.inspect_image(image).await.is_err() {
            return Err(Error::remote(Kind::ImagePull, format!("image {image} is still missing on {} after the pull", self.host), "check the registry"));
        }
        Ok(true)
    }

    /// Create (not start) a container for `spec`, labelled with stack, service, release
    /// and config hash, then copy its secrets in, owned by its user with mode 0400.
    pub async fn create(&self, stack: &str, spec: &ContainerSpec, release: &str, secrets: &[(String, Vec<u8>)]) -> Result<String> {
        self.create_with(stack, spec, release, secrets, true).await
    }

    /// Create and start. A host whose `/` is not a shared mount (some rootless or
    /// nested engines) refuses `rslave` propagation for the host-rootfs bind: then the
    /// container is made again with a plain read-only bind (labels still carry the
    /// desired spec's hash, so the next plan does not see a difference).
    pub async fn create_and_start(&self, stack: &str, spec: &ContainerSpec, release: &str, secrets: &[(String, Vec<u8>)]) -> Result<String> {
        let id = self.create_with(stack, spec, release, secrets, true).await?;
        match self.docker.start_container(&id, None).await {
            Ok(()) => Ok(id),
            Err(e) if e.to_string().contains("not a shared or slave mount") => {
                tracing::info!("{}: host / is not a shared mount; binding it without rslave", spec.name);
                self.remove(&id).await?;
                let id = self.create_with(stack, spec, release, secrets, false).await?;
                self.start(&id).await?;
                Ok(id)
            }
            Err(e) => Err(docker_err(&self.host, &format!("starting {}", spec.name), e)),
        }
    }

    async fn create_with(&self, stack: &str, spec: &ContainerSpec, release: &str, secrets: &[(String, Vec<u8>)], rslave: bool) -> Result<String> {
        for vol in spec.volumes.keys() {
            if self.docker.inspect_volume(vol).await.is_err() {
                let labels = HashMap::from([
                    (LABEL_STACK.to_string(), stack.to_string()),
                    (LABEL_SERVICE.to_string(), spec.service.clone()),
                    (LABEL_RELEASE.to_string(), release.to_string()),
                    (LABEL_CONFIG_HASH.to_string(), spec.hash()),
                ]);
                self.docker
                    .create_volume(VolumeCreateRequest { name: Some(vol.clone()), labels: Some(labels), ..Default::default() })
                    .await
                    .map_err(|e| docker_err(&self.host, &format!("creating volume {vol}"), e))?;
            }
        }
        let labels = HashMap::from([
            (LABEL_STACK.to_string(), stack.to_string()),
            (LABEL_SERVICE.to_string(), spec.service.clone()),
            (LABEL_RELEASE.to_string(), release.to_string()),
            (LABEL_CONFIG_HASH.to_string(), spec.hash()),
        ]);
        let mut binds: Vec<String> = spec.binds.iter().map(|b| if rslave { b.clone() } else { b.replace(":ro,rslave", ":ro") }).collect();
        binds.extend(spec.volumes.iter().map(|(v, dest)| format!("{v}:{dest}")));
        let host_config = HostConfig {
            binds: Some(binds),
            network_mode: Some("host".into()),
            pid_mode: spec.pid_host.then(|| "host".to_string()),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            ..confinement(spec)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            user: spec.user.clone(),
            cmd: Some(spec.args.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::default().name(&spec.name).build()), body)
            .await
            .map_err(|e| docker_err(&self.host, &format!("creating container {}", spec.name), e))?
            .id;
        if !secrets.is_empty() {
            let tar = secrets_tar(spec, secrets)?;
            self.docker
                .upload_to_container(&id, Some(UploadToContainerOptionsBuilder::default().path("/").build()), bollard::body_full(tar.into()))
                .await
                .map_err(|e| docker_err(&self.host, &format!("copying secrets into {}", spec.name), e))?;
        }
        Ok(id)
    }

    /// Write one secret file (0400, owned by `uid:gid`) into a container, running or not
    /// (through the archive API: its root filesystem must be writable).
    pub async fn put_secret(&self, id: &str, dest: &str, value: &[u8], uid: u64, gid: u64) -> Result<()> {
        let mut t = SecretTar::default();
        t.add(dest, value, uid, gid)?;
        self.docker
            .upload_to_container(id, Some(UploadToContainerOptionsBuilder::default().path("/").build()), bollard::body_full(t.finish()?.into()))
            .await
            .map_err(|e| docker_err(&self.host, &format!("writing {dest} into a container"), e))
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.docker.start_container(id, None).await.map_err(|e| docker_err(&self.host, "starting a container", e))
    }

    pub async fn remove(&self, id: &str) -> Result<()> {
        self.docker
            .remove_container(id, Some(RemoveContainerOptionsBuilder::default().force(true).build()))
            .await
            .map_err(|e| docker_err(&self.host, "removing a container", e))
    }

    /// Does the secret inside the container equal `value`? (False when unreadable.)
    /// Whether the file at `dest` in the container holds `value` (read back through the
    /// archive API; a hash of a secret is never published).
    pub async fn secret_matches(&self, id: &str, dest: &str, value: &[u8]) -> bool {
        self.read_file(id, dest).await.is_some_and(|c| c == value)
    }

    /// The content of one file in a container, through the archive API (`None` when it
    /// cannot be read).
    pub async fn read_file(&self, id: &str, path: &str) -> Option<Vec<u8>> {
        let mut s = self.docker.download_from_container(id, Some(DownloadFromContainerOptionsBuilder::default().path(path).build()));
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            buf.extend_from_slice(&chunk.ok()?);
        }
        let mut ar = tar::Archive::new(buf.as_slice());
        let mut entries = ar.entries().ok()?;
        let mut e = entries.next()?.ok()?;
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut content).ok()?;
        Some(content)
    }

    pub async fn inspect_state(&self, id: &str) -> Result<(String, i64, Option<i64>)> {
        let c = self.docker.inspect_container(id, None).await.map_err(|e| docker_err(&self.host, "inspecting a container", e))?;
        let st = c.state.unwrap_or_default();
        Ok((st.status.map(|s| s.to_string()).unwrap_or_default(), c.restart_count.unwrap_or(0), st.exit_code))
    }

    pub async fn last_logs(&self, id: &str, lines: usize) -> String {
        let mut s = self.docker.logs(id, Some(LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build()));
        let mut out = String::new();
        while let Some(Ok(l)) = s.next().await {
            out.push_str(&l.to_string());
        }
        out
    }
}

/// What confines every container (`spec::CAP_DROP` and friends): capabilities, privileges,
/// memory, a read-only root with a `/tmp` tmpfs, rotated json-file logs.
pub fn confinement(spec: &ContainerSpec) -> HostConfig {
    // A secret is copied into the container's filesystem before it starts: the engine
    // refuses that on a read-only root.
    let read_only = spec.read_only && spec.secrets.is_empty();
    HostConfig {
        cap_drop: Some(vec![spec::CAP_DROP.to_string()]),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        security_opt: Some(vec![spec::SECURITY_OPT.to_string()]),
        memory: (spec.memory > 0).then_some(spec.memory as i64),
        readonly_rootfs: Some(read_only),
        tmpfs: read_only.then(|| HashMap::from([(spec::TMPFS.0.to_string(), spec::TMPFS.1.to_string())])),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([("max-size".to_string(), spec::LOG_MAX_SIZE.to_string()), ("max-file".to_string(), spec::LOG_MAX_FILE.to_string())])),
        }),
        ..Default::default()
    }
}

/// `repo:tag` split at the last `:` after the last `/` (registry ports have colons too).
pub fn split_image(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// A tar holding each secret at its destination, owned by the container's user, 0400,
/// with its parent directories (0755) so the upload works on a fresh container.
fn secrets_tar(spec: &ContainerSpec, secrets: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let (uid, gid) = spec.uid_gid();
    let mut t = SecretTar::default();
    for (name, dest) in &spec.secrets {
        let Some((_, value)) = secrets.iter().find(|(n, _)| n == name) else { continue };
        t.add(dest, value, uid, gid)?;
    }
    t.finish()
}

/// A tar archive of secret files (0400, owned by the container's user) and their parent
/// directories (0755, root), to unpack at `/` in a container.
#[derive(Default)]
struct SecretTar {
    b: Option<tar::Builder<Vec<u8>>>,
    dirs: std::collections::BTreeSet<std::path::PathBuf>,
}

fn tar_err(e: std::io::Error) -> Error {
    Error::remote(Kind::Secrets, format!("building the secrets archive failed: {e}"), "report this as a bug")
}

impl SecretTar {
    fn add(&mut self, dest: &str, value: &[u8], uid: u64, gid: u64) -> Result<()> {
        let b = self.b.get_or_insert_with(|| tar::Builder::new(Vec::new()));
        let rel = dest.trim_start_matches('/');
        let mut parent = Path::new(rel).parent();
        let mut chain = vec![];
        while let Some(p) = parent {
            if p.as_os_str().is_empty() {
                break;
            }
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for d in chain.into_iter().rev() {
            if self.dirs.insert(d.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                b.append_data(&mut h, &d, std::io::empty()).map_err(tar_err)?;
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(value.len() as u64);
        h.set_mode(0o400);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, rel, value).map_err(tar_err)
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.b.unwrap_or_else(|| tar::Builder::new(Vec::new())).into_inner().map_err(tar_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_image_handles_registry_ports() {
        assert_eq!(split_image("127.0.0.1:5000/stackproof-local/prometheus:v2.42.0"), ("127.0.0.1:5000/stackproof-local/prometheus", "v2.42.0"));
        assert_eq!(split_image("prom/prometheus"), ("prom/prometheus", "latest"));
        assert_eq!(split_image("localhost:5000/x"), ("localhost:5000/x", "latest"));
    }

    #[test]
    fn secrets_tar_owns_files_by_the_container_user_0400() {
        let spec = ContainerSpec {
            name: "s-grafana".into(),
            service: "grafana".into(),
            image: "g".into(),
            user: Some("472".into()),
            args: vec![],
            env: Default::default(),
            binds: vec![],
            volumes: Default::default(),
            pid_host: false,
            ports: vec![],
            secrets: vec![("pw".into(), "/run/secrets/pw".into())],
            ..Default::default()
        };
        let t = secrets_tar(&spec, &[("pw".into(), b"hunter2".to_vec())]).unwrap();
        let mut ar = tar::Archive::new(t.as_slice());
        let entries: Vec<_> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap(), e.header().uid().unwrap())
            })
            .collect();
        assert_eq!(entries.last().unwrap(), &("run/secrets/pw".to_string(), 0o400, 472));
        assert!(entries.iter().any(|(p, m, _)| p == "run/secrets" && *m == 0o755));
    }

    #[test]
    fn confinement_drops_everything_and_limits() {
        let spec = ContainerSpec { memory: 256 << 20, read_only: true, ..Default::default() };
        let h = confinement(&spec);
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, None);
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges:true".to_string()]));
        assert_eq!(h.memory, Some(256 << 20));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert!(h.tmpfs.unwrap()["/tmp"].contains("size=64m"));
        let log = h.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.unwrap()["max-file"], "3");
        let h = confinement(&ContainerSpec { cap_add: vec!["NET_BIND_SERVICE".into()], ..Default::default() });
        assert_eq!(h.cap_add, Some(vec!["NET_BIND_SERVICE".to_string()]));
        assert_eq!((h.readonly_rootfs, h.tmpfs.is_none()), (Some(false), true));
        let with_secret = ContainerSpec { read_only: true, secrets: vec![("s".into(), "/run/secrets/s".into())], ..Default::default() };
        assert_eq!(confinement(&with_secret).readonly_rootfs, Some(false));
    }
}
