//! End-to-end tests proving the sandbox world is made of the real programs:
//! sshd with strict host-key checking, the Docker Engine reached through an
//! SSH-forwarded unix socket, the loopback registry, and the stand-in images
//! (Prometheus, Alertmanager, node-exporter built by `scripts/images`).
//!
//! They need `scripts/sandbox up` (run by `scripts/test`) and read the
//! `sandbox` entry of `.stackproof/hosts.yml` (or `$STACKPROOF_HOSTS`).
//! Every container they start has host networking, listens on 127.0.0.1 on a
//! free port, carries `io.stackproof.stack=world-test` and is removed at the
//! end, also when the test fails.

use crate::support::free_port;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder};
use serde::Deserialize;
use tempfile::TempDir;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Fail the test with a message unless `cond` holds (returns an `Err`, so
/// the cleanup after the body still runs).
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

const STACK_LABEL: &str = "io.stackproof.stack";
const TEST_STACK: &str = "world-test";

// ---------------------------------------------------------------------------
// The host entry written by scripts/sandbox up
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct HostsFile {
    hosts: HashMap<String, HostEntry>,
}

#[derive(Deserialize, Clone)]
struct HostEntry {
    address: String,
    port: u16,
    user: String,
    identity_file: PathBuf,
    known_hosts: PathBuf,
    remote_dir: String,
    docker_socket: String,
    #[serde(default)]
    images: HashMap<String, String>,
}

fn sandbox_entry() -> R<HostEntry> {
    let path = std::env::var_os("STACKPROOF_HOSTS").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".stackproof/hosts.yml"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}; bring the sandbox up first (sudo scripts/sandbox up)", path.display()))?;
    let file: HostsFile = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut entry = file.hosts.get("sandbox").cloned().ok_or_else(|| format!("{} has no `sandbox` host: run scripts/sandbox up", path.display()))?;
    // Relative paths are relative to the file's directory.
    let base = path.parent().unwrap_or(Path::new("."));
    entry.identity_file = base.join(&entry.identity_file);
    entry.known_hosts = base.join(&entry.known_hosts);
    Ok(entry)
}

fn image_of(entry: &HostEntry, service: &str, fallback: &str) -> String {
    entry.images.get(service).cloned().unwrap_or_else(|| format!("127.0.0.1:5000/{fallback}"))
}

// ---------------------------------------------------------------------------
// SSH and Docker over SSH
// ---------------------------------------------------------------------------

/// A control directory under /tmp (unix socket paths must stay short) with an
/// ssh config: StreamLocalBindUnlink so a stale forward socket is replaced,
/// and no global known_hosts, so only the file under test decides.
fn control_dir() -> R<TempDir> {
    let dir = tempfile::Builder::new().prefix("spw").tempdir_in("/tmp")?;
    std::fs::write(dir.path().join("ssh_config"), "StreamLocalBindUnlink yes\nGlobalKnownHostsFile /dev/null\n")?;
    Ok(dir)
}

async fn connect(entry: &HostEntry, known_hosts: &Path, dir: &TempDir) -> Result<Session, openssh::Error> {
    let mut b = SessionBuilder::default();
    b.user(entry.user.clone())
        .port(entry.port)
        .keyfile(&entry.identity_file)
        .known_hosts_check(KnownHosts::Strict)
        .user_known_hosts_file(known_hosts)
        .connect_timeout(Duration::from_secs(10))
        .control_directory(dir.path())
        .config_file(dir.path().join("ssh_config"));
    b.connect_mux(&entry.address).await
}

/// A session to the sandbox and a Docker client talking to the remote
/// Docker socket through a unix-socket forward over that session.
struct World {
    entry: HostEntry,
    session: Session,
    docker: Docker,
    _dir: TempDir,
}

impl World {
    async fn open() -> R<World> {
        let entry = sandbox_entry()?;
        let dir = control_dir()?;
        let session = connect(&entry, &entry.known_hosts, &dir)
            .await
            .map_err(|e| format!("ssh to {}@{}:{} failed: {e} (is the sandbox up?)", entry.user, entry.address, entry.port))?;
        let local = dir.path().join("docker.sock");
        session.request_port_forward(ForwardType::Local, local.as_path(), Path::new(&entry.docker_socket)).await?;
        let docker = Docker::connect_with_unix(local.to_str().ok_or("non-UTF-8 temp path")?, 120, API_DEFAULT_VERSION)?.negotiate_version().await?;
        Ok(World { entry, session, docker, _dir: dir })
    }

    /// Forward a free local port to 127.0.0.1:`remote_port` on the sandbox
    /// (the operator reaches services only through tunnels).
    async fn tunnel(&self, remote_port: u16) -> R<u16> {
        let local = free_port();
        self.session
            .request_port_forward(ForwardType::Local, SocketAddr::from((Ipv4Addr::LOCALHOST, local)), SocketAddr::from((Ipv4Addr::LOCALHOST, remote_port)))
            .await?;
        Ok(local)
    }

    async fn close(self) {
        // A close error (e.g. after a refused forward) is not a test failure.
        if let Err(e) = self.session.close().await {
            eprintln!("note: closing the ssh session: {e}");
        }
    }

    /// Run `body` with an open world, then close it whatever `body` returned.
    async fn with(body: impl AsyncFnOnce(&World) -> R<()>) -> R<()> {
        let world = World::open().await?;
        let result = body(&world).await;
        world.close().await;
        result
    }
}

/// Pull `image` ("registry/repo:tag") through the Docker API; returns the
/// progress statuses seen.
async fn pull(docker: &Docker, image: &str) -> R<Vec<String>> {
    let (repo, tag) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')).ok_or_else(|| format!("image {image} has no tag"))?;
    let opts = CreateImageOptionsBuilder::default().from_image(repo).tag(tag).build();
    let mut stream = docker.create_image(Some(opts), None, None);
    let mut statuses = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("pull {image}: {e}"))?;
        if let Some(s) = info.status {
            statuses.push(s);
        }
    }
    Ok(statuses)
}

/// Removes the container on drop through the local docker CLI, as a last
/// resort when a test panics before its own cleanup ran.
struct ContainerGuard {
    name: String,
    armed: bool,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", &self.name]).output();
        }
    }
}

/// Create and start a labelled, host-networked container.
async fn run_labelled(docker: &Docker, service: &str, image: &str, cmd: &[String]) -> R<ContainerGuard> {
    let name = format!("stackproof-world-{service}-{}", std::process::id());
    let guard = ContainerGuard { name: name.clone(), armed: true };
    let labels = HashMap::from([
        (STACK_LABEL.to_string(), TEST_STACK.to_string()),
        ("io.stackproof.service".to_string(), service.to_string()),
        ("io.stackproof.release".to_string(), TEST_STACK.to_string()),
        ("io.stackproof.config-hash".to_string(), "none".to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd.to_vec()),
        labels: Some(labels),
        host_config: Some(HostConfig { network_mode: Some("host".into()), ..Default::default() }),
        ..Default::default()
    };
    // A leftover from an earlier interrupted run of this very process id is
    // unlikely, but would make create fail: remove it first.
    let _ = docker.remove_container(&name, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await;
    docker.create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body).await?;
    docker.start_container(&name, None).await?;
    Ok(guard)
}

async fn remove(docker: &Docker, mut guard: ContainerGuard) -> R<()> {
    docker.remove_container(&guard.name, Some(RemoveContainerOptionsBuilder::default().force(true).v(true).build())).await?;
    guard.armed = false;
    Ok(())
}

/// Run `cmd` inside the container; returns (exit code, stdout+stderr).
async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> R<(i64, String)> {
    let created = docker
        .create_exec(
            container,
            ExecConfig { attach_stdout: Some(true), attach_stderr: Some(true), cmd: Some(cmd.iter().map(|s| s.to_string()).collect()), ..Default::default() },
        )
        .await?;
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, None::<StartExecOptions>).await? {
        while let Some(chunk) = output.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
        }
    }
    // The output stream ends with the process; its exit code may take a
    // moment to be recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inspect = docker.inspect_exec(&created.id).await?;
        if inspect.running != Some(true) {
            if let Some(code) = inspect.exit_code {
                return Ok((code, out));
            }
        }
        ensure!(Instant::now() < deadline, "exec {cmd:?}: no exit code after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `url` until it answers 200 (returns the body) or the deadline passes.
async fn wait_http_ok(url: &str, within: Duration) -> R<String> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + within;
    loop {
        let last = match client.get(url).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => return Ok(resp.text().await?),
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => e.to_string(),
        };
        ensure!(Instant::now() < deadline, "{url} did not answer 200 within {within:?}: last {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The uid the container's main process runs as, read on the "VPS" over SSH.
async fn container_uid(world: &World, container: &str) -> R<String> {
    let state = world.docker.inspect_container(container, None).await?.state.unwrap_or_default();
    let pid = state.pid.filter(|p| *p > 0).ok_or("container has no pid (not running?)")?;
    let out = world.session.command("cat").arg(format!("/proc/{pid}/status")).output().await?;
    let status = String::from_utf8_lossy(&out.stdout);
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("no Uid line in /proc/{pid}/status"))?;
    Ok(uid.to_string())
}

/// Run `body` with a container, then remove the container whatever happened.
async fn with_container<F, Fut>(world: &World, service: &str, image: &str, cmd: Vec<String>, body: F) -> R<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = R<()>>,
{
    let guard = run_labelled(&world.docker, service, image, &cmd).await?;
    let result = body(guard.name.clone()).await;
    if result.is_err() {
        // Leave a clue: the container's last log lines.
        if let Ok(out) = std::process::Command::new("docker").args(["logs", "--tail", "20", &guard.name]).output() {
            eprintln!("--- logs of {} ---\n{}{}", guard.name, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
    }
    let removed = remove(&world.docker, guard).await;
    result?;
    removed
}

fn ssh_error_text(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn ssh_with_strict_host_key_reaches_docker_through_forwarded_socket() -> R<()> {
    World::with(async |world| {
        // The login is the unprivileged sandbox user, with python3 for the
        // host exporter and its remote directory writable.
        let out = world.session.shell(format!("id -un && python3 -c 'print(1+1)' && test -w {} && echo writable", world.entry.remote_dir)).output().await?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "remote check failed: {text} {}", String::from_utf8_lossy(&out.stderr));
        ensure!(text.split_whitespace().collect::<Vec<_>>() == [world.entry.user.as_str(), "2", "writable"], "unexpected remote output: {text:?}");

        // The Docker API over the forwarded socket is this machine's engine.
        let info = world.docker.info().await?;
        let local_id = std::process::Command::new("docker").args(["info", "--format", "{{.ID}}"]).output()?;
        ensure!(
            info.id.as_deref() == Some(String::from_utf8_lossy(&local_id.stdout).trim()),
            "engine id over SSH {:?} differs from the local engine's",
            info.id
        );
        // Listing works and agrees with the engine's own count (retried:
        // other developers' deploys may add or remove containers meanwhile).
        let mut seen = Vec::new();
        for _ in 0..5 {
            let count = world.docker.info().await?.containers.unwrap_or(-1);
            let all = world.docker.list_containers(Some(ListContainersOptionsBuilder::default().all(true).build())).await?;
            if all.len() as i64 == count {
                seen.clear();
                break;
            }
            seen.push((all.len(), count));
        }
        ensure!(seen.is_empty(), "listed containers disagree with the engine's count (listed, count): {seen:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn prometheus_stand_in_pulled_from_registry_becomes_ready_and_checks_its_config() -> R<()> {
    World::with(async |w| {
        let image = image_of(&w.entry, "prometheus", "stackproof-local/prometheus:v2.42.0");
        let statuses = pull(&w.docker, &image).await?;
        ensure!(
            statuses.iter().any(|s| s.contains("Downloaded newer image") || s.contains("Image is up to date")),
            "pull of {image} ended without a final status: {statuses:?}"
        );
        let port = free_port();
        let cmd = vec![
            "--config.file=/etc/prometheus/prometheus.yml".to_string(),
            "--storage.tsdb.path=/prometheus".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        with_container(w, "prometheus", &image, cmd, move |name| async move {
            let local = w.tunnel(port).await?;
            let body = wait_http_ok(&format!("http://127.0.0.1:{local}/-/ready"), Duration::from_secs(30)).await?;
            ensure!(body.contains("Ready"), "/-/ready answered 200 with {body:?}");

            let (code, out) = exec(&w.docker, &name, &["/bin/promtool", "check", "config", "/etc/prometheus/prometheus.yml"]).await?;
            ensure!(code == 0 && out.contains("SUCCESS"), "promtool check config: exit {code}: {out}");
            // The exit code is really read: a missing file must fail.
            let (code, out) = exec(&w.docker, &name, &["/bin/promtool", "check", "config", "/nonexistent.yml"]).await?;
            ensure!(code != 0, "promtool accepted a missing file: {out}");

            let uid = container_uid(w, &name).await?;
            ensure!(uid == "65534", "prometheus runs as uid {uid}, want 65534 (nobody)");
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn alertmanager_and_node_exporter_stand_ins_serve() -> R<()> {
    World::with(async |w| {
        let am = image_of(&w.entry, "alertmanager", "stackproof-local/alertmanager:v0.25.0");
        pull(&w.docker, &am).await?;
        let port = free_port();
        let cmd = vec![
            "--config.file=/etc/alertmanager/alertmanager.yml".to_string(),
            "--storage.path=/alertmanager".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
        ];
        with_container(w, "alertmanager", &am, cmd, move |name| async move {
            let local = w.tunnel(port).await?;
            wait_http_ok(&format!("http://127.0.0.1:{local}/-/ready"), Duration::from_secs(30)).await?;
            let (code, out) = exec(&w.docker, &name, &["/bin/amtool", "check-config", "/etc/alertmanager/alertmanager.yml"]).await?;
            ensure!(code == 0 && out.contains("SUCCESS"), "amtool check-config: exit {code}: {out}");
            let uid = container_uid(w, &name).await?;
            ensure!(uid == "65534", "alertmanager runs as uid {uid}, want 65534");
            Ok(())
        })
        .await?;

        let ne = image_of(&w.entry, "node_exporter", "stackproof-local/node-exporter:v1.5.0");
        pull(&w.docker, &ne).await?;
        let port = free_port();
        let cmd = vec![format!("--web.listen-address=127.0.0.1:{port}"), "--no-collector.systemd".to_string()];
        with_container(w, "node_exporter", &ne, cmd, move |_name| async move {
            let local = w.tunnel(port).await?;
            let metrics = wait_http_ok(&format!("http://127.0.0.1:{local}/metrics"), Duration::from_secs(30)).await?;
            ensure!(
                metrics.contains("node_exporter_build_info{") && metrics.contains("version=\"1.5.0"),
                "node-exporter /metrics lacks node_exporter_build_info version 1.5.0"
            );
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn stand_in_images_keep_the_official_layout_and_say_they_are_stand_ins() -> R<()> {
    World::with(async |world| {
        // (service, fallback, entrypoint, cmd, port, volume, workdir)
        let expected: [(&str, &str, &[&str], &[&str], &str, Option<&str>, Option<&str>); 3] = [
            (
                "prometheus",
                "stackproof-local/prometheus:v2.42.0",
                &["/bin/prometheus"],
                &[
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--web.console.libraries=/usr/share/prometheus/console_libraries",
                    "--web.console.templates=/usr/share/prometheus/consoles",
                ],
                "9090/tcp",
                Some("/prometheus"),
                Some("/prometheus"),
            ),
            (
                "alertmanager",
                "stackproof-local/alertmanager:v0.25.0",
                &["/bin/alertmanager"],
                &["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
                "9093/tcp",
                Some("/alertmanager"),
                Some("/alertmanager"),
            ),
            ("node_exporter", "stackproof-local/node-exporter:v1.5.0", &["/bin/node_exporter"], &[], "9100/tcp", None, None),
        ];
        for (service, fallback, entrypoint, cmd, port, volume, workdir) in expected {
            let image = image_of(&world.entry, service, fallback);
            pull(&world.docker, &image).await?;
            let config = world.docker.inspect_image(&image).await?.config.unwrap_or_default();
            let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            ensure!(config.entrypoint == Some(strs(entrypoint)), "{image}: entrypoint {:?}", config.entrypoint);
            ensure!(config.cmd.clone().unwrap_or_default() == strs(cmd), "{image}: cmd {:?}", config.cmd);
            ensure!(config.user.as_deref() == Some("nobody"), "{image}: user {:?}", config.user);
            ensure!(
                config.exposed_ports.clone().unwrap_or_default().iter().any(|p| p == port),
                "{image}: exposed ports {:?}, want {port}",
                config.exposed_ports
            );
            if let Some(v) = volume {
                ensure!(config.volumes.clone().unwrap_or_default().iter().any(|x| x == v), "{image}: volumes {:?}, want {v}", config.volumes);
            }
            ensure!(config.working_dir.as_deref().filter(|w| !w.is_empty()) == workdir, "{image}: working dir {:?}, want {workdir:?}", config.working_dir);
            let labels = config.labels.unwrap_or_default();
            ensure!(
                labels.get("org.opencontainers.image.description").is_some_and(|d| d.contains("not the official image")),
                "{image}: no stand-in description label: {labels:?}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn a_changed_or_unknown_host_key_is_refused() -> R<()> {
    let entry = sandbox_entry()?;
    let dir = control_dir()?;
    // Another ed25519 key for [127.0.0.1]:2222, as if the host had changed.
    let other = dir.path().join("other_host_key");
    let gen = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output()?;
    ensure!(gen.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&gen.stderr));
    let public = std::fs::read_to_string(other.with_extension("pub"))?;
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    let changed = dir.path().join("known_hosts_changed");
    std::fs::write(&changed, format!("[{}]:{} {}\n", entry.address, entry.port, key.join(" ")))?;
    let empty = dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "")?;

    for (what, file) in [("changed", &changed), ("unknown", &empty)] {
        match connect(&entry, file, &dir).await {
            Ok(session) => {
                let _ = session.close().await;
                return Err(format!("connection with a {what} host key was accepted").into());
            }
            Err(e) => {
                let text = ssh_error_text(&e);
                ensure!(text.to_lowercase().contains("host key verification failed"), "{what} host key: error does not mention host key verification: {text}");
            }
        }
    }

    // The same connection with the sandbox's real known_hosts succeeds, so
    // the refusals above were about the key and nothing else.
    let session = connect(&entry, &entry.known_hosts, &dir).await?;
    let out = session.command("true").status().await?;
    let _ = session.close().await;
    ensure!(out.success(), "`true` over ssh failed");
    Ok(())
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn world_tests_leave_no_labelled_container_behind() -> R<()> {
    // Runs last alphabetically; with --test-threads=1 the others are done.
    World::with(async |world| {
        let filters = HashMap::from([("label", vec![format!("{STACK_LABEL}={TEST_STACK}")])]);
        let left = world.docker.list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build())).await?;
        ensure!(left.is_empty(), "containers labelled {STACK_LABEL}={TEST_STACK} left behind: {:?}", left.iter().map(|c| c.names.clone()).collect::<Vec<_>>());
        Ok(())
    })
    .await
}
