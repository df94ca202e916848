//! The host exporter's lifecycle on the VPS: a plain process (not a container),
//! supervised by a systemd user unit where systemd runs, else by a small supervisor
//! process with a pid file. Stopped by unit or by PID — never by name.

use crate::error::{Error, Kind, Result};
use crate::hosts::{Host, Supervisor};
use crate::remote::Ssh;
use crate::stack::manifest::HostExporter;

/// How the exporter is supervised on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Systemd,
    Process,
}

/// The host entry's choice, with `auto` meaning systemd where it runs.
pub fn choose_mode(pref: Supervisor, host_has_systemd: bool, linger: bool) -> Mode {
    match pref {
        Supervisor::Systemd => Mode::Systemd,
        Supervisor::Process => Mode::Process,
        // Without lingering, systemd stops the user's services when the user's last
        // session closes: right after the deploy's SSH session, the exporter would die.
        Supervisor::Auto if host_has_systemd && linger => Mode::Systemd,
        Supervisor::Auto => Mode::Process,
    }
}

/// What to say about lingering (pure): `Err` refuses an explicit `supervisor: systemd`
/// without it; `Ok(Some(note))` says that `auto` fell back to the supervised process.
pub fn linger_check(pref: Supervisor, host_has_systemd: bool, linger: bool, user: &str) -> Result<Option<String>> {
    if !host_has_systemd || linger {
        return Ok(None);
    }
    let enable = format!("sudo loginctl enable-linger {user}");
    match pref {
        Supervisor::Process => Ok(None),
        Supervisor::Auto => Ok(Some(format!(
            "systemd runs on the host but lingering is off for `{user}`: the host exporter runs as a supervised process, not a user unit (systemd would stop it when the last session closes); `{enable}` on the host makes it a unit"
        ))),
        Supervisor::Systemd => Err(Error::remote(
            Kind::LingerOff,
            format!("the host entry asks for `supervisor: systemd`, but lingering is off for `{user}`: systemd stops the user's services when the last session closes, so the host exporter would stop right after the deploy"),
            format!("run `{enable}` on the host, or set `supervisor: auto` (a supervised process) in the host entry"),
        )),
    }
}

pub fn unit_name(stack: &str) -> String {
    format!("stackproof-{stack}-host-exporter.service")
}

/// Where the exporter's environment is kept on the host: 0600 in the 0700 `run/`, read by
/// the shell that starts it, so no value is in `ps` or in the unit file.
pub const ENV_FILE: &str = "run/host-exporter.env";

/// Refuse what cannot be passed safely: a control character (a newline would end a unit
/// file line and start a directive of its own) in the command, the remote dir or the stack
/// name, an environment name that is not a shell identifier. Checked before the host is
/// touched (preflight).
pub fn check(stack: &str, remote_dir: &str, he: &HostExporter) -> Result<()> {
    let bad = |what: &str, why: &str| {
        Err(Error::config(
            Kind::StackInvalid,
            format!("host_exporter: {what} {why}"),
            "remove control characters (newlines, tabs) from the manifest's host_exporter",
        ))
    };
    let ctl = |s: &str| s.chars().any(char::is_control);
    if ctl(stack) {
        return bad("the stack name", "holds a control character");
    }
    if ctl(remote_dir) {
        return bad("the remote dir", "holds a control character");
    }
    if let Some(a) = he.command.iter().find(|a| ctl(a)) {
        return bad(&format!("command argument {a:?}"), "holds a control character");
    }
    for k in he.env.keys() {
        let ident = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return bad(&format!("env name {k:?}"), "is not a shell identifier ([A-Za-z_][A-Za-z0-9_]*)");
        }
    }
    Ok(())
}

/// The environment file: `export NAME='value'` lines, values single-quoted for `sh` (a
/// newline or a quote in a value stays data).
pub fn env_file(he: &HostExporter) -> String {
    he.env.iter().map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''"))).collect()
}

/// `sh -c` program that reads the environment file (`$0`) and runs the command (`$@`).
const WITH_ENV: &str = r#"set -a; . "$0"; set +a; exec "$@""#;

/// The systemd user unit. Arguments are quoted for systemd's own command-line syntax
/// (`%` and `$` escaped, so no specifier or variable is expanded); the environment comes
/// from `ENV_FILE` through `sh`, never from the unit file. `check` refuses control
/// characters, so no value can end a line.
pub fn unit_text(stack: &str, remote_dir: &str, he: &HostExporter) -> Result<String> {
    check(stack, remote_dir, he)?;
    let mut argv: Vec<String> = vec![];
    if !he.env.is_empty() {
        argv.extend(["/bin/sh".into(), "-c".into(), WITH_ENV.into(), format!("{remote_dir}/{ENV_FILE}")]);
    }
    argv.extend(he.command.iter().cloned());
    let exec = argv.iter().map(|a| systemd_quote(a)).collect::<Vec<_>>().join(" ");
    let stack = stack.replace('%', "%%");
    let dir = remote_dir.replace('%', "%%");
    Ok(format!(
        "[Unit]\nDescription=stackproof host exporter ({stack})\nAfter=network-online.target\n\n\
[Service]\nType=simple\nWorkingDirectory={dir}/current\nExecStart={exec}\n\
Restart=always\nRestartSec=1\nNoNewPrivileges=yes\nPrivateTmp=yes\nUMask=0077\n\n[Install]\nWantedBy=default.target\n"
    ))
}

fn systemd_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c)) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$"))
    }
}

/// The supervisor, run as a session leader: restarts the exporter when it dies (with a
/// growing pause), and on TERM stops it and exits. Its pid is the pid file's content;
/// killing its process group stops both.
const SUPERVISOR: &str = r#"trap 'kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
envf="$1"; shift
if [ -s "$envf" ]; then set -a; . "$envf"; set +a; fi
pause=1
while :; do
  "$@" & child=$!
  wait "$child"; rc=$?
  echo "stackproof-supervisor: exporter exited with $rc, restarting in ${pause}s" >&2
  sleep "$pause"; [ "$pause" -lt 30 ] && pause=$((pause * 2))
done
"#;

const START_SCRIPT: &str = r#"set -eu
d="$1"; sup="$2"; shift 2
umask 077
mkdir -p "$d/run"
chmod 700 "$d/run"
# Files left by an older version keep their mode when truncated: start them afresh.
rm -f "$d/run/host-exporter.env" "$d/run/host-exporter.log" "$d/run/host-exporter.release"
cat > "$d/run/host-exporter.env"
cd "$d/current"
readlink "$d/current" > "$d/run/host-exporter.release"
setsid sh -c "$sup" stackproof-host-exporter-supervisor "$d/run/host-exporter.env" "$@" > "$d/run/host-exporter.log" 2>&1 < /dev/null &
echo $! > "$d/run/host-exporter.pid"
echo "STARTED $!"
"#;

/// Stop by PID: only if the pid file names our supervisor (checked in /proc, so a
/// recycled PID is never signalled), TERM its process group (supervisor and exporter),
/// wait until the whole group is gone, KILL it after 5 s.
const STOP_SCRIPT: &str = r#"d="$1"
pid=$(cat "$d/run/host-exporter.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'stackproof-host-exporter-supervisor'; then
  kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid"
  i=0
  while kill -0 -"$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 -"$pid" 2>/dev/null; then
    kill -KILL -"$pid" 2>/dev/null
    i=0
    while kill -0 -"$pid" 2>/dev/null && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
  fi
fi
rm -f "$d/run/host-exporter.pid"
echo STOPPED
"#;

const SYSTEMD_START: &str = r#"set -eu
unit="$1"; text="$2"; d="$3"
umask 077
mkdir -p "$d/run"
chmod 700 "$d/run"
cat > "$d/run/host-exporter.env"
dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
mkdir -p "$dir"
printf '%s' "$text" > "$dir/$unit"
systemctl --user daemon-reload
systemctl --user enable "$unit" >/dev/null 2>&1 || true
systemctl --user restart "$unit"
echo STARTED
"#;

const SYSTEMD_STOP: &str = r#"systemctl --user stop "$1" && echo STOPPED"#;

pub struct Exporter<'a> {
    pub ssh: &'a Ssh,
    pub stack: &'a str,
    pub cfg: &'a HostExporter,
    pub mode: Mode,
}

impl Exporter<'_> {
    fn host(&self) -> &Host {
        self.ssh.host()
    }

    pub async fn start(&self) -> Result<()> {
        let dir = self.host().remote_dir.clone();
        let out = match self.mode {
            Mode::Process => {
                check(self.stack, &dir, self.cfg)?;
                let mut args = vec![dir.clone(), SUPERVISOR.to_string()];
                args.extend(self.cfg.command.iter().cloned());
                self.ssh.script_with_stdin(START_SCRIPT, &args, env_file(self.cfg).into_bytes()).await?
            }
            Mode::Systemd => {
                let unit = unit_name(self.stack);
                let text = unit_text(self.stack, &dir, self.cfg)?;
                self.ssh.script_with_stdin(SYSTEMD_START, &[unit, text, dir], env_file(self.cfg).into_bytes()).await?
            }
        };
        if !out.stdout.contains("STARTED") {
            return Err(Error::remote(
                Kind::ExporterStart,
                format!("starting the host exporter on {} failed: {}", self.host().name, out.stderr.trim()),
                "check `host_exporter.command` in the manifest and that its runtime (python3) is installed on the host",
            ));
        }
        Ok(())
    }

    pub async fn stop(&self) -> Result<()> {
        let out = match self.mode {
            Mode::Process => self.ssh.script(STOP_SCRIPT, &[self.host().remote_dir.as_str()]).await?,
            Mode::Systemd => self.ssh.script(SYSTEMD_STOP, &[unit_name(self.stack)]).await?,
        };
        if !out.stdout.contains("STOPPED") {
            return Err(Error::remote(
                Kind::ExporterStop,
                format!("stopping the host exporter failed: {}", out.stderr.trim()),
                "stop it by hand by its PID or unit",
            ));
        }
        Ok(())
    }

    /// The last lines of the exporter's log (process mode) for error messages.
    pub async fn log_tail(&self) -> String {
        let script: &'static str = match self.mode {
            Mode::Process => r#"tail -n 15 "$1/run/host-exporter.log" 2>/dev/null"#,
            Mode::Systemd => r#"journalctl --user -u "$2" -n 15 --no-pager 2>/dev/null"#,
        };
        self.ssh.script(script, &[self.host().remote_dir.clone(), unit_name(self.stack)]).await.map(|o| o.stdout).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HostExporter {
        HostExporter {
            command: vec!["python3".into(), "host_exporter/exporter.py".into(), "--listen=127.0.0.1:9101".into(), "a b$c".into()],
            files: vec![],
            port: 9101,
            metrics_path: "/metrics".into(),
            env: [("K".to_string(), "v w".to_string())].into(),
        }
    }

    #[test]
    fn mode_choice() {
        assert_eq!(choose_mode(Supervisor::Auto, true, true), Mode::Systemd);
        assert_eq!(choose_mode(Supervisor::Auto, false, false), Mode::Process);
        assert_eq!(choose_mode(Supervisor::Process, true, true), Mode::Process);
        assert_eq!(choose_mode(Supervisor::Systemd, false, false), Mode::Systemd);
    }

    #[test]
    fn without_lingering_auto_falls_back_to_the_process_and_systemd_is_refused() {
        // systemd, no linger: auto runs the supervised process, and says so.
        assert_eq!(choose_mode(Supervisor::Auto, true, false), Mode::Process);
        let note = linger_check(Supervisor::Auto, true, false, "deploy").unwrap().unwrap();
        assert!(note.contains("supervised process") && note.contains("sudo loginctl enable-linger deploy"), "{note}");
        // An explicit systemd is refused with the fix.
        let e = linger_check(Supervisor::Systemd, true, false, "deploy").unwrap_err();
        assert_eq!(e.kind(), "linger_off");
        assert!(e.hint().contains("loginctl enable-linger deploy") && e.hint().contains("supervisor: auto"), "{}", e.hint());
        // Nothing to say: lingering on, no systemd, or the process asked for.
        assert_eq!(linger_check(Supervisor::Auto, true, true, "deploy").unwrap(), None);
        assert_eq!(linger_check(Supervisor::Systemd, true, true, "deploy").unwrap(), None);
        assert_eq!(linger_check(Supervisor::Auto, false, false, "deploy").unwrap(), None);
        assert_eq!(linger_check(Supervisor::Process, true, false, "deploy").unwrap(), None);
    }

    #[test]
    fn unit_text_quotes_arguments_and_restarts() {
        let t = unit_text("stackproof", "/srv/sp", &cfg()).unwrap();
        assert!(t.contains("WorkingDirectory=/srv/sp/current\n"));
        assert!(t.contains(" /srv/sp/run/host-exporter.env python3 host_exporter/exporter.py --listen=127.0.0.1:9101 \"a b$$c\"\n"), "{t}");
        assert!(t.contains("ExecStart=/bin/sh -c \"set -a; . \\\"$$0\\\"; set +a; exec \\\"$$@\\\"\" "), "{t}");
        assert!(!t.contains("v w") && !t.contains("Environment="), "no environment value in the unit file: {t}");
        assert!(t.contains("Restart=always"));
        assert_eq!(unit_name("stackproof"), "stackproof-stackproof-host-exporter.service");
        let mut plain = cfg();
        plain.env.clear();
        assert!(unit_text("stackproof", "/srv/sp", &plain).unwrap().contains("ExecStart=python3 host_exporter/exporter.py"));
    }

    #[test]
    fn no_value_can_inject_a_unit_directive() {
        let mut c = cfg();
        c.command.push("x\nExecStartPre=/bin/rm -rf ~".into());
        assert!(unit_text("s", "/srv/sp", &c).unwrap_err().to_string().contains("control character"));
        assert!(unit_text("s\n[Service]", "/srv/sp", &cfg()).is_err());
        assert!(unit_text("s", "/srv/sp\rX=1", &cfg()).is_err());
        let mut c = cfg();
        c.env.insert("A=B\nExecStart".into(), "v".into());
        assert!(unit_text("s", "/srv/sp", &c).is_err());
        // `%` is a specifier in every unit value: doubled, so it stays literal.
        let mut c = cfg();
        c.command.push("100%h".into());
        let t = unit_text("st%n", "/srv/%i", &c).unwrap();
        assert!(t.contains("\"100%%h\"") && t.contains("(st%%n)") && t.contains("WorkingDirectory=/srv/%%i/current"), "{t}");
        // A newline in an environment value is data in the 0600 file, never a unit line.
        let mut c = cfg();
        c.env.insert("TOKEN".into(), "it's\nExecStartPre=x".into());
        assert!(unit_text("s", "/srv/sp", &c).is_ok());
        assert_eq!(env_file(&c), "export K='v w'\nexport TOKEN='it'\\''s\nExecStartPre=x'\n");
    }

    /// Run a script the way `Ssh::script` does on the host: `sh -c SCRIPT sh ARGS…`
    /// (dash on Debian and Ubuntu, whose `kill` does not take `--`).
    fn sh(script: &str, args: &[&str]) -> std::process::Output {
        std::process::Command::new("sh").arg("-c").arg(script).arg("sh").args(args).output().unwrap()
    }

    /// `sh` with `stdin` on its standard input (`Ssh::script_with_stdin`).
    fn sh_in(script: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut c =
            Command::new("sh").arg("-c").arg(script).arg("sh").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        c.wait_with_output().unwrap()
    }

    fn group_alive(pgid: &str) -> bool {
        sh(r#"kill -0 -"$1" 2>/dev/null"#, &[pgid]).status.success()
    }

    #[test]
    fn start_and_stop_scripts_stop_the_whole_process_group() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("releases/r1")).unwrap();
        std::fs::create_dir_all(d.path().join("run")).unwrap();
        std::fs::write(d.path().join("run/host-exporter.log"), "from an older version\n").unwrap();
        std::os::unix::fs::symlink("releases/r1", d.path().join("current")).unwrap();
        let dir = d.path().to_str().unwrap();
        let mut c = cfg();
        c.env = [("SP_TOKEN".to_string(), "s3cr'et $HOME\nline2".to_string())].into();
        let child = r#"printf '%s' "$SP_TOKEN" > "$0/seen"; exec sleep 60"#;
        let out = sh_in(START_SCRIPT, &[dir, SUPERVISOR, "sh", "-c", child, dir], env_file(&c).as_bytes());
        assert!(String::from_utf8_lossy(&out.stdout).contains("STARTED"), "{out:?}");
        let pid = std::fs::read_to_string(d.path().join("run/host-exporter.pid")).unwrap().trim().to_string();
        let started = std::time::Instant::now();
        while !sh(r#"pgrep -g "$1" -x sleep >/dev/null"#, &[&pid]).status.success() {
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "the supervised child never started");
            std::thread::yield_now();
        }
        assert!(group_alive(&pid));
        // The value reached the exporter intact, and no process of the group shows it.
        assert_eq!(std::fs::read_to_string(d.path().join("seen")).unwrap(), "s3cr'et $HOME\nline2");
        let cmdlines = sh(r#"for p in $(pgrep -g "$1"); do tr '\0' ' ' < /proc/$p/cmdline; echo; done"#, &[&pid]);
        let cmdlines = String::from_utf8_lossy(&cmdlines.stdout);
        assert!(cmdlines.contains("stackproof-host-exporter-supervisor") && !cmdlines.contains("s3cr"), "{cmdlines}");
        let mode = |p: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.path().join(p)).unwrap().permissions().mode() & 0o777
        };
        assert_eq!((mode("run"), mode("run/host-exporter.env"), mode("run/host-exporter.log")), (0o700, 0o600, 0o600));
        assert_eq!(mode("run/host-exporter.release"), 0o600);
        let out = sh(STOP_SCRIPT, &[dir]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("STOPPED"), "{out:?}");
        assert!(!group_alive(&pid), "supervisor or exporter of group {pid} still running after the stop script");
        assert!(!d.path().join("run/host-exporter.pid").exists());
    }

    #[test]
    fn supervisor_never_stops_by_name() {
        for s in [SUPERVISOR, START_SCRIPT, STOP_SCRIPT] {
            assert!(!s.contains("pkill") && !s.contains("killall"));
        }
        assert!(STOP_SCRIPT.contains("/proc/$pid/cmdline"));
    }
}
