//! `--with-promtool`: the official checkers (`promtool check config`, `promtool check
//! rules`, `amtool check-config`) from the local images, each in a throwaway container
//! (`docker run --rm --network none`, the files mounted read-only), their output mapped
//! into findings. The docker CLI is enough for a throwaway check; deploy uses the API.

use super::ctx::StackCtx;
use super::{recognise, FileKind, Severity, Sink, Source};
use crate::error::{Error, Kind, Result};
use crate::stack::manifest::CONTAINER_CURRENT;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PROMETHEUS_IMAGE: &str = "stackproof-local/prometheus:v2.42.0";
pub const ALERTMANAGER_IMAGE: &str = "stackproof-local/alertmanager:v0.25.0";

fn docker_reachable() -> Result<()> {
    let out = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(Error::config(
            Kind::DockerUnreachable,
            format!("--with-promtool needs Docker, which did not answer: {}", String::from_utf8_lossy(&o.stderr).trim()),
            "start the Docker daemon (or check DOCKER_HOST and that you may use /var/run/docker.sock), or lint without --with-promtool",
        )),
        Err(e) => {
            Err(Error::config(Kind::DockerUnreachable, format!("--with-promtool needs the docker CLI: {e}"), "install Docker, or lint without --with-promtool"))
        }
    }
}

fn image_present(image: &str) -> bool {
    Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Run one tool; Ok(None) when it passed, Ok(Some(output)) when it failed.
fn run_tool(image: &str, mount: &Path, target: &str, entry: &str, args: &[&str]) -> Result<Option<String>> {
    if !image_present(image) {
        return Err(Error::config(
            Kind::ImageMissing,
            format!("--with-promtool needs the local image {image}, which is not there"),
            "build it with scripts/images",
        ));
    }
    let abs = std::fs::canonicalize(mount).map_err(|e| Error::io(mount, e))?;
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:{target}:ro", abs.display()))
        .args(["--entrypoint", entry, image])
        .args(args)
        .output()
        .map_err(|e| Error::config(Kind::DockerUnreachable, format!("cannot run docker: {e}"), "check the Docker installation"))?;
    if out.status.success() {
        return Ok(None);
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Some(text))
}

/// Map a tool's failure output into findings. promtool names the file, line and column
/// (`/path/file.yml: 11:15: group "g", rule 1, ...`); amtool and other lines give a
/// message only. With `only_file`, lines about other files are left to their own run.
fn map_output(sink: &mut Sink, code: &'static str, file: &str, text: &str, container_prefix: &str, host_prefix: &str, only_file: Option<&str>) {
    let located = regex::Regex::new(r"^\s*(/\S+?):\s*(\d+):(\d+):\s*(.*)$").expect("static regex");
    let line_re = regex::Regex::new(r"line (\d+)").expect("static regex");
    let mut any = false;
    for l in text.lines() {
        let t = l.trim();
        if let Some(c) = located.captures(t) {
            if only_file.is_some_and(|f| !c[1].ends_with(f)) {
                any = true;
                continue;
            }
            any = true;
            let f = c[1].replacen(container_prefix, host_prefix, 1);
            let pos = (c[2].parse().unwrap_or(1), c[3].parse().unwrap_or(1));
            sink.push(Severity::Error, code, &f, Some(pos), c[4].to_string(), "reported by the official tool of the pinned version");
            continue;
        }
        let msg = match t.split_once("FAILED:") {
            Some((_, rest)) if !rest.trim().is_empty() => rest.trim(),
            Some(_) => continue,
            None if t.starts_with("error") && !t.contains("failed to validate") => t,
            None => continue,
        };
        any = true;
        let line = line_re.captures(msg).and_then(|c| c[1].parse().ok());
        sink.push(
            Severity::Error,
            code,
            file,
            line.map(|l| (l, 1)),
            msg.replace(container_prefix, host_prefix),
            "reported by the official tool of the pinned version",
        );
    }
    if !any {
        let msg = text.trim().replace(container_prefix, host_prefix);
        sink.push(Severity::Error, code, file, None, msg, "reported by the official tool of the pinned version");
    }
}

pub fn run_stack(ctx: &StackCtx, prom: Option<&str>, rules: &[PathBuf], am: Option<&str>, sink: &mut Sink) -> Result<()> {
    docker_reachable()?;
    let cur = format!("{CONTAINER_CURRENT}/");
    let host = format!("{}/", ctx.dir.display());
    if let Some(p) = prom {
        if let Some(out) = run_tool(PROMETHEUS_IMAGE, &ctx.dir, CONTAINER_CURRENT, "/bin/promtool", &["check", "config", &format!("{cur}{p}")])? {
            map_output(sink, "promtool.config", &ctx.display(p), &out, &cur, &host, Some(p));
        }
    }
    for r in rules {
        let rel = r.strip_prefix(&ctx.dir).unwrap_or(r).to_string_lossy().into_owned();
        if let Some(out) = run_tool(PROMETHEUS_IMAGE, &ctx.dir, CONTAINER_CURRENT, "/bin/promtool", &["check", "rules", &format!("{cur}{rel}")])? {
            map_output(sink, "promtool.rules", &ctx.display(&rel), &out, &cur, &host, None);
        }
    }
    if let Some(a) = am {
        if let Some(out) = run_tool(ALERTMANAGER_IMAGE, &ctx.dir, CONTAINER_CURRENT, "/bin/amtool", &["check-config", &format!("{cur}{a}")])? {
            map_output(sink, "amtool.config", &ctx.display(a), &out, &cur, &host, None);
        }
    }
    Ok(())
}

pub fn run_lone(files: &[PathBuf], sink: &mut Sink) -> Result<()> {
    let mut checked = false;
    for f in files {
        let Ok(src) = Source::read(f, f.display().to_string()) else { continue };
        let kind = recognise(&src);
        let (image, entry, args, code): (&str, &str, Vec<&str>, &'static str) = match kind {
            FileKind::PrometheusConfig => (PROMETHEUS_IMAGE, "/bin/promtool", vec!["check", "config"], "promtool.config"),
            FileKind::Rules => (PROMETHEUS_IMAGE, "/bin/promtool", vec!["check", "rules"], "promtool.rules"),
            FileKind::AlertmanagerConfig => (ALERTMANAGER_IMAGE, "/bin/amtool", vec!["check-config"], "amtool.config"),
            _ => continue,
        };
        if !checked {
            docker_reachable()?;
            checked = true;
        }
        let dir = f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let target = format!("/lint/{name}");
        let mut a = args.clone();
        a.push(&target);
        if let Some(out) = run_tool(image, dir, "/lint", entry, &a)? {
            map_output(sink, code, &src.display, &out, "/lint/", &format!("{}/", dir.display()), None);
        }
    }
    Ok(())
}
