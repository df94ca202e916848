//! One multiplexed SSH connection per host (the `openssh` crate driving the system
//! `ssh`), with strict host-key checking, commands built from argument vectors, and
//! the forwards every later stage uses: the Docker socket, TCP tunnels to the host's
//! loopback services, and a reverse tunnel for the drill's webhook.

use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Socket};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for the TCP connection and the SSH handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive probe interval; the connection is declared dead after three misses.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// The SSH master exits after this long with no session, forward connection or mux
/// client: a killed stackproof (SIGKILL runs no cleanup) leaves no master holding the
/// Docker socket forward for longer. A live `Ssh` pings the master every `HEARTBEAT`, so
/// quiet stretches of a command (a drill waiting for an alert) never reach it.
pub const CONTROL_PERSIST_SECS: usize = 30;
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A fresh private directory (0700) under /tmp for the control socket and forwards.
pub fn private_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new().prefix("sp-").permissions(std::fs::Permissions::from_mode(0o700)).tempdir_in("/tmp")
}

pub struct Ssh {
    session: Arc<Session>,
    host: Host,
    /// Short private directory (0700) for the control socket and forwarded sockets:
    /// unix socket paths are limited to ~108 bytes.
    dir: tempfile::TempDir,
    /// Pings the master every `HEARTBEAT` while the session lives (it holds a weak
    /// reference: a dropped `Ssh` ends it at the next beat).
    heartbeat: tokio::task::JoinHandle<()>,
}

/// The output of a remote command, with stdout and stderr as text.
#[derive(Debug, Clone)]
pub struct RemoteOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RemoteOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    fn from(o: Output) -> Self {
        RemoteOutput { code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into_owned(), stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
    }
}

impl Ssh {
    /// Connect with the host entry's user, port, key and known_hosts, checking the host
    /// key strictly. An unknown or changed key is a `host_key` error saying how to trust it.
    pub async fn connect(host: &Host) -> Result<Ssh> {
        let dir = private_dir().map_err(|e| Error::io("/tmp", e))?;
        // The crate has no generic `-o` setter; options go through a config file. It also
        // keeps ssh from reading the operator's ~/.ssh/config aliases by accident.
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, "StreamLocalBindUnlink yes\nServerAliveCountMax 3\nExitOnForwardFailure yes\nLogLevel ERROR\n").map_err(|e| Error::io(&cfg, e))?;
        let mut b = SessionBuilder::default();
        b.user(host.user.clone())
            .port(host.port)
            .keyfile(&host.identity_file)
            .known_hosts_check(KnownHosts::Strict)
            .connect_timeout(CONNECT_TIMEOUT)
            .server_alive_interval(KEEPALIVE)
            .control_directory(dir.path())
            .control_persist(ControlPersist::IdleFor(std::num::NonZeroUsize::new(CONTROL_PERSIST_SECS).expect("nonzero")))
            .config_file(&cfg);
        if let Some(kh) = &host.known_hosts {
            b.user_known_hosts_file(kh);
        }
        let session = Arc::new(b.connect_mux(&host.address).await.map_err(|e| connect_error(host, &e))?);
        let weak = Arc::downgrade(&session);
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let Some(s) = weak.upgrade() else { return };
                let _ = s.check().await;
            }
        });
        Ok(Ssh { session, host: host.clone(), dir, heartbeat })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Run `argv` on the host. Every element is shell-escaped by the crate, so values
    /// arrive literally; scripts are constant strings that take data as `$1…`.
    pub async fn run<S: AsRef<str>>(&self, argv: &[S]) -> Result<RemoteOutput> {
        let (prog, args) = argv.split_first().expect("non-empty argv");
        let mut cmd = self.session.command(prog.as_ref());
        for a in args {
            cmd.arg(a.as_ref());
        }
        let out = cmd.output().await.map_err(|e| self.lost(e))?;
        Ok(RemoteOutput::from(out))
    }

    /// Run a constant shell script with positional arguments (`sh -c SCRIPT sh ARGS…`).
    pub async fn script<S: AsRef<str>>(&self, script: &'static str, args: &[S]) -> Result<RemoteOutput> {
        let mut argv: Vec<&str> = vec!["sh", "-c", script, "sh"];
        argv.extend(args.iter().map(AsRef::as_ref));
        self.run(&argv).await
    }

    /// Like `script`, with stdout as bytes (archives).
    pub async fn script_bytes<S: AsRef<str>>(&self, script: &'static str, args: &[S]) -> Result<(Option<i32>, Vec<u8>, String)> {
        let mut cmd = self.session.command("sh");
        cmd.arg("-c").arg(script).arg("sh");
        for a in args {
            cmd.arg(a.as_ref());
        }
        let out = cmd.output().await.map_err(|e| self.lost(e))?;
        Ok((out.status.code(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned()))
    }

    /// Like `script`, feeding `stdin` to the remote process.
    pub async fn script_with_stdin<S: AsRef<str>>(&self, script: &'static str, args: &[S], stdin: Vec<u8>) -> Result<RemoteOutput> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.session.command("sh");
        cmd.arg("-c").arg(script).arg("sh");
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd.stdin(openssh::Stdio::piped()).stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
        let mut child = cmd.spawn().await.map_err(|e| self.lost(e))?;
        let mut input = child.stdin().take().expect("piped stdin");
        let writer = async move {
            let r = input.write_all(&stdin).await;
            let _ = input.shutdown().await;
            drop(input);
            r
        };
        let (w, out) = tokio::join!(writer, child.wait_with_output());
        let out = out.map_err(|e| self.lost(e))?;
        if let Err(e) = w {
            return Err(Error::remote(Kind::Transfer, format!("sending data to {} failed: {e}", self.host.name), "run the command again"));
        }
        Ok(RemoteOutput::from(out))
    }

    /// Forward a local unix socket to a remote unix socket (the Docker socket).
    pub async fn forward_unix(&self, remote: &str, name: &str) -> Result<PathBuf> {
        let local = self.dir.path().join(name);
        self.session.request_port_forward(ForwardType::Local, local.as_path(), Path::new(remote)).await.map_err(|e| {
            Error::remote(
                Kind::ForwardFailed,
                format!("cannot forward {remote} on {}: {e}", self.host.name),
                "check that the socket exists and that sshd allows stream-local forwarding (AllowStreamLocalForwarding)",
            )
        })?;
        Ok(local)
    }

    /// Forward an ephemeral local port (on 127.0.0.1) to `127.0.0.1:remote_port` on the
    /// host, never on the service's own port number. Returns the local port.
    pub async fn tunnel(&self, remote_port: u16) -> Result<u16> {
        let mut last = None;
        // The crate cannot ask ssh for a dynamic local port, so pick a free one and
        // retry if another process takes it in between.
        for _ in 0..5 {
            let port = free_local_port()?;
            match self
                .session
                .request_port_forward(
                    ForwardType::Local,
                    Socket::new(Ipv4Addr::LOCALHOST.to_string(), port),
                    Socket::new(Ipv4Addr::LOCALHOST.to_string(), remote_port),
                )
                .await
            {
                Ok(()) => return Ok(port),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::remote(
            Kind::ForwardFailed,
            format!("cannot open a tunnel to port {remote_port} on {}: {}", self.host.name, last.map(|e| e.to_string()).unwrap_or_default()),
            "check that sshd allows TCP forwarding (AllowTcpForwarding yes)",
        ))
    }

    /// Listen on `127.0.0.1:remote_port` on the host and forward to `127.0.0.1:local_port` here.
    pub async fn reverse_tunnel(&self, remote_port: u16, local_port: u16) -> Result<()> {
        self.session.request_port_forward(ForwardType::Remote, Socket::new("127.0.0.1", remote_port), Socket::new("127.0.0.1", local_port)).await.map_err(|e| {
            Error::remote(
                Kind::ForwardFailed,
                format!("cannot listen on 127.0.0.1:{remote_port} on {} for the drill receiver: {e}", self.host.name),
                format!("is port {remote_port} taken on the host? change `drill.port` in the manifest"),
            )
        })
    }

    /// Close a reverse tunnel opened by `reverse_tunnel`, so another one (a later drill
    /// on the same connection) can listen on the same port.
    pub async fn close_reverse_tunnel(&self, remote_port: u16, local_port: u16) {
        if let Err(e) = self.session.close_port_forward(ForwardType::Remote, Socket::new("127.0.0.1", remote_port), Socket::new("127.0.0.1", local_port)).await
        {
            tracing::debug!("closing the reverse tunnel on port {remote_port}: {e}");
        }
    }

    /// Is the connection still alive?
    pub async fn check(&self) -> bool {
        self.session.check().await.is_ok()
    }

    /// The PID of the local ssh master process (tests cut connections with it).
    pub fn master_pid(&self) -> Option<u32> {
        let log = std::fs::read_dir(self.dir.path()).ok()?;
        for e in log.flatten() {
            let p = e.path().join("master");
            if p.exists() {
                // ssh -O check prints "Master running (pid=N)"
                let out = std::process::Command::new("ssh").arg("-S").arg(&p).args(["-O", "check", "x"]).output().ok()?;
                let text = String::from_utf8_lossy(&out.stderr);
                let pid = text.split("pid=").nth(1)?.trim_end_matches([')', '\n', '\r']).trim_end_matches(')');
                return pid.parse().ok();
            }
        }
        None
    }

    /// Close the master connection. Errors are logged, not fatal: the work is done.
    pub async fn close(self) {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        if let Ok(session) = Arc::try_unwrap(self.session) {
            if let Err(e) = session.close().await {
                tracing::debug!("closing ssh session: {e}");
            }
        }
    }

    fn lost(&self, e: openssh::Error) -> Error {
        Error::HostUnreachable {
            host: self.host.name.clone(),
            message: format!("connection lost: {e}"),
            hint: "check the network and run the command again; the host is left on a complete release".into(),
        }
    }
}

fn free_local_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| Error::io("127.0.0.1:0", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("127.0.0.1:0", e))?.port())
}

/// Turn a failed connection into a host-key or unreachable error with a next step.
fn connect_error(host: &Host, e: &openssh::Error) -> Error {
    let mut text = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    classify_connect_error(host, &text)
}

pub(crate) fn classify_connect_error(host: &Host, text: &str) -> Error {
    let kh = host.known_hosts.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.ssh/known_hosts".into());
    let key_name = if host.port == 22 { host.address.clone() } else { format!("[{}]:{}", host.address, host.port) };
    if text.contains("IDENTIFICATION HAS CHANGED") || text.contains("key for") && text.contains("has changed") {
        return Error::HostKey {
            host: host.name.clone(),
            message: format!("the key of {key_name} CHANGED since it was recorded in {kh}; refusing to connect"),
            hint: format!(
                "if the server was really reinstalled, verify its new fingerprint out of band, then `ssh-keygen -R '{key_name}' -f {kh}` and add the new key"
            ),
        };
    }
    if text.contains("Host key verification failed") || text.contains("No ED25519 host key is known") || text.contains("host key") {
        return Error::HostKey {
            host: host.name.clone(),
            message: format!("{key_name} is not in {kh} (or its key differs); refusing to connect"),
            hint: format!(
                "verify the server's fingerprint out of band, then add it: `ssh-keyscan -p {} {} >> {kh}` (compare with `ssh-keygen -lf` on the server)",
                host.port, host.address
            ),
        };
    }
    if text.contains("Permission denied") {
        return Error::HostUnreachable {
            host: host.name.clone(),
            message: format!("{} refused the key {}", host.display_target(), host.identity_file.display()),
            hint: "add the public key to the user's authorized_keys on the host".into(),
        };
    }
    Error::HostUnreachable {
        host: host.name.clone(),
        message: format!("cannot connect to {}: {}", host.display_target(), text.trim()),
        hint: "check the address and port in the host entry, and that sshd runs there".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            name: "h".into(),
            address: "127.0.0.1".into(),
            port: 2222,
            user: "u".into(),
            identity_file: "/k".into(),
            known_hosts: Some("/kh".into()),
            remote_dir: "/srv/x".into(),
            docker_socket: "/var/run/docker.sock".into(),
            images: Default::default(),
            secrets: Default::default(),
            supervisor: Default::default(),
            receivers: Default::default(),
            unpaged: None,
            source: "/hosts.yml".into(),
        }
    }

    #[test]
    fn changed_key_says_how_to_replace_it() {
        let e = classify_connect_error(&host(), "failed to connect: @ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @ Host key verification failed.");
        assert_eq!(e.kind(), "host_key");
        assert!(e.to_string().contains("CHANGED"));
        assert!(e.hint().contains("ssh-keygen -R '[127.0.0.1]:2222' -f /kh"), "{}", e.hint());
    }

    #[test]
    fn unknown_key_says_how_to_trust_it() {
        let e = classify_connect_error(&host(), "failed to connect to the remote host: Host key verification failed.");
        assert_eq!(e.kind(), "host_key");
        assert!(e.hint().contains("ssh-keyscan -p 2222 127.0.0.1 >> /kh"));
    }

    #[test]
    fn refused_connection_is_unreachable() {
        let e = classify_connect_error(&host(), "ssh: connect to host 127.0.0.1 port 2222: Connection refused");
        assert_eq!(e.kind(), "host_unreachable");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn control_dir_is_private_and_persist_is_finite() {
        use std::os::unix::fs::PermissionsExt;
        let d = private_dir().unwrap();
        assert_eq!(std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(d.path().starts_with("/tmp") && d.path().as_os_str().len() < 30, "short enough for unix socket paths");
        // The heartbeat must beat several times within the idle timeout.
        assert!(HEARTBEAT.as_secs() * 3 <= CONTROL_PERSIST_SECS as u64);
    }
}
