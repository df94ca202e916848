//! The release layout on the host. Every remote operation here is one constant shell
//! script taking its data as positional arguments (never pasted into the script), so a
//! path or value with spaces, quotes or `$` arrives literally.

use super::ssh::Ssh;
use crate::error::{Error, Kind, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a release carries about itself, stored as `<release>/.release.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReleaseInfo {
    pub id: String,
    pub stack: String,
    pub created_at: String,
    pub by: String,
    /// Relative path → sha256 of every file of the release.
    pub files: BTreeMap<String, String>,
}

pub const RELEASE_INFO: &str = ".release.json";

/// The host's state, learnt in one round trip.
#[derive(Debug, Clone, Default)]
pub struct RemoteState {
    pub current: Option<String>,
    pub releases: Vec<String>,
    pub current_info: Option<ReleaseInfo>,
    pub verified: Option<String>,
    pub lock: Option<String>,
    /// `(pid, cmdline)` of the running host exporter, if its pid file names a live process.
    pub exporter: Option<(u32, String)>,
    /// The release on which an outage drill last passed.
    pub drill_passed: Option<String>,
    /// `run/drill-live.json`: what a live drill changed, while it runs or after it died
    /// (`drill::live::recover` undoes it). Read with the state: no round trip of its own.
    pub drill_live: Option<String>,
    /// The release the running host exporter was started from (its working directory).
    pub exporter_release: Option<String>,
    pub has_systemd: bool,
    /// systemd keeps the SSH user's services running without a session (`Linger`).
    pub linger: bool,
    pub writable: bool,
}

const STATE_SCRIPT: &str = r#"d="$1"
echo "== current"; readlink "$d/current" 2>/dev/null || true
echo "== releases"; ls -1 "$d/releases" 2>/dev/null | grep -v '^\.' || true
echo "== info"; cat "$d/current/.release.json" 2>/dev/null || true
echo; echo "== verified"; cat "$d/verified" 2>/dev/null || true
echo; echo "== lock"; cat "$d/lock" 2>/dev/null || true
echo; echo "== exporter"
pid=$(cat "$d/run/host-exporter.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then printf '%s ' "$pid"; tr '\0' ' ' < "/proc/$pid/cmdline"; echo; fi
echo "== drill_passed"; cat "$d/drill-passed" 2>/dev/null || true
echo; echo "== drill_live"; cat "$d/run/drill-live.json" 2>/dev/null || true
echo
echo "== exporter_release"; cat "$d/run/host-exporter.release" 2>/dev/null || true
echo "== systemd"; [ -d /run/systemd/system ] && echo yes || echo no
echo "== linger"; u=$(id -un)
if [ -e "/var/lib/systemd/linger/$u" ]; then echo yes; else loginctl show-user "$u" -p Linger --value 2>/dev/null || echo no; fi
echo "== writable"
if [ -d "$d" ]; then [ -w "$d" ] && echo yes || echo no; else p=$(dirname "$d"); while [ ! -d "$p" ]; do p=$(dirname "$p"); done; [ -w "$p" ] && echo yes || echo no; fi
echo "== end"
"#;

pub async fn state(ssh: &Ssh) -> Result<RemoteState> {
    let dir = &ssh.host().remote_dir;
    let out = ssh.script(STATE_SCRIPT, &[dir.as_str()]).await?;
    if !out.success() {
        return Err(Error::remote(
            Kind::RemoteFailed,
            format!("reading the state of {dir} failed: {}", out.stderr.trim()),
            "check that the login shell works on the host",
        ));
    }
    Ok(parse_state(&out.stdout))
}

fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut buf = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("== ") {
            if let Some(prev) = name.take() {
                out.insert(prev, buf.trim().to_string());
            }
            buf.clear();
            name = Some(n.trim().to_string());
        } else {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    out
}

pub(crate) fn parse_state(text: &str) -> RemoteState {
    let s = sections(text);
    let get = |k: &str| s.get(k).cloned().unwrap_or_default();
    let nonempty = |v: String| if v.is_empty() { None } else { Some(v) };
    let current = nonempty(get("current")).map(|c| c.trim_start_matches("releases/").to_string());
    let mut releases: Vec<String> = get("releases").lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    releases.sort();
    let exporter = nonempty(get("exporter")).and_then(|l| {
        let (pid, cmd) = l.split_once(' ')?;
        Some((pid.parse().ok()?, cmd.trim().to_string()))
    });
    RemoteState {
        current,
        releases,
        current_info: serde_json::from_str(&get("info")).ok(),
        verified: nonempty(get("verified")),
        lock: nonempty(get("lock")),
        exporter,
        drill_passed: nonempty(get("drill_passed")),
        drill_live: nonempty(get("drill_live")),
        exporter_release: nonempty(get("exporter_release")).map(|r| r.trim_start_matches("releases/").to_string()),
        has_systemd: get("systemd") == "yes",
        linger: get("linger") == "yes",
        writable: get("writable") == "yes",
    }
}

/// Build the new release `id` on the host from `changed` files (sent in one tar on
/// stdin) plus hard links to the unchanged files of release `prev`. The release appears
/// under its final name only when complete (rename of a temporary directory), so a
/// connection cut mid-transfer leaves no partial release.
const SYNC_SCRIPT: &str = r#"set -eu
umask 022
d="$1"; id="$2"; prev="$3"
mkdir -p "$d/releases" "$d/run" "$d/textfile"
chmod 755 "$d" "$d/releases" "$d/textfile"
chmod 700 "$d/run"
rm -rf "$d/releases/.tmp-"*
tmp="$d/releases/.tmp-$id"
mkdir "$tmp"
tar -x -o -f - -C "$tmp"
if [ -n "$prev" ] && [ -s "$tmp/.stackproof-keep" ]; then
  # Hard links in a few processes (GNU cp --parents through xargs): one `ln` per file
  # costs ~2 ms, seconds for a thousand files. The loop is the fallback without GNU cp.
  if ! ( cd "$d/releases/$prev" && tr '\n' '\0' < "$tmp/.stackproof-keep" | xargs -0 cp -l --parents -t "$tmp" -- ) 2>/dev/null; then
    while IFS= read -r f; do
      mkdir -p "$(dirname "$tmp/$f")"
      ln -f "$d/releases/$prev/$f" "$tmp/$f"
    done < "$tmp/.stackproof-keep"
  fi
fi
rm -f "$tmp/.stackproof-keep"
sync
rm -rf "$d/releases/$id"
mv "$tmp" "$d/releases/$id"
echo SYNCED
"#;

pub struct Upload<'a> {
    pub id: &'a str,
    pub prev: Option<&'a str>,
    /// Relative path → (content, mode) of files to send.
    pub changed: Vec<(String, Vec<u8>, u32)>,
    /// Relative paths hard-linked from `prev`.
    pub keep: Vec<String>,
    pub info: &'a ReleaseInfo,
}

/// The tar sent to the host: changed files, the keep list and `.release.json`.
pub fn upload_tar(u: &Upload<'_>) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let mut add = |path: &str, data: &[u8], mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data)
    };
    let io = |e| Error::remote(Kind::Transfer, format!("building the upload failed: {e}"), "report this as a bug");
    for (path, data, mode) in &u.changed {
        add(path, data, *mode).map_err(io)?;
    }
    let keep = u.keep.iter().map(|k| format!("{k}\n")).collect::<String>();
    add(".stackproof-keep", keep.as_bytes(), 0o644).map_err(io)?;
    let info = serde_json::to_vec_pretty(u.info).expect("serializable");
    add(RELEASE_INFO, &info, 0o644).map_err(io)?;
    b.into_inner().map_err(io)
}

pub async fn sync(ssh: &Ssh, u: &Upload<'_>) -> Result<()> {
    let dir = &ssh.host().remote_dir;
    let tar = upload_tar(u)?;
    let out = ssh.script_with_stdin(SYNC_SCRIPT, &[dir.as_str(), u.id, u.prev.unwrap_or("")], tar).await?;
    if !out.stdout.contains("SYNCED") {
        let err = out.stderr.trim();
        let hint = if err.contains("No space left") {
            "free disk space on the host; the current release is untouched".to_string()
        } else if err.contains("Permission denied") || err.contains("Read-only") {
            format!("make {dir} writable by {} (e.g. `sudo install -d -o {} {dir}`)", ssh.host().user, ssh.host().user)
        } else {
            "the current release is untouched; fix the cause and deploy again".to_string()
        };
        return Err(Error::remote(Kind::SyncFailed, format!("writing release {} to {dir} failed: {err}", u.id), hint));
    }
    Ok(())
}

const SWAP_SCRIPT: &str = r#"set -eu
d="$1"; id="$2"
[ -f "$d/releases/$id/.release.json" ] || { echo "release $id is incomplete" >&2; exit 3; }
ln -sfn "releases/$id" "$d/.current.tmp"
mv -T "$d/.current.tmp" "$d/current"
echo SWAPPED
"#;

/// Point `current` at release `id` with one rename(2): readers see the old or the new
/// release, never a mix.
pub async fn swap(ssh: &Ssh, id: &str) -> Result<()> {
    let dir = &ssh.host().remote_dir;
    let out = ssh.script(SWAP_SCRIPT, &[dir.as_str(), id]).await?;
    if !out.stdout.contains("SWAPPED") {
        return Err(Error::remote(
            Kind::SwapFailed,
            format!("switching {dir}/current to {id} failed: {}", out.stderr.trim()),
            "the previous release is still current; deploy again",
        ));
    }
    Ok(())
}

const PRUNE_SCRIPT: &str = r#"d="$1"; shift
for r in "$@"; do case "$r" in */*|.*|'') ;; *) rm -rf "$d/releases/$r";; esac; done
"#;

/// Releases to delete: all but the newest `keep`, never one in `protect` (the current,
/// the last verified, the one the host exporter runs from).
pub fn prune_candidates(releases: &[String], keep: usize, protect: &[Option<&str>]) -> Vec<String> {
    let mut sorted = releases.to_vec();
    sorted.sort();
    let n = sorted.len();
    sorted.into_iter().enumerate().filter(|(i, r)| *i + keep < n && !protect.contains(&Some(r.as_str()))).map(|(_, r)| r).collect()
}

pub async fn prune(ssh: &Ssh, victims: &[String]) -> Result<()> {
    if victims.is_empty() {
        return Ok(());
    }
    let mut args = vec![ssh.host().remote_dir.clone()];
    args.extend(victims.iter().cloned());
    ssh.script(PRUNE_SCRIPT, &args).await?;
    Ok(())
}

const MARK_VERIFIED_SCRIPT: &str = r#"set -eu
umask 077
printf '%s\n' "$2" > "$1/.verified.tmp" && mv -f "$1/.verified.tmp" "$1/verified"
"#;

pub async fn mark_verified(ssh: &Ssh, id: &str) -> Result<()> {
    ssh.script(MARK_VERIFIED_SCRIPT, &[ssh.host().remote_dir.as_str(), id]).await?;
    Ok(())
}

const MARK_DRILL_SCRIPT: &str = r#"set -eu
umask 077
printf '%s\n' "$2" > "$1/.drill-passed.tmp" && mv -f "$1/.drill-passed.tmp" "$1/drill-passed"
"#;

/// Remember that an outage drill passed on this host (deploy runs one until then).
pub async fn mark_drill_passed(ssh: &Ssh, id: &str) -> Result<()> {
    ssh.script(MARK_DRILL_SCRIPT, &[ssh.host().remote_dir.as_str(), id]).await?;
    Ok(())
}

// ---- textfile collector ------------------------------------------------------------

const TEXTFILE_WRITE: &str = r#"set -eu
umask 022
d="$1/textfile"
mkdir -p "$d"
cat > "$d/.$2.tmp"
mv -f "$d/.$2.tmp" "$d/$2"
echo WRITTEN
"#;

const TEXTFILE_REMOVE: &str = r#"rm -f "$1/textfile/$2" "$1/textfile/.$2.tmp" && echo REMOVED"#;

/// Write `<remote_dir>/textfile/NAME` atomically (node-exporter's textfile collector
/// reads every `*.prom` there at each scrape).
pub async fn write_textfile(ssh: &Ssh, name: &str, content: &str) -> Result<()> {
    let out = ssh.script_with_stdin(TEXTFILE_WRITE, &[ssh.host().remote_dir.as_str(), name], content.as_bytes().to_vec()).await?;
    if out.stdout.contains("WRITTEN") {
        Ok(())
    } else {
        Err(Error::remote(
            Kind::RemoteFailed,
            format!("writing {}/textfile/{name} failed: {}", ssh.host().remote_dir, out.stderr.trim()),
            "check that the remote dir is writable",
        ))
    }
}

pub async fn remove_textfile(ssh: &Ssh, name: &str) -> Result<()> {
    let out = ssh.script(TEXTFILE_REMOVE, &[ssh.host().remote_dir.as_str(), name]).await?;
    if out.stdout.contains("REMOVED") {
        Ok(())
    } else {
        Err(Error::remote(Kind::RemoteFailed, format!("removing {}/textfile/{name} failed: {}", ssh.host().remote_dir, out.stderr.trim()), "remove it by hand"))
    }
}

// ---- journal ------------------------------------------------------------------------

/// Append the line on stdin to `<remote_dir>/journal.jsonl` (0600: the remote dir is
/// mounted into every container). Past `$2` bytes the journal is rotated to
/// `journal.jsonl.1` (one previous file is kept, so the journal never takes more than
/// twice the cap).
const JOURNAL_SCRIPT: &str = r#"set -eu
umask 077
d="$1"; max="$2"; j="$1/journal.jsonl"
mkdir -p "$d"
for f in "$j" "$j.1"; do [ ! -f "$f" ] || chmod 600 "$f"; done
size=$(wc -c < "$j" 2>/dev/null || echo 0)
if [ "$size" -gt "$max" ]; then mv -f "$j" "$j.1"; fi
cat >> "$j"
echo APPENDED
"#;

/// The journal's rotation size (README: "The host's journal").
pub const JOURNAL_ROTATE_BYTES: u64 = 8 << 20;

/// The longest journal line kept whole; a longer entry is cut by `journal_line`.
pub const JOURNAL_MAX_LINE: usize = 128 << 10;

/// One journal line, secrets scrubbed (`crate::redact`). An entry longer than
/// `JOURNAL_MAX_LINE` keeps its small fields, each large one replaced by a note of its
/// size, and says so in `"truncated"`: never dropped, never a line readers choke on.
pub fn journal_line(entry: &serde_json::Value) -> String {
    let mut entry = entry.clone();
    crate::redact::scrub_json(&mut entry);
    let line = serde_json::to_string(&entry).expect("serializable");
    if line.len() <= JOURNAL_MAX_LINE {
        return line;
    }
    let mut cut = serde_json::Map::new();
    let fields = match entry {
        serde_json::Value::Object(m) => m,
        other => [("value".to_string(), other)].into_iter().collect(),
    };
    for (k, v) in fields {
        let len = serde_json::to_string(&v).map(|s| s.len()).unwrap_or(0);
        cut.insert(k, if len <= 1024 { v } else { serde_json::Value::String(format!("<{len} bytes cut>")) });
    }
    cut.insert("truncated".into(), serde_json::json!({"bytes": line.len(), "max": JOURNAL_MAX_LINE}));
    serde_json::to_string(&cut).expect("serializable")
}

/// Append one JSON line to `<remote_dir>/journal.jsonl` (scrubbed, capped: `journal_line`).
/// A failed append is said on stderr: a journal that silently misses entries is worse
/// than none.
pub async fn journal(ssh: &Ssh, entry: &serde_json::Value) -> Result<()> {
    let line = format!("{}\n", journal_line(entry));
    let max = JOURNAL_ROTATE_BYTES.to_string();
    let out = ssh.script_with_stdin(JOURNAL_SCRIPT, &[ssh.host().remote_dir.as_str(), max.as_str()], line.into_bytes()).await?;
    if !out.stdout.contains("APPENDED") {
        eprintln!("warning: appending to {}/journal.jsonl on {} failed: {}", ssh.host().remote_dir, ssh.host().name, out.stderr.trim());
    }
    Ok(())
}

const JOURNAL_TAIL_SCRIPT: &str = r#"tail -n "$2" "$1/journal.jsonl" 2>/dev/null || true"#;

pub async fn journal_tail(ssh: &Ssh, n: usize) -> Result<Vec<serde_json::Value>> {
    let out = ssh.script(JOURNAL_TAIL_SCRIPT, &[ssh.host().remote_dir.clone(), n.to_string()]).await?;
    Ok(out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_state_sections() {
        let text = "== current\nreleases/20260101T000000Z-aa\n== releases\n20250101T000000Z-bb\n20260101T000000Z-aa\n== info\n{\"id\":\"20260101T000000Z-aa\",\"stack\":\"s\",\"created_at\":\"t\",\"by\":\"me\",\"files\":{\"a\":\"h\"}}\n\n== verified\n20250101T000000Z-bb\n\n== lock\n\n== exporter\n4242 python3 host_exporter/exporter.py --listen=127.0.0.1:9101 \n== systemd\nno\n== writable\nyes\n== end\n";
        let s = parse_state(text);
        assert_eq!(s.current.as_deref(), Some("20260101T000000Z-aa"));
        assert_eq!(s.releases.len(), 2);
        assert_eq!(s.current_info.unwrap().files["a"], "h");
        assert_eq!(s.verified.as_deref(), Some("20250101T000000Z-bb"));
        assert!(s.lock.is_none());
        assert_eq!(s.exporter.as_ref().unwrap().0, 4242);
        assert!(s.writable && !s.has_systemd && !s.linger);
        assert!(s.drill_live.is_none());
        let live = parse_state("== drill_passed\n\n== drill_live\n{\"token\":\"t\"}\n\n== exporter_release\n== end\n");
        assert_eq!(live.drill_live.as_deref(), Some("{\"token\":\"t\"}"));
        let with = parse_state(&text.replace("== systemd\nno\n", "== systemd\nyes\n== linger\nyes\n"));
        assert!(with.has_systemd && with.linger);
        let without = parse_state(&text.replace("== systemd\nno\n", "== systemd\nyes\n== linger\nno\n"));
        assert!(without.has_systemd && !without.linger);
    }

    #[test]
    fn fresh_host_state_is_empty() {
        let s = parse_state("== current\n== releases\n== info\n\n== verified\n\n== lock\n\n== exporter\n== systemd\nno\n== writable\nyes\n== end\n");
        assert!(s.current.is_none() && s.releases.is_empty() && s.current_info.is_none() && s.exporter.is_none());
    }

    #[test]
    fn prune_keeps_newest_current_and_verified() {
        let r: Vec<String> = (1..=8).map(|i| format!("r{i}")).collect();
        let v = prune_candidates(&r, 5, &[Some("r8"), Some("r1"), Some("r3")]);
        assert_eq!(v, vec!["r2"]);
        assert!(prune_candidates(&r[..3], 5, &[None, None]).is_empty());
    }

    #[test]
    fn upload_tar_holds_changed_files_keep_list_and_info() {
        let info = ReleaseInfo { id: "x".into(), ..Default::default() };
        let u = Upload { id: "x", prev: Some("p"), changed: vec![("a/b.yml".into(), b"k: v".to_vec(), 0o644)], keep: vec!["c.json".into()], info: &info };
        let bytes = upload_tar(&u).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["a/b.yml", ".stackproof-keep", ".release.json"]);
    }

    /// Run a script the way `Ssh::script` does on the host: `sh -c SCRIPT sh ARGS…`.
    pub(crate) fn sh(script: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut c = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        c.wait_with_output().unwrap()
    }

    /// A file's permission bits.
    pub(crate) fn mode(p: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn journal_is_private_appends_from_stdin_and_rotates() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sp");
        let dir = dir.to_str().unwrap();
        // An older journal left world-readable is made private.
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(d.path().join("sp/journal.jsonl"), "{}\n").unwrap();
        let big = format!("{}\n", "x".repeat(200 << 10));
        let out = sh(JOURNAL_SCRIPT, &[dir, "1000000"], big.as_bytes());
        assert!(String::from_utf8_lossy(&out.stdout).contains("APPENDED"), "{out:?}");
        let j = d.path().join("sp/journal.jsonl");
        assert_eq!(mode(&j), 0o600);
        assert_eq!(std::fs::read_to_string(&j).unwrap().len(), 3 + big.len(), "a line over 128 KiB arrives whole on stdin");
        // Over the cap: the next append starts a new file and keeps one previous.
        let out = sh(JOURNAL_SCRIPT, &[dir, "1000"], b"{\"a\":1}\n");
        assert!(String::from_utf8_lossy(&out.stdout).contains("APPENDED"), "{out:?}");
        assert_eq!(std::fs::read_to_string(&j).unwrap(), "{\"a\":1}\n");
        assert_eq!(mode(&d.path().join("sp/journal.jsonl.1")), 0o600);
    }

    #[test]
    fn long_journal_entries_are_cut_with_a_marker_not_dropped() {
        let e = serde_json::json!({"event": "verify", "release": "r1", "failed": ["y".repeat(300 << 10)]});
        let line = journal_line(&e);
        assert!(line.len() < 4096, "{}", line.len());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "verify");
        assert_eq!(v["release"], "r1");
        assert!(v["failed"].as_str().unwrap().contains("bytes cut"));
        assert!(v["truncated"]["bytes"].as_u64().unwrap() > 300 << 10);
        let small = serde_json::json!({"event": "x", "command": "hook --token t0k"});
        assert_eq!(journal_line(&small), r#"{"event":"x","command":"hook --token ***"}"#);
    }

    #[test]
    fn markers_and_run_dir_are_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        assert!(sh(MARK_VERIFIED_SCRIPT, &[dir, "r1"], b"").status.success());
        assert!(sh(MARK_DRILL_SCRIPT, &[dir, "r1"], b"").status.success());
        assert_eq!(mode(&d.path().join("verified")), 0o600);
        assert_eq!(mode(&d.path().join("drill-passed")), 0o600);
        let out = sh(
            SYNC_SCRIPT,
            &[dir, "r1", ""],
            &upload_tar(&Upload { id: "r1", prev: None, changed: vec![], keep: vec![], info: &ReleaseInfo::default() }).unwrap(),
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("SYNCED"), "{out:?}");
        assert_eq!(mode(&d.path().join("run")), 0o700);
        assert_eq!(mode(d.path()), 0o755, "the remote dir stays readable: containers read their files through it");
    }
}
