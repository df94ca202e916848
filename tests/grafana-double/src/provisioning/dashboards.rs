//! Dashboard provisioning: provider files in `<provisioning>/dashboards/*.y*ml`
//! and the `*.json` files under each provider's `options.path`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{expand_yaml, go_read_error, parse_yaml, unmarshal_error, yaml_files};
use crate::config::Env;
use crate::logfmt::Logger;
use crate::state::{generate_uid, now_rfc3339, validate_uid, Dashboard, Provisioning, Store};

pub const LOGGER: &str = "provisioning.dashboard";

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct ProvidersFile {
    #[serde(default)]
    #[allow(dead_code)]
    api_version: Option<i64>,
    #[serde(default)]
    providers: Option<Vec<ProviderDef>>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "camelCase", default)]
struct ProviderDef {
    name: String,
    #[serde(rename = "type")]
    ptype: String,
    org_id: i64,
    folder: String,
    folder_uid: String,
    disable_deletion: bool,
    update_interval_seconds: i64,
    allow_ui_updates: bool,
    options: serde_yaml::Mapping,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub org_id: i64,
    pub folder: String,
    pub folder_uid: String,
    pub disable_deletion: bool,
    pub interval: Duration,
    pub allow_ui_updates: bool,
    pub path: PathBuf,
    pub folders_from_files_structure: bool,
}

/// One dashboard file's claim on a uid and a (title, folder) pair, for the duplicate validator.
#[derive(Debug, Clone)]
pub struct Usage {
    pub uid: String,
    pub title: String,
    pub folder: String,
}

const CREATE: &str = "Failed to create provisioner";

/// Reads and validates the provider files. An `Err` is fatal and already
/// carries Grafana's wrapping (`Failed to create provisioner: …`).
pub fn read_providers(provisioning: &Path, env: &Env, log: &Logger) -> Result<Vec<Provider>, String> {
    let dir = provisioning.join("dashboards");
    let files = match yaml_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            log.error(
                LOGGER,
                "can't read dashboard provisioning files from directory",
                &[("path", &dir.display().to_string()), ("error", &go_read_error(&dir, &e))],
            );
            return Ok(Vec::new());
        }
    };
    let parse_err = |file: &Path, err: String| {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{CREATE}: Failed to read dashboards config: could not parse provisioning config file: {name} error: {err}")
    };
    let mut defs: Vec<ProviderDef> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| parse_err(&file, go_read_error(&file, &e)))?;
        let mut doc = parse_yaml(&text).map_err(|e| parse_err(&file, e))?;
        if doc.is_null() {
            continue;
        }
        expand_yaml(&mut doc, env);
        let parsed: ProvidersFile = serde_yaml::from_value(doc).map_err(|e| parse_err(&file, unmarshal_error(e)))?;
        defs.extend(parsed.providers.unwrap_or_default());
    }

    let mut names = BTreeSet::new();
    for d in defs.iter_mut() {
        if d.org_id == 0 {
            d.org_id = 1;
        }
        if d.ptype.is_empty() {
            d.ptype = "file".into();
        }
        if d.update_interval_seconds <= 0 {
            d.update_interval_seconds = 10;
        }
        if !names.insert(d.name.clone()) {
            return Err(format!("{CREATE}: Failed to read dashboards config: dashboard name {:?} is not unique", d.name));
        }
        if d.org_id != 1 {
            return Err(format!("{CREATE}: Failed to read dashboards config: failed to provision dashboards with {:?} reader: organization not found", d.name));
        }
    }
    let init = "Failed to initialize file readers";
    let mut providers = Vec::new();
    for d in defs {
        if d.ptype != "file" {
            return Err(format!("{CREATE}: {init}: type {} is not supported", d.ptype));
        }
        let reader_err = |e: &str| format!("{CREATE}: {init}: failed to create file reader for config {}: {e}", d.name);
        let opt = |k: &str| d.options.get(serde_yaml::Value::String(k.into()));
        // `folder` is the deprecated alias of `path`
        let path = match opt("path").or_else(|| opt("folder")) {
            Some(serde_yaml::Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return Err(reader_err("failed to load dashboards, path param is not a string")),
        };
        let ffs = matches!(opt("foldersFromFilesStructure"), Some(serde_yaml::Value::Bool(true)));
        if ffs && (!d.folder.is_empty() || !d.folder_uid.is_empty()) {
            return Err(reader_err("'folder' and 'folderUID' should be empty using 'foldersFromFilesStructure' option"));
        }
        providers.push(Provider {
            name: d.name,
            org_id: d.org_id,
            folder: d.folder,
            folder_uid: d.folder_uid,
            disable_deletion: d.disable_deletion,
            interval: Duration::from_secs(d.update_interval_seconds as u64),
            allow_ui_updates: d.allow_ui_updates,
            path,
            folders_from_files_structure: ffs,
        });
    }
    Ok(providers)
}

fn walk_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // fs::metadata follows symlinks, as Grafana's walker does
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            if !name.starts_with('.') {
                walk_json(&path, out)?;
            }
        } else if name.ends_with(".json") {
            out.push(path);
        }
    }
    Ok(())
}

fn checksum(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Outcome of reading one dashboard file.
enum Loaded {
    Ok { model: Value, title: String, checksum: String },
    Failed(String),
}

fn load_file(path: &Path) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Loaded::Failed(go_read_error(path, &e)),
    };
    let sum = checksum(&bytes);
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Loaded::Failed("EOF".into());
    }
    let model: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Loaded::Failed(e.to_string()),
    };
    // Grafana builds the dashboard from the top-level object: a file in the
    // API shape {"dashboard": {...}} (or an array) has no top-level title.
    let title = model.get("title").and_then(Value::as_str).unwrap_or("").to_string();
    if title.is_empty() {
        return Loaded::Failed("Dashboard title cannot be empty".into());
    }
    Loaded::Ok { model, title, checksum: sum }
}

/// The provider's path as Grafana's file reader resolves it each time it is
/// asked (`resolvedPath` in file_reader.go): made absolute, symlinks
/// evaluated, the configured path as it is when that fails.
pub fn resolved_path(p: &Provider, log: &Logger) -> PathBuf {
    let ctx: [(&str, &str); 2] = [("type", "file"), ("name", &p.name)];
    let abs = if p.path.is_absolute() { p.path.clone() } else { std::env::current_dir().map(|d| d.join(&p.path)).unwrap_or_else(|_| p.path.clone()) };
    match std::fs::canonicalize(&abs) {
        Ok(r) => r,
        Err(e) => {
            let err = format!("lstat {}: {}", abs.display(), go_read_error(&abs, &e).rsplit(": ").next().unwrap_or(""));
            log.log(LOGGER, &ctx, "error", "Failed to read content of symlinked path", &[("path", &p.path.display().to_string()), ("error", &err)]);
            log.log(LOGGER, &ctx, "info", "falling back to original path due to EvalSymlink/Abs failure", &[]);
            p.path.clone()
        }
    }
}

/// One pass of one provider's file reader (`walkDisk` in Grafana's
/// file_reader.go): find the files under the resolved path, **first**
/// delete (or, with `disableDeletion`, un-provision) the dashboards whose
/// file is no longer among them, **then** save the new and changed files.
/// After a release swap (the provider path is a symlink that now points
/// elsewhere) every stored file path is gone, so every dashboard is deleted
/// and saved again as a new row. Returns the uid/title usage of the files
/// it read, or `Err` when its path cannot be read.
pub fn provider_pass(p: &Provider, store: &mut Store, log: &Logger) -> Result<Vec<Usage>, ()> {
    let ctx: [(&str, &str); 2] = [("type", "file"), ("name", &p.name)];
    let resolved = resolved_path(p, log);
    if let Err(e) = std::fs::metadata(&resolved) {
        let err = format!("stat {}: {}", resolved.display(), go_read_error(&resolved, &e).rsplit(": ").next().unwrap_or(""));
        log.log(LOGGER, &ctx, "error", "Cannot read directory", &[("error", &err)]);
        log.log(LOGGER, &ctx, "error", "failed to search for dashboards", &[("error", &err)]);
        return Err(());
    }
    // provisioned rows of this provider, keyed by stored path; a stored path
    // outside the resolved path is prefixed with it, as Grafana does
    let root = resolved.display().to_string();
    let refs: BTreeMap<String, (String, i64, String)> = store
        .dashboards
        .values()
        .filter_map(|d| d.provisioning.as_ref().filter(|pr| pr.provider == p.name).map(|pr| (d, pr)))
        .map(|(d, pr)| {
            let key = if pr.file.starts_with(&root) { pr.file.clone() } else { format!("{root}/{}", pr.file) };
            (key, (d.uid.clone(), d.id, pr.checksum.clone()))
        })
        .collect();

    let mut files = Vec::new();
    if let Err(e) = walk_json(&resolved, &mut files) {
        let err = go_read_error(&resolved, &e);
        log.log(LOGGER, &ctx, "error", "Cannot read directory", &[("error", &err)]);
        log.log(LOGGER, &ctx, "error", "failed to search for dashboards", &[("error", &err)]);
        return Err(());
    }
    files.sort();
    let found: BTreeSet<String> = files.iter().map(|f| f.display().to_string()).collect();

    // handleMissingDashboardFiles: before any save, whatever the duplicate validator decided
    for (path, (uid, id, _)) in &refs {
        if found.contains(path) {
            continue;
        }
        if p.disable_deletion {
            log.log(LOGGER, &ctx, "debug", "unprovisioning provisioned dashboard. missing on disk", &[("id", &id.to_string())]);
            if let Some(d) = store.dashboards.get_mut(uid) {
                d.provisioning = None;
            }
        } else {
            log.log(LOGGER, &ctx, "debug", "deleting provisioned dashboard, missing on disk", &[("id", &id.to_string())]);
            store.dashboards.remove(uid);
        }
    }

    let can_write = !store.provider_blocked.get(&p.name).copied().unwrap_or(false);
    let mut usage = Vec::new();
    for file in &files {
        let file_s = file.display().to_string();
        let (mut model, title, sum) = match load_file(file) {
            Loaded::Ok { model, title, checksum } => (model, title, checksum),
            Loaded::Failed(err) => {
                log.log(LOGGER, &ctx, "error", "failed to load dashboard from ", &[("file", &file_s), ("error", &err)]);
                continue;
            }
        };
        let folder_uid = match folder_for(p, file, &resolved, store) {
            Ok(f) => f,
            Err(err) => {
                log.log(LOGGER, &ctx, "error", "failed to save dashboard", &[("file", &file_s), ("error", &err)]);
                continue;
            }
        };
        let file_uid = model.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
        usage.push(Usage { uid: file_uid.clone(), title: title.clone(), folder: folder_uid.clone().unwrap_or_default() });
        // alreadyProvisioned is decided on the rows read before the deletions
        let previous = refs.get(&file_s).filter(|(uid, _, _)| store.dashboards.contains_key(uid));
        if previous.is_some_and(|(_, _, prev_sum)| *prev_sum == sum) {
            continue; // up to date
        }
        if !can_write {
            log.log(LOGGER, &ctx, "warn", "Not saving new dashboard due to restricted database access", &[("provisioner", &p.name), ("file", &file_s)]);
            continue;
        }
        if let Err(err) = check_saveable(&file_uid, &title, &model) {
            log.log(LOGGER, &ctx, "error", "failed to save dashboard", &[("file", &file_s), ("error", &err)]);
            continue;
        }
        // a non-zero id in the file is discarded before saving
        if let Some(o) = model.as_object_mut() {
            o.remove("id");
        }
        let prov = Provisioning { provider: p.name.clone(), file: file_s.clone(), checksum: sum };
        match previous {
            // already provisioned from this path: the save targets that row (its id)
            Some((prev_uid, _, _)) => {
                update_row(store, prev_uid, if file_uid.is_empty() { prev_uid.clone() } else { file_uid }, title, folder_uid, model, prov)
            }
            None => {
                let uid = if file_uid.is_empty() { generate_uid() } else { file_uid };
                save_overwrite(store, uid, title, folder_uid, model, prov);
            }
        }
    }
    Ok(usage)
}

/// Saves over the row that was provisioned from the same file (same id);
/// a changed uid in the file moves the row to the new uid.
fn update_row(store: &mut Store, row_uid: &str, uid: String, title: String, folder_uid: Option<String>, model: Value, prov: Provisioning) {
    let Some(mut d) = store.dashboards.remove(row_uid) else { return };
    if uid != row_uid {
        // another row with the new uid is overwritten, as a save with overwrite does
        store.dashboards.remove(&uid);
    }
    d.uid = uid.clone();
    d.tags = model.get("tags").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default();
    d.title = title;
    d.folder_uid = folder_uid;
    d.model = model;
    d.version += 1;
    d.updated = now_rfc3339();
    d.provisioning = Some(prov);
    store.dashboards.insert(uid, d);
}

/// Go's `filepath.Rel` for the paths the API meets: `targ` relative to
/// `base`, with `..` steps; an error when one is absolute and the other not.
pub fn go_rel(base: &str, targ: &str) -> Result<String, String> {
    fn clean(p: &str) -> (bool, Vec<String>) {
        let abs = p.starts_with('/');
        let mut out: Vec<String> = Vec::new();
        for c in p.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if out.last().is_some_and(|l| l != "..") {
                        out.pop();
                    } else if !abs {
                        out.push("..".into());
                    }
                }
                c => out.push(c.to_string()),
            }
        }
        (abs, out)
    }
    let (babs, b) = clean(base);
    let (tabs, t) = clean(targ);
    if babs != tabs {
        return Err(format!("Rel: can't make {targ} relative to {base}"));
    }
    let common = b.iter().zip(t.iter()).take_while(|(x, y)| x == y).count();
    if b[common..].iter().any(|c| c == "..") {
        return Err(format!("Rel: can't make {targ} relative to {base}"));
    }
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(t[common..].iter().cloned());
    Ok(if parts.is_empty() { ".".into() } else { parts.join("/") })
}

fn folder_for(p: &Provider, file: &Path, resolved: &Path, store: &mut Store) -> Result<Option<String>, String> {
    if p.folders_from_files_structure {
        let parent = file.parent().unwrap_or(resolved);
        if parent == resolved {
            return Ok(None);
        }
        let title = parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return store.get_or_create_folder(&title, None).map(Some);
    }
    if p.folder.is_empty() {
        return Ok(None);
    }
    store.get_or_create_folder(&p.folder, Some(&p.folder_uid)).map(Some)
}

fn check_saveable(uid: &str, title: &str, model: &Value) -> Result<(), String> {
    if !uid.is_empty() {
        validate_uid(uid)?;
    }
    if title.chars().count() > 5000 {
        return Err("Dashboard title cannot contain more than 5 000 characters".into());
    }
    if let Some(tags) = model.get("tags").and_then(Value::as_array) {
        if tags.iter().filter_map(Value::as_str).any(|t| t.chars().count() > 50) {
            return Err("dashboard tag too long, max 50 characters".into());
        }
    }
    Ok(())
}

/// Save with `overwrite = true`, like provisioning always does: the same
/// uid overwrites that dashboard; otherwise the same title in the same
/// folder takes over the existing dashboard's id and uid.
fn save_overwrite(store: &mut Store, uid: String, title: String, folder_uid: Option<String>, model: Value, prov: Provisioning) {
    let now = now_rfc3339();
    let tags = model.get("tags").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default();
    let target_uid = if store.dashboards.contains_key(&uid) {
        uid
    } else if let Some(same_title) =
        store.dashboards.values().find(|d| d.org_id == 1 && d.folder_uid == folder_uid && d.title.to_lowercase() == title.to_lowercase())
    {
        same_title.uid.clone()
    } else {
        uid
    };
    match store.dashboards.get_mut(&target_uid) {
        Some(d) => {
            d.title = title;
            d.tags = tags;
            d.folder_uid = folder_uid;
            d.model = model;
            d.version += 1;
            d.updated = now;
            d.provisioning = Some(prov);
        }
        None => {
            let id = store.next_dashboard_id();
            store.dashboards.insert(
                target_uid.clone(),
                Dashboard {
                    id,
                    uid: target_uid,
                    org_id: 1,
                    title,
                    tags,
                    folder_uid,
                    model,
                    version: 1,
                    created: now.clone(),
                    updated: now,
                    provisioning: Some(prov),
                },
            );
        }
    }
}

/// The duplicate validator: warns about a uid or a (title, folder) used by
/// more than one file and takes write permission away from the providers
/// involved until the duplicates are gone.
pub fn validate_duplicates(usage: &HashMap<String, Vec<Usage>>, store: &mut Store, log: &Logger) {
    let mut by_uid: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    let mut by_title: BTreeMap<(String, &str), (usize, BTreeSet<&str>)> = BTreeMap::new();
    for (provider, list) in usage {
        for u in list {
            if !u.uid.is_empty() {
                let e = by_uid.entry(&u.uid).or_default();
                e.0 += 1;
                e.1.insert(provider);
            }
            let e = by_title.entry((u.title.to_lowercase(), &u.folder)).or_default();
            e.0 += 1;
            e.1.insert(provider);
        }
    }
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    for (uid, (times, providers)) in &by_uid {
        if *times > 1 {
            let list = format!("[{}]", providers.iter().copied().collect::<Vec<_>>().join(" "));
            log.warn(LOGGER, "the same UID is used more than once", &[("orgId", "1"), ("uid", uid), ("times", &times.to_string()), ("providers", &list)]);
            blocked.extend(providers.iter().map(|s| s.to_string()));
        }
    }
    for ((title, folder), (times, providers)) in &by_title {
        if *times > 1 {
            let folder_id = store.folder_by_uid(folder).map(|f| f.id).unwrap_or(0).to_string();
            let list = format!("[{}]", providers.iter().copied().collect::<Vec<_>>().join(" "));
            log.warn(
                LOGGER,
                "dashboard title is not unique in folder",
                &[("orgId", "1"), ("title", title), ("folderID", &folder_id), ("times", &times.to_string()), ("providers", &list)],
            );
            blocked.extend(providers.iter().map(|s| s.to_string()));
        }
    }
    for name in usage.keys() {
        let is_blocked = blocked.contains(name);
        if is_blocked {
            log.warn(LOGGER, "dashboards provisioning provider has no database write permissions because of duplicates", &[("provider", name), ("orgId", "1")]);
        }
        store.provider_blocked.insert(name.clone(), is_blocked);
    }
}

#[cfg(test)]
mod tests {
    use super::go_rel;

    #[test]
    fn rel_like_go() {
        assert_eq!(go_rel("/s/releases/2/dash", "/s/releases/2/dash/a/x.json").unwrap(), "a/x.json");
        assert_eq!(go_rel("/s/releases/2/dash", "/s/releases/1/dash/x.json").unwrap(), "../../1/dash/x.json");
        assert_eq!(go_rel("/a/b", "/a/b").unwrap(), ".");
        assert_eq!(go_rel("", "/a/x.json").unwrap_err(), "Rel: can't make /a/x.json relative to ");
    }
}
