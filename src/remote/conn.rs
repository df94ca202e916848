//! An open connection to a host: the SSH session, the Docker Engine through its
//! forwarded socket, the host's release state, and tunnels to the stack's services.

use super::layout::{self, RemoteState};
use super::ssh::Ssh;
use crate::engine::Engine;
use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use crate::stack::Manifest;
use std::collections::BTreeSet;

/// An open connection to a host: SSH, Docker through it, and the host's release state.
pub struct Conn {
    pub ssh: Ssh,
    pub engine: Engine,
    pub state: RemoteState,
}

/// Local URLs of the services, each the end of a tunnel to the host's loopback.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub prometheus: String,
    pub alertmanager: String,
    pub grafana: String,
    pub host_exporter: String,
}

impl Conn {
    pub async fn open(host: &Host) -> Result<Conn> {
        let ssh = Ssh::connect(host).await?;
        // Independent round trips, at once: the Docker forward (and the API's version
        // handshake) and the remote dir's state.
        let engine = async {
            let sock = ssh.forward_unix(&host.docker_socket, "docker.sock").await?;
            Engine::connect(&sock, &host.name).await
        };
        let (engine, state) = tokio::try_join!(engine, layout::state(&ssh))?;
        Ok(Conn { ssh, engine, state })
    }

    pub async fn refresh(&mut self) -> Result<()> {
        self.state = layout::state(&self.ssh).await?;
        Ok(())
    }

    /// Open one tunnel per service, on ephemeral local ports.
    pub async fn endpoints(&self, manifest: &Manifest) -> Result<Endpoints> {
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let port = |s: &str| {
            manifest
                .service_port(s)
                .ok_or_else(|| Error::config(Kind::StackInvalid, format!("service `{s}` has no port in the manifest"), "add `ports: [{port: N}]` to it"))
        };
        let (p, a, g, h) = tokio::try_join!(
            self.ssh.tunnel(port("prometheus")?),
            self.ssh.tunnel(port("alertmanager")?),
            self.ssh.tunnel(port("grafana")?),
            self.ssh.tunnel(manifest.host_exporter.port),
        )?;
        Ok(Endpoints { prometheus: url(p), alertmanager: url(a), grafana: url(g), host_exporter: url(h) })
    }
}

/// Which remote ports are listening, with the address each is bound to (from
/// /proc/net/tcp*): to refuse a port taken by something that is not ours before anything
/// is changed.
const LISTEN_SCRIPT: &str = r#"cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" { print $2 }'"#;

/// One listening socket on the host: the local address (hex, as the kernel prints it)
/// and the port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub addr: String,
    pub port: u16,
}

impl Listener {
    /// The IPv4 address in dotted form, when it is one (`/proc/net/tcp` prints it as
    /// little-endian hex).
    pub fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        if self.addr.len() != 8 {
            return None;
        }
        let n = u32::from_str_radix(&self.addr, 16).ok()?;
        Some(std::net::Ipv4Addr::from(n.swap_bytes()))
    }
}

/// Parse `LISTEN_SCRIPT`'s output: one `ADDR:PORT` (hex) per line.
pub fn parse_listeners(text: &str) -> BTreeSet<Listener> {
    text.lines()
        .filter_map(|l| l.trim().rsplit_once(':'))
        .filter_map(|(a, p)| u16::from_str_radix(p.trim(), 16).ok().map(|port| Listener { addr: a.to_string(), port }))
        .collect()
}

pub async fn listeners(ssh: &Ssh) -> Result<BTreeSet<Listener>> {
    let out = ssh.script::<&str>(LISTEN_SCRIPT, &[]).await?;
    Ok(parse_listeners(&out.stdout))
}

/// The ports something listens on, on any address.
pub async fn listening_ports(ssh: &Ssh) -> Result<BTreeSet<u16>> {
    Ok(listeners(ssh).await?.into_iter().map(|l| l.port).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_from_proc_net_tcp() {
        let l = parse_listeners("0100007F:238D\n00000000:0016\n00000000000000000000000001000000:1F90\n");
        let v: Vec<_> = l.iter().map(|l| (l.ipv4(), l.port)).collect();
        assert!(v.contains(&(Some(std::net::Ipv4Addr::new(127, 0, 0, 1)), 9101)));
        assert!(v.contains(&(Some(std::net::Ipv4Addr::new(0, 0, 0, 0)), 22)));
        assert!(v.contains(&(None, 8080)));
    }
}
