//! Where alerts go: the stack's Alertmanager config keeps the routing tree and names the
//! receivers whose endpoints each host gives (`receivers.from_host` in the manifest);
//! the host entry gives their integrations and credentials (`receivers:` in hosts.yml).
//! `for_host` renders the config a host runs: the template with each host-given
//! receiver's integrations filled in. Credentials never enter that file: each becomes a
//! secret file in the Alertmanager container (`/run/secrets/receivers/<receiver>/<field>`,
//! 0400, copied through the Docker API like every secret) that Alertmanager 0.25 reads
//! through its `*_file` fields (`http_config.authorization.credentials_file`,
//! `auth_password_file`, `api_url_file`). The rendered config holds no secret, so it is
//! the release's `alertmanager.yml` and is reloaded like any config change.

pub mod probe;

use crate::error::{Error, Kind, Result};
use crate::hosts::receivers::ReceiverEntry;
use crate::hosts::{Host, Secret, SecretSource};
use crate::stack::{paths, Stack};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

/// Where the receivers' secret files are, inside the Alertmanager container.
pub const SECRETS_DIR: &str = "/run/secrets";
/// The names of the receivers' secrets start with this (`receivers/<receiver>/<field>`).
pub const PREFIX: &str = "receivers/";

/// Add the receivers' secret files (found in `secrets` by their prefix) to the
/// Alertmanager container's spec, so they are copied in and compared like every secret.
pub fn attach(specs: &mut [crate::engine::spec::ContainerSpec], secrets: &BTreeMap<String, Secret>) {
    if let Some(am) = specs.iter_mut().find(|s| s.service == "alertmanager") {
        for name in secrets.keys().filter(|n| n.starts_with(PREFIX)) {
            am.secrets.push((name.clone(), format!("{SECRETS_DIR}/{name}")));
            // Secrets are copied into the container's filesystem before it starts.
            am.read_only = false;
        }
    }
}

/// One credential as a file in the Alertmanager container.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretFile {
    /// `receivers/<receiver>/<field>`: the secret's name, and its path under `SECRETS_DIR`.
    pub name: String,
    pub value: Secret,
}

impl SecretFile {
    pub fn dest(&self) -> String {
        format!("{SECRETS_DIR}/{}", self.name)
    }
}

/// The stack as deployed to `host`, and the receivers' secret files. A stack without
/// host-given receivers is returned as it is (and a host entry naming receivers for it is
/// an error: they would page nobody).
pub fn for_host(stack: &Stack, host: &Host) -> Result<(Stack, Vec<SecretFile>)> {
    let from_host = &stack.manifest.receivers.from_host;
    if from_host.is_empty() {
        if let Some(r) = host.receivers.keys().next() {
            return Err(unknown(host, r, from_host));
        }
        return Ok((stack.clone(), vec![]));
    }
    let rel = paths::alertmanager_config(&stack.manifest).and_then(|p| p.stack).ok_or_else(|| {
        Error::config(
            Kind::StackInvalid,
            "`receivers.from_host` is set but the Alertmanager config is not a file of the stack",
            "point alertmanager's --config.file at a file of the stack, or drop `receivers:`",
        )
    })?;
    let template = stack.read_text(&rel).map_err(|e| Error::config(Kind::StackInvalid, e, "run `stackproof lint`"))?;
    let read = |name: &str, src: &SecretSource| host.read_secret(name, src);
    let (text, files) = render(&template, from_host, host, &read)?;
    let mut out = stack.clone();
    out.overrides.insert(rel, text.into_bytes());
    Ok((out, files))
}

fn unknown(host: &Host, r: &str, from_host: &[String]) -> Error {
    Error::config(
        Kind::ReceiverUnknown,
        format!("host `{}` gives endpoints for receiver `{r}`, which the stack does not take from hosts", host.name),
        if from_host.is_empty() {
            "the stack's manifest has no `receivers.from_host`: remove `receivers:` from the host entry, or list the receiver there".to_string()
        } else {
            format!("the stack takes these from hosts: {}; fix the name in {}", from_host.join(", "), host.source.display())
        },
    )
}

/// Render the config for a host (pure but for reading secrets through `read`).
pub fn render(template: &str, from_host: &[String], host: &Host, read: &dyn Fn(&str, &SecretSource) -> Result<Secret>) -> Result<(String, Vec<SecretFile>)> {
    let stack_err = |m: String| Error::config(Kind::StackInvalid, m, "fix alertmanager.yml or `receivers.from_host` in stackproof.yml (`stackproof lint`)");
    let mut doc: Value = serde_yaml::from_str(template).map_err(|e| stack_err(format!("alertmanager config: {e}")))?;
    if let Some(r) = host.receivers.keys().find(|r| !from_host.contains(r)) {
        return Err(unknown(host, r, from_host));
    }
    let receivers =
        doc.get_mut("receivers").and_then(Value::as_sequence_mut).ok_or_else(|| stack_err("alertmanager config has no `receivers:` list".into()))?;
    let mut files = vec![];
    for name in from_host {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(stack_err(format!("receiver name `{name}` in `receivers.from_host`: use letters, digits, - and _ only")));
        }
        let slot = receivers
            .iter_mut()
            .filter_map(Value::as_mapping_mut)
            .find(|m| m.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| stack_err(format!("`receivers.from_host` names `{name}`, but alertmanager.yml has no receiver of that name")))?;
        if let Some(k) = slot.keys().filter_map(Value::as_str).find(|k| k.ends_with("_configs")) {
            return Err(stack_err(format!("receiver `{name}` takes its endpoint from the host, but alertmanager.yml gives it `{k}`: declare it by name only")));
        }
        let Some(entry) = host.receivers.get(name) else {
            if host.unpaged.is_some() {
                continue;
            }
            return Err(Error::config(
                Kind::ReceiverMissing,
                format!("host `{}` gives no endpoint for receiver `{name}`: alerts routed there would page nobody", host.name),
                format!(
                    "add `receivers: {{{name}: {{webhook: {{url: ...}}}}}}` (or `email:`/`slack:`) to the `{}` entry in {}; for a host that knowingly pages nobody yet, set `unpaged: \"why\"` there",
                    host.name,
                    host.source.display()
                ),
            ));
        };
        integrations(name, entry, slot, &mut files, read)?;
    }
    let header = format!(
        "# Rendered by stackproof for host `{}` from the stack's Alertmanager config: the receivers\n# {} take their endpoints from the host entry; credentials are files under {SECRETS_DIR}/receivers.\n",
        host.name,
        from_host.join(", ")
    );
    let body = serde_yaml::to_string(&doc).map_err(|e| stack_err(format!("rendering alertmanager config: {e}")))?;
    Ok((header + &body, files))
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

/// Fill one receiver's `*_configs` from its host entry, collecting its secret files.
fn integrations(
    name: &str,
    entry: &ReceiverEntry,
    slot: &mut Mapping,
    files: &mut Vec<SecretFile>,
    read: &dyn Fn(&str, &SecretSource) -> Result<Secret>,
) -> Result<()> {
    let mut secret = |field: &str, src: &SecretSource| -> Result<String> {
        let f = SecretFile { name: format!("{PREFIX}{name}/{field}"), value: read(&format!("receivers.{name}.{field}"), src)? };
        let dest = f.dest();
        files.push(f);
        Ok(dest)
    };
    if let Some(w) = &entry.webhook {
        let mut pairs = vec![("url", Value::from(w.url.as_str())), ("send_resolved", Value::from(true))];
        if let Some(t) = &w.bearer_token {
            let auth = map(vec![("type", "Bearer".into()), ("credentials_file", secret("bearer_token", t)?.into())]);
            pairs.push(("http_config", map(vec![("authorization", auth)])));
        }
        slot.insert("webhook_configs".into(), Value::Sequence(vec![map(pairs)]));
    }
    if let Some(e) = &entry.email {
        let mut pairs = vec![
            ("to", Value::from(e.to.as_str())),
            ("from", e.from.as_str().into()),
            ("smarthost", e.smarthost.as_str().into()),
            ("require_tls", e.require_tls.into()),
            ("send_resolved", true.into()),
        ];
        if let Some(u) = &e.auth_username {
            pairs.push(("auth_username", u.as_str().into()));
        }
        if let Some(p) = &e.auth_password {
            pairs.push(("auth_password_file", secret("auth_password", p)?.into()));
        }
        slot.insert("email_configs".into(), Value::Sequence(vec![map(pairs)]));
    }
    if let Some(s) = &entry.slack {
        let mut pairs = vec![("api_url_file", Value::from(secret("api_url", &s.api_url)?)), ("send_resolved", true.into())];
        if let Some(c) = &s.channel {
            pairs.push(("channel", c.as_str().into()));
        }
        slot.insert("slack_configs".into(), Value::Sequence(vec![map(pairs)]));
    }
    Ok(())
}

/// The receivers' secret files of a host, without rendering (a release already on the
/// host carries its rendered config: a rollback needs only the files). Same names and
/// order as `render` gives.
pub fn secret_files(host: &Host, from_host: &[String]) -> Result<Vec<SecretFile>> {
    let mut files = vec![];
    for name in from_host {
        if let Some(entry) = host.receivers.get(name) {
            let mut slot = Mapping::new();
            integrations(name, entry, &mut slot, &mut files, &|n: &str, src: &SecretSource| host.read_secret(n, src))?;
        }
    }
    Ok(files)
}

/// The stack as `host` runs it and every secret its containers need (the manifest's
/// `secrets` and the receivers' secret files), read before the host is touched.
pub fn deployed(stack: &Stack, host: &Host) -> Result<(Stack, BTreeMap<String, Secret>)> {
    let (deployed, files) = for_host(stack, host)?;
    let mut secrets = host.secrets(&deployed.manifest.secrets)?;
    secrets.extend(secret_map(&files));
    Ok((deployed, secrets))
}

/// The secret files as the name → value map the deploy copies into containers.
pub fn secret_map(files: &[SecretFile]) -> BTreeMap<String, Secret> {
    files.iter().map(|f| (f.name.clone(), f.value.clone())).collect()
}

#[cfg(test)]
mod tests;
